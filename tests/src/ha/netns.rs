//! A private network per test: network namespaces joined by veth pairs to a bridge, with
//! fault injection on every node's link.
//!
//! ```text
//!   ns n1 (10.77.K.1) ─eth0══vn1─┐
//!   ns n2 (10.77.K.2) ─eth0══vn2─┤ br0 in ns br
//!   ns w  (10.77.K.3) ─eth0══vw──┤
//!   ns c  (10.77.K.100) ─eth0══vc─┘
//! ```
//!
//! Namespace names carry the test process' PID and a per-rig counter, so rigs of tests running
//! in parallel (and of other processes) never share a name; each rig has its own bridge
//! namespace, so the same addresses in two rigs never meet. `K` is still distinct per rig in
//! a process so that logs are unambiguous.
//!
//! The client (the history checker's workers) runs in the test process itself: a thread can
//! move into a network namespace with `setns(2)` ([`Rig::enter`]); the network namespace is a
//! per-thread attribute on Linux, so the other test threads are unaffected and the history
//! stays in the test's memory, with no helper binary and no serialisation of the history.
//!
//! Daemons run as `ip netns exec NS PROGRAM ...`; `ip netns exec` execs the program, so the
//! PID of the [`Child`] is the daemon's and SIGKILL/SIGSTOP reach it exactly. Dropping the
//! [`Rig`] kills every process it started (by PID), then deletes the namespaces, which takes
//! the veths and the bridge with them; this also runs while a test panics.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::cmd::{self, kill_pid, wait_timeout};

/// Longest any `ip`/`nft`/`tc` command of the rig may take.
const NET_CMD_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for a killed process to be reaped on teardown.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);
/// Name of the nftables table the fault injection uses in a node's namespace.
const FAULT_TABLE: &str = "esos_fault";

/// Rigs started by this process; gives each its own names and subnet.
static NEXT_RIG: AtomicU32 = AtomicU32::new(0);

/// A node of the rig.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    N1,
    N2,
    Witness,
    Client,
}

impl Node {
    pub const ALL: [Node; 4] = [Node::N1, Node::N2, Node::Witness, Node::Client];

    /// Short name: the namespace suffix and the bridge port `v<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Node::N1 => "n1",
            Node::N2 => "n2",
            Node::Witness => "w",
            Node::Client => "c",
        }
    }

    fn host(self) -> u8 {
        match self {
            Node::N1 => 1,
            Node::N2 => 2,
            Node::Witness => 3,
            Node::Client => 100,
        }
    }
}

/// One direction of a node's traffic with one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Packets the node receives from the address.
    From,
    /// Packets the node sends to the address.
    To,
}

/// A process the rig started in a namespace.
struct Proc {
    label: String,
    child: Child,
}

/// The namespaces, links and processes of one test.
pub struct Rig {
    prefix: String,
    /// Third octet of every address of this rig: 10.77.<subnet>.x.
    pub subnet: u8,
    procs: Mutex<Vec<Proc>>,
}

/// Why the rig could not be built.
#[derive(Debug)]
pub struct RigError(pub String);

impl std::fmt::Display for RigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RigError {}

fn run(program: &str, args: &[&str]) -> Result<cmd::Output, RigError> {
    match cmd::run(program, args, NET_CMD_TIMEOUT) {
        Ok(o) if o.success() => Ok(o),
        Ok(o) => Err(RigError(format!("{}: {}", o.command, o.describe()))),
        Err(e) => Err(RigError(e.to_string())),
    }
}

impl Rig {
    /// True when this process may build a rig: root, with `ip` available.
    pub fn available() -> Result<(), String> {
        if !crate::paths::is_root() {
            return Err("network namespaces need root".into());
        }
        run("ip", &["-V"]).map(|_| ()).map_err(|e| e.0)
    }

    /// Builds the bridge namespace and the four node namespaces, addresses them and brings
    /// every link up. A half-built rig is torn down before the error is returned.
    pub fn new() -> Result<Rig, RigError> {
        let n = NEXT_RIG.fetch_add(1, Ordering::Relaxed);
        let rig = Rig {
            prefix: format!("esos{}-{n}", std::process::id()),
            subnet: u8::try_from(n % 250 + 1).unwrap_or(1),
            procs: Mutex::new(Vec::new()),
        };
        rig.build()?;
        Ok(rig)
    }

