//! Prometheus text exposition of the pipelines' status, written by hand:
//! every value is read from the [`PipelineStatus`] snapshots at scrape time.
//!
//! Metric names ([`NAMES`]); labels `pipeline`, and `topic`/`partition` on
//! per-partition series, `kind` on errors and retries:
//!
//! | name | type | meaning |
//! | --- | --- | --- |
//! | `tributary_pipeline_state` | gauge | 1 for the pipeline's current `state` label |
//! | `tributary_records_consumed_total` | counter | records received from the source |
//! | `tributary_records_landed_total` | counter | rows landed in data files |
//! | `tributary_records_dead_lettered_total` | counter | records landed in the dead-letter route |
//! | `tributary_records_skipped_total` | counter | records skipped (`on_error = "skip"`, or removed by a filter transform) |
//! | `tributary_records_late_total` | counter | rows landed outside the sink's `late_data` window (late, or too far ahead) |
//! | `tributary_landed_bytes_total` | counter | bytes of landed files |
//! | `tributary_files_landed_total` | counter | files landed |
//! | `tributary_landings_total` | counter | lake commits made |
//! | `tributary_flush_duration_seconds` | histogram | one flush: landing plus offset commit |
//! | `tributary_landing_duration_seconds` | histogram | files written plus lake commit |
//! | `tributary_kafka_commit_duration_seconds` | histogram | source (Kafka group) offset commit |
//! | `tributary_consumer_lag` | gauge | high watermark minus committed offset, per partition |
//! | `tributary_high_watermark` | gauge | per partition |
//! | `tributary_committed_offset` | gauge | per partition |
//! | `tributary_lag_status` | gauge | 0 OK, 1 WARN, 2 STALL, 3 STOP, per partition |
//! | `tributary_last_landing_timestamp_seconds` | gauge | Unix time of the last landing, per partition |
//! | `tributary_partitions_assigned` | gauge | partitions held |
//! | `tributary_buffered_bytes` | gauge | bytes held in sink buffers |
//! | `tributary_memory_budget_bytes` | gauge | the worker's memory budget |
//! | `tributary_errors_total` | counter | errors by `kind` |
//! | `tributary_retries_total` | counter | retries by `kind` |

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tributary_runtime::{Histogram, PipelineState, PipelineStatus, DURATION_BUCKETS};

use crate::Registry;

/// Every metric name this module exports.
pub const NAMES: &[&str] = &[
    "tributary_pipeline_state",
    "tributary_records_consumed_total",
    "tributary_records_landed_total",
    "tributary_records_dead_lettered_total",
    "tributary_records_skipped_total",
    "tributary_records_late_total",
    "tributary_landed_bytes_total",
    "tributary_files_landed_total",
    "tributary_landings_total",
    "tributary_flush_duration_seconds",
    "tributary_landing_duration_seconds",
    "tributary_kafka_commit_duration_seconds",
    "tributary_consumer_lag",
    "tributary_high_watermark",
    "tributary_committed_offset",
    "tributary_lag_status",
    "tributary_last_landing_timestamp_seconds",
    "tributary_partitions_assigned",
    "tributary_buffered_bytes",
    "tributary_memory_budget_bytes",
    "tributary_errors_total",
    "tributary_retries_total",
];

const STATES: [PipelineState; 6] = [
    PipelineState::Starting,
    PipelineState::Running,
    PipelineState::Paused,
    PipelineState::Draining,
    PipelineState::Stopped,
    PipelineState::Failed,
];

pub(crate) async fn handler(State(reg): State<Arc<Registry>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&reg.statuses(), reg.memory_budget),
    )
        .into_response()
}

/// Escapes a label value.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn line(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
    }

    fn histogram(&mut self, name: &str, labels: &str, h: &Histogram) {
        let mut cumulative = 0;
        for (bound, n) in DURATION_BUCKETS.iter().zip(h.buckets) {
            cumulative += n;
            self.line(
                &format!("{name}_bucket"),
                &format!("{labels},le=\"{bound}\""),
                cumulative,
            );
        }
        self.line(
            &format!("{name}_bucket"),
            &format!("{labels},le=\"+Inf\""),
            h.count,
        );
        self.line(&format!("{name}_sum"), labels, h.sum);
        self.line(&format!("{name}_count"), labels, h.count);
    }
}

