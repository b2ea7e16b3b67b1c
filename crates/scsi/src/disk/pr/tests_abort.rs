//! PREEMPT AND ABORT really aborts (SPC-4 5.9.11.5, SAM-5 5.6 with TAS 0): the preempted
//! nexus's queued tasks never run, its running write loses its status and has landed
//! before the PERSISTENT RESERVE OUT answers, it gets COMMANDS CLEARED BY ANOTHER
//! INITIATOR, and a third nexus's task is untouched.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use esos_block::{Backend, BlockDevice, BlockError, Device, DeviceSpec, Extent};
use tokio::sync::Semaphore;

use crate::cdb::encode;
use crate::pr::sa;
use crate::{Command, Identity, LogicalUnit, LuSettings, LunMap, MAX_CDB_LEN, Nexus};
use crate::{Response, Status, TaskAttr};

const BS: usize = 512;
/// Write Exclusive – Registrants Only (SPC-4 table 201).
const WE_RO: u8 = 5;

/// A RAM device whose writes wait at a gate the test opens: a write "in the device".
#[derive(Debug)]
struct Gated {
    inner: Device,
    gate: Semaphore,
    /// Writes that reached the device (waiting at the gate or past it).
    entered: AtomicUsize,
}

impl BlockDevice for Gated {
    fn block_size(&self) -> u32 {
        self.inner.block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.inner.num_blocks()
    }
    fn read_only(&self) -> bool {
        false
    }
    fn rotational(&self) -> bool {
        false
    }
    async fn read(&self, offset: u64, buf: crate::IoBuf) -> esos_block::BufResult {
        self.inner.read(offset, buf).await
    }
    async fn write(&self, offset: u64, buf: crate::IoBuf, fua: bool) -> esos_block::BufResult {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let permit = self.gate.acquire().await.expect("gate never closed");
        drop(permit);
        self.inner.write(offset, buf, fua).await
    }
    async fn flush(&self) -> Result<(), BlockError> {
        self.inner.flush().await
    }
    fn supports_discard(&self) -> bool {
        false
    }
    fn discard_zeroes(&self) -> bool {
        false
    }
    async fn discard(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.inner.discard(offset, len).await
    }
    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.inner.write_zeroes(offset, len).await
    }
    async fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Extent>, BlockError> {
        self.inner.allocation(offset, len).await
    }
}

