//! Synchronous offset commits with per-partition results.
//!
//! `rdkafka`'s `Consumer::commit` reports only librdkafka's request-level
//! error, which is set only when *every* partition failed: a commit in which
//! some partitions failed returns `Ok`. `rd_kafka_commit_queue` with no queue
//! commits synchronously and hands the partition list, with each partition's
//! error, to a callback; this module wraps that call.

use std::ffi::{c_void, CStr};
use std::ptr;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use tributary_core::{ErrorClass, SourceError, TopicPartition};

use crate::context::SourceContext;
use crate::error::{io_error, is_fencing, is_transient};

/// A commit the broker (or librdkafka) refused, wholly or in part.
#[derive(Debug, thiserror::Error)]
#[error("committing offsets of {partitions:?} failed: {code}")]
pub(crate) struct CommitFailed {
    /// Partitions whose offsets were not committed.
    pub(crate) partitions: Vec<TopicPartition>,
    /// The error.
    pub(crate) code: RDKafkaErrorCode,
}

/// Per-partition results collected by the callback: (topic, partition, error).
type Results = Vec<(String, i32, RDKafkaRespErr)>;

/// Commits `offsets` (each the next offset to read) and waits for the
/// broker's answer. Blocking: call from `spawn_blocking`.
pub(crate) fn commit_sync(
    consumer: &BaseConsumer<SourceContext>,
    offsets: &[(TopicPartition, i64)],
) -> Result<(), SourceError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (tp, next) in offsets {
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*next))
            .map_err(|e| io_error("commit", e))?;
    }
    let mut results: Results = Vec::new();
    // SAFETY: the client pointer is valid while `consumer` is borrowed; the
    // list pointer is valid while `tpl` lives (until after the call);
    // librdkafka copies the list. With a null queue the call blocks until
    // the commit completes and runs `on_commit` on this thread before
    // returning, so `results` outlives every use of the opaque pointer.
    let err = unsafe {
        rd::rd_kafka_commit_queue(
            consumer.client().native_ptr(),
            tpl.ptr(),
            ptr::null_mut(),
            Some(on_commit),
            (&mut results as *mut Results).cast::<c_void>(),
        )
    };
    drop(tpl);
    outcome(offsets, err.into(), &results)
}

/// Copies the per-partition results out of librdkafka's list. Must not panic
/// (it is called from C).
unsafe extern "C" fn on_commit(
    _rk: *mut rd::rd_kafka_t,
    _err: RDKafkaRespErr,
    offsets: *mut rd::rd_kafka_topic_partition_list_t,
    opaque: *mut c_void,
) {
    if offsets.is_null() || opaque.is_null() {
        return;
    }
    // SAFETY: `opaque` is the `Results` passed by `commit_sync`, alive and
    // not otherwise borrowed during the call; `offsets` is a valid list of
    // `cnt` elements owned by librdkafka for the duration of the callback.
    unsafe {
        let results = &mut *opaque.cast::<Results>();
        let list = &*offsets;
        let count = usize::try_from(list.cnt).unwrap_or(0);
        for i in 0..count {
            let elem = &*list.elems.add(i);
            let topic = if elem.topic.is_null() {
                String::new()
            } else {
                CStr::from_ptr(elem.topic).to_string_lossy().into_owned()
            };
            results.push((topic, elem.partition, elem.err));
        }
    }
}

/// Maps the request-level error and per-partition errors to a result.
fn outcome(
    offsets: &[(TopicPartition, i64)],
    request: RDKafkaErrorCode,
    results: &[(String, i32, RDKafkaRespErr)],
) -> Result<(), SourceError> {
    let mut failed: Vec<(TopicPartition, RDKafkaErrorCode)> = results
        .iter()
        .filter_map(|(topic, partition, err)| {
            let code = RDKafkaErrorCode::from(*err);
            (code != RDKafkaErrorCode::NoError)
                .then(|| (TopicPartition::new(topic.as_str(), *partition), code))
        })
        .collect();
    if request != RDKafkaErrorCode::NoError && failed.is_empty() {
        // Request-level failure: nothing was committed.
        failed = offsets
            .iter()
            .map(|(tp, _)| (tp.clone(), request))
            .collect();
    }
    if failed.is_empty() {
        return Ok(());
    }
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    let fenced: Vec<&(TopicPartition, RDKafkaErrorCode)> = failed
        .iter()
        .filter(|(_, code)| is_fencing(*code))
        .collect();
    if let Some((_, code)) = fenced.first() {
        return Err(SourceError::Fenced {
            partitions: fenced.iter().map(|(tp, _)| tp.clone()).collect(),
            reason: format!("offset commit refused: {code}"),
        });
    }
    let code = failed[0].1;
    let class = if failed.iter().all(|(_, c)| is_transient(*c)) {
        ErrorClass::Retryable
    } else {
        ErrorClass::Permanent
    };
    Err(SourceError::Io {
        operation: "commit".into(),
        source: Box::new(CommitFailed {
            partitions: failed.into_iter().map(|(tp, _)| tp).collect(),
            code,
        }),
        class,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets() -> Vec<(TopicPartition, i64)> {
        vec![
            (TopicPartition::new("t", 0), 5),
            (TopicPartition::new("t", 1), 7),
        ]
    }

    #[test]
    fn success_is_ok() {
        let results = vec![
            (
                "t".to_string(),
                0,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
            ),
            (
                "t".to_string(),
                1,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
            ),
        ];
        assert!(outcome(&offsets(), RDKafkaErrorCode::NoError, &results).is_ok());
    }

    #[test]
    fn partial_fencing_names_the_fenced_partitions() {
        let results = vec![
            (
                "t".to_string(),
                0,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
            ),
            (
                "t".to_string(),
                1,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
            ),
        ];
        match outcome(&offsets(), RDKafkaErrorCode::NoError, &results) {
            Err(SourceError::Fenced { partitions, reason }) => {
                assert_eq!(partitions, vec![TopicPartition::new("t", 1)]);
                assert!(reason.contains("IllegalGeneration"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_level_fencing_covers_every_partition() {
        for code in [
            RDKafkaErrorCode::UnknownMemberId,
            RDKafkaErrorCode::RebalanceInProgress,
            RDKafkaErrorCode::FencedInstanceId,
        ] {
            match outcome(&offsets(), code, &[]) {
                Err(SourceError::Fenced { partitions, .. }) => assert_eq!(partitions.len(), 2),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn transient_errors_are_retryable_and_others_permanent() {
        let e = outcome(&offsets(), RDKafkaErrorCode::CoordinatorNotAvailable, &[]).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Retryable);
        let e = outcome(&offsets(), RDKafkaErrorCode::GroupAuthorizationFailed, &[]).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Permanent);
        let results = vec![(
            "t".to_string(),
            0,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        )];
        let e = outcome(&offsets(), RDKafkaErrorCode::NoError, &results).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert!(e.to_string().contains("commit"), "{e}");
    }
}
