#!/usr/bin/env bash
# The test command: ./scripts/test.sh [ARGS...]
#
# 1. Ensures the Python venv (.venv: SeaweedFS, pyarrow, duckdb) exists.
# 2. Builds every workspace binary: tests start `tributary` and
#    `tributary-mock-kafka` from target/<profile>/, and a package's tests do
#    not build another package's binaries.
# 3. Runs the tests with TRIBUTARY_REQUIRE_S3=1, so S3 tests fail rather than
#    skip when SeaweedFS is missing: `cargo nextest run --workspace ARGS` when
#    cargo-nextest is installed (then, without ARGS, the doctests, which
#    nextest does not run), else `cargo test --workspace ARGS`.
#
# Binaries and tests are built with `--features tributary-cli/fault-injection`
# (crash points and storage faults, armed by TRIBUTARY_FAULT_CRASH and
# TRIBUTARY_FAULT_STORAGE): tests/crash_points.rs and tests/storage_faults.rs
# drive a `tributary` binary that has them. The same flag on both commands
# keeps one feature set, so the test build never relinks the binary without
# them. Release builds (`cargo build --release -p tributary-cli`) never have
# the feature.
#
# ARGS go to the test runner unchanged (filters, --release, --no-fail-fast...).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

"$root/scripts/setup-python.sh"
# Headless Chromium for the status-page test (tests/operate.rs); apt-get when missing.
"$root/scripts/setup-chromium.sh"
export TRIBUTARY_REQUIRE_S3=1
export TRIBUTARY_WEED="${TRIBUTARY_WEED:-$root/.venv/bin/weed}"

# Build the binaries in the profile the tests will use.
build_args=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --release) build_args+=(--release) ;;
        --cargo-profile=* | --profile=*) build_args+=("--profile=${args[i]#*=}") ;;
        --cargo-profile | --profile) build_args+=("--profile=${args[i + 1]:-dev}") ;;
    esac
done
features=(--features tributary-cli/fault-injection)
cargo build --workspace --bins "${features[@]}" ${build_args[@]+"${build_args[@]}"}

if cargo nextest --version >/dev/null 2>&1; then
    # Doctests first (nextest does not run them), so that nextest's summary
    # is the run's closing line.
    if [[ $# -eq 0 ]]; then
        cargo test --workspace --doc "${features[@]}"
    fi
    cargo nextest run --workspace "${features[@]}" "$@"
else
    cargo test --workspace "${features[@]}" "$@"
fi
