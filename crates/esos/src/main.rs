//! esos: the iSCSI SAN target daemon and its command line.
//!
//! `esos` alone serves a built-in default (one 1 GiB file LUN on 127.0.0.1:3260);
//! `esos serve --config FILE` serves a declarative config; `esos serve --lun ...` quickly
//! exports files and devices; `esos config check FILE` validates a config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use esos_iscsi::server::Server;

use esos::cli::{Cli, Command, ConfigCommand};
use esos::config::{self, Plan};
use esos::identity::{self, IdentityStore};
use esos::manager::{Manager, Running};
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
    if let Some(node) = &cli.node {
        config::set_node_override(node.clone());
    }
    match cli.command {
        Some(Command::Witness(args)) => witness(args, cli.log_level.as_deref()),
        Some(Command::Config {
            command: ConfigCommand::Check { file, no_preflight },
        }) => check(&file, no_preflight),
        Some(Command::Serve(args)) => match &args.config {
            Some(file) => serve_file(file, cli.log_level.as_deref()),
            None => {
                let plan = presets::quick_plan(&args.quick)?;
                serve(plan, None, cli.log_level.as_deref())
            }
        },
        // The management verbs (device, target, lun, ... config apply/export, completions).
        Some(other) => Ok(esos::cmd::run(other, &cli.client).unwrap_or(ExitCode::FAILURE)),
        None => {
            // First start: write the built-in default as a config file, then serve that
            // file like any other, so live changes persist across restarts.
            let dir = Path::new(presets::DEFAULT_DATA_DIR);
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let file = dir.join(presets::DEFAULT_CONFIG_FILE);
            if !file.exists() {
                esos_common::fs::replace(
                    &file,
                    presets::default_text().as_bytes(),
                    esos_common::fs::Replace {
                        keep_previous: true,
                    },
                )
                .with_context(|| format!("cannot write {}", file.display()))?;
            }
            serve_file(&file, cli.log_level.as_deref())
        }
    }
}

