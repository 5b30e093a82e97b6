//! Errors of this crate and their mapping into [`SourceError`].

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tributary_core::{ErrorClass, SourceError, TopicPartition};

/// Why the poll thread stopped. Kept by the source so that every later
/// [`tributary_core::Source::next`] reports it.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum PollFailure {
    /// The runtime did not answer an assignment in time.
    #[error("the runtime did not answer the assignment of {partitions:?} within {timeout:?}")]
    AssignAckTimeout {
        partitions: Vec<TopicPartition>,
        timeout: Duration,
    },
    /// The runtime dropped an assignment acknowledgement without answering.
    #[error("the runtime dropped the assignment of {partitions:?} without answering")]
    AssignAckDropped { partitions: Vec<TopicPartition> },
    /// The runtime did not acknowledge a revocation in time.
    #[error("the runtime did not acknowledge the revocation of {partitions:?} within {timeout:?}")]
    RevokeAckTimeout {
        partitions: Vec<TopicPartition>,
        timeout: Duration,
    },
    /// The runtime dropped a revocation acknowledgement without answering.
    #[error("the runtime dropped the revocation of {partitions:?} without acknowledging it")]
    RevokeAckDropped { partitions: Vec<TopicPartition> },
    /// librdkafka refused an assignment.
    #[error("assigning {partitions:?} failed: {source}")]
    Assign {
        partitions: Vec<TopicPartition>,
        source: KafkaError,
    },
    /// A seek did not take effect.
    #[error("seeking {partition} to offset {offset} failed: {source}")]
    Seek {
        partition: TopicPartition,
        offset: i64,
        source: KafkaError,
    },
    /// librdkafka raised a fatal error; the consumer cannot continue.
    #[error("fatal consumer error: {0}")]
    Fatal(KafkaError),
    /// The poll thread panicked.
    #[error("the poll thread panicked")]
    Panicked,
}

impl PollFailure {
    /// The error [`tributary_core::Source::next`] returns for this failure.
    pub(crate) fn to_source_error(&self) -> SourceError {
        let class = match self {
            PollFailure::Fatal(_) | PollFailure::Panicked | PollFailure::Assign { .. } => {
                ErrorClass::Permanent
            }
            // A new consumer (a restarted pipeline) starts from a clean slate.
            _ => ErrorClass::Retryable,
        };
        SourceError::Io {
            operation: "poll".into(),
            source: Box::new(self.clone()),
            class,
        }
    }
}

/// Whether an error code means that the group no longer lets this member
/// commit for its partitions (it must rejoin and get a new assignment).
pub(crate) fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::FencedInstanceId
            | RDKafkaErrorCode::FencedMemberEpoch
            | RDKafkaErrorCode::StaleMemberEpoch
            | RDKafkaErrorCode::AssignmentLost
    )
}

/// Whether retrying an operation that failed with this code can help.
pub(crate) fn is_transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::TimedOutQueue
            | RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::WaitingForCoordinator
            | RDKafkaErrorCode::InProgress
            | RDKafkaErrorCode::PreviousInProgress
            | RDKafkaErrorCode::Retry
            | RDKafkaErrorCode::NodeUpdate
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::ReplicaNotAvailable
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::NotEnoughReplicas
            | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
            | RDKafkaErrorCode::KafkaStorageError
            | RDKafkaErrorCode::UnstableOffsetCommit
            | RDKafkaErrorCode::ThrottlingQuotaExceeded
            | RDKafkaErrorCode::RebootstrapRequired
    )
}

/// Retry hint for a librdkafka error.
pub(crate) fn class_of(error: &KafkaError) -> ErrorClass {
    match error.rdkafka_error_code() {
        Some(code) if is_transient(code) => ErrorClass::Retryable,
        _ => ErrorClass::Permanent,
    }
}

/// Wraps a librdkafka error from `operation` into a [`SourceError::Io`].
pub(crate) fn io_error(operation: &str, error: KafkaError) -> SourceError {
    SourceError::Io {
        operation: operation.to_string(),
        class: class_of(&error),
        source: Box::new(error),
    }
}
