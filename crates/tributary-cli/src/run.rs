//! `tributary run` and `tributary validate`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
use tracing::{error, info, warn};
use tributary_config::Config;
use tributary_runtime::{MemoryBudget, Pipeline, PipelineStatus, Shutdown};

use crate::registry;

/// Loads, validates and checks a config file; relative paths inside it
/// (schema files) are resolved against the working directory.
pub fn load_checked(path: &Path, base: &Path) -> anyhow::Result<Config> {
    let config = tributary_config::load(path)?;
    tributary_config::validate(&config)?;
    for (i, p) in config.pipelines.iter().enumerate() {
        registry::check(i, p, base)?;
    }
    Ok(config)
}

/// `tributary validate`: the summary line on success.
pub fn validate(path: &Path) -> anyhow::Result<String> {
    let config = load_checked(path, Path::new("."))
        .with_context(|| format!("{} is not valid", path.display()))?;
    let names: Vec<&str> = config.pipelines.iter().map(|p| p.name.as_str()).collect();
    Ok(format!(
        "{}: valid ({} pipeline{}: {})",
        path.display(),
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    ))
}

/// Builds every pipeline of a config.
/// Every pipeline shares the worker's memory budget.
pub fn build(config: &Config) -> anyhow::Result<Vec<Pipeline>> {
    let budget = MemoryBudget::new(config.worker.memory_budget.0);
    (0..config.pipelines.len())
        .map(|index| build_one(config, index, &budget))
        .collect()
}

/// Builds pipeline `index` of a config within the worker's `budget` (also
/// used to rebuild one pipeline when the control API restarts it).
pub fn build_one(config: &Config, index: usize, budget: &MemoryBudget) -> anyhow::Result<Pipeline> {
    let base = Path::new(".");
    let kafka_sources = config
        .pipelines
        .iter()
        .filter(|p| matches!(p.source, tributary_config::SourceConfig::Kafka(_)))
        .count();
    let p = registry::within_budget(&config.pipelines[index], budget, kafka_sources);
    let lag = tributary_runtime::LagPolicy {
        window: config.worker.lag_window.0,
        stop_after: config.worker.lag_stop_after.0,
    };
    Ok(Pipeline::new(
        p.name.clone(),
        registry::source(&p)?,
        registry::converter(&p, base)?,
        registry::sink(&p, &config.worker.id)?,
        config.worker.shutdown_timeout.0,
    )
    .with_memory_budget(budget)
    .with_lag_policy(lag))
}

