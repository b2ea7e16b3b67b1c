//! esos nodes in a [`Rig`]: a plain single node, or a replicated pair with a witness, with
//! the configuration of docs/ha.md, started, killed, paused and restarted by PID.
//!
//! Each node keeps its directory (config, data dir with the API socket, backing image, log)
//! for the whole test, so a restart finds its metadata and its data. The management CLI runs
//! in the test's own namespace: it reaches the daemon through the unix socket in the node's
//! data dir, which is a file and so is not confined to a network namespace.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::netns::{Node, Rig};
use super::workload::WorkloadConfig;
use crate::cmd;
use crate::paths;

/// The target every node presents (the same on both, so the initiator sees one target).
pub const TARGET: &str = "iqn.2026-12.org.esos.test:ha";
/// iSCSI portal port of every node.
pub const ISCSI_PORT: u16 = 3260;
/// Cluster listener port (replication and quorum) of every node and of the witness.
pub const CLUSTER_PORT: u16 = 7788;
/// Name of the cluster in the configs.
pub const CLUSTER_NAME: &str = "pair1";
/// Name of the replicated device (and of the plain file device of a single node).
pub const DEVICE: &str = "db";
/// Longest wait for a started daemon's portal (or the witness' listener).
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait after SIGTERM for a clean stop.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a management command may take.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest one `esos replica status` poll may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the status printed with a failure may take (a stopped node never answers).
const STATUS_DIAG_TIMEOUT: Duration = Duration::from_secs(3);

/// What the cluster is made of.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// A replicated pair plus a witness; `false`: one plain node (n1) serving a file LU.
    pub replicated: bool,
    pub auto_promote: bool,
    pub lease_ms: u64,
    /// How long replicated I/O waits for the quorum or the peer before failing; below the
    /// workers' socket timeout, so they see the failure rather than a silence.
    pub io_timeout_ms: u64,
    /// Size of every node's backing image.
    pub device_bytes: u64,
    /// `resync_rate` of the replicated device (e.g. "100M"), if any.
    pub resync_rate: Option<String>,
}

impl ClusterSpec {
    pub fn pair() -> Self {
        ClusterSpec {
            replicated: true,
            auto_promote: true,
            lease_ms: 1500,
            io_timeout_ms: 3000,
            device_bytes: 256 << 20,
            resync_rate: None,
        }
    }

    pub fn single() -> Self {
        ClusterSpec {
            replicated: false,
            device_bytes: 64 << 20,
            ..ClusterSpec::pair()
        }
    }
}

/// The esos processes of a test and the network they live in.
pub struct Cluster {
    pub spec: ClusterSpec,
    pids: Mutex<Vec<(Node, u32)>>,
    // Dropped before `dir`: processes die before their files go.
    pub rig: Rig,
    dir: TempDir,
}

impl Cluster {
    /// Builds the network and writes every node's config; starts nothing.
    pub fn new(spec: ClusterSpec) -> Result<Cluster, String> {
        Rig::available()?;
        let rig = Rig::new().map_err(|e| e.to_string())?;
        let dir = tempfile::Builder::new()
            .prefix("esos-ha-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let c = Cluster {
            spec,
            pids: Mutex::new(Vec::new()),
            rig,
            dir,
        };
        for node in c.data_nodes() {
            std::fs::create_dir_all(c.node_dir(node).join("data")).map_err(|e| e.to_string())?;
            std::fs::write(c.config_path(node), c.config_toml(node)).map_err(|e| e.to_string())?;
        }
        std::fs::create_dir_all(c.node_dir(Node::Witness)).map_err(|e| e.to_string())?;
        Ok(c)
    }

    /// The nodes that serve the LU.
    pub fn data_nodes(&self) -> Vec<Node> {
        if self.spec.replicated {
            vec![Node::N1, Node::N2]
        } else {
            vec![Node::N1]
        }
    }

    pub fn node_dir(&self, node: Node) -> PathBuf {
        self.dir.path().join(node.name())
    }

    pub fn config_path(&self, node: Node) -> PathBuf {
        self.node_dir(node).join("esos.toml")
    }

    pub fn log_path(&self, node: Node) -> PathBuf {
        self.node_dir(node).join("esos.log")
    }

