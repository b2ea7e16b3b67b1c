//! Command line: `esos` (built-in default), `esos serve`, `esos config check`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "esos", version, about = "esos iSCSI SAN target server")]
pub struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive list).
    /// Overrides RUST_LOG and the config's server.log_level.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a config file, or quickly export files/devices given with --lun.
    Serve(ServeArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
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
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
