//! # tributary-transforms
//!
//! Per-pipeline transforms on Arrow rows, configured as
//! `[[pipelines.transforms]]` and applied in order to every
//! [`RowBatch`](tributary_core::RowBatch) a
//! converter produces, before the sink sees it:
//!
//! | `type` | does |
//! |---|---|
//! | `rename` | renames fields (`a.b` renames a nested field in place) |
//! | `drop` | removes fields |
//! | `insert` | adds a static value or Kafka metadata (topic, partition, offset, timestamp, key) |
//! | `cast` | changes types; a value that does not fit is a record-level failure |
//! | `filter` | keeps the rows an [expression](expr) holds for |
//! | `flatten` | turns nested structs into top-level fields `a_b` |
//! | `timestamp` | parses text or numbers into timestamps, converts units and zones |
//!
//! [`TransformingConverter`] wraps a pipeline's converter with a
//! [`TransformChain`], so the runtime is unchanged. Positions are kept: a
//! transformed batch covers the same offsets and source records as the
//! converter's, `event_time_ms` stays aligned with the rows, and every
//! record is accounted for. Rows a filter removes are a deliberate choice,
//! counted as `skipped` (so `rows + dead_lettered + skipped` still equals
//! the records consumed in the landing commit and in `tributary verify`);
//! records a cast or timestamp step cannot handle follow the converter's
//! `on_error` (`fail`, `skip`, `dead_letter` with their original bytes and a
//! reason naming the transform, field and value).
//!
//! [`TransformChain::output_schema`] runs the chain on an empty batch of a
//! known input schema: `tributary validate` uses it to report unknown
//! fields and type mismatches offline.

#![warn(missing_docs)]

mod converter;
mod error;
pub mod expr;
mod path;
mod steps;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use tributary_config::TransformConfig;
use tributary_core::{RawRecord, TopicPartition};

pub use converter::TransformingConverter;
pub use error::TransformError;

use steps::{Outcome, Rows, Step};