fn gated_lu() -> (Arc<LogicalUnit>, Arc<Gated>) {
    let spec = DeviceSpec {
        backend: Backend::Ram {
            size_bytes: 64 * BS as u64,
        },
        block_size: BS as u32,
        read_only: false,
        rotational: None,
    };
    let dev = Arc::new(Gated {
        inner: Device::open(&spec).unwrap(),
        gate: Semaphore::new(0),
        entered: AtomicUsize::new(0),
    });
    let settings = LuSettings::disk(Identity {
        vendor: "ESOS".into(),
        product: "gated".into(),
        revision: "0001".into(),
        serial: "SN-GATE".into(),
        uuid: [0; 16],
        naa: [0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    });
    let lu = LogicalUnit::new(Device::Stacked(dev.clone()), settings);
    (lu, dev)
}

fn nexus(id: u64, name: &str) -> Arc<Nexus> {
    Arc::new(Nexus {
        id,
        initiator_port: format!("{name},i,0x00023d000001"),
        target_port: "iqn.2026-01.org.esos:t,t,0x0001".into(),
        relative_port: 1,
        port_group: 1,
    })
}

fn cmd(nx: &Arc<Nexus>, cdb: &[u8], attr: TaskAttr, tag: u32, len: u32, out: bool) -> Command {
    let mut c = [0u8; MAX_CDB_LEN];
    c[..cdb.len()].copy_from_slice(cdb);
    Command {
        nexus: Arc::clone(nx),
        lun: 0,
        cdb: c,
        cdb_len: cdb.len() as u8,
        attr,
        tag,
        expected_len: len,
        data_out: out,
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("command hung")
}

fn pr_params(key: u64, sa_key: u64) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p
}

async fn pr_out(map: &LunMap, nx: &Arc<Nexus>, action: u8, ty: u8, key: u64, sa_key: u64) {
    let cdb = [0x5F, action, ty, 0, 0, 0, 0, 0, 24, 0];
    let c = cmd(nx, &cdb, TaskAttr::Simple, 99, 24, true);
    let r = within(map.submit(c, pr_params(key, sa_key))).await.0;
    assert_eq!(r.status, Status::Good, "PR OUT {action:#x}: {r:?}");
}

async fn tur(map: &LunMap, nx: &Arc<Nexus>) -> Response {
    let c = cmd(nx, &[0; 6], TaskAttr::Simple, 98, 0, false);
    within(map.submit(c, Vec::new())).await.0
}

fn asc(r: &Response) -> (u8, u8, u8) {
    let s = r.sense.as_slice();
    (s[2] & 0x0F, s[12], s[13])
}

fn write(nx: &Arc<Nexus>, lba: u64, attr: TaskAttr, tag: u32) -> Command {
    let cdb = encode::rw(true, 10, lba, 1, false, false);
    cmd(nx, &cdb, attr, tag, BS as u32, true)
}

#[tokio::test]
async fn preempt_and_abort_aborts_the_preempted_nexus_tasks() {
    let (lu, dev) = gated_lu();
    let map = LunMap::new(vec![(0, Arc::clone(&lu))]);
    let (a, b, c) = (nexus(1, "iqn.a"), nexus(2, "iqn.b"), nexus(3, "iqn.c"));
    for n in [&a, &b, &c] {
        assert_eq!(tur(&map, n).await.status, Status::CheckCondition);
    }
    pr_out(&map, &a, sa::REGISTER_AND_IGNORE, 0, 0, 1).await;
    pr_out(&map, &b, sa::REGISTER_AND_IGNORE, 0, 0, 2).await;
    pr_out(&map, &a, sa::RESERVE, WE_RO, 1, 0).await;

    // A: a write in the device, then an ORDERED write queued behind it.
    let running = tokio::spawn(map.submit(write(&a, 0, TaskAttr::Simple, 1), vec![0xA1; BS]));
    within(async {
        while dev.entered.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let queued = tokio::spawn(map.submit(write(&a, 1, TaskAttr::Ordered, 2), vec![0xA2; BS]));
    // C: a read queued behind A's ORDERED write.
    let read = encode::rw(false, 10, 2, 1, false, false);
    let other = tokio::spawn(map.submit(
        cmd(&c, &read, TaskAttr::Simple, 3, BS as u32, false),
        Vec::new(),
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!queued.is_finished() && !other.is_finished());

    // B preempts A's key and aborts its tasks, as HEAD OF QUEUE past the ORDERED write.
    let cdb = [0x5F, sa::PREEMPT_AND_ABORT, WE_RO, 0, 0, 0, 0, 0, 24, 0];
    let c_pa = cmd(&b, &cdb, TaskAttr::HeadOfQueue, 4, 24, true);
    let preempt = tokio::spawn(map.submit(c_pa, pr_params(2, 1)));

    // The queued write ends at once, aborted, without reaching the device.
    let (r, _) = within(queued).await.unwrap();
    assert!(r.is_aborted(), "queued write: {r:?}");
    // The PERSISTENT RESERVE OUT waits for the write in the device.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        !preempt.is_finished(),
        "answered before the running write ended"
    );
    // C's read is not aborted, and runs now that the ORDERED write is gone.
    let (r, _) = within(other).await.unwrap();
    assert_eq!(r.status, Status::Good, "other nexus's read: {r:?}");

    dev.gate.add_permits(1 << 20);
    let (r, _) = within(running).await.unwrap();
    assert!(r.is_aborted(), "running write must not report GOOD: {r:?}");
    let (r, _) = within(preempt).await.unwrap();
    assert_eq!(r.status, Status::Good, "PREEMPT AND ABORT: {r:?}");
    assert_eq!(
        dev.entered.load(Ordering::SeqCst),
        1,
        "the queued write reached the device"
    );

    // The write that was in the device landed before GOOD; the queued one never did.
    let (r, data) = within(map.submit(
        cmd(
            &b,
            &encode::rw(false, 10, 0, 2, false, false),
            TaskAttr::Simple,
            5,
            2 * BS as u32,
            false,
        ),
        Vec::new(),
    ))
    .await;
    assert_eq!(r.status, Status::Good);
    assert_eq!(&data[..BS], &[0xA1; BS][..]);
    assert_eq!(&data[BS..2 * BS], &[0; BS][..]);

    // A learns of the preemption and of its cleared commands; C of nothing.
    assert_eq!(asc(&tur(&map, &a).await), (0x6, 0x2A, 0x05));
    assert_eq!(asc(&tur(&map, &a).await), (0x6, 0x2F, 0x00));
    assert_eq!(tur(&map, &a).await.status, Status::Good);
    assert_eq!(tur(&map, &c).await.status, Status::Good);
    assert_eq!(tur(&map, &b).await.status, Status::Good);
    // A is no longer registered: its writes conflict under B's reservation.
    let r = within(map.submit(write(&a, 3, TaskAttr::Simple, 6), vec![1; BS]))
        .await
        .0;
    assert_eq!(r.status, Status::ReservationConflict);
    assert_eq!(lu.tasks.len(), 0);
}

#[tokio::test]
async fn preempt_without_abort_leaves_tasks_alone() {
    let (lu, dev) = gated_lu();
    let map = LunMap::new(vec![(0, Arc::clone(&lu))]);
    let (a, b) = (nexus(1, "iqn.a"), nexus(2, "iqn.b"));
    for n in [&a, &b] {
        tur(&map, n).await;
    }
    pr_out(&map, &a, sa::REGISTER_AND_IGNORE, 0, 0, 1).await;
    pr_out(&map, &b, sa::REGISTER_AND_IGNORE, 0, 0, 2).await;
    let running = tokio::spawn(map.submit(write(&a, 0, TaskAttr::Simple, 1), vec![0xA1; BS]));
    within(async {
        while dev.entered.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let cdb = [0x5F, sa::PREEMPT, 0, 0, 0, 0, 0, 0, 24, 0];
    let c_p = cmd(&b, &cdb, TaskAttr::HeadOfQueue, 4, 24, true);
    let r = within(map.submit(c_p, pr_params(2, 1))).await.0;
    assert_eq!(r.status, Status::Good, "PREEMPT does not wait: {r:?}");
    dev.gate.add_permits(1 << 20);
    let (r, _) = within(running).await.unwrap();
    assert_eq!(r.status, Status::Good, "PREEMPT aborts nothing: {r:?}");
    assert_eq!(asc(&tur(&map, &a).await), (0x6, 0x2A, 0x05));
    assert_eq!(tur(&map, &a).await.status, Status::Good);
}

#[tokio::test]
async fn task_management_abort_ends_queued_tasks_at_once() {
    let (lu, dev) = gated_lu();
    let map = LunMap::new(vec![(0, Arc::clone(&lu))]);
    let a = nexus(1, "iqn.a");
    tur(&map, &a).await;
    let running = tokio::spawn(map.submit(write(&a, 0, TaskAttr::Simple, 1), vec![1; BS]));
    within(async {
        while dev.entered.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let queued = tokio::spawn(map.submit(write(&a, 1, TaskAttr::Ordered, 2), vec![2; BS]));
    tokio::time::sleep(Duration::from_millis(10)).await;
    // ABORT TASK of the queued write: it ends without waiting for the running one.
    lu.abort(Some(a.id), Some(2));
    let (r, _) = within(queued).await.unwrap();
    assert!(r.is_aborted(), "{r:?}");
    assert!(!running.is_finished());
    dev.gate.add_permits(1 << 20);
    let (r, _) = within(running).await.unwrap();
    assert_eq!(r.status, Status::Good, "ABORT TASK of another tag: {r:?}");
    // A task-management abort posts no unit attention of its own.
    assert_eq!(tur(&map, &a).await.status, Status::Good);
}

/// A command the transport holds (a WRITE receiving its data) is aborted by a later
/// PREEMPT AND ABORT of its nexus, not by an earlier one nor by task management.
#[tokio::test]
async fn abort_mark_covers_commands_not_yet_submitted() {
    let (lu, _dev) = gated_lu();
    let map = LunMap::new(vec![(0, Arc::clone(&lu))]);
    let (a, b) = (nexus(1, "iqn.a"), nexus(2, "iqn.b"));
    for n in [&a, &b] {
        tur(&map, n).await;
    }
    pr_out(&map, &a, sa::REGISTER_AND_IGNORE, 0, 0, 1).await;
    pr_out(&map, &b, sa::REGISTER_AND_IGNORE, 0, 0, 2).await;
    let before = map.abort_mark(0).expect("LUN 0 is mapped");
    assert!(map.abort_mark(5).is_none());
    lu.abort(Some(a.id), None);
    assert!(
        !before.aborted(a.id, 7),
        "task management of A's own session"
    );
    pr_out(&map, &b, sa::PREEMPT_AND_ABORT, 0, 2, 1).await;
    let after = map.abort_mark(0).unwrap();
    assert!(!before.aborted(b.id, 7), "B was not preempted");
    assert!(before.aborted(a.id, 7));
    assert!(!after.aborted(a.id, 8), "accepted after the preemption");
    assert_eq!(asc(&tur(&map, &a).await), (0x6, 0x2A, 0x05));
    assert_eq!(asc(&tur(&map, &a).await), (0x6, 0x2F, 0x00));
    assert_eq!(tur(&map, &a).await.status, Status::Good);
}