    /// The node's backing image (the local copy of a replicated device).
    pub fn image(&self, node: Node) -> PathBuf {
        self.node_dir(node).join("disk.img")
    }

    pub fn socket(&self, node: Node) -> PathBuf {
        self.node_dir(node).join("data").join("esos.sock")
    }

    pub fn portal(&self, node: Node) -> SocketAddr {
        SocketAddr::from((self.rig.addr(node), ISCSI_PORT))
    }

    /// Every data node's portal, n1 first: the order of [`super::history::Op::portal`].
    pub fn portals(&self) -> Vec<SocketAddr> {
        self.data_nodes()
            .into_iter()
            .map(|n| self.portal(n))
            .collect()
    }

    /// The node whose portal has index `i` in [`Cluster::portals`].
    pub fn node_of_portal(&self, i: usize) -> Node {
        self.data_nodes()[i]
    }

    fn member_toml(&self, node: Node, tag: u16) -> String {
        format!(
            "[[cluster.member]]\nname = \"{}\"\naddress = \"{}:{CLUSTER_PORT}\"\nportal_groups = [{tag}]\n",
            node.name(),
            self.rig.addr(node)
        )
    }

    /// The node's esos.toml (docs/ha.md; both nodes carry the same `[cluster]`).
    pub fn config_toml(&self, node: Node) -> String {
        let dir = self.node_dir(node);
        let tag = if node == Node::N2 { 2 } else { 1 };
        let mut t = format!(
            "[server]\ndata_dir = \"{}/data\"\n\n[[server.portal]]\naddress = \"{}\"\ngroup = {tag}\n\n",
            dir.display(),
            self.portal(node)
        );
        let backing = if self.spec.replicated {
            t.push_str(&format!(
                "[cluster]\nname = \"{CLUSTER_NAME}\"\nnode = \"{}\"\nauto_promote = {}\nlease_ms = {}\nio_timeout_ms = {}\n",
                node.name(),
                self.spec.auto_promote,
                self.spec.lease_ms,
                self.spec.io_timeout_ms
            ));
            t.push_str(&self.member_toml(Node::N1, 1));
            t.push_str(&self.member_toml(Node::N2, 2));
            t.push_str(&format!(
                "[cluster.witness]\nname = \"w\"\naddress = \"{}:{CLUSTER_PORT}\"\n\n",
                self.rig.addr(Node::Witness)
            ));
            "disk"
        } else {
            DEVICE
        };
        t.push_str(&format!(
            "[[device]]\nname = \"{backing}\"\ntype = \"file\"\npath = \"{}\"\nsize = \"{}M\"\n\n",
            self.image(node).display(),
            self.spec.device_bytes >> 20
        ));
        if self.spec.replicated {
            t.push_str(&format!(
                "[[device]]\nname = \"{DEVICE}\"\ntype = \"replicated\"\nbacking = \"disk\"\n"
            ));
            if let Some(r) = &self.spec.resync_rate {
                t.push_str(&format!("resync_rate = \"{r}\"\n"));
            }
            t.push('\n');
        }
        t.push_str(&format!(
            "[[target]]\nname = \"{TARGET}\"\ndefault_luns = [{{ lun = 0, device = \"{DEVICE}\" }}]\n"
        ));
        t
    }

    fn set_pid(&self, node: Node, pid: Option<u32>) {
        let mut pids = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        pids.retain(|(n, _)| *n != node);
        if let Some(p) = pid {
            pids.push((node, p));
        }
    }

    /// The PID of the node's running daemon (or witness).
    pub fn pid(&self, node: Node) -> Option<u32> {
        let pids = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        pids.iter().find(|(n, _)| *n == node).map(|(_, p)| *p)
    }

    /// Starts the node's daemon and waits until its portal accepts TCP.
    pub fn start(&self, node: Node) {
        assert!(self.pid(node).is_none(), "{node:?} already runs");
        let args = vec![
            "serve".to_owned(),
            "--config".to_owned(),
            self.config_path(node).display().to_string(),
        ];
        let env = vec![(
            "RUST_LOG".to_owned(),
            std::env::var("ESOS_E2E_LOG").unwrap_or_else(|_| "info".into()),
        )];
        let pid = self
            .rig
            .spawn(
                node,
                node.name(),
                &paths::esos_bin(),
                &args,
                &env,
                &self.log_path(node),
            )
            .unwrap_or_else(|e| panic!("start {node:?}: {e}"));
        self.set_pid(node, Some(pid));
        eprintln!("esos-ha: started {node:?} (pid {pid})");
        self.wait_listener(node, self.portal(node), pid);
    }

