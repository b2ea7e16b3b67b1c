//! Harness for the esos end-to-end tests.
//!
//! Every test starts the real `esos` binary ([`daemon::Daemon`]) on a free loopback port and
//! drives it with real initiators: the libiscsi tools, qemu-img's iSCSI driver, and a small
//! raw iSCSI client ([`client`]) written here, independently of `esos-iscsi`, so that a codec
//! bug in the target is not mirrored by the same bug in the test. Everything the harness
//! creates (temp dirs, loop devices, mounts, child processes) is undone by a Drop guard, so a
//! failing test cleans up too. Nothing leaves the loopback interface.

pub mod client;
pub mod cmd;
pub mod cunit;
pub mod daemon;
pub mod data;
pub mod ha;
pub mod load;
pub mod loopdev;
pub mod net;
pub mod paths;
pub mod proc;
pub mod tgt;
pub mod tools;

pub use daemon::Daemon;
