//! `read_lake` (scripts/read_lake.py): pyarrow and duckdb read the same lake,
//! locally and from SeaweedFS, and skip `_`/`.` paths.

use std::path::Path;
use std::process::Command;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt as _, PutPayload};
use tributary_testkit::{python, read_lake, workspace_root, SeaweedFs};

/// Whether the test venv exists; without it the test is skipped, unless
/// `TRIBUTARY_REQUIRE_S3=1` (then `python()` panics with instructions).
fn have_python() -> bool {
    if workspace_root().join(".venv/bin/python").is_file() || SeaweedFs::required() {
        return true;
    }
    eprintln!("skipping: no .venv (create it with ./scripts/setup-python.sh)");
    false
}

/// Writes a small lake with pyarrow: three files of 100 orders each (ids
/// 0..300) under a Hive-style partition, plus files that must be ignored.
fn write_lake(root: &Path) {
    let script = r#"
import os, sys
import pyarrow as pa, pyarrow.parquet as pq
root = sys.argv[1]
part = os.path.join(root, "dt=2026-01-01", "hour=00")
os.makedirs(part)
for i in range(3):
    ids = pa.array(range(i * 100, i * 100 + 100), pa.int64())
    names = pa.array([f"c{n}" for n in range(100)])
    schema = pa.schema([pa.field("order_id", pa.int64(), nullable=False),
                        pa.field("customer_id", pa.string())])
    pq.write_table(pa.Table.from_arrays([ids, names], schema=schema),
                   os.path.join(part, f"orders-{i}.parquet"))
# Must be ignored: the commit log, hidden and temporary files.
os.makedirs(os.path.join(root, "_tributary", "commits"))
with open(os.path.join(root, "_tributary", "commits", "0.json"), "w") as f:
    f.write("{}")
junk = pa.table({"order_id": pa.array([10_000], pa.int64())})
pq.write_table(junk, os.path.join(part, ".orders-9.parquet.tmp"))
pq.write_table(junk, os.path.join(part, "_orders-8.parquet"))
"#;
    let status = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(root)
        .status()
        .unwrap();
    assert!(status.success());
}

fn check(summary: &serde_json::Value, duckdb_source: &str) {
    assert_eq!(summary["rows"], 300, "{summary}");
    assert_eq!(summary["distinct_ids"], 300, "{summary}");
    assert_eq!(summary["null_ids"], 0, "{summary}");
    assert_eq!(summary["min_id"], 0, "{summary}");
    assert_eq!(summary["max_id"], 299, "{summary}");
    assert_eq!(summary["files"], 3, "{summary}");
    assert_eq!(summary["schema"]["order_id"], "int64", "{summary}");
    assert_eq!(summary["schema"]["customer_id"], "string", "{summary}");
    assert_eq!(summary["nullable"]["order_id"], false, "{summary}");
    assert_eq!(summary["agree"], true, "{summary}");
    assert_eq!(summary["duckdb"]["rows"], 300, "{summary}");
    assert_eq!(summary["duckdb"]["source"], duckdb_source, "{summary}");
}

#[test]
fn reads_a_local_lake_with_both_readers() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path());
    check(&read_lake(dir.path(), "order_id", None), "local");
    let url = format!("file://{}", dir.path().display());
    check(&read_lake(&url, "order_id", None), "local");

    let empty = tempfile::tempdir().unwrap();
    let summary = read_lake(empty.path(), "order_id", None);
    assert_eq!(summary["rows"], 0);
    assert_eq!(summary["files"], 0);
}

#[tokio::test]
async fn reads_a_lake_on_seaweedfs() {
    if !have_python() {
        return;
    }
    let Some(s3) = SeaweedFs::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path());
    let bucket = s3.fresh_bucket();
    let store = s3.store(&bucket);
    for entry in walk(dir.path()) {
        let relative = entry.strip_prefix(dir.path()).unwrap();
        let key = ObjectPath::from(format!("raw/orders/{}", relative.display()));
        let bytes = std::fs::read(&entry).unwrap();
        store.put(&key, PutPayload::from(bytes)).await.unwrap();
    }
    let summary = read_lake(format!("s3://{bucket}/raw/orders"), "order_id", Some(&s3));
    // duckdb's httpfs extension is not installed offline: it reads local copies.
    let source = summary["duckdb"]["source"].as_str().unwrap().to_string();
    assert!(
        ["local-copy", "httpfs"].contains(&source.as_str()),
        "{summary}"
    );
    check(&summary, &source);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
