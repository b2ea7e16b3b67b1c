//! esos: the iSCSI SAN target daemon and its command line.
//!
//! `esos` alone serves a built-in default (one 1 GiB file LUN on 127.0.0.1:3260);
//! `esos serve --config FILE` serves a declarative config; `esos serve --lun ...` quickly
//! exports files and devices; `esos config check FILE` validates a config.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use esos_iscsi::server::Server;
use esos_scsi::LogicalUnit;

use esos::cli::{Cli, Command, ConfigCommand};
use esos::config::{self, Plan};
use esos::identity::{self, IdentityStore};
use esos::{graph, presets};

/// Log filter when neither --log-level, RUST_LOG nor the config sets one.
const DEFAULT_LOG_FILTER: &str = "info";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Logging may not be up yet (config errors come first): print directly.
            eprintln!("esos: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Config {
            command: ConfigCommand::Check { file, no_preflight },
        }) => check(&file, no_preflight),
        Some(Command::Serve(args)) => {
            let plan = match &args.config {
                Some(file) => config::load(file)?,
                None => presets::quick_plan(&args.quick)?,
            };
            serve(plan, cli.log_level.as_deref())
        }
        None => {
            let plan = presets::default_plan(Path::new("."))?;
            std::fs::create_dir_all(&plan.data_dir)
                .with_context(|| format!("cannot create {}", plan.data_dir.display()))?;
            serve(plan, cli.log_level.as_deref())
        }
    }
}

fn check(file: &Path, no_preflight: bool) -> anyhow::Result<ExitCode> {
    let plan = config::load(file)?;
    if !no_preflight {
        graph::preflight(&plan)?;
    }
    for w in &plan.warnings {
        eprintln!("esos: warning: {}: {w}", plan.source);
    }
    println!(
        "{}: OK ({} device(s), {} target(s), {} portal(s))",
        plan.source,
        plan.devices.len(),
        plan.targets.len(),
        plan.portals.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn init_logging(cli_level: Option<&str>, config_level: Option<&str>) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match (
        cli_level,
        std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()),
    ) {
        (Some(l), _) => EnvFilter::builder()
            .parse(l)
            .with_context(|| format!("--log-level {l:?}"))?,
        (None, Some(env)) => EnvFilter::builder()
            .parse(&env)
            .with_context(|| format!("RUST_LOG={env:?}"))?,
        (None, None) => EnvFilter::builder().parse(config_level.unwrap_or(DEFAULT_LOG_FILTER))?,
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

fn serve(plan: Plan, cli_level: Option<&str>) -> anyhow::Result<ExitCode> {
    init_logging(cli_level, plan.log_level.as_deref())?;
    for w in &plan.warnings {
        tracing::warn!(source = %plan.source, "{w}");
    }
    graph::preflight(&plan)?;

    // Held until exit: no second daemon may share this identity state.
    let _lock = identity::lock_data_dir(&plan.data_dir)?;
    let mut store = IdentityStore::load(&plan.data_dir)?;
    let identities: Vec<_> = plan
        .devices
        .iter()
        .map(|d| store.resolve(d, &mut identity::os_random))
        .collect();
    // Persist before any initiator can see the identities.
    store.save()?;

    let units = graph::open_units(&plan, identities)?;
    for (d, u) in plan.devices.iter().zip(&units) {
        let id = &u.settings().identity;
        tracing::info!(
            device = %d.name,
            kind = d.kind.as_str(),
            size = %config::describe_size(&d.spec),
            block_size = d.spec.block_size,
            write_cache = d.write_cache,
            serial = %id.serial,
            naa = %config::format_naa(&id.naa),
            "device ready"
        );
    }
    let server_config = graph::server_config(&plan, &units);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_server(&plan, server_config, units))
}

async fn run_server(
    plan: &Plan,
    server_config: esos_iscsi::server::ServerConfig,
    units: Vec<Arc<LogicalUnit>>,
) -> anyhow::Result<ExitCode> {
    let server = Server::bind(server_config).await?;
    let addrs = server.local_addrs();
    for a in &addrs {
        tracing::info!(portal = %a, "listening");
    }
    println!(
        "esos is serving. Connect with:\n{}",
        graph::connection_hints(plan, &addrs)
    );

    server.run(shutdown_signal()).await;
    tracing::info!("server stopped; flushing logical units");

    let mut failed = 0usize;
    for (d, u) in plan.devices.iter().zip(&units) {
        if let Err(e) = u.flush().await {
            failed += 1;
            tracing::error!(device = %d.name, error = %e, "flush failed: data may not be durable");
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} device(s) could not be flushed");
    }
    tracing::info!("all logical units flushed; exiting");
    Ok(ExitCode::SUCCESS)
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (term, int) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
                _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            // Without signal handlers the daemon could never stop cleanly; fall back to ^C.
            tracing::error!(error = %e, "cannot install signal handlers; waiting for ctrl-c");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
