//! `tributary run` as a service: every pipeline under a supervisor that can
//! restart it on request, and the HTTP API (control, `/metrics`, `/healthz`,
//! `/readyz`, status page) served on `worker.http_addr` until every pipeline
//! has drained.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::{info, warn};
use tributary_config::Config;
use tributary_http::{Registry, Server};
use tributary_runtime::{MemoryBudget, PipelineStatus, RuntimeError, Shutdown};

use crate::run;

/// The bearer token of the API, from `worker.http_token` or `worker.http_token_file`.
fn token(config: &Config) -> anyhow::Result<Option<String>> {
    if let Some(t) = &config.worker.http_token {
        return Ok(Some(t.expose().to_string()));
    }
    let Some(path) = &config.worker.http_token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading worker.http_token_file {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(
        !token.is_empty(),
        "worker.http_token_file {} is empty",
        path.display()
    );
    Ok(Some(token.to_string()))
}

/// Runs pipeline `index`, rebuilding it whenever a restart is requested,
/// until it ends, fails, or `shutdown` is requested. Returns its last status.
async fn supervise(
    config: Arc<Config>,
    index: usize,
    budget: MemoryBudget,
    registry: Arc<Registry>,
    restart: Arc<Notify>,
    mut shutdown: Shutdown,
) -> Result<PipelineStatus, String> {
    let name = config.pipelines[index].name.clone();
    loop {
        let pipeline =
            run::build_one(&config, index, &budget).map_err(|e| format!("{name}: {e:#}"))?;
        let status = pipeline.status();
        registry.attach(&name, status.clone(), pipeline.control());
        let (trigger, own) = Shutdown::new();
        let task = pipeline.run(own);
        tokio::pin!(task);
        let restarting = tokio::select! {
            result = &mut task => {
                return finish(result, &status);
            }
            _ = shutdown.requested() => false,
            _ = restart.notified() => true,
        };
        if restarting {
            info!(pipeline = %name, "Restarting pipeline: draining it first.");
        }
        let _ = trigger.send(true);
        let result = task.await;
        if !restarting || result.is_err() {
            return finish(result, &status);
        }
        info!(pipeline = %name, "Pipeline drained; starting it again.");
    }
}

fn finish(
    result: Result<(), RuntimeError>,
    status: &tokio::sync::watch::Receiver<PipelineStatus>,
) -> Result<PipelineStatus, String> {
    result
        .map(|()| status.borrow().clone())
        .map_err(|e| e.to_string())
}

/// Serves the HTTP API and runs the pipelines of `config` until they end,
/// one fails, or `stop` resolves; then drains all of them. Returns the last
/// status of each.
pub async fn run_worker(
    config: &Config,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<Vec<PipelineStatus>> {
    let token = token(config)?;
    let server = Server::bind(&config.worker.http_addr).await?;
    let addr = server
        .local_addr()
        .map_or_else(|| config.worker.http_addr.clone(), |a| a.to_string());
    let registry = Registry::new(
        config.worker.id.clone(),
        Some(config.worker.memory_budget.0),
    );
    let (http_stop_tx, http_stop) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(server.serve(registry.clone(), token.clone(), async move {
        let _ = http_stop.await;
    }));
    info!(addr = %addr, auth = token.is_some(), "HTTP API listening.");

    let config = Arc::new(config.clone());
    let budget = MemoryBudget::new(config.worker.memory_budget.0);
    let shutdown_timeout = config.worker.shutdown_timeout.0;
    let (trigger, shutdown) = Shutdown::new();
    let mut tasks = JoinSet::new();
    for (index, p) in config.pipelines.iter().enumerate() {
        let restart = registry.register(p);
        tasks.spawn(supervise(
            config.clone(),
            index,
            budget.clone(),
            registry.clone(),
            restart,
            shutdown.clone(),
        ));
    }
    let result = run::join_pipelines(tasks, &trigger, shutdown_timeout, stop).await;
    let _ = http_stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(5), http).await {
        Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server failed."),
        Err(_) => warn!("HTTP server did not stop within 5s."),
        _ => {}
    }
    let mut last = result?;
    last.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(worker: tributary_config::WorkerConfig) -> Config {
        Config {
            worker,
            pipelines: vec![],
        }
    }

    #[test]
    fn the_token_comes_from_the_config_or_a_file() {
        let none = config(Default::default());
        assert_eq!(token(&none).unwrap(), None);
        let inline = config(tributary_config::WorkerConfig {
            http_token: Some(tributary_config::Secret::new("abc")),
            ..Default::default()
        });
        assert_eq!(token(&inline).unwrap().as_deref(), Some("abc"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").unwrap();
        let file = config(tributary_config::WorkerConfig {
            http_token_file: Some(path.clone()),
            ..Default::default()
        });
        assert_eq!(token(&file).unwrap().as_deref(), Some("from-file"));
        std::fs::write(&path, "\n").unwrap();
        let err = token(&file).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
    }
}
