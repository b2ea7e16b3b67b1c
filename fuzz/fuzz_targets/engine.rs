//! The whole SCSI engine (`LunMap::submit`) on RAM devices: every CDB through its real
//! decoder and handler, with arbitrary data-out, so the parameter-list parsers (MODE
//! SELECT, PERSISTENT RESERVE OUT, UNMAP, EXTENDED COPY, SET TARGET PORT GROUPS,
//! SANITIZE, WRITE SAME, COMPARE AND WRITE, ...) see hostile lists in any state.
//!
//! LUN 0 can instead be a file on tmpfs, whose large-enough READs the engine answers with a
//! reference to the file range (`LunMap::submit_ref`, the zero-copy Data-In path).
//!
//! Input: one setup byte (bit 0 write cache, bit 1 read-only LUN 0, bit 2 thin, bit 3 LUN
//! 1 is a CD-ROM, bit 4 4096-byte blocks, bit 5 LUN 0 is a tmpfs file), then commands, each a 6-byte header [flags,
//! cdb_len, expected_len (2 bytes), data_out_len (2 bytes)], the CDB, the data-out bytes.
//! Flags: bits 0-1 task attribute, bit 2 write direction, bit 3 LUN 1, bit 4 second nexus,
//! bit 5 expected_len counts 512-byte units, bit 6 an unmapped LUN.
//! Holds: no panic, no hang; data-in never exceeds the EDTL nor the returned buffer (nor,
//! when answered by reference, the referenced range, which lies inside the LUN);
//! (the direction bits are the transport's to police: the engine answers by the CDB);
//! CHECK CONDITION always and only carries well-formed sense.
#![no_main]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use esos_block::{Backend, Device, DeviceSpec};
use esos_scsi::{
    Command, Identity, LogicalUnit, LuKind, LuSettings, LunMap, MAX_CDB_LEN, MAX_SENSE_LEN, Nexus,
    Residual, Status, TaskAttr,
};
use libfuzzer_sys::fuzz_target;

/// Blocks per RAM device: small, so whole-device commands stay fast.
const BLOCKS: u64 = 64;
/// Commands per input.
const MAX_COMMANDS: usize = 16;
/// A command taking longer than this is a hang.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Smallest READ answered by reference: low, so most fuzzed READs of the file take that path.
const REF_MIN_BYTES: u32 = 512;

