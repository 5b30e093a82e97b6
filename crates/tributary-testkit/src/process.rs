//! Child processes that die with the test, and waiting on conditions.

use std::fmt::Display;
use std::io;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `command` in its own process group, tied to the life of the test
/// process: on Linux the child gets `SIGKILL` when this process exits, even
/// by `SIGKILL` or `abort`, and even if a `Drop` never ran (a `static`
/// server, a panic with `panic = "abort"`).
///
/// Children are forked from one long-lived helper thread, because Linux's
/// parent-death signal follows the *thread* that forked: a child spawned
/// from a test's own thread would die as soon as that test returned.
///
/// Stop the child with [`kill_group`] (or `Child::kill`).
pub fn spawn_tied(mut command: Command) -> io::Result<Child> {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before the prctl took effect.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::other("the test process exited during spawn"));
                }
                Ok(())
            });
        }
    }
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, incoming) = mpsc::channel::<SpawnJob>();
        thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("starting the testkit spawner thread");
        jobs
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .send((command, reply))
        .map_err(|_| io::Error::other("the testkit spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the testkit spawner thread is gone"))?
}

/// Sends `SIGKILL` to the process group led by `child` (see [`spawn_tied`])
/// and reaps it.
pub fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    // SAFETY: plain syscall; a negative pid names the process group.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `condition` until it returns `Some`, backing off from 5 ms to
/// 100 ms between tries, and panics naming `what` after `timeout`.
pub fn wait_for<T>(
    timeout: Duration,
    what: impl Display,
    condition: impl FnMut() -> Option<T>,
) -> T {
    try_wait_for(timeout, condition)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Like [`wait_for`], returning `None` on timeout.
pub fn try_wait_for<T>(timeout: Duration, mut condition: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = condition() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
