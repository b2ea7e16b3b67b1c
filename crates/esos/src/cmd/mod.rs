//! The management verbs: each turns into one API request and prints the answer, as a
//! table or message, or as the API's JSON with `--json`. Exit codes: see
//! [`crate::cli::EXIT_CODES_HELP`].

mod print;
mod replica;

use std::path::Path;
use std::process::ExitCode;

use hyper::Method;
use serde_json::{Value, json};

use crate::cli::{
    ChapCommand, ClientArgs, Command, ConfigCommand, DeviceCommand, EXIT_REFUSED, EXIT_UNREACHABLE,
    EXIT_USAGE, GlobalClientArgs, GroupCommand, LunCommand, PortGroupCommand, PortalCommand,
    SessionCommand, SystemCommand, TargetCommand,
};
use crate::client::{Answer, Client, ClientError, segment};

/// A verb's view of the command line.
struct Opts {
    socket: Option<std::path::PathBuf>,
    config: Option<std::path::PathBuf>,
    json: bool,
    dry_run: bool,
    force: bool,
}

impl Opts {
    fn new(g: &GlobalClientArgs, c: ClientArgs) -> Opts {
        Opts {
            socket: g.socket.clone(),
            config: c.config,
            json: g.json,
            dry_run: c.dry_run,
            force: c.force,
        }
    }
}

