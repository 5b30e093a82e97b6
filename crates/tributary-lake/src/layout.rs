//! Where things go under the lake root: data files, dead-letter files, the
//! commit log and landing intents. Every path here is relative to the root.
//!
//! ```text
//! <partition path>/<topic>-<partition>-<first_offset:020>-<writer>-<nonce>.parquet
//! _dead_letter/<topic>/<partition>/<first_offset:020>-<writer>-<nonce>.jsonl
//! _tributary/commits/<topic>/<partition>/<seq:020>.json
//! _tributary/commits/<topic>/<partition>/_latest.json
//! _tributary/intents/<topic>/<partition>/<seq:020>-<writer>.json
//! ```
//!
//! File names carry a random nonce besides the writer id: every call names a
//! new object, so a landing attempt never reuses a name an earlier attempt
//! (perhaps still in flight, perhaps being cleaned up by another worker) used.

use tributary_core::TopicPartition;

use crate::error::LakeError;

/// Top-level directory of the commit log and intents.
pub const CONTROL_DIR: &str = "_tributary";
/// Top-level directory of dead-letter files.
pub const DEAD_LETTER_DIR: &str = "_dead_letter";
/// Name of the best-effort "newest commit" hint in a partition's commit directory.
pub const HINT_FILE: &str = "_latest.json";

const SEQ_WIDTH: usize = 20;
const WRITER_MAX: usize = 64;

/// Path of a data file for rows of `tp` starting at `first_offset`, under
/// `partition_path` (or the root). Each call returns a new name.
pub fn data_file_path(
    partition_path: Option<&str>,
    tp: &TopicPartition,
    first_offset: i64,
    writer_id: &str,
) -> String {
    let name = format!(
        "{}-{}-{:020}-{}-{}.parquet",
        tp.topic,
        tp.partition,
        first_offset,
        writer_id,
        nonce()
    );
    match partition_path.map(|p| p.trim_matches('/')) {
        Some(p) if !p.is_empty() => format!("{p}/{name}"),
        _ => name,
    }
}

/// Path of a dead-letter file (JSON lines) for rejects of `tp` starting at
/// `first_offset`. Each call returns a new name.
pub fn dead_letter_path(tp: &TopicPartition, first_offset: i64, writer_id: &str) -> String {
    format!(
        "{DEAD_LETTER_DIR}/{}/{}/{:020}-{}-{}.jsonl",
        tp.topic,
        tp.partition,
        first_offset,
        writer_id,
        nonce()
    )
}

/// A writer id: the worker id reduced to `[A-Za-z0-9_]` (other characters
/// become `_`, at most 32 kept) plus `_` and 8 random hex digits, so that two
/// processes of the same worker never share one.
pub fn new_writer_id(worker_id: &str) -> String {
    let mut base: String = worker_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    if base.is_empty() {
        base.push_str("writer");
    }
    format!("{base}_{}", nonce())
}

fn nonce() -> String {
    let mut s = uuid::Uuid::new_v4().simple().to_string();
    s.truncate(8);
    s
}

/// Directory holding the commit records of a partition.
pub fn commit_dir(tp: &TopicPartition) -> String {
    format!("{CONTROL_DIR}/commits/{}/{}", tp.topic, tp.partition)
}

/// Path of commit record `seq` of a partition.
pub fn commit_path(tp: &TopicPartition, seq: u64) -> String {
    format!("{}/{seq:020}.json", commit_dir(tp))
}

/// Path of the newest-commit hint of a partition.
pub fn hint_path(tp: &TopicPartition) -> String {
    format!("{}/{HINT_FILE}", commit_dir(tp))
}

/// Directory holding the landing intents of a partition.
pub fn intent_dir(tp: &TopicPartition) -> String {
    format!("{CONTROL_DIR}/intents/{}/{}", tp.topic, tp.partition)
}

