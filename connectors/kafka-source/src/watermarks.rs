//! The watermark thread: refreshes the high watermark of every assigned
//! partition in the background, so that lag can be read without blocking.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::debug;

use crate::context::{Shared, SourceContext};

/// How long one watermark query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Spawns the thread. It ends when `stop` is sent to or dropped.
pub(crate) fn spawn(
    name: String,
    consumer: Arc<BaseConsumer<SourceContext>>,
    shared: Arc<Shared>,
    stop: Receiver<()>,
    interval: Duration,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name(name).spawn(move || {
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
            if shared.stopped() {
                break;
            }
            refresh(&consumer, &shared);
        }
    })
}

/// Fetches the high watermark of every assigned partition.
fn refresh(consumer: &BaseConsumer<SourceContext>, shared: &Shared) {
    let mut marks = HashMap::new();
    for tp in shared.assignment() {
        match consumer.fetch_watermarks(&tp.topic, tp.partition, QUERY_TIMEOUT) {
            Ok((_, high)) => {
                marks.insert(tp, high);
            }
            Err(e) => debug!(partition = %tp, error = %e, "Fetching watermarks failed."),
        }
    }
    shared.set_high_watermarks(marks);
}
