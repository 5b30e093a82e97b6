//! Errors of the transforms crate.

/// A transform that cannot be built from its configuration, or that cannot
/// run on the rows it was given (a field it names is missing, a type it
/// cannot handle). Record-level problems (a value that does not cast) are
/// not errors: they become rejects by the converter's `on_error`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// Transform `index` is wrong; `key` is the config key inside it
    /// (`expr`, `fields.amount`, `format`, ...). Displayed as
    /// `transforms.<index>.<key>: <message>`, ready to be prefixed with the
    /// pipeline's key.
    #[error("transforms.{index}.{key}: {message}")]
    Config {
        /// Position of the transform in the pipeline's list.
        index: usize,
        /// Key inside the transform.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Arrow failed while transform `index` ran (not a problem of one record).
    #[error("transforms.{index} ({kind}): {message}")]
    Arrow {
        /// Position of the transform in the pipeline's list.
        index: usize,
        /// Transform type.
        kind: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// An error inside one step, before it is tagged with the step's position.
#[derive(Debug)]
pub(crate) struct StepError {
    /// Key inside the transform.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// Whether it is an Arrow failure rather than a config/schema mismatch.
    pub arrow: bool,
}

impl StepError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            arrow: false,
        }
    }

    pub(crate) fn arrow(key: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self {
            key: key.into(),
            message: error.to_string(),
            arrow: true,
        }
    }

    pub(crate) fn at(self, index: usize, kind: &'static str) -> TransformError {
        if self.arrow {
            TransformError::Arrow {
                index,
                kind,
                message: format!("{}: {}", self.key, self.message),
            }
        } else {
            TransformError::Config {
                index,
                key: self.key,
                message: self.message,
            }
        }
    }
}