    fn build(&self) -> Result<(), RigError> {
        let br = self.bridge_ns();
        run("ip", &["netns", "add", &br])?;
        run("ip", &["-n", &br, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &[
                "-n",
                &br,
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "stp_state",
                "0",
            ],
        )?;
        // No forwarding delay: a port takes traffic at once after it comes up again.
        run(
            "ip",
            &[
                "-n",
                &br,
                "link",
                "set",
                "br0",
                "type",
                "bridge",
                "forward_delay",
                "0",
            ],
        )?;
        run("ip", &["-n", &br, "link", "set", "br0", "up"])?;
        for node in Node::ALL {
            let ns = self.ns(node);
            let port = Self::port(node);
            run("ip", &["netns", "add", &ns])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &[
                    "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
            )?;
            run("ip", &["-n", &br, "link", "set", &port, "master", "br0"])?;
            run("ip", &["-n", &br, "link", "set", &port, "up"])?;
            let cidr = format!("{}/24", self.addr(node));
            run("ip", &["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    fn bridge_ns(&self) -> String {
        format!("{}-br", self.prefix)
    }

    fn port(node: Node) -> String {
        format!("v{}", node.name())
    }

    /// The namespace of `node`.
    pub fn ns(&self, node: Node) -> String {
        format!("{}-{}", self.prefix, node.name())
    }

    /// The address of `node` on the rig's bridge.
    pub fn addr(&self, node: Node) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, node.host())
    }

    /// Moves the calling thread into `node`'s network namespace: sockets it opens from now
    /// on live there. Only this thread moves.
    pub fn enter(&self, node: Node) -> std::io::Result<()> {
        enter_ns(&self.ns(node))
    }

    /// Runs `f` on a new thread inside `node`'s namespace and returns its result.
    pub fn in_ns<T: Send + 'static>(
        &self,
        node: Node,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<T> {
        let ns = self.ns(node);
        std::thread::spawn(move || -> std::io::Result<T> {
            enter_ns(&ns)?;
            Ok(f())
        })
        .join()
        .map_err(|_| std::io::Error::other("thread inside the namespace panicked"))?
    }

    /// Starts `program args` inside `node`'s namespace with stdout and stderr appended to
    /// `log`; returns its PID (the program's own: `ip netns exec` execs it). The rig keeps
    /// the child and kills it on drop unless [`Rig::wait_exit`] reaped it first.
    pub fn spawn(
        &self,
        node: Node,
        label: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<u32, RigError> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| RigError(format!("open {}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| RigError(format!("dup log: {e}")))?;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(node)])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .spawn()
            .map_err(|e| RigError(format!("spawn {label}: {e}")))?;
        let pid = child.id();
        self.procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Proc {
                label: label.to_owned(),
                child,
            });
        Ok(pid)
    }

    /// True while the process `pid` started by this rig has not exited.
    pub fn is_running(&self, pid: u32) -> bool {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        procs
            .iter_mut()
            .find(|p| p.child.id() == pid)
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    /// Sends `signal` to a process this rig started (never to any other PID).
    pub fn signal(&self, pid: u32, signal: libc::c_int) {
        let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            procs.iter().any(|p| p.child.id() == pid),
            "pid {pid} was not started by this rig"
        );
        kill_pid(pid, signal);
    }

    /// Waits at most `timeout` for `pid` to exit and reaps it; its exit code (`None`: killed
    /// by a signal, or still running after the timeout, in which case it stays owned).
    pub fn wait_exit(&self, pid: u32, timeout: Duration) -> Option<Option<i32>> {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        let i = procs.iter().position(|p| p.child.id() == pid)?;
        let status = wait_timeout(&mut procs[i].child, timeout)?;
        procs.remove(i);
        Some(status.code())
    }

    /// SIGKILL and reap.
    pub fn kill(&self, pid: u32) {
        self.signal(pid, libc::SIGKILL);
        let _ = self.wait_exit(pid, REAP_TIMEOUT);
    }

    // ---- faults -------------------------------------------------------------------------

    /// Takes `node`'s link down (its bridge port: the node's eth0 loses carrier) or up again.
    pub fn link(&self, node: Node, up: bool) -> Result<(), RigError> {
        let state = if up { "up" } else { "down" };
        run(
            "ip",
            &[
                "-n",
                &self.bridge_ns(),
                "link",
                "set",
                &Self::port(node),
                state,
            ],
        )
        .map(|_| ())
    }

    /// Drops, inside `node`'s namespace, the packets it receives from (or sends to) `peer`.
    pub fn drop_traffic(&self, node: Node, dir: Direction, peer: Node) -> Result<(), RigError> {
        let ns = self.ns(node);
        let (hook, field) = match dir {
            Direction::From => ("input", "saddr"),
            Direction::To => ("output", "daddr"),
        };
        let chain = format!("{hook}_drop");
        let peer_addr = self.addr(peer).to_string();
        let nft = |args: &[&str]| -> Result<(), RigError> {
            let mut a = vec!["netns", "exec", &ns, "nft"];
            a.extend_from_slice(args);
            run("ip", &a).map(|_| ())
        };
        nft(&["add", "table", "inet", FAULT_TABLE])?;
        let spec = format!("{{ type filter hook {hook} priority 0 ; policy accept ; }}");
        nft(&["add", "chain", "inet", FAULT_TABLE, &chain, &spec])?;
        nft(&[
            "add",
            "rule",
            "inet",
            FAULT_TABLE,
            &chain,
            "ip",
            field,
            &peer_addr,
            "drop",
        ])
    }

    /// Removes every drop rule of `node`.
    pub fn heal_traffic(&self, node: Node) -> Result<(), RigError> {
        let ns = self.ns(node);
        // Deleting a table that does not exist fails; nothing to heal then.
        let _ = cmd::run(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "nft",
                "delete",
                "table",
                "inet",
                FAULT_TABLE,
            ],
            NET_CMD_TIMEOUT,
        );
        Ok(())
    }

    /// Limits what `node` sends to `rate` (tc syntax, e.g. `"2mbit"`) with a token bucket.
    pub fn slow(&self, node: Node, rate: &str) -> Result<(), RigError> {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns(node),
                "tc",
                "qdisc",
                "replace",
                "dev",
                "eth0",
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "32kbit",
                "latency",
                "400ms",
            ],
        )
        .map(|_| ())
    }