/// Path of the intent of `writer` to land commit `seq` of a partition.
pub fn intent_path(tp: &TopicPartition, seq: u64, writer: &str) -> String {
    format!("{}/{seq:020}-{writer}.json", intent_dir(tp))
}

/// Sequence number of a commit record file name (`<seq:020>.json`).
pub(crate) fn parse_commit_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    parse_seq(digits)
}

/// Sequence number and writer of an intent file name (`<seq:020>-<writer>.json`).
pub(crate) fn parse_intent_name(name: &str) -> Option<(u64, String)> {
    let stem = name.strip_suffix(".json")?;
    let (digits, writer) = stem.split_at_checked(SEQ_WIDTH)?;
    let writer = writer.strip_prefix('-')?;
    let seq = parse_seq(digits)?;
    validate_writer(writer).ok()?;
    Some((seq, writer.to_string()))
}

fn parse_seq(digits: &str) -> Option<u64> {
    if digits.len() != SEQ_WIDTH || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Last segment of a path.
pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A writer id must be usable inside object names: `[A-Za-z0-9_-]`, 1–64 characters.
pub(crate) fn validate_writer(writer: &str) -> Result<(), LakeError> {
    let ok = !writer.is_empty()
        && writer.len() <= WRITER_MAX
        && writer
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(LakeError::path(
            writer,
            "a writer id must be 1-64 characters of [A-Za-z0-9_-] (see new_writer_id)",
        ))
    }
}

/// Whether a file name is one of the local backend's temporary files
/// (`.<name>.tmp-<16 hex>`), which are never part of the lake.
pub(crate) fn is_temp_name(name: &str) -> bool {
    if !name.starts_with('.') {
        return false;
    }
    match name.rsplit_once(".tmp-") {
        Some((_, tail)) => tail.len() == 16 && tail.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// Checks a path relative to the lake root: non-empty segments, no `.` or
/// `..`, no control characters or backslashes, no temporary-file names.
pub(crate) fn validate_path(path: &str) -> Result<(), LakeError> {
    if path.is_empty() {
        return Err(LakeError::path(path, "empty path"));
    }
    if path.starts_with('/') || path.ends_with('/') {
        return Err(LakeError::path(path, "must not start or end with '/'"));
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return Err(LakeError::path(path, "empty segment"));
        }
        if segment == "." || segment == ".." {
            return Err(LakeError::path(
                path,
                "'.' and '..' segments are not allowed",
            ));
        }
        if let Some(c) = segment.chars().find(|c| c.is_control() || *c == '\\') {
            return Err(LakeError::path(
                path,
                format!("character {c:?} is not allowed"),
            ));
        }
        if is_temp_name(segment) {
            return Err(LakeError::path(
                path,
                "segment looks like a temporary file name",
            ));
        }
    }
    Ok(())
}

/// Checks a listing prefix: the empty string (whole lake) or a valid path.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), LakeError> {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        Ok(())
    } else {
        validate_path(trimmed)
    }
}