/// The backing file of a file LUN 0 of `block_size`-byte blocks: created on tmpfs once per
/// process and unlinked at once (so nothing is left behind, even after a crash), then
/// reopened for each input through its /proc/self/fd link.
fn tmpfs_file(block_size: u32) -> PathBuf {
    static FILES: OnceLock<[File; 2]> = OnceLock::new();
    let files = FILES.get_or_init(|| {
        let make = |bs: u64| {
            let path = format!("/dev/shm/esos-fuzz-engine-{}-{bs}", std::process::id());
            let f = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .expect("tmpfs file");
            std::fs::remove_file(&path).expect("unlink tmpfs file");
            f.set_len(BLOCKS * bs).expect("size tmpfs file");
            f
        };
        [make(512), make(4096)]
    });
    let f = &files[usize::from(block_size == 4096)];
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

fn unit(setup: u8, cdrom: bool, file: bool) -> Arc<LogicalUnit> {
    let block_size = if cdrom {
        2048
    } else if setup & 16 != 0 {
        4096
    } else {
        512
    };
    let size_bytes = BLOCKS * u64::from(block_size);
    let spec = DeviceSpec {
        backend: if file {
            Backend::File {
                path: tmpfs_file(block_size),
                size_bytes: Some(size_bytes),
            }
        } else {
            Backend::Ram { size_bytes }
        },
        block_size,
        read_only: cdrom,
        rotational: None,
    };
    let settings = LuSettings {
        write_cache: setup & 1 != 0,
        read_only: cdrom || setup & 2 != 0,
        max_transfer_blocks: 32,
        thin: setup & 4 != 0,
        kind: if cdrom { LuKind::Cdrom } else { LuKind::Disk },
        removable: cdrom,
        ..LuSettings::disk(Identity {
            vendor: "ESOS".into(),
            product: "fuzz".into(),
            revision: "0001".into(),
            serial: if cdrom { "SN2" } else { "SN1" }.into(),
            uuid: [0; 16],
            naa: [
                0x60,
                1,
                2,
                3,
                4,
                5,
                6,
                7,
                8,
                9,
                10,
                11,
                12,
                13,
                14,
                cdrom as u8,
            ],
        })
    };
    LogicalUnit::new(Device::open(&spec).expect("device"), settings)
}

fn nexus(id: u64) -> Arc<Nexus> {
    Arc::new(Nexus {
        id,
        initiator_port: format!("iqn.1994-05.com.example:fuzz{id},i,0x1"),
        target_port: "iqn.2026-01.org.esos:fuzz,t,0x0001".into(),
        relative_port: 1,
        port_group: 1,
    })
}

fn check_sense(s: &[u8]) {
    assert!(s.len() >= 8 && s.len() <= MAX_SENSE_LEN, "{s:02x?}");
    assert!(matches!(s[0] & 0x7F, 0x70 | 0x72), "{s:02x?}");
    assert_eq!(usize::from(s[7]) + 8, s.len(), "{s:02x?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let map = LunMap::new(vec![
        (0, unit(setup, false, setup & 32 != 0)),
        (1, unit(setup, setup & 8 != 0, false)),
    ]);
    let nexuses = [nexus(1), nexus(2)];
    runtime().block_on(async {
        for _ in 0..MAX_COMMANDS {
            let Some((hdr, tail)) = rest.split_first_chunk::<6>() else {
                break;
            };
            let cdb_len = usize::from(hdr[1]).min(MAX_CDB_LEN).min(tail.len());
            let (cdb_bytes, tail) = tail.split_at(cdb_len);
            let dlen = usize::from(u16::from_be_bytes([hdr[4], hdr[5]])).min(tail.len());
            let (data_out, tail) = tail.split_at(dlen);
            rest = tail;

            let flags = hdr[0];
            let mut expected_len = u32::from(u16::from_be_bytes([hdr[2], hdr[3]]));
            if flags & 32 != 0 {
                expected_len *= 512;
            }
            let write = flags & 4 != 0;
            let mut cdb = [0u8; MAX_CDB_LEN];
            cdb[..cdb_len].copy_from_slice(cdb_bytes);
            let lun = if flags & 64 != 0 {
                7
            } else {
                u64::from(flags >> 3 & 1)
            };
            let cmd = Command {
                nexus: Arc::clone(&nexuses[usize::from(flags >> 4 & 1)]),
                lun: esos_scsi::lun::encode(lun),
                cdb,
                cdb_len: cdb_len as u8,
                attr: match flags & 3 {
                    0 => TaskAttr::Simple,
                    1 => TaskAttr::Ordered,
                    2 => TaskAttr::HeadOfQueue,
                    _ => TaskAttr::Aca,
                },
                tag: 0,
                expected_len,
                data_out: write,
            };
            // The transport hands over at most EDTL bytes of data-out, none for reads.
            let buf = if write {
                data_out[..data_out.len().min(expected_len as usize)].to_vec()
            } else {
                Vec::new()
            };
            let (r, buf, by_ref) =
                tokio::time::timeout(COMMAND_TIMEOUT, map.submit_ref(cmd, buf, REF_MIN_BYTES))
                    .await
                    .expect("command hung");
            assert!(r.data_in_len <= expected_len, "{r:?}");
            match &by_ref {
                Some(d) => {
                    let lun_bytes = BLOCKS * if setup & 16 != 0 { 4096 } else { 512 };
                    assert_eq!(r.status, Status::Good, "{r:?}");
                    assert!(
                        u64::from(r.data_in_len) <= d.slice.len,
                        "{r:?} {}",
                        d.slice.len
                    );
                    assert!(
                        d.slice.offset + d.slice.len <= lun_bytes,
                        "{} + {}",
                        d.slice.offset,
                        d.slice.len
                    );
                }
                None => assert!(
                    r.data_in_len as usize <= buf.len(),
                    "{r:?} buf {}",
                    buf.len()
                ),
            }
            // Sent: the READ leaves the task set (an ORDERED command behind it may run).
            drop(by_ref);
            match r.status {
                Status::CheckCondition => check_sense(r.sense.as_slice()),
                _ => assert!(r.sense.as_slice().is_empty(), "{r:?}"),
            }
            if let Residual::Underflow(n) = r.residual {
                assert!(n <= expected_len, "{r:?}");
            }
        }
    });
    for nx in &nexuses {
        map.nexus_gone(nx);
    }
});