    /// Removes the token bucket of `node`.
    pub fn unslow(&self, node: Node) -> Result<(), RigError> {
        let _ = cmd::run(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns(node),
                "tc",
                "qdisc",
                "del",
                "dev",
                "eth0",
                "root",
            ],
            NET_CMD_TIMEOUT,
        );
        Ok(())
    }

    fn teardown(&mut self) {
        let procs = std::mem::take(&mut *self.procs.lock().unwrap_or_else(|e| e.into_inner()));
        for mut p in procs {
            if matches!(p.child.try_wait(), Ok(None)) {
                // A stopped process does not die of SIGKILL until continued on some kernels'
                // accounting of the wait; SIGCONT first makes the reap prompt.
                kill_pid(p.child.id(), libc::SIGKILL);
                kill_pid(p.child.id(), libc::SIGCONT);
                if wait_timeout(&mut p.child, REAP_TIMEOUT).is_none() {
                    eprintln!("esos-e2e: {} (pid {}) not reaped", p.label, p.child.id());
                }
            }
        }
        for node in Node::ALL {
            let _ = cmd::run("ip", &["netns", "del", &self.ns(node)], NET_CMD_TIMEOUT);
        }
        let _ = cmd::run("ip", &["netns", "del", &self.bridge_ns()], NET_CMD_TIMEOUT);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Moves the calling thread into the named network namespace (`/run/netns/NAME`).
pub fn enter_ns(name: &str) -> std::io::Result<()> {
    let f = File::open(Path::new("/run/netns").join(name))?;
    // SAFETY: `f` is an open namespace file for the duration of the call; setns(2) with
    // CLONE_NEWNET changes only the calling thread's network namespace and touches no memory
    // of ours.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener, TcpStream};

    fn rig() -> Option<Rig> {
        if let Err(why) = Rig::available() {
            eprintln!("SKIPPED: {why}");
            return None;
        }
        Some(Rig::new().expect("rig"))
    }

    fn reachable(rig: &Rig, from: Node, to: SocketAddr) -> bool {
        rig.in_ns(from, move || {
            TcpStream::connect_timeout(&to, Duration::from_millis(700)).is_ok()
        })
        .unwrap()
    }

    #[test]
    fn nodes_reach_each_other_and_faults_cut_them() {
        let Some(rig) = rig() else { return };
        let addr = SocketAddr::from((rig.addr(Node::N1), 7000));
        // A listener in n1, held by a thread that stays in n1.
        let (tx, rx) = std::sync::mpsc::channel();
        let ns = rig.ns(Node::N1);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done2 = done.clone();
        let holder = std::thread::spawn(move || {
            enter_ns(&ns).unwrap();
            let l = TcpListener::bind(addr).unwrap();
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            // Accept and drop connections for a bounded time.
            let end = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < end && !done2.load(Ordering::Relaxed) {
                let _ = l.accept();
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        rx.recv().unwrap();
        assert!(reachable(&rig, Node::Client, addr));
        // Never probed from the test's own namespace: the rig's addresses are private and
        // must not leave the machine.

        rig.link(Node::N1, false).unwrap();
        assert!(!reachable(&rig, Node::Client, addr));
        rig.link(Node::N1, true).unwrap();
        assert!(reachable(&rig, Node::Client, addr));

        rig.drop_traffic(Node::N1, Direction::From, Node::Client)
            .unwrap();
        assert!(!reachable(&rig, Node::Client, addr));
        assert!(reachable(&rig, Node::N2, addr));
        rig.heal_traffic(Node::N1).unwrap();
        assert!(reachable(&rig, Node::Client, addr));

        rig.slow(Node::N1, "1mbit").unwrap();
        assert!(reachable(&rig, Node::Client, addr));
        rig.unslow(Node::N1).unwrap();
        done.store(true, Ordering::Relaxed);
        drop(rig);
        let _ = holder.join();
    }

    #[test]
    fn processes_run_inside_and_die_with_the_rig() {
        let Some(rig) = rig() else { return };
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let pid = rig
            .spawn(
                Node::N2,
                "sleep",
                Path::new("sleep"),
                &["60".into()],
                &[],
                &log,
            )
            .unwrap();
        assert!(rig.is_running(pid));
        rig.signal(pid, libc::SIGSTOP);
        rig.signal(pid, libc::SIGCONT);
        assert!(rig.is_running(pid));
        let ns = rig.ns(Node::N2);
        drop(rig);
        assert!(!Path::new("/run/netns").join(ns).exists());
    }
}
