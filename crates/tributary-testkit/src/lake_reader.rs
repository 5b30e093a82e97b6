//! Independent readers of a Parquet lake: `scripts/read_lake.py` (pyarrow
//! and duckdb) driven from Rust.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

use crate::{workspace_root, SeaweedFs};

/// The test Python interpreter, `<workspace>/.venv/bin/python`. Panics with
/// instructions when the venv is missing.
pub fn python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    if !python.is_file() {
        panic!(
            "{} is missing: create the test venv with ./scripts/setup-python.sh \
             (./scripts/test.sh does it for you)",
            python.display()
        );
    }
    python
}

/// Reads the Parquet lake at `location` with pyarrow and, independently,
/// with duckdb (`scripts/read_lake.py`), and returns pyarrow's figures:
///
/// ```json
/// {"rows": 1000, "distinct_ids": 1000, "null_ids": 0, "min_id": 0, "max_id": 999,
///  "files": 3, "schema": {"order_id": "int64", ...}, "nullable": {"order_id": false, ...},
///  "duckdb": {"rows": 1000, "distinct_ids": 1000, "min_id": 0, "max_id": 999,
///             "source": "local" | "local-copy" | "httpfs"}}
/// ```
///
/// `location` is a directory, a `file://` URL or an `s3://bucket/prefix` URL
/// (then `s3` gives the endpoint and credentials). Every file below it is
/// read except those under a path component starting with `_` or `.`
/// (`_tributary/`, temporary files). Panics if either reader fails or if the
/// two readers disagree on rows, distinct ids, min or max.
pub fn read_lake(
    location: impl AsRef<OsStr>,
    id_column: &str,
    s3: Option<&SeaweedFs>,
) -> serde_json::Value {
    let script = workspace_root().join("scripts/read_lake.py");
    let mut command = Command::new(python());
    command
        .arg(&script)
        .arg(location.as_ref())
        .arg("--id-column")
        .arg(id_column);
    if let Some(s3) = s3 {
        command
            .arg("--endpoint")
            .arg(s3.endpoint())
            .arg("--region")
            .arg(s3.region())
            // Credentials by environment, not argv.
            .env("AWS_ACCESS_KEY_ID", s3.access_key())
            .env("AWS_SECRET_ACCESS_KEY", s3.secret_key());
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        panic!(
            "read_lake.py {:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            location.as_ref(),
            output.status
        );
    }
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("read_lake.py printed no JSON ({e}): {stdout}\n{stderr}"))
}
