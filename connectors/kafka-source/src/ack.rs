//! Waiting, on the poll thread, for the runtime's answer to a rebalance event.
//!
//! The answer comes over a tokio oneshot channel, but the poll thread is a
//! plain OS thread without a runtime. The wait polls the receiver with a
//! waker that unparks the thread, parks with a timeout, and gives up early
//! when the source is closing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Longest a single park lasts, so that a close is noticed promptly.
const CLOSING_CHECK: Duration = Duration::from_millis(50);

/// How a wait for an answer ended.
#[derive(Debug)]
pub(crate) enum Answer<T> {
    /// The runtime answered.
    Given(T),
    /// The runtime dropped the sender without answering.
    Dropped,
    /// No answer within the timeout.
    TimedOut,
    /// The source started closing while waiting.
    Closing,
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Blocks the current (non-async) thread until `rx` yields, `timeout`
/// passes, or `closing` becomes true.
pub(crate) fn wait<T>(
    mut rx: oneshot::Receiver<T>,
    timeout: Duration,
    closing: &AtomicBool,
) -> Answer<T> {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let deadline = Instant::now() + timeout;
    loop {
        match Pin::new(&mut rx).poll(&mut cx) {
            Poll::Ready(Ok(value)) => return Answer::Given(value),
            Poll::Ready(Err(_)) => return Answer::Dropped,
            Poll::Pending => {}
        }
        if closing.load(Ordering::Acquire) {
            return Answer::Closing;
        }
        let now = Instant::now();
        if now >= deadline {
            return Answer::TimedOut;
        }
        thread::park_timeout((deadline - now).min(CLOSING_CHECK));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_from_another_thread_wakes_the_waiter() {
        let (tx, rx) = oneshot::channel();
        let closing = AtomicBool::new(false);
        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            tx.send(7).unwrap();
        });
        let started = Instant::now();
        assert!(matches!(
            wait(rx, Duration::from_secs(10), &closing),
            Answer::Given(7)
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        sender.join().unwrap();
    }

    #[test]
    fn dropped_sender_and_timeout_and_closing_are_reported() {
        let closing = AtomicBool::new(false);
        let (tx, rx) = oneshot::channel::<()>();
        drop(tx);
        assert!(matches!(
            wait(rx, Duration::from_secs(10), &closing),
            Answer::Dropped
        ));

        let (_tx, rx) = oneshot::channel::<()>();
        assert!(matches!(
            wait(rx, Duration::from_millis(30), &closing),
            Answer::TimedOut
        ));

        closing.store(true, Ordering::Release);
        let (_tx, rx) = oneshot::channel::<()>();
        assert!(matches!(
            wait(rx, Duration::from_secs(10), &closing),
            Answer::Closing
        ));
    }
}