    /// Starts the witness (`esos witness`) and waits until it listens.
    pub fn start_witness(&self) {
        let node = Node::Witness;
        let listen = SocketAddr::from((self.rig.addr(node), CLUSTER_PORT));
        let args: Vec<String> = [
            "witness",
            "--cluster",
            CLUSTER_NAME,
            "--name",
            "w",
            "--listen",
            &listen.to_string(),
            "--data-dir",
            &self.node_dir(node).display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let pid = self
            .rig
            .spawn(
                node,
                "witness",
                &paths::esos_bin(),
                &args,
                &[(
                    "RUST_LOG".to_owned(),
                    std::env::var("ESOS_E2E_LOG").unwrap_or_else(|_| "info".into()),
                )],
                &self.log_path(node),
            )
            .unwrap_or_else(|e| panic!("start witness: {e}"));
        self.set_pid(node, Some(pid));
        self.wait_listener(node, listen, pid);
    }

    fn wait_listener(&self, node: Node, addr: SocketAddr, pid: u32) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            let up = self
                .rig
                .in_ns(node, move || {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
                })
                .unwrap_or(false);
            if up {
                return;
            }
            if !self.rig.is_running(pid) {
                panic!(
                    "{node:?} exited before listening on {addr}\n{}",
                    self.log(node)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{node:?} does not listen on {addr} after {START_TIMEOUT:?}\n{}",
            self.log(node)
        );
    }

    /// SIGKILL of the node's process.
    pub fn kill(&self, node: Node) {
        let pid = self
            .pid(node)
            .unwrap_or_else(|| panic!("{node:?} is not running"));
        self.rig.kill(pid);
        self.set_pid(node, None);
        eprintln!("esos-ha: killed {node:?} (pid {pid})");
    }

    /// SIGTERM and a bounded wait for a clean exit; returns the exit code.
    pub fn stop(&self, node: Node) -> Option<i32> {
        let pid = self.pid(node)?;
        self.rig.signal(pid, libc::SIGCONT);
        self.rig.signal(pid, libc::SIGTERM);
        let code = match self.rig.wait_exit(pid, STOP_TIMEOUT) {
            Some(code) => code,
            None => {
                self.rig.kill(pid);
                panic!(
                    "{node:?} ignored SIGTERM for {STOP_TIMEOUT:?}\n{}",
                    self.log(node)
                );
            }
        };
        self.set_pid(node, None);
        code
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) of the node's process.
    pub fn pause(&self, node: Node, stop: bool) {
        let pid = self
            .pid(node)
            .unwrap_or_else(|| panic!("{node:?} is not running"));
        self.rig
            .signal(pid, if stop { libc::SIGSTOP } else { libc::SIGCONT });
    }

    /// Runs `esos --socket <node's socket> ARGS` from the test's namespace.
    pub fn esos(&self, node: Node, args: &[&str]) -> cmd::Output {
        let bin = paths::esos_bin();
        let socket = self.socket(node).display().to_string();
        let mut a = vec!["--socket", socket.as_str()];
        a.extend_from_slice(args);
        match cmd::run(&bin.display().to_string(), &a, CLI_TIMEOUT) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        }
    }

