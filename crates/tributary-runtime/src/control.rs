//! Commands into a running pipeline (pause, resume), sent by the control API.

use tokio::sync::{mpsc, oneshot};

/// A command for a pipeline task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Stop (`true`) or restart (`false`) consuming, keeping the assignment.
    Pause {
        paused: bool,
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The pipeline task is not running (stopped, failed, or restarting).
    #[error("pipeline {pipeline} is not running")]
    NotRunning {
        /// Pipeline name.
        pipeline: String,
    },
    /// The pipeline tried and failed.
    #[error("pipeline {pipeline}: {message}")]
    Failed {
        /// Pipeline name.
        pipeline: String,
        /// What went wrong.
        message: String,
    },
}

/// A handle to send commands to one pipeline task; cheap to clone.
#[derive(Clone, Debug)]
pub struct PipelineControl {
    pub(crate) name: String,
    pub(crate) tx: mpsc::Sender<Command>,
}

impl PipelineControl {
    /// Stops consuming without giving up the assignment: buffered records
    /// still land on their flush schedule and rebalances are still answered.
    pub async fn pause(&self) -> Result<(), ControlError> {
        self.send_pause(true).await
    }

    /// Consumes again after [`PipelineControl::pause`].
    pub async fn resume(&self) -> Result<(), ControlError> {
        self.send_pause(false).await
    }

    async fn send_pause(&self, paused: bool) -> Result<(), ControlError> {
        let not_running = || ControlError::NotRunning {
            pipeline: self.name.clone(),
        };
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Pause { paused, done })
            .await
            .map_err(|_| not_running())?;
        rx.await
            .map_err(|_| not_running())?
            .map_err(|message| ControlError::Failed {
                pipeline: self.name.clone(),
                message,
            })
    }
}
