//! `esos tui`: a full-screen, keyboard-driven text UI over the management API.
//!
//! Tabs: Dashboard (targets, sessions, per-device IOPS and MB/s), Devices, Targets (with
//! CHAP and the server portals), Hosts & groups, Port groups (ALUA states), System. The
//! state machine ([`app`]) and drawing ([`view`], one file per tab) are pure and tested on
//! ratatui's test backend; this module is the I/O edge: the terminal, crossterm's event
//! stream, a poll of the read endpoints every second (the daemon's information and log
//! only while the System tab is shown), and one change at a time sent as an API request.
//! Every refusal is the daemon's message on the status line; nothing the daemon answers
//! can make the TUI panic.

mod action;
mod app;
mod form;
mod model;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::client::Client;
use action::Action;
use app::{App, Effect};
use model::Snapshot;

/// How often the read endpoints are polled (the dashboard's rates are per this interval).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Longest a poll may take before it counts as failed. Reads answer from memory, so a
/// daemon that takes this long is in trouble; changes use the client's longer timeout.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// Results waiting for the UI loop. At most one poll and one change are in flight, so
/// this never fills.
const CHANNEL_CAPACITY: usize = 4;

/// Runs the TUI against the daemon at `socket` until the user quits.
pub fn run(socket: PathBuf) -> ExitCode {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        eprintln!("esos: tui needs a terminal; use the other verbs (esos --help) in scripts");
        return ExitCode::from(crate::cli::EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("esos: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ui(socket)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("esos: tui: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Puts the terminal back (raw mode off, main screen) however the UI ends; a panic is
/// covered by the hook `ratatui::try_init` installs.
struct RestoreTerminal;

impl Drop for RestoreTerminal {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

enum Msg {
    Polled(Result<Snapshot, String>, Instant),
    Done(Action, Result<Value, String>),
}

async fn ui(socket: PathBuf) -> std::io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let _restore = RestoreTerminal;
    let client = Client::new(socket.clone());
    let mut app = App::new(socket.display().to_string());
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
    // A poll asked for while one runs starts when it ends, so a change is seen at once.
    let (mut polling, mut poll_pending) = (false, false);
    // Quit was asked while a change was in flight: leave once it has an answer, so the
    // daemon is not left applying a change nobody sees the result of.
    let mut quitting = false;
    loop {
        terminal.draw(|f| view::render(&app, f))?;
        let mut poll_now = false;
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(Event::Key(k))) => match app.on_key(k) {
                    Effect::Quit if app.busy.is_none() || quitting => return Ok(()),
                    Effect::Quit => {
                        quitting = true;
                        app.status = Some((
                            app::Level::Info,
                            "quitting once the change in flight is answered (q again: now)"
                                .into(),
                        ));
                    }
                    Effect::Refresh => poll_now = true,
                    Effect::Run(a) => {
                        let (c, tx) = (client.clone(), tx.clone());
                        tokio::spawn(async move {
                            let r = execute(&c, &a).await;
                            let _ = tx.send(Msg::Done(a, r)).await;
                        });
                    }
                    Effect::None => {}
                },
                // Resizes and other events: redraw.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            _ = tick.tick() => poll_now = true,
            Some(msg) = rx.recv() => match msg {
                Msg::Polled(r, at) => {
                    polling = false;
                    app.on_poll(r, at);
                    poll_now = std::mem::take(&mut poll_pending);
                }
                Msg::Done(a, r) => {
                    app.on_done(&a, r);
                    if quitting {
                        return Ok(());
                    }
                    poll_now = true;
                }
            },
        }
        if poll_now && polling {
            poll_pending = true;
        } else if poll_now {
            polling = true;
            let (c, tx) = (client.clone(), tx.clone());
            let (with_config, with_system) = (app.wants_config(), app.wants_system());
            tokio::spawn(async move {
                let polled = poll(&c, with_config, with_system);
                let r = match tokio::time::timeout(POLL_TIMEOUT, polled).await {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "{}: no answer within {} s",
                        c.socket().display(),
                        POLL_TIMEOUT.as_secs()
                    )),
                };
                let _ = tx.send(Msg::Polled(r, Instant::now())).await;
            });
        }
    }
}

/// Sends one change; `Ok` with the daemon's JSON answer, `Err` with its message.
async fn execute(client: &Client, action: &Action) -> Result<Value, String> {
    let req = action.request();
    let body = req.body.map(|b| {
        (
            "application/json",
            serde_json::to_vec(&b).unwrap_or_default(),
        )
    });
    let a = client
        .request(req.method, &req.path, body)
        .await
        .map_err(|e| e.to_string())?;
    if a.is_success() {
        Ok(a.json().unwrap_or(Value::Null))
    } else {
        Err(a.error_message())
    }
}

async fn get_json<T: DeserializeOwned>(client: &Client, path: &str) -> Result<T, String> {
    let a = client.get(path).await.map_err(|e| e.to_string())?;
    if !a.is_success() {
        return Err(format!("GET {path}: {}", a.error_message()));
    }
    serde_json::from_slice(&a.body).map_err(|e| format!("GET {path}: unexpected answer: {e}"))
}

/// Daemon log events the System tab asks for: more than fit on any usual screen.
pub const LOG_POLL_LIMIT: usize = 100;

/// One poll of the read endpoints, in parallel; the config text, and the daemon's
/// information and log, only when asked.
async fn poll(client: &Client, with_config: bool, with_system: bool) -> Result<Snapshot, String> {
    // Optional like the port groups: a daemon without these endpoints still shows.
    let (system, daemon_log) = if with_system {
        let log_path = format!("/api/v1/system/log?limit={LOG_POLL_LIMIT}");
        tokio::join!(
            async { get_json(client, "/api/v1/system").await.ok() },
            async { get_json(client, &log_path).await.ok() },
        )
    } else {
        (None, None)
    };
    // The port groups are optional: without them the tab falls back to the config.
    let port_groups = async { Ok(get_json(client, "/api/v1/port-groups").await.ok()) };
    // Optional too: a daemon without replication lists none.
    let replicas = async {
        Ok(get_json::<model::Replicas>(client, "/api/v1/replicas")
            .await
            .map(|r| r.replicas)
            .unwrap_or_default())
    };
    let (devices, targets, sessions, stats, port_groups, replicas) = tokio::try_join!(
        get_json(client, "/api/v1/devices"),
        get_json(client, "/api/v1/targets"),
        get_json(client, "/api/v1/sessions"),
        get_json(client, "/api/v1/stats"),
        port_groups,
        replicas,
    )?;
    let config = if with_config {
        let a = client
            .get("/api/v1/config")
            .await
            .map_err(|e| e.to_string())?;
        if !a.is_success() {
            return Err(format!("GET /api/v1/config: {}", a.error_message()));
        }
        Some(a.text())
    } else {
        None
    };
    Ok(Snapshot {
        devices,
        targets,
        sessions,
        stats,
        port_groups,
        replicas,
        config,
        system,
        daemon_log,
    })
}
