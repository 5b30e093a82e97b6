//! The crate's one error type.

use tributary_core::{ErrorClass, SinkError, TopicPartition};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the lake: opening storage, partition
/// templates, reading and writing objects, and the landing protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LakeError {
    /// The lake URL cannot be used (unknown scheme, no bucket, bad path).
    #[error("lake url {url:?} is not usable: {message}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// A storage setting is wrong (unknown `storage.options` key, a field the
    /// backend does not take).
    #[error("storage setting {key} is not valid for {scheme}://: {message}")]
    Config {
        /// The setting, as a config key path (`storage.options.foo`).
        key: String,
        /// Scheme of the lake URL.
        scheme: String,
        /// What is wrong.
        message: String,
    },
    /// A `partition_by` template or its timezone is not valid.
    #[error("partition template {template:?} (timezone {timezone}) is not valid: {message}")]
    Template {
        /// The template.
        template: String,
        /// The timezone.
        timezone: String,
        /// What is wrong.
        message: String,
    },
    /// A `{field}` placeholder of a `partition_by` template names no column
    /// of the rows, or a column whose type cannot be a path value.
    #[error("partition template {template:?}: field {field:?} {message}")]
    PartitionField {
        /// The template.
        template: String,
        /// The placeholder's field, as written (`address.city`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A path handed to the lake cannot be stored (empty segment, `..`,
    /// control character, reserved prefix).
    #[error("path {path:?} cannot be used in the lake: {message}")]
    Path {
        /// The path relative to the lake root.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A landing does not fit the partition's commit log (it does not start
    /// where the log continues, its counts do not add up, it reuses a path).
    /// This is a bug in the caller, not a storage problem.
    #[error("{partition}: landing of offsets {first_offset}..={last_offset} rejected: {message}")]
    Invalid {
        /// The partition.
        partition: TopicPartition,
        /// First offset of the landing.
        first_offset: i64,
        /// Last offset of the landing.
        last_offset: i64,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing an object failed.
    #[error("storage {operation} {path} failed: {source}")]
    Storage {
        /// What was being done (`put`, `create`, `get`, `list`, `delete`, `open`).
        operation: &'static str,
        /// Object path relative to the lake root.
        path: String,
        /// Underlying error.
        #[source]
        source: BoxError,
        /// Retry hint.
        class: ErrorClass,
    },
    /// Another writer created this commit sequence number first. Whatever
    /// this landing wrote has been removed; resume reading at `resume_at`.
    #[error(
        "{partition}: commit {seq} was created by another writer; resume at offset {resume_at}"
    )]
    Conflict {
        /// The partition.
        partition: TopicPartition,
        /// Sequence number that was lost.
        seq: u64,
        /// One past the last offset the log now holds (or, while the log holds
        /// no range yet, the first offset of the losing landing).
        resume_at: i64,
    },
    /// The commit log is not in a state this writer can continue from
    /// (missing sequence number, unreadable or mismatched record).
    #[error("{partition}: commit log at {path} is inconsistent: {message}")]
    CommitLog {
        /// The partition.
        partition: TopicPartition,
        /// The record (or the missing record) concerned.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl LakeError {
    /// Retry hint: only storage failures that look transient (timeouts,
    /// throttling, 5xx) are worth retrying.
    pub fn class(&self) -> ErrorClass {
        match self {
            LakeError::Storage { class, .. } => *class,
            _ => ErrorClass::Permanent,
        }
    }

    /// Whether this is a storage error for an object that does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            LakeError::Storage { source, .. } => {
                if let Some(e) = source.downcast_ref::<object_store::Error>() {
                    return matches!(e, object_store::Error::NotFound { .. });
                }
                if let Some(e) = source.downcast_ref::<std::io::Error>() {
                    return e.kind() == std::io::ErrorKind::NotFound;
                }
                false
            }
            _ => false,
        }
    }

    pub(crate) fn object_store(
        operation: &'static str,
        path: impl Into<String>,
        source: object_store::Error,
    ) -> Self {
        let class = object_store_class(&source);
        LakeError::Storage {
            operation,
            path: path.into(),
            source: Box::new(source),
            class,
        }
    }

    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        let class = io_class(&source);
        LakeError::Storage {
            operation,
            path: path.into(),
            source: Box::new(source),
            class,
        }
    }

    pub(crate) fn not_found(operation: &'static str, path: impl Into<String>) -> Self {
        let path = path.into();
        LakeError::Storage {
            operation,
            source: Box::new(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{path} does not exist"),
            )),
            path,
            class: ErrorClass::Permanent,
        }
    }

    pub(crate) fn path(path: impl Into<String>, message: impl Into<String>) -> Self {
        LakeError::Path {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// object_store errors: `Generic` carries network failures, timeouts and
/// 5xx answers after the client's own retries; everything else (not found,
/// denied, precondition, bad path, unsupported) will fail the same way again.
fn object_store_class(e: &object_store::Error) -> ErrorClass {
    match e {
        object_store::Error::Generic { source, .. } => {
            if let Some(http) = find_in_chain::<object_store::client::HttpError>(source.as_ref()) {
                return match http.kind() {
                    object_store::client::HttpErrorKind::Decode => ErrorClass::Permanent,
                    _ => ErrorClass::Retryable,
                };
            }
            if let Some(io) = find_in_chain::<std::io::Error>(source.as_ref()) {
                return io_class(io);
            }
            ErrorClass::Retryable
        }
        object_store::Error::JoinError { .. } => ErrorClass::Retryable,
        _ => ErrorClass::Permanent,
    }
}

/// Local I/O errors: interruptions, timeouts and a full disk can clear up;
/// permission and path problems do not.
fn io_class(e: &std::io::Error) -> ErrorClass {
    use std::io::ErrorKind::*;
    match e.kind() {
        TimedOut | Interrupted | WouldBlock | StorageFull | ResourceBusy | QuotaExceeded => {
            ErrorClass::Retryable
        }
        _ => ErrorClass::Permanent,
    }
}

fn find_in_chain<'a, T: std::error::Error + 'static>(
    mut e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    loop {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        e = e.source()?;
    }
}

impl From<LakeError> for SinkError {
    fn from(e: LakeError) -> Self {
        match e {
            LakeError::Conflict {
                partition,
                seq,
                resume_at,
            } => SinkError::Conflict {
                partition,
                seq,
                resume_at,
            },
            LakeError::Storage {
                operation,
                path,
                source,
                class,
            } => SinkError::Storage {
                operation,
                path,
                source,
                class,
            },
            LakeError::CommitLog {
                partition,
                path,
                message,
            } => SinkError::CommitLog {
                partition,
                path,
                message,
            },
            LakeError::Invalid {
                ref partition,
                first_offset,
                last_offset,
                ..
            } => SinkError::Encode {
                partition: partition.clone(),
                first_offset,
                last_offset,
                message: e.to_string(),
            },
            other => {
                let path = match &other {
                    LakeError::Url { url, .. } => url.clone(),
                    LakeError::Path { path, .. } => path.clone(),
                    LakeError::Template { template, .. } => template.clone(),
                    LakeError::PartitionField { template, .. } => template.clone(),
                    _ => String::new(),
                };
                SinkError::Storage {
                    operation: "configure",
                    path,
                    source: Box::new(other),
                    class: ErrorClass::Permanent,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let generic = object_store::Error::Generic {
            store: "S3",
            source: "503 Slow Down".into(),
        };
        assert_eq!(object_store_class(&generic), ErrorClass::Retryable);
        let denied = object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "no".into(),
        };
        assert_eq!(object_store_class(&denied), ErrorClass::Permanent);
        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(io_class(&timeout), ErrorClass::Retryable);
        let gone = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert_eq!(io_class(&gone), ErrorClass::Permanent);
        let io_in_generic = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "denied",
            )),
        };
        assert_eq!(object_store_class(&io_in_generic), ErrorClass::Permanent);
    }

    #[test]
    fn maps_to_sink_errors() {
        let tp = TopicPartition::new("t", 1);
        let e: SinkError = LakeError::Conflict {
            partition: tp.clone(),
            seq: 4,
            resume_at: 100,
        }
        .into();
        assert!(matches!(
            e,
            SinkError::Conflict {
                seq: 4,
                resume_at: 100,
                ..
            }
        ));
        let e: SinkError = LakeError::object_store(
            "put",
            "a/b",
            object_store::Error::Generic {
                store: "S3",
                source: "timeout".into(),
            },
        )
        .into();
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert!(matches!(
            e,
            SinkError::Storage {
                operation: "put",
                ..
            }
        ));
        let e: SinkError = LakeError::CommitLog {
            partition: tp.clone(),
            path: "p".into(),
            message: "m".into(),
        }
        .into();
        assert!(matches!(e, SinkError::CommitLog { .. }));
        let e: SinkError = LakeError::Url {
            url: "ftp://x".into(),
            message: "unsupported".into(),
        }
        .into();
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert!(e.to_string().contains("ftp://x"));
    }

    #[test]
    fn not_found_is_recognised() {
        assert!(LakeError::not_found("get", "x").is_not_found());
        assert!(LakeError::object_store(
            "get",
            "x",
            object_store::Error::NotFound {
                path: "x".into(),
                source: "gone".into()
            }
        )
        .is_not_found());
    }
}