/// Runs pipelines until they end, one fails, or `stop` resolves; then drains
/// all of them. Returns the last status of each.
pub async fn run_pipelines(
    pipelines: Vec<Pipeline>,
    shutdown_timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Vec<PipelineStatus>> {
    let (trigger, shutdown) = Shutdown::new();
    let statuses: Vec<_> = pipelines.iter().map(Pipeline::status).collect();
    let mut tasks = JoinSet::new();
    for p in pipelines {
        let shutdown = shutdown.clone();
        tasks.spawn(async move { p.run(shutdown).await.map_err(|e| e.to_string()) });
    }
    join_pipelines(tasks, &trigger, shutdown_timeout, stop).await?;
    Ok(statuses.iter().map(|s| s.borrow().clone()).collect())
}

/// Waits for pipeline tasks until they all end. When `stop` resolves or one
/// fails, asks the others to drain (through `trigger`) and gives them
/// `shutdown_timeout` (plus the time a revoke may take) before aborting
/// them. Returns what each finished task returned, or every failure.
pub async fn join_pipelines<T: 'static>(
    mut tasks: JoinSet<Result<T, String>>,
    trigger: &tokio::sync::watch::Sender<bool>,
    shutdown_timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Vec<T>> {
    let mut failures = Vec::new();
    let mut finished = Vec::new();
    tokio::pin!(stop);
    let mut stopping = false;
    while !tasks.is_empty() {
        tokio::select! {
            _ = &mut stop, if !stopping => {
                info!("Stop requested; draining pipelines.");
                stopping = true;
                let _ = trigger.send(true);
            }
            done = tasks.join_next() => {
                match done {
                    Some(Ok(Ok(value))) => finished.push(value),
                    Some(Ok(Err(e))) => {
                        if !stopping {
                            error!(error = %e, "A pipeline failed; draining the others.");
                            stopping = true;
                            let _ = trigger.send(true);
                        }
                        failures.push(e);
                    }
                    Some(Err(join)) => {
                        failures.push(format!("pipeline task panicked: {join}"));
                        stopping = true;
                        let _ = trigger.send(true);
                    }
                    None => break,
                }
            }
            _ = tokio::time::sleep(shutdown_timeout + Duration::from_secs(35)), if stopping => {
                warn!(timeout = ?shutdown_timeout, "Pipelines did not stop in time; exiting anyway.");
                tasks.abort_all();
                failures.push("pipelines did not stop within the shutdown timeout".into());
                break;
            }
        }
    }
    if failures.is_empty() {
        Ok(finished)
    } else {
        anyhow::bail!("{}", failures.join("; "))
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            error!("Cannot install signal handlers; stop with SIGKILL only.");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => info!(signal = "SIGTERM", "Signal received."),
            _ = int.recv() => info!(signal = "SIGINT", "Signal received."),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Checks the fault-injection variables and says when they are armed (builds
/// with the `fault-injection` feature); elsewhere warns that they are ignored.
pub(crate) fn fault_injection() -> anyhow::Result<()> {
    #[cfg(feature = "fault-injection")]
    {
        use tributary_lake::faults;
        let (crash, storage) = faults::from_env()?;
        if crash.is_some() || storage.is_some() {
            let show = |v: Option<String>| v.unwrap_or_else(|| "off".into());
            warn!(
                crash = %show(crash.map(|c| c.to_string())),
                storage = %show(storage.map(|s| s.to_string())),
                exit_code = faults::CRASH_EXIT_CODE,
                "Fault injection armed."
            );
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    for variable in ["TRIBUTARY_FAULT_CRASH", "TRIBUTARY_FAULT_STORAGE"] {
        if std::env::var_os(variable).is_some() {
            warn!(
                variable,
                "Set, but this binary was built without the fault-injection feature; ignored."
            );
        }
    }
    Ok(())
}

/// `tributary run`.
pub async fn run(path: &Path) -> anyhow::Result<()> {
    let stop = signal();
    fault_injection()?;
    let config = load_checked(path, Path::new("."))
        .with_context(|| format!("{} is not valid", path.display()))?;
    info!(worker = %config.worker.id, pipelines = config.pipelines.len(), "Worker starting.");
    // Pipelines under supervision (restartable), with the HTTP API (serve.rs).
    let statuses = crate::serve::run_worker(&config, stop).await?;
    for s in statuses {
        info!(
            pipeline = %s.name,
            consumed = s.totals.consumed,
            landed_rows = s.totals.landed_rows,
            dead_lettered = s.totals.dead_lettered,
            skipped = s.totals.skipped,
            files = s.totals.files,
            "Pipeline summary."
        );
    }
    info!("Worker stopped.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every config shipped under config/ and examples/ parses, validates and
    /// passes the connector checks (schema files, templates, storage URLs).
    #[test]
    fn every_shipped_config_is_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut checked = 0;
        for dir in ["config", "examples"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if !["toml", "yaml", "yml"].contains(&ext) {
                    continue;
                }
                if let Err(e) = load_checked(&path, &root) {
                    panic!("{}: {e:#}", path.display());
                }
                checked += 1;
            }
        }
        assert!(checked >= 4, "only {checked} configs found");
    }

    /// A `.proto` that does not compile and a message it lacks are named
    /// with the key, the file, and the line.
    #[test]
    fn a_bad_protobuf_schema_is_named_by_validate() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = tempfile::tempdir().unwrap();
        let example = std::fs::read_to_string(root.join("examples/kafka-protobuf.toml")).unwrap();
        let proto = dir.path().join("orders.proto");
        let config = example.replace("config/schemas/orders.proto", &proto.display().to_string());
        let path = dir.path().join("pb.toml");
        std::fs::write(&path, &config).unwrap();
        std::fs::write(
            &proto,
            "syntax = \"proto3\";\npackage shop.v1;\nmessage Order {\n  strin id = 1;\n}\n",
        )
        .unwrap();
        let err = format!("{:#}", validate(&path).unwrap_err());
        assert!(
            err.contains("pipelines.1.converter: converter.schema_file: ")
                && err.contains("orders.proto:4:3: name 'strin' is not defined"),
            "{err}"
        );
        std::fs::copy(root.join("config/schemas/orders.proto"), &proto).unwrap();
        std::fs::write(&path, config.replace("shop.v1.Order", "shop.v1.Ordr")).unwrap();
        let err = format!("{:#}", validate(&path).unwrap_err());
        assert!(
            err.contains(
                "pipelines.1.converter: converter.message: no message \"shop.v1.Ordr\" in \
                 orders.proto; it defines shop.v1.Order, shop.v1.Order.Item"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_key_is_named_by_validate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/worker.toml"),
        )
        .unwrap()
        .replace("max_age = \"5m\"", "max_age = \"5 fortnights\"");
        std::fs::write(&path, text).unwrap();
        let err = format!("{:#}", validate(&path).unwrap_err());
        assert!(err.contains("pipelines.0.sink.flush.max_age"), "{err}");
    }
}