/// Renders the exposition for these statuses.
pub fn render(statuses: &[PipelineStatus], memory_budget: Option<u64>) -> String {
    let mut o = Out(String::new());
    let pl = |s: &PipelineStatus| format!("pipeline=\"{}\"", esc(&s.name));

    o.head(
        "tributary_pipeline_state",
        "gauge",
        "1 for the current state of the pipeline.",
    );
    for s in statuses {
        for st in STATES {
            o.line(
                "tributary_pipeline_state",
                &format!("{},state=\"{}\"", pl(s), st.as_str()),
                u8::from(s.state == st),
            );
        }
    }
    type Counter = fn(&PipelineStatus) -> u64;
    let counters: [(&str, &str, Counter); 8] = [
        (
            "tributary_records_consumed_total",
            "Records received from the source.",
            |s| s.totals.consumed,
        ),
        (
            "tributary_records_landed_total",
            "Rows landed in data files.",
            |s| s.totals.landed_rows,
        ),
        (
            "tributary_records_dead_lettered_total",
            "Records landed in the dead-letter route.",
            |s| s.totals.dead_lettered,
        ),
        (
            "tributary_records_skipped_total",
            "Records skipped under on_error = skip, or removed by a filter transform.",
            |s| s.totals.skipped,
        ),
        (
            "tributary_records_late_total",
            "Rows landed whose record time was outside the late_data window.",
            |s| s.totals.late,
        ),
        (
            "tributary_landed_bytes_total",
            "Bytes of landed files.",
            |s| s.totals.bytes,
        ),
        ("tributary_files_landed_total", "Files landed.", |s| {
            s.totals.files
        }),
        ("tributary_landings_total", "Lake commits made.", |s| {
            s.totals.landings
        }),
    ];
    for (name, help, get) in counters {
        o.head(name, "counter", help);
        for s in statuses {
            o.line(name, &pl(s), get(s));
        }
    }
    type Hist = fn(&PipelineStatus) -> &Histogram;
    let histograms: [(&str, &str, Hist); 3] = [
        (
            "tributary_flush_duration_seconds",
            "One flush: landing the due partitions and committing their offsets.",
            |s| &s.timings.flush,
        ),
        (
            "tributary_landing_duration_seconds",
            "Landing: data files written and the lake commit record created.",
            |s| &s.timings.landing,
        ),
        (
            "tributary_kafka_commit_duration_seconds",
            "Committing offsets to the source's consumer group.",
            |s| &s.timings.source_commit,
        ),
    ];
    for (name, help, get) in histograms {
        o.head(name, "histogram", help);
        for s in statuses {
            o.histogram(name, &pl(s), get(s));
        }
    }
    type PartGauge = fn(&tributary_runtime::PartitionStatus) -> Option<f64>;
    let gauges: [(&str, &str, PartGauge); 5] = [
        (
            "tributary_consumer_lag",
            "High watermark minus committed offset.",
            |p| p.lag.map(|v| v as f64),
        ),
        (
            "tributary_high_watermark",
            "Offset the next record of the partition gets.",
            |p| p.high_watermark.map(|v| v as f64),
        ),
        (
            "tributary_committed_offset",
            "Offset committed to the consumer group.",
            |p| p.committed_offset.map(|v| v as f64),
        ),
        (
            "tributary_lag_status",
            "Lag health: 0 OK, 1 WARN, 2 STALL, 3 STOP.",
            |p| Some(p.lag_status as u8 as f64),
        ),
        (
            "tributary_last_landing_timestamp_seconds",
            "Unix time of the partition's last landing.",
            |p| {
                p.last_landing
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs_f64())
            },
        ),
    ];
    for (name, help, get) in gauges {
        o.head(name, "gauge", help);
        for s in statuses {
            for (tp, p) in s.partitions.iter().filter(|(_, p)| p.assigned) {
                if let Some(v) = get(p) {
                    let labels = format!(
                        "{},topic=\"{}\",partition=\"{}\"",
                        pl(s),
                        esc(&tp.topic),
                        tp.partition
                    );
                    o.line(name, &labels, v);
                }
            }
        }
    }
    o.head(
        "tributary_partitions_assigned",
        "gauge",
        "Partitions this worker holds.",
    );
    for s in statuses {
        let n = s.partitions.values().filter(|p| p.assigned).count();
        o.line("tributary_partitions_assigned", &pl(s), n);
    }
    o.head(
        "tributary_buffered_bytes",
        "gauge",
        "Bytes held in the sink's buffers.",
    );
    for s in statuses {
        o.line("tributary_buffered_bytes", &pl(s), s.buffered_bytes);
    }
    if let Some(budget) = memory_budget {
        o.head(
            "tributary_memory_budget_bytes",
            "gauge",
            "The worker's memory budget for buffered records.",
        );
        let _ = writeln!(o.0, "tributary_memory_budget_bytes {budget}");
    }
    for (name, help, errors) in [
        ("tributary_errors_total", "Errors by kind.", true),
        ("tributary_retries_total", "Retries by kind.", false),
    ] {
        o.head(name, "counter", help);
        for s in statuses {
            let map = if errors { &s.errors } else { &s.retries };
            for (kind, n) in map {
                o.line(name, &format!("{},kind=\"{kind}\"", pl(s)), n);
            }
        }
    }
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_core::TopicPartition;
    use tributary_runtime::PartitionStatus;

    #[test]
    fn renders_every_name_and_valid_lines() {
        let mut s = PipelineStatus {
            name: "orders".into(),
            ..Default::default()
        };
        s.totals.landed_rows = 42;
        s.timings
            .flush
            .observe(std::time::Duration::from_millis(30));
        s.errors.insert("landing", 2);
        s.retries.insert("landing", 2);
        s.partitions.insert(
            TopicPartition::new("t", 3),
            PartitionStatus {
                assigned: true,
                lag: Some(5),
                high_watermark: Some(10),
                committed_offset: Some(5),
                last_landing: Some(std::time::SystemTime::now()),
                ..Default::default()
            },
        );
        let text = render(&[s], Some(1024));
        for name in NAMES {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing:\n{text}"
            );
        }
        assert!(text.contains("tributary_records_landed_total{pipeline=\"orders\"} 42"));
        assert!(text
            .contains("tributary_consumer_lag{pipeline=\"orders\",topic=\"t\",partition=\"3\"} 5"));
        assert!(text.contains(
            "tributary_flush_duration_seconds_bucket{pipeline=\"orders\",le=\"0.05\"} 1"
        ));
        assert!(text.contains("tributary_errors_total{pipeline=\"orders\",kind=\"landing\"} 2"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect(line);
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(series.starts_with("tributary_"), "{line}");
        }
    }
}
