//! `spawn_tied`: children die with the test process, even when it is killed
//! with SIGKILL and no destructor runs.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tributary_testkit::{spawn_tied, wait_for};

const HELPER_ENV: &str = "TRIBUTARY_TESTKIT_TIED_HELPER";

fn alive(pid: u32) -> bool {
    // A zombie still answers kill(0); look at its state instead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Run by `children_die_with_the_test_process` in a separate process: spawns
/// a tied `sleep` from a short-lived thread, prints its PID, then parks
/// until it is killed.
#[test]
#[ignore = "helper, run by children_die_with_the_test_process"]
fn tied_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    // Spawned from a thread that ends right away: the child must survive
    // that, and die only with the process.
    let pid = std::thread::spawn(|| {
        let mut command = Command::new("sleep");
        command.arg("300");
        spawn_tied(command).unwrap().id()
    })
    .join()
    .unwrap();
    assert!(
        alive(pid),
        "the child must outlive the thread that spawned it"
    );
    println!("CHILD={pid}");
    println!("READY");
    loop {
        std::thread::park();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn children_die_with_the_test_process() {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["tied_helper", "--exact", "--ignored", "--nocapture"])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    let mut child_pid = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(pid) = line.strip_prefix("CHILD=") {
            child_pid = Some(pid.parse::<u32>().unwrap());
        }
        if line.contains("READY") {
            break;
        }
    }
    let child_pid = child_pid.expect("helper printed its child's pid");
    assert!(
        alive(child_pid),
        "the child outlives the thread that spawned it"
    );

    helper.kill().unwrap(); // SIGKILL: no destructor runs in the helper
    helper.wait().unwrap();
    wait_for(Duration::from_secs(10), "the tied child to die", || {
        (!alive(child_pid)).then_some(())
    });
}