    /// `esos replica status DEVICE --json` of the node: its entry of `replicas`.
    pub fn replica_status(&self, node: Node) -> Result<serde_json::Value, String> {
        let socket = self.socket(node).display().to_string();
        let bin = paths::esos_bin().display().to_string();
        let args = [
            "--socket",
            socket.as_str(),
            "replica",
            "status",
            DEVICE,
            "--json",
        ];
        // A stopped or wedged node is an answer too ("no status"), not a test failure.
        let o = cmd::run(&bin, &args, STATUS_TIMEOUT).map_err(|e| e.to_string())?;
        if !o.success() {
            return Err(format!("{}\n{}", o.command, o.describe()));
        }
        let v: serde_json::Value =
            serde_json::from_str(&o.stdout).map_err(|e| format!("{e}: {}", o.stdout))?;
        v["replicas"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["device"] == DEVICE).cloned())
            .ok_or_else(|| format!("no replica {DEVICE} in {}", o.stdout))
    }

    /// Polls the node's replica status until `pred` holds, at most `timeout`; the last
    /// status (or error) when it never did.
    pub fn wait_status(
        &self,
        node: Node,
        timeout: Duration,
        mut pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, String> {
        let deadline = Instant::now() + timeout;
        let mut last = Err("not polled".to_owned());
        while Instant::now() < deadline {
            last = self.replica_status(node);
            if let Ok(v) = &last
                && pred(v)
            {
                return last;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "condition not met after {timeout:?}; last status: {last:?}"
        ))
    }

    /// Waits until `node` reports itself primary with a valid lease.
    pub fn wait_primary(&self, node: Node, timeout: Duration) -> Result<serde_json::Value, String> {
        self.wait_status(node, timeout, |s| {
            s["role"] == "primary" && s["lease_valid"] != false
        })
    }

    /// Which data node currently reports itself primary, if any.
    pub fn primary(&self) -> Option<Node> {
        self.data_nodes().into_iter().find(|&n| {
            self.pid(n).is_some() && self.replica_status(n).is_ok_and(|s| s["role"] == "primary")
        })
    }

    /// A workload on every data node's portal from the client namespace.
    pub fn workload_config(&self, seed: u64) -> WorkloadConfig {
        let mut w = WorkloadConfig::new(self.portals(), TARGET, seed);
        w.netns = Some(self.rig.ns(Node::Client));
        w
    }

    /// The node's log so far.
    pub fn log(&self, node: Node) -> String {
        let p = self.log_path(node);
        format!(
            "--- {node:?} log ({}) ---\n{}--- end of {node:?} log ---",
            p.display(),
            std::fs::read_to_string(&p).unwrap_or_default()
        )
    }

    /// `esos replica status` of every running data node, for failure messages.
    pub fn statuses(&self) -> String {
        self.data_nodes()
            .into_iter()
            .filter(|&n| self.pid(n).is_some())
            .map(|n| {
                // Never panics (it runs from Drop while a test unwinds), and a stopped node
                // only costs a short timeout.
                let socket = self.socket(n).display().to_string();
                let bin = paths::esos_bin().display().to_string();
                let args = ["--socket", socket.as_str(), "replica", "status", DEVICE];
                match cmd::run(&bin, &args, STATUS_DIAG_TIMEOUT) {
                    Ok(o) => format!("--- {n:?} status ---\n{}{}", o.stdout, o.stderr),
                    Err(e) => format!("--- {n:?} status ---\n{e}"),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every node's log, then every running node's replica status.
    pub fn logs(&self) -> String {
        let mut nodes = self.data_nodes();
        if self.spec.replicated {
            nodes.push(Node::Witness);
        }
        let mut all = nodes.iter().map(|&n| self.log(n)).collect::<Vec<_>>();
        if self.spec.replicated {
            all.push(self.statuses());
        }
        all.join("\n")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("ESOS_E2E_SHOW_LOG").is_some() {
            eprintln!("{}", self.logs());
        }
        // The rig kills every process and removes the namespaces when it drops.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_config_has_the_contract_sections() {
        if Rig::available().is_err() {
            return;
        }
        let c = Cluster::new(ClusterSpec::pair()).unwrap();
        let t = c.config_toml(Node::N2);
        let v: toml::Value = toml::from_str(&t).unwrap();
        assert_eq!(v["cluster"]["node"].as_str(), Some("n2"));
        assert_eq!(v["cluster"]["member"].as_array().unwrap().len(), 2);
        assert_eq!(v["device"][1]["type"].as_str(), Some("replicated"));
        assert_eq!(v["server"]["portal"][0]["group"].as_integer(), Some(2));
        let single = Cluster::new(ClusterSpec::single()).unwrap();
        let v: toml::Value = toml::from_str(&single.config_toml(Node::N1)).unwrap();
        assert!(v.get("cluster").is_none());
    }
}
