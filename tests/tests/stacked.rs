//! A stacked device served like a leaf: a pass-through layer over a RAM or file device,
//! exported over iSCSI on loopback and driven by libiscsi, qemu-img and the harness' client.
//!
//! The daemon's config has no stacked device kind yet, so the server runs in this process:
//! `Device::Stacked(PassThrough(leaf))` in an `esos_scsi::LogicalUnit`, mapped in an
//! `esos_iscsi` server on 127.0.0.1:0 (assembled as `crates/esos/src/graph.rs` does).
//! The ENOSPC test needs root (it mounts a tiny tmpfs) and is skipped with the reason
//! otherwise.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use esos_block::{Backend, Device, DeviceSpec, PassThrough};
use esos_e2e::client::{Conn, LoginOptions};
use esos_e2e::loopdev::Mount;
use esos_e2e::tools::{self, QemuIscsi};
use esos_e2e::{data, paths};
use esos_iscsi::params::TargetParams;
use esos_iscsi::server::{Limits, PortalConfig, Server, ServerConfig, TargetConfig};
use esos_scsi::{Identity, LogicalUnit, LuSettings, LunMap};

const TARGET: &str = "iqn.2026-01.org.esos.e2e:stacked";
/// Longest the in-process server may take to stop once asked.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// An esos iSCSI server in this process, serving one LU at LUN 0; stopped when dropped.
struct InProcess {
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
    addr: SocketAddr,
}

impl InProcess {
    fn serve(device: Device, thin: bool) -> InProcess {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        const UUID: [u8; 16] = *b"esos-e2e-stacked";
        let settings = LuSettings {
            thin,
            ..LuSettings::disk(Identity {
                vendor: "ESOS".into(),
                product: "STACKED".into(),
                revision: "0001".into(),
                serial: "E2E-STACKED".into(),
                uuid: UUID,
                naa: esos_lu::identity::naa_from_uuid(&UUID),
            })
        };
        let lu = LogicalUnit::new(device, settings);
        let config = ServerConfig {
            portals: vec![PortalConfig {
                addr: "127.0.0.1:0".parse().unwrap(),
                group_tag: 1,
            }],
            targets: vec![TargetConfig {
                name: TARGET.into(),
                alias: None,
                enabled: true,
                portals: Vec::new(),
                groups: Vec::new(),
                default_luns: Some(LunMap::new(vec![(0, lu)])),
                chap: None,
            }],
            discovery_chap: None,
            params: TargetParams::default(),
            limits: Limits::default(),
        };
        let server = runtime.block_on(Server::bind(config)).unwrap();
        let addr = server.local_addrs()[0];
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = runtime.spawn(server.run(async {
            let _ = stopped.await;
        }));
        InProcess {
            runtime: Some(runtime),
            stop: Some(stop),
            served: Some(served),
            addr,
        }
    }

    fn url(&self) -> String {
        format!("iscsi://{}/{TARGET}/0", self.addr)
    }

    fn qemu(&self) -> QemuIscsi {
        QemuIscsi {
            portal: self.addr.to_string(),
            target: TARGET.into(),
            lun: 0,
            header_digest: false,
            initiator: None,
            chap: None,
        }
    }

    fn login(&self) -> Conn {
        let mut c = Conn::login(self.addr, &LoginOptions::normal(TARGET)).unwrap();
        c.clear_unit_attention(0).unwrap();
        c
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let (Some(rt), Some(served)) = (self.runtime.take(), self.served.take()) {
            let _ = rt.block_on(async { tokio::time::timeout(STOP_TIMEOUT, served).await });
            rt.shutdown_timeout(STOP_TIMEOUT);
        }
    }
}

fn open(backend: Backend) -> Device {
    Device::open(&DeviceSpec {
        backend,
        block_size: 512,
        read_only: false,
        rotational: None,
    })
    .unwrap()
}

fn stacked(leaf: Device) -> Device {
    Device::Stacked(Arc::new(PassThrough::new(leaf)))
}

