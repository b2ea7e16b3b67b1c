//! Command line: `esos` (built-in default), `esos serve`, `esos config check`, and the
//! management verbs (`esos device|target|group|lun|chap|session|system|config ...`) that talk to
//! a running daemon's API (see docs/management.md).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "esos",
    version,
    about = "esos iSCSI SAN target server",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive list).
    /// Overrides RUST_LOG and the config's server.log_level.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// This node's name in `[cluster]` (overrides cluster.node); also ESOS_NODE.
    #[arg(long, global = true, value_name = "NAME")]
    pub node: Option<String>,
    #[command(flatten)]
    pub client: GlobalClientArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Exit code: the daemon refused or failed the request.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: bad command line (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the daemon is not reachable.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Exit codes of the management verbs, shown by `esos --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the daemon refused the request (invalid, not found, conflict, in use) or failed it
  2  usage error (bad command line)
  3  the daemon is not reachable (not running, wrong --socket, no permission)";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a config file, or quickly export files/devices given with --lun.
    Serve(ServeArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Backing devices (each one logical unit).
    Device {
        #[command(flatten)]
        conn: ClientArgs,
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// iSCSI targets.
    Target {
        #[command(flatten)]
        conn: ClientArgs,
        #[command(subcommand)]
        command: TargetCommand,
    },
    /// Initiator groups of a target (LUN masking).
    Group {
        #[command(flatten)]
        conn: ClientArgs,
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// LUN maps: which device an initiator sees at which LUN.
    Lun {
        #[command(flatten)]
        conn: ClientArgs,
        #[command(subcommand)]
        command: LunCommand,
    },
    /// CHAP authentication of a target.
    Chap {
        #[command(flatten)]
        conn: ClientArgs,
        #[command(subcommand)]
        command: ChapCommand,
    },
    /// Portals (listening addresses).
    Portal {
        #[command(flatten)]
        conn: ClientArgs,
        #[command(subcommand)]
        command: PortalCommand,
    },
    /// ALUA target port groups: list them, change a state live.
    PortGroup {
        #[command(flatten)]
        conn: ClientArgs,
        #[command(subcommand)]
        command: PortGroupCommand,
    },
    /// Logged-in iSCSI sessions.
    Session {
        #[command(flatten)]
        conn: ClientArgs,
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// The daemon itself: version, uptime, paths, and its recent log.
    System {
        #[command(flatten)]
        conn: ClientArgs,
        #[command(subcommand)]
        command: SystemCommand,
    },
    /// Replicated devices (high availability): state, promotion, maintenance, split brain.
    Replica {
        /// The daemon's config file, to find its data directory (and so its socket).
        #[arg(long, global = true, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: ReplicaCommand,
    },
    /// Run a witness in the foreground: a voter without data that gives a two-node cluster
    /// its third vote. SIGTERM or SIGINT stops it.
    Witness(WitnessArgs),
    /// Full-screen text UI: dashboard with live I/O, devices, targets, hosts and groups,
    /// port groups, system. Keyboard-driven; press ? inside for the keys.
    Tui(TuiArgs),
    /// The management API on TCP: bearer tokens for `[[api.token]]`.
    Api {
        #[command(subcommand)]
        command: ApiCommand,
    },
    /// Print a shell completion script (e.g. `esos completions bash > /etc/bash_completion.d/esos`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How the management verbs reach the daemon and print; accepted anywhere on the line.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalClientArgs {
    /// API socket of the management verbs; also ESOS_SOCKET [default: <data_dir of
    /// --config>/esos.sock, else ./esos-data/esos.sock when it exists, else
    /// /var/lib/esos/esos.sock].
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Management verbs: print the API's JSON instead of tables and messages.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Options of the management verbs that only they take.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientArgs {
    /// The daemon's config file, to find its data directory (and so its socket).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate and report the change, but make none.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Allow removing or changing objects that logged-in sessions use (they are logged out).
    #[arg(long, global = true)]
    pub force: bool,
}

/// Options of `esos tui` (the socket comes from the global --socket).
#[derive(Debug, Clone, Default, Args)]
pub struct TuiArgs {
    /// The daemon's config file, to find its data directory (and so its socket).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List devices.
    List,
    /// Show one device.
    Show { name: String },
    /// Add a device: `esos device add file NAME --path P --size 10G`.
    Add(DeviceAddArgs),
    /// Remove a device (it must not be mapped).
    Remove { name: String },
    /// Grow a device live: `esos device resize NAME 20G` (file, blockdev, null; sessions
    /// get CAPACITY DATA HAS CHANGED).
    Resize { name: String, size: String },
}

#[derive(Debug, Clone, Args)]
pub struct DeviceAddArgs {
    /// Backend: file, blockdev, ram, null, cdrom, replicated.
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// Unique device name.
    pub name: String,
    /// File or block device path (file, blockdev).
    #[arg(long)]
    pub path: Option<String>,
    /// Size, e.g. 10G (file: created sparse or grown; required for ram and null).
    #[arg(long)]
    pub size: Option<String>,
    /// Logical block size: 512 or 4096.
    #[arg(long, value_name = "BYTES")]
    pub block_size: Option<u32>,
    /// Thin provisioning: UNMAP and WRITE SAME release storage.
    #[arg(long)]
    pub thin: bool,
    /// Export write-protected.
    #[arg(long)]
    pub read_only: bool,
    /// Write-through cache: every write durable before good status.
    #[arg(long)]
    pub write_through: bool,
    /// INQUIRY product identification (1-16 ASCII characters).
    #[arg(long)]
    pub product: Option<String>,
    /// Unit serial number (VPD 80h); generated when absent.
    #[arg(long)]
    pub serial: Option<String>,
    /// `replicated`: the local file or blockdev device holding this node's copy.
    #[arg(long, value_name = "DEVICE")]
    pub backing: Option<String>,
    /// `replicated`: most bytes per second a resync copies, e.g. 100M.
    #[arg(long, value_name = "SIZE")]
    pub resync_rate: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// List targets.
    List,
    /// Show one target with its groups and LUN maps.
    Show { name: String },
    /// Add a target. It starts disabled: map LUNs (`esos lun map`), then `esos target enable`.
    Add {
        /// Target iSCSI name (iqn.YYYY-MM.domain:...).
        name: String,
        #[arg(long)]
        alias: Option<String>,
        /// Portal address it is reachable on (repeatable) [default: every portal].
        #[arg(long = "portal", value_name = "ADDR")]
        portals: Vec<String>,
    },
    /// Remove a target with its groups and LUN maps (devices stay).
    Remove { name: String },
    /// Accept logins and show in discovery.
    Enable { name: String },
    /// Refuse logins and hide from discovery.
    Disable { name: String },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Add an initiator group to a target: `esos group add IQN NAME --initiator INIT...`.
    Add {
        target: String,
        name: String,
        /// Initiator iSCSI name (repeatable, at least one).
        #[arg(long = "initiator", value_name = "IQN", required = true)]
        initiators: Vec<String>,
    },
    /// Remove a group (its initiators lose their LUNs).
    Remove { target: String, name: String },
    /// Add initiators to a group.
    AddInitiator {
        target: String,
        group: String,
        #[arg(required = true, value_name = "IQN")]
        initiators: Vec<String>,
    },
    /// Remove initiators from a group.
    RemoveInitiator {
        target: String,
        group: String,
        #[arg(required = true, value_name = "IQN")]
        initiators: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LunCommand {
    /// Map a device: `esos lun map TARGET DEVICE [--lun N] [--group G]`.
    Map {
        target: String,
        device: String,
        /// LUN number [default: the lowest free one].
        #[arg(long)]
        lun: Option<u64>,
        /// Map for this initiator group [default: the target's default_luns].
        #[arg(long)]
        group: Option<String>,
    },
    /// Unmap a LUN: `esos lun unmap TARGET LUN [--group G]`.
    Unmap {
        target: String,
        lun: u64,
        #[arg(long)]
        group: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChapCommand {
    /// Set (replace) a target's CHAP. Secrets are read from the environment so they stay
    /// out of the process list: ESOS_CHAP_SECRET and ESOS_CHAP_MUTUAL_SECRET.
    Set {
        target: String,
        #[arg(long)]
        user: String,
        /// The secret (12-255 bytes) [default: $ESOS_CHAP_SECRET, which keeps it out of the
        /// process list].
        #[arg(long)]
        secret: Option<String>,
        /// Mutual CHAP: the name the target answers with.
        #[arg(long)]
        mutual_user: Option<String>,
        /// Mutual CHAP secret [default: $ESOS_CHAP_MUTUAL_SECRET when --mutual-user is given].
        #[arg(long, requires = "mutual_user")]
        mutual_secret: Option<String>,
    },
    /// Remove a target's CHAP.
    Clear { target: String },
}

#[derive(Debug, Subcommand)]
pub enum PortalCommand {
    /// Add a listening address (portals may need a restart; the daemon says so).
    Add {
        address: String,
        /// Target portal group tag [default: 1].
        #[arg(long)]
        group: Option<u32>,
    },
    /// Remove a listening address.
    Remove { address: String },
}

#[derive(Debug, Subcommand)]
pub enum PortGroupCommand {
    /// List target port groups with their access states.
    List,
    /// Change a group's access state: active-optimized, active-non-optimized, standby or
    /// unavailable (every initiator gets ASYMMETRIC ACCESS STATE CHANGED).
    Set { id: u16, state: String },
}

#[derive(Debug, Subcommand)]
pub enum ReplicaCommand {
    /// Role, data state, quorum, peers and sync progress of every replicated device (or one).
    Status { device: Option<String> },
    /// Make this node primary (refused unless up to date and quorate).
    Promote {
        device: String,
        /// Also when the quorum record names another primary or no up-to-date node (the
        /// first promotion of a new device): the administrator vouches for this copy.
        #[arg(long)]
        force: bool,
    },
    /// Stop serving as primary.
    Demote { device: String },
    /// Undo `down`: reconnect to the peers.
    Up { device: String },
    /// Demote, drop the links and refuse I/O (maintenance).
    Down { device: String },
    /// Start an online verify against every connected peer.
    Verify { device: String },
    /// End a split brain: keep this node's data (local) or the peer's (peer).
    Resolve {
        device: String,
        #[arg(long, value_parser = ["local", "peer"])]
        keep: String,
    },
}

/// `esos witness`.
#[derive(Debug, Clone, Args)]
pub struct WitnessArgs {
    /// The cluster name (`cluster.name` of the data nodes).
    #[arg(long, value_name = "NAME")]
    pub cluster: String,
    /// This witness's name (`cluster.witness.name` of the data nodes).
    #[arg(long, value_name = "NODE")]
    pub name: String,
    /// Address to listen on (`cluster.witness.address` of the data nodes).
    #[arg(long, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Where the witness keeps its votes (fsynced) [default: ./esos-witness].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List logged-in sessions with their negotiated parameters.
    List,
    /// Log a session out (by the ID of `session list`).
    Close { id: u64 },
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Version, PID, start time, uptime, config file, data directory and log filter.
    Info,
    /// The daemon's recent log events (kept in memory), oldest first.
    Log {
        /// Newest events to show (the daemon keeps at most 500).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Least severe level to show: error, warn, info, debug or trace.
        #[arg(long)]
        level: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file without serving it (exit 0 when valid).
    Check {
        file: PathBuf,
        /// Only validate the file itself; skip checking that device paths exist.
        #[arg(long)]
        no_preflight: bool,
    },
    /// Apply a config file to the running daemon: the difference is applied live and
    /// persisted. Idempotent: applying the running config changes nothing.
    Apply {
        file: PathBuf,
        #[command(flatten)]
        conn: ClientArgs,
    },
    /// Print the running config (comments intact).
    Export {
        #[command(flatten)]
        conn: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Print the SHA-256 digest of a token read from stdin (one line), or of a new random
    /// token with --generate; with --name, print a ready `[[api.token]]` entry.
    TokenHash(TokenHashArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TokenHashArgs {
    /// Generate a random 256-bit token and print it (once: only its digest is stored).
    #[arg(long)]
    pub generate: bool,
    /// Name of the `[[api.token]]` entry to print (letters, digits, '.', '_', '-').
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Role of the printed entry.
    #[arg(long, value_enum, default_value_t = TokenRole::ReadOnly, requires = "name")]
    pub role: TokenRole,
}

/// `[[api.token]].role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenRole {
    Admin,
    ReadOnly,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file (see docs/configuration.md).
    #[arg(long, short, value_name = "FILE", conflicts_with_all = ["lun", "target", "portal", "block_size", "write_through", "thin", "chap_user", "chap_secret", "data_dir"])]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub quick: QuickArgs,
}

/// Quick export: one target with LUNs 0, 1, ... in the order given.
#[derive(Debug, Clone, Default, Args)]
pub struct QuickArgs {
    /// LUN to export: PATH (file or block device), PATH:SIZE (file, created or grown),
    /// file:PATH[:SIZE], blockdev:PATH, ram:SIZE or null:SIZE. Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub lun: Vec<String>,
    /// Target IQN [default: iqn.2026-11.org.esos:quick].
    #[arg(long, value_name = "IQN")]
    pub target: Option<String>,
    /// Listening address ip:port; repeatable [default: 127.0.0.1:3260].
    #[arg(long, value_name = "ADDR")]
    pub portal: Vec<String>,
    /// Logical block size of every LUN: 512 or 4096.
    #[arg(long, value_name = "BYTES")]
    pub block_size: Option<u32>,
    /// Report and honour a write-through cache (every write durable before status).
    #[arg(long)]
    pub write_through: bool,
    /// Thin-provision every LUN: UNMAP and WRITE SAME release storage (SBC-3 4.7.3).
    #[arg(long)]
    pub thin: bool,
    /// CHAP user name initiators must log in with.
    #[arg(long, requires = "chap_secret")]
    pub chap_user: Option<String>,
    /// CHAP secret (12..=255 bytes). Visible to other local users in the process list:
    /// prefer a config file for production.
    #[arg(long, requires = "chap_user")]
    pub chap_secret: Option<String>,
    /// Directory for identity state [default: ./esos-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("esos").chain(args.iter().copied()))
    }

    #[test]
    fn no_arguments_is_the_default() {
        let cli = parse(&[]).unwrap();
        assert!(cli.command.is_none());
    }

    #[test]
    fn quick_export() {
        let cli = parse(&[
            "serve",
            "--portal",
            "127.0.0.1:3261",
            "--portal",
            "[::1]:3261",
            "--lun",
            "/tmp/a.img",
            "--lun",
            "null:1G",
            "--block-size",
            "4096",
            "--write-through",
            "--chap-user",
            "u",
            "--chap-secret",
            "0123456789ab",
            "--target",
            "iqn.2026-11.org.esos:t",
        ])
        .unwrap();
        let Some(Command::Serve(s)) = cli.command else {
            panic!("not serve")
        };
        assert!(s.config.is_none());
        assert_eq!(s.quick.portal, ["127.0.0.1:3261", "[::1]:3261"]);
        assert_eq!(s.quick.lun, ["/tmp/a.img", "null:1G"]);
        assert_eq!(s.quick.block_size, Some(4096));
        assert!(s.quick.write_through);
        assert_eq!(s.quick.chap_user.as_deref(), Some("u"));
        assert_eq!(s.quick.target.as_deref(), Some("iqn.2026-11.org.esos:t"));
    }

    #[test]
    fn config_conflicts_with_quick_options() {
        assert!(parse(&["serve", "--config", "a.toml", "--lun", "null:1G"]).is_err());
        assert!(parse(&["serve", "--config", "a.toml", "--log-level", "debug"]).is_ok());
    }

    #[test]
    fn chap_needs_both_halves() {
        assert!(parse(&["serve", "--lun", "null:1G", "--chap-user", "u"]).is_err());
        assert!(parse(&["serve", "--lun", "null:1G", "--chap-secret", "0123456789ab"]).is_err());
    }

    #[test]
    fn config_check() {
        let cli = parse(&["config", "check", "x.toml"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Config { command: ConfigCommand::Check { ref file, no_preflight: false } })
                if file == std::path::Path::new("x.toml")
        ));
    }

    #[test]
    fn management_verbs() {
        let cli = parse(&[
            "--socket",
            "/s",
            "device",
            "add",
            "file",
            "d1",
            "--path",
            "/x.img",
            "--size",
            "10G",
            "--thin",
            "--dry-run",
        ])
        .unwrap();
        assert_eq!(
            cli.client.socket.as_deref(),
            Some(std::path::Path::new("/s"))
        );
        let Some(Command::Device {
            conn,
            command: DeviceCommand::Add(a),
        }) = cli.command
        else {
            panic!("not device add")
        };
        assert!(conn.dry_run && !conn.force);
        assert_eq!((a.kind.as_str(), a.name.as_str()), ("file", "d1"));
        assert_eq!(a.size.as_deref(), Some("10G"));
        assert!(a.thin && !a.read_only);

        // Global options anywhere on the line.
        let cli = parse(&[
            "lun",
            "map",
            "iqn.2026-11.x:t",
            "d1",
            "--group",
            "g",
            "--json",
        ])
        .unwrap();
        assert!(cli.client.json);
        assert!(matches!(
            cli.command,
            Some(Command::Lun { command: LunCommand::Map { lun: None, group: Some(ref g), .. }, .. })
                if g == "g"
        ));
        assert!(matches!(
            parse(&["config", "apply", "f.toml", "--force"]).unwrap().command,
            Some(Command::Config { command: ConfigCommand::Apply { ref conn, .. } }) if conn.force
        ));
        assert!(
            parse(&["group", "add", "t", "g"]).is_err(),
            "needs an initiator"
        );
        assert!(parse(&["session", "close", "x"]).is_err());
        assert!(parse(&["completions", "bash"]).is_ok());
        // Serve keeps its own --config.
        assert!(parse(&["serve", "--config", "a.toml"]).is_ok());
    }

    #[test]
    fn tui_takes_the_socket_or_the_config() {
        let cli = parse(&["tui", "--socket", "/s"]).unwrap();
        assert_eq!(
            cli.client.socket.as_deref(),
            Some(std::path::Path::new("/s"))
        );
        assert!(matches!(
            cli.command,
            Some(Command::Tui(TuiArgs { config: None }))
        ));
        assert!(matches!(
            parse(&["tui", "--config", "e.toml"]).unwrap().command,
            Some(Command::Tui(TuiArgs { config: Some(ref c) })) if c == std::path::Path::new("e.toml")
        ));
        assert!(
            parse(&["tui", "--dry-run"]).is_err(),
            "the TUI has no dry run"
        );
    }

    #[test]
    fn help_documents_exit_codes() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("3  the daemon is not reachable"), "{help}");
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