/// The transforms of one pipeline, checked and ready to run.
#[derive(Debug)]
pub struct TransformChain {
    steps: Vec<(usize, &'static str, Step)>,
}

/// What running a chain over a batch gave.
#[derive(Debug)]
pub(crate) struct Applied {
    pub batch: RecordBatch,
    pub event_time_ms: Vec<i64>,
    /// Source record index of each failed record, with the reason.
    pub failures: Vec<(usize, String)>,
    /// Rows a filter removed.
    pub filtered: usize,
}

impl TransformChain {
    /// Checks the configuration of every transform (expressions, type
    /// names, formats, timezones). Errors name the transform and key, e.g.
    /// `transforms.2.expr: expected a value after '>', found end of expression at column 10`.
    pub fn new(configs: &[TransformConfig]) -> Result<Self, TransformError> {
        let steps = configs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Step::new(c)
                    .map(|s| (i, c.kind(), s))
                    .map_err(|e| e.at(i, c.kind()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { steps })
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether some transform needs each row's source record (cast and
    /// timestamp failures are rejected with the record's bytes; inserted
    /// offsets, timestamps and keys come from it).
    pub fn needs_origin(&self) -> bool {
        self.steps.iter().any(|(_, _, s)| s.needs_origin())
    }

    /// The schema of the rows the chain makes from rows of `input`, or the
    /// first transform that cannot run on them (unknown field, impossible
    /// cast, ill-typed comparison).
    pub fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, TransformError> {
        let partition = TopicPartition::new("validate", 0);
        let applied = self.run(
            RecordBatch::new_empty(input.clone()),
            Vec::new(),
            &partition,
            &[],
            Some(Vec::new()),
        )?;
        Ok(applied.batch.schema())
    }

    /// Runs every step over `batch`. `origin` maps rows to `records` (needed
    /// when [`Self::needs_origin`]).
    pub(crate) fn run(
        &self,
        batch: RecordBatch,
        mut event_time_ms: Vec<i64>,
        partition: &TopicPartition,
        records: &[RawRecord],
        origin: Option<Vec<usize>>,
    ) -> Result<Applied, TransformError> {
        let mut rows = Rows {
            batch,
            partition,
            records,
            origin,
        };
        let mut failures = Vec::new();
        let mut filtered = 0;
        for (index, kind, step) in &self.steps {
            let (index, kind) = (*index, *kind);
            loop {
                match step.apply(&rows).map_err(|e| e.at(index, kind))? {
                    Outcome::Done(b) => {
                        rows.batch = b;
                        break;
                    }
                    Outcome::Keep(mask) => {
                        filtered += remove(&mut rows, &mut event_time_ms, &mask, index, kind)?;
                        break;
                    }
                    Outcome::Failed(failed) => {
                        let Some(origin) = &rows.origin else {
                            return Err(TransformError::Arrow {
                                index,
                                kind,
                                message: "the source record of each row is not known".into(),
                            });
                        };
                        if failed.is_empty() {
                            return Err(TransformError::Arrow {
                                index,
                                kind,
                                message: "a step failed without naming a row".into(),
                            });
                        }
                        let mut keep = vec![true; rows.batch.num_rows()];
                        for (row, reason) in failed {
                            keep[row] = false;
                            failures.push((
                                origin[row],
                                format!("transforms.{index} ({kind}): {reason}"),
                            ));
                        }
                        remove(
                            &mut rows,
                            &mut event_time_ms,
                            &BooleanArray::from(keep),
                            index,
                            kind,
                        )?;
                    }
                }
            }
            if let Step::Timestamp(t) = step {
                if t.event_time {
                    event_times_from(&rows.batch, t.field(), &mut event_time_ms).map_err(|m| {
                        TransformError::Config {
                            index,
                            key: "event_time".into(),
                            message: m,
                        }
                    })?;
                }
            }
        }
        Ok(Applied {
            batch: rows.batch,
            event_time_ms,
            failures,
            filtered,
        })
    }
}

/// Keeps the rows where `mask` is true (null is false); returns how many went.
fn remove(
    rows: &mut Rows<'_>,
    event_time_ms: &mut Vec<i64>,
    mask: &BooleanArray,
    index: usize,
    kind: &'static str,
) -> Result<usize, TransformError> {
    let n = rows.batch.num_rows();
    if mask.len() != n {
        return Err(TransformError::Arrow {
            index,
            kind,
            message: format!("mask of {} rows for {n} rows", mask.len()),
        });
    }
    let keep: Vec<bool> = (0..n).map(|i| mask.is_valid(i) && mask.value(i)).collect();
    let kept = keep.iter().filter(|k| **k).count();
    if kept == n {
        return Ok(0);
    }
    rows.batch = filter_record_batch(&rows.batch, mask).map_err(|e| TransformError::Arrow {
        index,
        kind,
        message: e.to_string(),
    })?;
    let mut k = keep.iter();
    event_time_ms.retain(|_| *k.next().unwrap_or(&true));
    if let Some(origin) = &mut rows.origin {
        let mut k = keep.iter();
        origin.retain(|_| *k.next().unwrap_or(&true));
    }
    Ok(n - kept)
}

/// Replaces event times by the (top-level) timestamp field where it is not null.
fn event_times_from(batch: &RecordBatch, field: &str, out: &mut [i64]) -> Result<(), String> {
    let Some((i, _)) = batch.schema().column_with_name(field) else {
        return Err(format!(
            "event_time needs {field:?} to be a top-level field"
        ));
    };
    let column = batch.column(i);
    let millis = match column.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => column
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
            .iter()
            .collect::<Vec<_>>(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => column
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .iter()
            .map(|v| v.map(|v| v.div_euclid(1_000)))
            .collect(),
        other => return Err(format!("field {field:?} is {other}, not a timestamp")),
    };
    for (slot, v) in out.iter_mut().zip(millis) {
        if let Some(v) = v {
            *slot = v;
        }
    }
    Ok(())
}

/// Test helpers: transform configs from TOML, as users write them.
#[cfg(test)]
pub(crate) mod testutil {
    use tributary_config::{Config, FileFormat, TransformConfig};

    /// A whole config with `converter` (TOML lines after `type = "json"`)
    /// and `transforms` (TOML `[[pipelines.transforms]]` tables).
    pub fn config(converter: &str, transforms: &str) -> Config {
        let text = format!(
            r#"
[[pipelines]]
name = "p"
[pipelines.source]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topics = ["t"]
group_id = "g"
[pipelines.converter]
type = "json"
{converter}
[pipelines.sink]
type = "parquet"
url = "file:///tmp/lake"
{transforms}
"#
        );
        tributary_config::from_str(&text, FileFormat::Toml, "test", Vec::new())
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// The transforms of [`config`].
    pub fn transforms(transforms: &str) -> Vec<TransformConfig> {
        config("infer = true", transforms).pipelines[0]
            .transforms
            .clone()
    }
}