/// Runs a management verb; `None` when `cmd` is not one (serve, config check).
pub fn run(cmd: Command, global: &GlobalClientArgs) -> Option<ExitCode> {
    let o = |c: ClientArgs| Opts::new(global, c);
    let code = match cmd {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut c = crate::cli::Cli::command();
            clap_complete::generate(shell, &mut c, "esos", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Api {
            command: crate::cli::ApiCommand::TokenHash(args),
        } => token_hash(&args, &mut std::io::stdin().lock(), &mut std::io::stdout()),
        Command::Device { conn, command } => {
            let conn = o(conn);
            call(&conn, |c| device(c, &conn, command))
        }
        Command::Target { conn, command } => {
            let conn = o(conn);
            call(&conn, |c| target(c, &conn, command))
        }
        Command::Group { conn, command } => {
            let conn = o(conn);
            call(&conn, |c| group(c, &conn, command))
        }
        Command::Lun { conn, command } => {
            let conn = o(conn);
            call(&conn, |c| lun(c, &conn, command))
        }
        Command::Chap { conn, command } => {
            let conn = o(conn);
            call(&conn, |c| chap(c, &conn, command))
        }
        Command::Portal { conn, command } => {
            let conn = o(conn);
            call(&conn, |c| portal(c, &conn, command))
        }
        Command::Session { conn, command } => {
            let conn = o(conn);
            call(&conn, |c| session(c, &conn, command))
        }
        Command::Replica { config, command } => {
            let conn = o(ClientArgs {
                config,
                ..ClientArgs::default()
            });
            call(&conn, |c| replica::run(c, conn.json, command))
        }
        Command::PortGroup { conn, command } => {
            let conn = o(conn);
            call(&conn, |c| port_group(c, &conn, command))
        }
        Command::System { conn, command } => {
            let conn = o(conn);
            call(&conn, |c| system(c, &conn, command))
        }
        Command::Tui(args) => {
            let conn = o(ClientArgs {
                config: args.config,
                ..ClientArgs::default()
            });
            match socket_of(&conn) {
                Ok(socket) => crate::tui::run(socket),
                Err(e) => {
                    eprintln!("esos: {e}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Config {
            command: ConfigCommand::Apply { file, conn },
        } => match read_config(&file) {
            Ok(text) => {
                let conn = o(conn);
                call(&conn, |c| apply(c, &conn, text))
            }
            Err(e) => {
                eprintln!("esos: {e}");
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::Config {
            command: ConfigCommand::Export { conn },
        } => {
            let conn = o(conn);
            call(&conn, |c| export(c, &conn))
        }
        Command::Serve(_)
        | Command::Witness(_)
        | Command::Config {
            command: ConfigCommand::Check { .. },
        } => return None,
    };
    Some(code)
}

/// What a verb does with the daemon's answer.
enum Outcome {
    Ok,
    Refused(String),
    /// Found wrong before asking the daemon.
    Usage(String),
}

fn call<F, Fut>(conn: &Opts, f: F) -> ExitCode
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<Outcome, ClientError>>,
{
    let socket = match socket_of(conn) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("esos: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
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
    match runtime.block_on(f(Client::new(socket))) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Refused(msg)) => {
            eprintln!("esos: {msg}");
            ExitCode::from(EXIT_REFUSED)
        }
        Ok(Outcome::Usage(msg)) => {
            eprintln!("esos: {msg}");
            ExitCode::from(EXIT_USAGE)
        }
        // Not reachable, or not answering as the API does: either way no change was made.
        Err(e) => {
            eprintln!("esos: {e}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

/// The daemon's socket: --socket, ESOS_SOCKET, --config's data directory, then defaults.
fn socket_of(conn: &Opts) -> Result<std::path::PathBuf, crate::config::ConfigError> {
    let env_socket = std::env::var_os("ESOS_SOCKET")
        .filter(|s| !s.is_empty())
        .map(std::path::PathBuf::from);
    let explicit = conn.socket.clone().or(env_socket);
    crate::client::resolve_socket(explicit.as_deref(), conn.config.as_deref())
}

fn read_config(file: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if meta.len() > crate::config::MAX_CONFIG_BYTES {
        return Err(format!(
            "{}: {} bytes; a config is at most {}",
            file.display(),
            meta.len(),
            crate::config::MAX_CONFIG_BYTES
        ));
    }
    std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))
}

/// `?dry_run=true&force=true` as asked.
fn query(conn: &Opts) -> String {
    match (conn.dry_run, conn.force) {
        (false, false) => String::new(),
        (true, false) => "?dry_run=true".into(),
        (false, true) => "?force=true".into(),
        (true, true) => "?dry_run=true&force=true".into(),
    }
}

/// Prints a read answer: JSON as is, or through `table`.
fn show(conn: &Opts, a: &Answer, table: impl FnOnce(&Value) -> String) -> Outcome {
    if !a.is_success() {
        return Outcome::Refused(a.error_message());
    }
    match a.json() {
        Some(v) if conn.json => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Outcome::Ok
        }
        Some(v) => {
            print!("{}", table(&v));
            Outcome::Ok
        }
        None => Outcome::Refused(format!("unexpected answer: {}", a.text())),
    }
}

/// Prints the answer to a change: `done` and what the daemon reports.
fn changed(conn: &Opts, a: &Answer, done: impl FnOnce(&Value) -> String) -> Outcome {
    if !a.is_success() {
        return Outcome::Refused(a.error_message());
    }
    let v = a.json().unwrap_or(Value::Null);
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", print::applied(&v, &done(&v)));
    }
    Outcome::Ok
}

async fn device(c: Client, conn: &Opts, cmd: DeviceCommand) -> Result<Outcome, ClientError> {
    let q = query(conn);
    Ok(match cmd {
        DeviceCommand::List => show(conn, &c.get("/api/v1/devices").await?, print::devices),
        DeviceCommand::Show { name } => {
            let a = c
                .get(&format!("/api/v1/devices/{}", segment(&name)))
                .await?;
            show(conn, &a, print::device)
        }
        DeviceCommand::Add(d) => {
            let mut body = json!({ "name": d.name, "type": d.kind });
            let fields = [
                ("path", d.path.map(Value::from)),
                ("size", d.size.map(Value::from)),
                ("block_size", d.block_size.map(Value::from)),
                ("thin", d.thin.then_some(Value::Bool(true))),
                ("read_only", d.read_only.then_some(Value::Bool(true))),
                (
                    "cache",
                    d.write_through.then(|| Value::from("write-through")),
                ),
                ("product", d.product.map(Value::from)),
                ("serial", d.serial.map(Value::from)),
                ("backing", d.backing.map(Value::from)),
                ("resync_rate", d.resync_rate.map(Value::from)),
            ];
            for (k, v) in fields {
                if let Some(v) = v {
                    body[k] = v;
                }
            }
            let a = c
                .send_json(Method::POST, &format!("/api/v1/devices{q}"), &body)
                .await?;
            changed(conn, &a, |_| format!("device {} added", d.name))
        }
        DeviceCommand::Remove { name } => {
            let a = c
                .request(
                    Method::DELETE,
                    &format!("/api/v1/devices/{}{q}", segment(&name)),
                    None,
                )
                .await?;
            changed(conn, &a, |_| format!("device {name} removed"))
        }
        DeviceCommand::Resize { name, size } => {
            let a = c
                .send_json(
                    Method::PUT,
                    &format!("/api/v1/devices/{}/size{q}", segment(&name)),
                    &json!({ "size": size }),
                )
                .await?;
            changed(conn, &a, |_| format!("device {name} resized to {size}"))
        }
    })
}

async fn target(c: Client, conn: &Opts, cmd: TargetCommand) -> Result<Outcome, ClientError> {
    let q = query(conn);
    let path = |name: &str, tail: &str| format!("/api/v1/targets/{}{tail}{q}", segment(name));
    Ok(match cmd {
        TargetCommand::List => show(conn, &c.get("/api/v1/targets").await?, print::targets),
        TargetCommand::Show { name } => {
            let a = c
                .get(&format!("/api/v1/targets/{}", segment(&name)))
                .await?;
            show(conn, &a, print::target)
        }
        TargetCommand::Add {
            name,
            alias,
            portals,
        } => {
            let mut body = json!({ "name": name });
            if let Some(a) = alias {
                body["alias"] = a.into();
            }
            if !portals.is_empty() {
                body["portals"] = portals.into();
            }
            let a = c
                .send_json(Method::POST, &format!("/api/v1/targets{q}"), &body)
                .await?;
            changed(conn, &a, |_| {
                format!(
                    "target {name} added (disabled: map LUNs with `esos lun map`, then \
                     `esos target enable {name}`)"
                )
            })
        }
        TargetCommand::Remove { name } => {
            let a = c.request(Method::DELETE, &path(&name, ""), None).await?;
            changed(conn, &a, |_| format!("target {name} removed"))
        }
        TargetCommand::Enable { name } => {
            let a = c
                .request(Method::POST, &path(&name, "/enable"), None)
                .await?;
            changed(conn, &a, |_| format!("target {name} enabled"))
        }
        TargetCommand::Disable { name } => {
            let a = c
                .request(Method::POST, &path(&name, "/disable"), None)
                .await?;
            changed(conn, &a, |_| format!("target {name} disabled"))
        }
    })
}

async fn group(c: Client, conn: &Opts, cmd: GroupCommand) -> Result<Outcome, ClientError> {
    let q = query(conn);
    let base = |t: &str| format!("/api/v1/targets/{}/groups", segment(t));
    Ok(match cmd {
        GroupCommand::Add {
            target,
            name,
            initiators,
        } => {
            let body = json!({ "name": name, "initiators": initiators });
            let a = c
                .send_json(Method::POST, &format!("{}{q}", base(&target)), &body)
                .await?;
            changed(conn, &a, |_| format!("group {name} added to {target}"))
        }
        GroupCommand::Remove { target, name } => {
            let p = format!("{}/{}{q}", base(&target), segment(&name));
            let a = c.request(Method::DELETE, &p, None).await?;
            changed(conn, &a, |_| format!("group {name} removed from {target}"))
        }
        GroupCommand::AddInitiator {
            target,
            group,
            initiators,
        } => {
            let p = format!("{}/{}/initiators{q}", base(&target), segment(&group));
            let body = json!({ "initiators": initiators });
            let a = c.send_json(Method::POST, &p, &body).await?;
            changed(conn, &a, |_| {
                format!("{} initiator(s) added to {group}", initiators.len())
            })
        }
        GroupCommand::RemoveInitiator {
            target,
            group,
            initiators,
        } => {
            let p = format!("{}/{}/initiators{q}", base(&target), segment(&group));
            let body = json!({ "initiators": initiators });
            let a = c.send_json(Method::DELETE, &p, &body).await?;
            changed(conn, &a, |_| {
                format!("{} initiator(s) removed from {group}", initiators.len())
            })
        }
    })
}

fn lun_base(target: &str, group: Option<&str>) -> String {
    match group {
        None => format!("/api/v1/targets/{}/luns", segment(target)),
        Some(g) => format!(
            "/api/v1/targets/{}/groups/{}/luns",
            segment(target),
            segment(g)
        ),
    }
}

async fn lun(c: Client, conn: &Opts, cmd: LunCommand) -> Result<Outcome, ClientError> {
    let q = query(conn);
    Ok(match cmd {
        LunCommand::Map {
            target,
            device,
            lun,
            group,
        } => {
            let mut body = json!({ "device": device });
            if let Some(l) = lun {
                body["lun"] = l.into();
            }
            let p = format!("{}{q}", lun_base(&target, group.as_deref()));
            let a = c.send_json(Method::POST, &p, &body).await?;
            changed(conn, &a, |v| {
                let n = v["lun"].as_u64().map_or("?".into(), |n| n.to_string());
                match &group {
                    Some(g) => format!("{device} mapped at lun {n} of {target} group {g}"),
                    None => format!("{device} mapped at lun {n} of {target}"),
                }
            })
        }
        LunCommand::Unmap { target, lun, group } => {
            let p = format!("{}/{lun}{q}", lun_base(&target, group.as_deref()));
            let a = c.request(Method::DELETE, &p, None).await?;
            changed(conn, &a, |_| format!("lun {lun} of {target} unmapped"))
        }
    })
}

async fn chap(c: Client, conn: &Opts, cmd: ChapCommand) -> Result<Outcome, ClientError> {
    let q = query(conn);
    Ok(match cmd {
        ChapCommand::Set {
            target,
            user,
            secret,
            mutual_user,
            mutual_secret,
        } => {
            let from_env = |v: Option<String>, var: &str| {
                v.or_else(|| std::env::var(var).ok().filter(|s| !s.is_empty()))
            };
            let Some(secret) = from_env(secret, "ESOS_CHAP_SECRET") else {
                return Ok(Outcome::Usage(
                    "chap set: give the secret in ESOS_CHAP_SECRET (or --secret)".into(),
                ));
            };
            let mut body = json!({ "user": user, "secret": secret });
            if let Some(u) = mutual_user {
                let Some(s) = from_env(mutual_secret, "ESOS_CHAP_MUTUAL_SECRET") else {
                    return Ok(Outcome::Usage(
                        "chap set: --mutual-user needs ESOS_CHAP_MUTUAL_SECRET (or --mutual-secret)"
                            .into(),
                    ));
                };
                body["mutual_user"] = u.into();
                body["mutual_secret"] = s.into();
            }
            let p = format!("/api/v1/targets/{}/chap{q}", segment(&target));
            let a = c.send_json(Method::PUT, &p, &body).await?;
            changed(conn, &a, |_| format!("CHAP set on {target}"))
        }
        ChapCommand::Clear { target } => {
            let p = format!("/api/v1/targets/{}/chap{q}", segment(&target));
            let a = c.request(Method::DELETE, &p, None).await?;
            changed(conn, &a, |_| format!("CHAP cleared on {target}"))
        }
    })
}

async fn portal(c: Client, conn: &Opts, cmd: PortalCommand) -> Result<Outcome, ClientError> {
    let q = query(conn);
    Ok(match cmd {
        PortalCommand::Add { address, group } => {
            let mut body = json!({ "address": address });
            if let Some(g) = group {
                body["group"] = g.into();
            }
            let a = c
                .send_json(Method::POST, &format!("/api/v1/portals{q}"), &body)
                .await?;
            changed(conn, &a, |_| format!("portal {address} added"))
        }
        PortalCommand::Remove { address } => {
            let p = format!("/api/v1/portals/{}{q}", segment(&address));
            let a = c.request(Method::DELETE, &p, None).await?;
            changed(conn, &a, |_| format!("portal {address} removed"))
        }
    })
}

async fn session(c: Client, conn: &Opts, cmd: SessionCommand) -> Result<Outcome, ClientError> {
    Ok(match cmd {
        SessionCommand::List => show(conn, &c.get("/api/v1/sessions").await?, print::sessions),
        SessionCommand::Close { id } => {
            let a = c
                .request(Method::DELETE, &format!("/api/v1/sessions/{id}"), None)
                .await?;
            if a.is_success() {
                if conn.json {
                    println!("{}", json!({ "closed": id }));
                } else {
                    println!("session {id} logged out");
                }
                Outcome::Ok
            } else {
                Outcome::Refused(a.error_message())
            }
        }
    })
}

async fn system(c: Client, conn: &Opts, cmd: SystemCommand) -> Result<Outcome, ClientError> {
    Ok(match cmd {
        SystemCommand::Info => show(conn, &c.get("/api/v1/system").await?, print::system),
        SystemCommand::Log { limit, level } => {
            let mut q = format!("?limit={limit}");
            if let Some(l) = level {
                q.push_str("&level=");
                q.extend(l.bytes().map(query_byte));
            }
            show(
                conn,
                &c.get(&format!("/api/v1/system/log{q}")).await?,
                print::log,
            )
        }
    })
}

/// One byte of a query value: letters and digits as they are, anything else
/// percent-encoded (so `&` or `=` in a value cannot start another parameter).
fn query_byte(b: u8) -> String {
    if b.is_ascii_alphanumeric() {
        char::from(b).to_string()
    } else {
        format!("%{b:02X}")
    }
}

async fn port_group(c: Client, conn: &Opts, cmd: PortGroupCommand) -> Result<Outcome, ClientError> {
    Ok(match cmd {
        PortGroupCommand::List => show(
            conn,
            &c.get("/api/v1/port-groups").await?,
            print::port_groups,
        ),
        PortGroupCommand::Set { id, state } => {
            let a = c
                .send_json(
                    Method::PUT,
                    &format!("/api/v1/port-groups/{id}"),
                    &json!({ "state": state }),
                )
                .await?;
            if a.is_success() {
                if conn.json {
                    println!("{}", json!({ "id": id, "state": state }));
                } else {
                    println!("port group {id} is {state}");
                }
                Outcome::Ok
            } else {
                Outcome::Refused(a.error_message())
            }
        }
    })
}

async fn apply(c: Client, conn: &Opts, text: String) -> Result<Outcome, ClientError> {
    let p = format!("/api/v1/config{}", query(conn));
    let a = c
        .request(
            Method::PUT,
            &p,
            Some(("application/toml", text.into_bytes())),
        )
        .await?;
    Ok(changed(conn, &a, |_| "config applied".into()))
}

async fn export(c: Client, conn: &Opts) -> Result<Outcome, ClientError> {
    let a = c.get("/api/v1/config").await?;
    if !a.is_success() {
        return Ok(Outcome::Refused(a.error_message()));
    }
    if conn.json {
        println!("{}", json!({ "config": a.text() }));
    } else {
        print!("{}", a.text());
    }
    Ok(Outcome::Ok)
}

/// `esos api token-hash`: see [`crate::cli::TokenHashArgs`].
fn token_hash(
    args: &crate::cli::TokenHashArgs,
    stdin: &mut impl std::io::BufRead,
    out: &mut impl std::io::Write,
) -> ExitCode {
    match token_hash_text(args, stdin) {
        Ok(text) => match out.write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("esos: {e}");
                ExitCode::from(EXIT_REFUSED)
            }
        },
        Err(e) => {
            eprintln!("esos: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn token_hash_text(
    args: &crate::cli::TokenHashArgs,
    stdin: &mut impl std::io::BufRead,
) -> Result<String, String> {
    use crate::api::auth;
    use std::io::{BufRead, Read};
    if let Some(name) = &args.name {
        crate::config::names::validate_object_name(name).map_err(|e| format!("--name: {e}"))?;
    }
    let token = if args.generate {
        auth::generate_token()
    } else {
        // One line, bounded: a token is at most MAX_TOKEN_BYTES.
        let mut line = String::new();
        Read::take(&mut *stdin, auth::MAX_TOKEN_BYTES as u64 + 3)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the token from stdin: {e}"))?;
        let t = line.strip_suffix('\n').unwrap_or(&line);
        let t = t.strip_suffix('\r').unwrap_or(t);
        auth::check_new_token(t)?;
        t.to_owned()
    };
    let digest = crate::config::sha256_hex(&auth::token_digest(&token));
    let mut text = String::new();
    if args.generate {
        text.push_str(&format!("token: {token}\n"));
    }
    match &args.name {
        Some(name) => {
            let role = match args.role {
                crate::cli::TokenRole::Admin => "admin",
                crate::cli::TokenRole::ReadOnly => "read-only",
            };
            text.push_str(&format!(
                "[[api.token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{digest}\"\n"
            ));
        }
        None => text.push_str(&format!("{digest}\n")),
    }
    Ok(text)
}

#[cfg(test)]
mod token_hash_tests {
    use super::*;
    use crate::cli::{TokenHashArgs, TokenRole};

    fn args(generate: bool, name: Option<&str>, role: TokenRole) -> TokenHashArgs {
        TokenHashArgs {
            generate,
            name: name.map(str::to_owned),
            role,
        }
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_from_stdin_is_hashed() {
        let a = args(false, None, TokenRole::ReadOnly);
        for input in [
            format!("{TOKEN}\n"),
            format!("{TOKEN}\r\n"),
            TOKEN.to_owned(),
        ] {
            let out = token_hash_text(&a, &mut input.as_bytes()).unwrap();
            let digest = crate::config::sha256_hex(&crate::api::auth::token_digest(TOKEN));
            assert_eq!(out, format!("{digest}\n"));
        }
        assert!(token_hash_text(&a, &mut "short\n".as_bytes()).is_err());
        assert!(token_hash_text(&a, &mut "".as_bytes()).is_err());
        let long = "a".repeat(10_000);
        assert!(token_hash_text(&a, &mut long.as_bytes()).is_err());
    }

    #[test]
    fn an_entry_is_valid_config() {
        let out = token_hash_text(
            &args(true, Some("ops"), TokenRole::Admin),
            &mut "".as_bytes(),
        )
        .unwrap();
        let (first, entry) = out.split_once('\n').unwrap();
        let token = first.strip_prefix("token: ").unwrap();
        let text = format!(
            "[api]\nlisten = [\"127.0.0.1:0\"]\ntls_certificate = \"c\"\ntls_key = \"k\"\n{entry}"
        );
        let raw = crate::config::parse(&text, "t").unwrap();
        let plan = crate::config::validate(
            &raw,
            &crate::config::Source::file(std::path::Path::new("t")),
        )
        .unwrap();
        let t = &plan.api.tokens[0];
        assert_eq!(
            (t.name.as_str(), t.role),
            ("ops", crate::config::ApiRole::Admin)
        );
        assert_eq!(t.sha256, crate::api::auth::token_digest(token));
        assert!(
            token_hash_text(
                &args(true, Some("a b"), TokenRole::Admin),
                &mut "".as_bytes()
            )
            .is_err()
        );
    }
}