/// Checks that a topic-partition can be used in paths.
pub(crate) fn validate_partition(tp: &TopicPartition) -> Result<(), LakeError> {
    if tp.topic.contains('/') {
        return Err(LakeError::path(
            tp.topic.to_string(),
            "a topic name used in the lake must not contain '/'",
        ));
    }
    if tp.partition < 0 {
        return Err(LakeError::path(
            commit_dir(tp),
            "partition numbers must not be negative",
        ));
    }
    validate_path(&commit_dir(tp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_file_names() {
        let tp = TopicPartition::new("orders", 3);
        let p = data_file_path(Some("dt=2026-11-24/hour=06"), &tp, 42, "w_1_abcdef12");
        let rest = p
            .strip_prefix("dt=2026-11-24/hour=06/orders-3-00000000000000000042-w_1_abcdef12-")
            .unwrap();
        let nonce = rest.strip_suffix(".parquet").unwrap();
        assert_eq!(nonce.len(), 8);
        assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit()));
        validate_path(&p).unwrap();

        let root = data_file_path(None, &tp, 0, "w");
        assert!(
            root.starts_with("orders-3-00000000000000000000-w-"),
            "{root}"
        );
        assert!(!root.contains('/'));
        let empty = data_file_path(Some(""), &tp, 0, "w");
        assert!(!empty.starts_with('/'));
        // Every call names a new object.
        assert_ne!(
            data_file_path(None, &tp, 0, "w"),
            data_file_path(None, &tp, 0, "w")
        );
    }

    #[test]
    fn dead_letter_names() {
        let tp = TopicPartition::new("orders", 0);
        let p = dead_letter_path(&tp, 1234, "w_9");
        assert!(
            p.starts_with("_dead_letter/orders/0/00000000000000001234-w_9-"),
            "{p}"
        );
        assert!(p.ends_with(".jsonl"));
        validate_path(&p).unwrap();
    }

    #[test]
    fn writer_ids() {
        let id = new_writer_id("worker-1.example.com");
        let (base, suffix) = id.rsplit_once('_').unwrap();
        assert_eq!(base, "worker_1_example_com");
        assert_eq!(suffix.len(), 8);
        assert!(suffix.bytes().all(|b| b.is_ascii_hexdigit()));
        validate_writer(&id).unwrap();
        assert_ne!(new_writer_id("w"), new_writer_id("w"));

        let long = new_writer_id(&"x".repeat(100));
        assert_eq!(long.len(), 32 + 1 + 8);
        assert!(new_writer_id("").starts_with("writer_"));
        assert!(new_writer_id("ünïcödé").starts_with("_n_c_d__"));
    }

    #[test]
    fn control_paths() {
        let tp = TopicPartition::new("orders", 7);
        assert_eq!(
            commit_path(&tp, 5),
            "_tributary/commits/orders/7/00000000000000000005.json"
        );
        assert_eq!(hint_path(&tp), "_tributary/commits/orders/7/_latest.json");
        assert_eq!(
            intent_path(&tp, 5, "w_1"),
            "_tributary/intents/orders/7/00000000000000000005-w_1.json"
        );
        assert_eq!(parse_commit_name("00000000000000000005.json"), Some(5));
        assert_eq!(parse_commit_name("_latest.json"), None);
        assert_eq!(parse_commit_name("5.json"), None);
        assert_eq!(
            parse_intent_name("00000000000000000005-w_1-x.json"),
            Some((5, "w_1-x".to_string()))
        );
        assert_eq!(parse_intent_name("00000000000000000005.json"), None);
        assert_eq!(parse_intent_name("00000000000000000005-.json"), None);
    }

    #[test]
    fn path_checks() {
        for bad in ["", "/a", "a/", "a//b", "a/../b", "./a", "a/\u{0}b", "a\\b"] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        assert!(validate_path("a/.x.parquet.tmp-0123456789abcdef").is_err());
        validate_path("dt=2026-01-01/hour=00/x y.parquet").unwrap();
        validate_path(".hidden-topic-0-1.parquet").unwrap();
        validate_prefix("").unwrap();
        validate_prefix("_tributary/").unwrap();
        assert!(validate_partition(&TopicPartition::new("a/b", 0)).is_err());
        assert!(validate_partition(&TopicPartition::new("..", 0)).is_err());
        assert!(validate_partition(&TopicPartition::new("t", -1)).is_err());
        validate_partition(&TopicPartition::new("orders.v2_x-y", 0)).unwrap();
    }

    #[test]
    fn temp_names() {
        assert!(is_temp_name(".a.parquet.tmp-0123456789abcdef"));
        assert!(!is_temp_name("a.parquet.tmp-0123456789abcdef"));
        assert!(!is_temp_name(".a.parquet"));
        assert!(!is_temp_name(".a.tmp-xyz"));
    }
}