fn check(file: &Path, no_preflight: bool) -> anyhow::Result<ExitCode> {
    let mut plan = config::load(file)?;
    if !no_preflight {
        graph::preflight(&plan)?;
        api_tls(&mut plan)?;
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
    if let Some(c) = &plan.cluster {
        let replicated = plan.devices.iter().filter(|d| d.replica.is_some()).count();
        println!(
            "cluster {}: this node {}, {} member(s){}, {replicated} replicated device(s)",
            c.name,
            c.me,
            c.members.len(),
            c.witness
                .as_ref()
                .map_or(String::new(), |(w, _)| format!(" and witness {w}"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Default directory of `esos witness`'s votes.
const DEFAULT_WITNESS_DIR: &str = "esos-witness";

/// `esos witness`: a voter without data, in the foreground until SIGTERM or SIGINT.
fn witness(args: esos::cli::WitnessArgs, cli_level: Option<&str>) -> anyhow::Result<ExitCode> {
    init_logging(cli_level, None)?;
    let me = esos_replica::NodeName::new(&args.name).with_context(|| {
        format!(
            "--name {:?}: 1 to 63 characters of A-Z, a-z, 0-9, '.', '_', '-'",
            args.name
        )
    })?;
    let dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_WITNESS_DIR));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // One witness per directory: two sharing votes would break the quorum's promises.
    let _lock = identity::lock_data_dir(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(esos_replica::witness::run_witness(
        &args.cluster,
        me,
        args.listen,
        dir,
        shutdown_signal(),
    ))?;
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
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The ring sits behind the same filter as stderr: it never holds what the log omits.
    let ring = Arc::new(esos::system::LogRing::new());
    esos::system::install(ring.clone(), filter.to_string());
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(esos::system::RingLayer::new(ring))
        .try_init()
        .context("cannot install the logger")?;
    Ok(())
}

/// The TCP API's TLS identity, read now so a bad PEM file stops the start with a message
/// naming its key; `None` when the API is on the unix socket only.
fn api_tls(plan: &mut Plan) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    let Some(tls) = plan
        .api
        .tls
        .as_ref()
        .filter(|_| !plan.api.listen.is_empty())
    else {
        return Ok(None);
    };
    let config = esos::api::tls::server_config(tls, &mut plan.warnings)
        .with_context(|| plan.source.clone())?;
    Ok(Some(config))
}

/// Serves a config file; its text is what `esos config export` shows and what live changes
/// edit.
fn serve_file(file: &Path, cli_level: Option<&str>) -> anyhow::Result<ExitCode> {
    let plan = config::load(file)?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    serve(plan, Some((file.to_path_buf(), text)), cli_level)
}

/// `file`: the config file and its text; `None` for a command-line configuration, which
/// cannot be changed live.
/// Buffers at least this large get their own mapping from the allocator and go back to
/// the system when freed. glibc otherwise raises its threshold to the largest block freed
/// so far (up to 32 MiB), after which large I/O buffers (1 MiB transfers, 8 MiB reads)
/// come from the heap and its high-water mark stays resident after the burst: the soak
/// saw RSS climb in steps that never came back. Fixing the threshold keeps a daemon's
/// memory where its current load puts it. Small buffers stay pooled per connection.
const MMAP_THRESHOLD_BYTES: libc::c_int = 128 * 1024;

/// Fixes glibc's mmap threshold (see [`MMAP_THRESHOLD_BYTES`]); other C libraries keep
/// their own policy.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is called once, before the
        // runtime starts any thread, with a documented parameter and an in-range value.
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
        if ok != 1 {
            tracing::warn!("could not set the allocator's mmap threshold");
        }
    }
}

fn serve(
    plan: Plan,
    file: Option<(PathBuf, String)>,
    cli_level: Option<&str>,
) -> anyhow::Result<ExitCode> {
    tune_allocator();
    let mut plan = plan;
    init_logging(cli_level, plan.log_level.as_deref())?;
    let api_tls = api_tls(&mut plan)?;
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

    let alua = graph::port_groups(&plan)?;
    // Replicas and the quorum are async: the runtime comes before the devices.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let opened = runtime.block_on(esos::cluster::node::open_all(&plan, identities, &alua))?;
    for (d, u) in plan.devices.iter().zip(&opened.units) {
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
    let server_config = graph::server_config(&plan, &opened.units);
    runtime.block_on(run_server(
        plan,
        file,
        server_config,
        (opened, alua),
        store,
        api_tls,
    ))
}

async fn run_server(
    plan: Plan,
    file: Option<(PathBuf, String)>,
    server_config: esos_iscsi::server::ServerConfig,
    (opened, alua): (
        esos::cluster::node::Opened,
        Arc<esos_lu::access::PortGroups>,
    ),
    identities: IdentityStore,
    api_tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<ExitCode> {
    let server = Server::bind(server_config).await?;
    let (config_path, text) = file.unzip();
    let esos::cluster::node::Opened {
        units,
        node,
        replicated,
    } = opened;
    let manager = Arc::new(Manager::new(Running {
        plan: plan.clone(),
        text: text.unwrap_or_default(),
        config_path,
        units,
        alua,
        identities,
        server: server.handle(),
        replicated,
        cluster: node.clone(),
    }));
    let addrs = server.local_addrs();
    for a in &addrs {
        tracing::info!(portal = %a, "listening");
    }
    println!(
        "esos is serving. Connect with:\n{}",
        graph::connection_hints(&plan, &addrs)
    );

    // The management API on a unix socket in the data directory (root-only, mode 0600);
    // bound before READY so `esos <verb>` works as soon as systemd says the daemon is up.
    let api_socket = manager.data_dir().join(esos::api::SOCKET_NAME);
    let api_bound = esos::api::bind_socket(&api_socket).await?;
    let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(esos::api::serve_on(manager.clone(), api_bound, async {
        let _ = api_stopped.await;
    }));
    // The API on TCP (TLS, bearer tokens), also bound before READY.
    let (tcp_stop, tcp_stopped) = tokio::sync::oneshot::channel::<()>();
    let tcp_api = match api_tls {
        Some(tls) => {
            let bound = esos::api::bind_tcp(&plan.api, tls).await?;
            Some(tokio::spawn(esos::api::serve_tcp_on(
                manager.clone(),
                bound,
                async {
                    let _ = tcp_stopped.await;
                },
            )))
        }
        None => None,
    };
    let reloader = tokio::spawn(reload_on_sighup(manager.clone()));
    let metrics = plan.metrics.map(|addr| {
        let m = manager.clone();
        tokio::spawn(async move {
            if let Err(e) = esos::metrics::serve_tcp(addr, m).await {
                tracing::error!(%addr, error = %e, "metrics listener failed");
            }
        })
    });
    notify(&[sd_notify::NotifyState::Ready]);
    server.run(shutdown_signal()).await;
    notify(&[sd_notify::NotifyState::Stopping]);
    reloader.abort();
    let _ = api_stop.send(());
    if let Ok(Err(e)) = api.await {
        tracing::error!(error = %e, "management API failed");
    }
    let _ = tcp_stop.send(());
    if let Some(t) = tcp_api {
        let _ = t.await;
    }
    if let Some(m) = metrics {
        m.abort();
    }
    tracing::info!("server stopped; flushing logical units");

    // Devices added or removed live are in the manager's set, not the start-up one.
    let mut failed = 0usize;
    let replicas = manager.replica_set();
    for (name, u) in manager.units() {
        // A secondary serves nothing to flush; its replica's own stop makes it durable.
        if let Some(r) = replicas.get(&name)
            && r.view().role != esos_replica::Role::Primary
        {
            continue;
        }
        if let Err(e) = u.flush().await {
            failed += 1;
            tracing::error!(device = %name, error = %e, "flush failed: data may not be durable");
        }
    }
    // Replicas last: their flushes above went to the peers too.
    for (name, u) in manager.take_replicated() {
        tracing::info!(device = %name, "stopping the replica");
        u.shutdown().await;
    }
    if let Some(n) = node {
        n.stop();
    }
    if failed > 0 {
        anyhow::bail!("{failed} device(s) could not be flushed");
    }
    tracing::info!("all logical units flushed; exiting");
    Ok(ExitCode::SUCCESS)
}

/// Tells systemd (Type=notify-reload) where the daemon is; a no-op outside systemd.
fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// SIGHUP: re-reads the config file and applies the difference live, as
/// `esos config apply` would (without force: a change that would cut off logged-in
/// sessions is refused and logged).
async fn reload_on_sighup(manager: Arc<Manager>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGHUP handler; reload disabled");
            return;
        }
    };
    while hup.recv().await.is_some() {
        let Some(path) = manager.config_path().map(Path::to_path_buf) else {
            tracing::warn!(
                "SIGHUP: the daemon serves a command-line configuration; nothing to reload"
            );
            continue;
        };
        let mut state = vec![sd_notify::NotifyState::Reloading];
        state.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
        notify(&state);
        match std::fs::read_to_string(&path) {
            Ok(text) => match manager.apply(&text, false, false).await {
                Ok(report) => tracing::info!(file = %path.display(), ?report, "SIGHUP: reloaded"),
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "SIGHUP: reload refused; running configuration unchanged")
                }
            },
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "SIGHUP: cannot read the config file")
            }
        }
        notify(&[sd_notify::NotifyState::Ready]);
    }
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
