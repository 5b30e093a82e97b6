//! Smoke run of `tributary bench`: the harness works end to end (every
//! measurement of every workload, the Python baseline, steady mode, JSON and
//! Markdown output). It checks that the figures exist and are sane, never
//! how fast anything is.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tributary_testkit::{bin_path, python};

/// Runs `tributary bench ARGS` with 2 s of steady mode, a 64 MiB budget,
/// the venv's Python and a scratch directory in `dir`; asserts it succeeded.
/// Returns its stdout, its stderr and the JSON report.
fn bench(dir: &Path, args: &[&OsStr]) -> (String, String, Value) {
    let json = dir.join("report.json");
    let out = Command::new(bin_path("tributary"))
        .arg("bench")
        .args(args)
        .args(["--steady-secs", "2", "--memory-budget", "64MiB"])
        .arg("--python")
        .arg(python())
        .arg("--work-dir")
        .arg(dir.join("work"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (stdout, stderr, report)
}

#[test]
fn bench_reports_every_measurement_of_every_workload() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("report.md");
    let args = [
        "--workloads",
        "w1,w3,w4",
        "--partitions",
        "2",
        "--records",
        "3000",
        "--records-small-large",
        "1500",
        "--repeat",
        "2",
        "--markdown",
    ];
    let mut args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    args.push(md.as_os_str());
    let (stdout, _, report) = bench(dir.path(), &args);
    assert_eq!(report["broker"], "mock", "the default broker");
    let rows = report["rows"].as_array().unwrap();
    for w in ["w1", "w3", "w4"] {
        for m in ["B0", "B1", "E2E", "B2"] {
            let row = rows
                .iter()
                .find(|r| r["workload"] == w && r["measurement"] == m)
                .unwrap_or_else(|| panic!("no {w} {m} row in {report:#}"));
            let records = if w == "w1" { 3000 } else { 1500 };
            assert_eq!(row["records"], records, "{row}");
            for key in [
                "record_bytes",
                "records_per_s",
                "mb_per_s",
                "cpu_s_per_gb",
                "peak_rss_mib",
            ] {
                let v = row[key].as_f64().unwrap();
                assert!(v.is_finite() && v > 0.0, "{w} {m} {key} = {v}");
            }
            // B0, B1 and E2E ran twice (their medians are reported), B2 once.
            let runs = if m == "B2" { 1 } else { 2 };
            assert_eq!(row["runs"], runs, "{row}");
            let rate = |key: &str| row[key].as_f64().unwrap();
            assert!(
                rate("records_per_s_min") <= rate("records_per_s")
                    && rate("records_per_s") <= rate("records_per_s_max"),
                "{row}"
            );
        }
    }
    let ratios = report["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 3, "{report:#}");
    for r in ratios {
        for key in ["e2e_over_b0", "e2e_over_b1", "e2e_over_b2"] {
            assert!(r[key].as_f64().is_some_and(|v| v > 0.0), "{r}");
        }
        let rounds = r["e2e_over_b0_rounds"].as_array().unwrap();
        assert_eq!(rounds.len(), 2, "{r}");
        assert!(
            rounds.iter().all(|v| v.as_f64().is_some_and(|v| v > 0.0)),
            "{r}"
        );
    }
    let steady = &report["steady"][0];
    assert_eq!(steady["workload"], "w1", "{report:#}");
    let (p50, p99) = (
        steady["p50_ms"].as_f64().unwrap(),
        steady["p99_ms"].as_f64().unwrap(),
    );
    assert!(p50 >= 0.0 && p99 >= p50, "{steady}");

    let markdown = std::fs::read_to_string(&md).unwrap();
    assert_eq!(
        markdown,
        stdout.trim_end_matches('\n').to_string() + "\n",
        "stdout is the Markdown report"
    );
    let data_lines = markdown
        .lines()
        .filter(|l| {
            ["| w1 |", "| w3 |", "| w4 |"]
                .iter()
                .any(|w| l.starts_with(w))
        })
        .count();
    // 12 measurements, 3 ratio rows, 1 steady row.
    assert_eq!(data_lines, 12 + 3 + 1, "{markdown}");
}

/// `--broker tansu`: drain topics preloaded into a Tansu broker process, then
/// consumed by B0, E2E and B2. Opt-in: runs when `TRIBUTARY_TANSU` names a
/// tansu binary (`cargo install tansu --locked --features dynostore,libsql`
/// takes about 12 minutes, so CI does not build it).
#[test]
fn bench_drains_a_preloaded_tansu_broker() {
    let Some(tansu) = std::env::var_os("TRIBUTARY_TANSU") else {
        eprintln!("skipping: set TRIBUTARY_TANSU to a tansu binary to run this test");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--broker",
        "tansu",
        "--workloads",
        "w1",
        "--partitions",
        "3",
        "--repeat",
        "1",
    ];
    let mut args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    args.extend([OsStr::new("--records"), OsStr::new("20000")]);
    args.extend([OsStr::new("--tansu"), tansu.as_os_str()]);
    let (stdout, stderr, report) = bench(dir.path(), &args);
    assert!(
        stderr.contains("preloaded 20000 records"),
        "drain topics are preloaded:\n{stderr}"
    );
    assert!(stdout.contains("Broker: Tansu"), "{stdout}");

    assert_eq!(report["broker"], "tansu");
    for m in ["B0", "B1", "E2E", "B2"] {
        let row = report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["measurement"] == m)
            .unwrap_or_else(|| panic!("no {m} row in {report:#}"));
        assert_eq!(row["records"], 20000, "{row}");
        assert_eq!(row["runs"], 1, "{row}");
        let rate = row["records_per_s"].as_f64().unwrap();
        assert!(rate.is_finite() && rate > 0.0, "{row}");
    }
    assert!(
        report["steady"][0]["p99_ms"].as_f64().is_some(),
        "{report:#}"
    );
}
