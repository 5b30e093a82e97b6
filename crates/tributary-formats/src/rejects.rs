//! The `on_error` policy, shared by the converters: what happens to the
//! records a converter could not turn into rows.

use tracing::{debug, warn};
use tributary_config::OnError;
use tributary_core::{ConvertError, RawRecord, Reject, TopicPartition};

/// Rejects and skips of one batch after the policy was applied.
#[derive(Debug, Default)]
pub(crate) struct Routed {
    /// Records for the dead-letter route (`dead_letter`).
    pub rejects: Vec<Reject>,
    /// Records dropped (`skip`), counted.
    pub skipped: usize,
}

/// Applies `on_error` to `failed` (index into `records`, reason), which
/// must be in record order: `fail` returns the first as
/// [`ConvertError::Record`], `skip` counts and logs them, `dead_letter`
/// turns them into [`Reject`]s carrying the raw record and the reason.
pub(crate) fn route(
    on_error: OnError,
    partition: &TopicPartition,
    records: &[RawRecord],
    failed: Vec<(usize, String)>,
) -> Result<Routed, ConvertError> {
    let Some((first, reason)) = failed.first() else {
        return Ok(Routed::default());
    };
    let offset = records[*first].offset;
    match on_error {
        OnError::Fail => Err(ConvertError::Record {
            partition: partition.clone(),
            offset,
            reason: reason.clone(),
        }),
        OnError::Skip => {
            warn!(
                partition = %partition,
                skipped = failed.len(),
                first_offset = offset,
                first_reason = %reason,
                "Skipped records that cannot be converted."
            );
            for (i, reason) in &failed {
                debug!(partition = %partition, offset = records[*i].offset, reason = %reason, "Skipped record.");
            }
            Ok(Routed {
                rejects: Vec::new(),
                skipped: failed.len(),
            })
        }
        OnError::DeadLetter => {
            debug!(
                partition = %partition,
                rejected = failed.len(),
                first_offset = offset,
                first_reason = %reason,
                "Routing records that cannot be converted to the dead-letter route."
            );
            Ok(Routed {
                rejects: failed
                    .into_iter()
                    .map(|(i, reason)| Reject::new(partition, &records[i], reason))
                    .collect(),
                skipped: 0,
            })
        }
    }
}
