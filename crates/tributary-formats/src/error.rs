//! Errors of this crate: problems found while building a converter or the
//! Parquet writer settings. Problems with single records are rejects, not errors.

use std::path::PathBuf;

use tributary_core::{ConvertError, ErrorClass};

/// A schema file, a converter setting or a Parquet setting is wrong.
///
/// Every variant names where the problem is: the file and the field path
/// inside it (`config/schemas/orders.json: fields[3].type: unknown type "int65"`),
/// or the configuration key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The schema file could not be read.
    #[error("{}: cannot read schema file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The schema file was read but does not describe a valid schema.
    #[error("{origin}: {location}: {message}")]
    Schema {
        /// Where the text came from (a file path, or a label for inline text).
        origin: String,
        /// Path of the offending element inside the document, e.g. `fields[3].type`.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A converter setting does not fit the schema (timestamp field missing or
    /// not a timestamp, metadata column clashing with a payload field, ...).
    #[error("converter.{key}: {message}")]
    Converter {
        /// The configuration key, relative to the converter table.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A Parquet sink setting cannot be turned into writer properties.
    #[error("sink.{key}: {message}")]
    Parquet {
        /// The configuration key, relative to the sink table.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl FormatError {
    /// Retry hint: these are configuration problems, so retrying does not help.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

impl From<FormatError> for ConvertError {
    fn from(e: FormatError) -> Self {
        ConvertError::Internal {
            message: e.to_string(),
        }
    }
}