#[test]
fn passthrough_over_ram_answers_libiscsi_and_round_trips_data() {
    let size: u64 = 32 << 20;
    let s = InProcess::serve(stacked(open(Backend::Ram { size_bytes: size })), false);
    let inq = tools::libiscsi("iscsi-inq", &s.url(), None);
    assert!(inq.success(), "{}", inq.describe());
    assert_eq!(tools::field(&inq.stdout, "Vendor"), Some("ESOS"));
    assert_eq!(tools::field(&inq.stdout, "Product"), Some("STACKED"));
    assert_eq!(
        tools::field(&inq.stdout, "Peripheral Device Type"),
        Some("DIRECT_ACCESS")
    );
    let rc = tools::libiscsi("iscsi-readcapacity16", &s.url(), None);
    assert!(rc.success(), "{}", rc.describe());
    assert_eq!(
        tools::field(&rc.stdout, "Total size"),
        Some(size.to_string().as_str()),
        "{}",
        rc.stdout
    );
    // The harness' own client: FUA and plain writes read back, then SYNCHRONIZE CACHE.
    let mut c = s.login();
    for (lba, fua) in [
        (0u32, true),
        (4096, false),
        ((size / 512) as u32 - 128, true),
    ] {
        let payload = data::pattern(data::seed("stacked ram") + u64::from(lba), 64 << 10);
        let w = c.write10(0, lba, 128, &payload, fua).unwrap();
        assert!(w.is_good(), "write at {lba}: {w:?}");
        let r = c.read10(0, lba, 128, 512).unwrap();
        assert!(r.is_good(), "read at {lba}: {r:?}");
        assert!(r.data == payload, "data at LBA {lba} differs");
    }
    assert!(c.synchronize_cache10(0).unwrap().is_good());
    // Out of range is reported as by a leaf.
    let r = c.read10(0, (size / 512) as u32, 1, 512).unwrap();
    assert_eq!(r.sense_triple(), Some((0x5, 0x21, 0x00)), "{r:?}");
    c.logout().unwrap();
}

#[test]
fn passthrough_over_file_round_trips_through_qemu_img() {
    let size: u64 = 64 << 20;
    let dir = tempfile::Builder::new()
        .prefix("esos-e2e-stacked-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("lower.img");
    let sha = {
        let s = InProcess::serve(
            stacked(open(Backend::File {
                path: path.clone(),
                size_bytes: Some(size),
            })),
            true,
        );
        tools::qemu_round_trip(&s.qemu(), dir.path(), size, data::seed("stacked file"))
    };
    // What qemu wrote went through the layer into the file below.
    assert_eq!(data::sha256(&path), sha);
}

/// Why the ENOSPC test cannot run here, if it cannot.
fn mount_unavailable() -> Option<String> {
    if !paths::is_root() {
        return Some("not running as root (mounting a tmpfs needs root)".into());
    }
    if !Path::new("/bin/mount").exists() && !Path::new("/usr/bin/mount").exists() {
        return Some("mount(8) is not installed".into());
    }
    None
}

#[test]
fn enospc_on_a_full_filesystem_is_space_allocation_failed() {
    if let Some(why) = mount_unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("esos-e2e-enospc-")
        .tempdir()
        .unwrap();
    let point = dir.path().join("mnt");
    // 1 MiB of space under an 8 MiB thin LU.
    let mount = Mount::tmpfs(&point, 1 << 20);
    let s = InProcess::serve(
        stacked(open(Backend::File {
            path: point.join("thin.img"),
            size_bytes: Some(8 << 20),
        })),
        true,
    );
    let mut c = s.login();
    let chunk = data::pattern(data::seed("enospc"), 128 << 10);
    let mut failure = None;
    for i in 0..64u32 {
        let r = c.write10(0, i * 256, 256, &chunk, false).unwrap();
        if !r.is_good() {
            failure = Some((i, r));
            break;
        }
    }
    let (at, r) = failure.expect("8 MiB fit in a 1 MiB tmpfs");
    assert!(at >= 1, "the first 128 KiB fit: {r:?}");
    // DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT (SBC-3 4.7.3.7).
    assert_eq!(r.sense_triple(), Some((0x7, 0x27, 0x07)), "{r:?}");
    // What was written before the filesystem filled up still reads back.
    let r = c.read10(0, 0, 256, 512).unwrap();
    assert!(r.is_good() && r.data == chunk, "{r:?}");
    c.logout().unwrap();
    drop(s);
    drop(mount);
}
