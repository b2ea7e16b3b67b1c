//! SANITIZE driven through the LUN map with real CDB bytes.

use std::sync::Arc;

use esos_block::{Backend, Device, DeviceSpec};

use super::*;
use crate::cdb::op;
use crate::cdb::sanitize::{encode, sa};
use crate::{Identity, LuSettings, LunMap, MAX_CDB_LEN, Nexus, Response, Status, TaskAttr};

const BS: usize = 512;
/// 4 MiB: four OVERWRITE chunks per pass, so progress has values between 0 and done.
const BLOCKS: u64 = 8192;

struct T {
    map: LunMap,
    lu: Arc<LogicalUnit>,
    nx: Arc<Nexus>,
}

impl T {
    async fn new(thin: bool, read_only: bool) -> T {
        Self::paced(thin, read_only, 0).await
    }

    async fn paced(thin: bool, read_only: bool, sanitize_rate: u64) -> T {
        let spec = DeviceSpec {
            backend: Backend::Ram {
                size_bytes: BLOCKS * BS as u64,
            },
            block_size: BS as u32,
            read_only: false,
            rotational: None,
        };
        let settings = LuSettings {
            write_cache: true,
            read_only,
            max_transfer_blocks: 4096,
            thin,
            sanitize_rate,
            ..LuSettings::disk(Identity {
                vendor: "ESOS".into(),
                product: "sanitize".into(),
                revision: "1".into(),
                serial: "S1".into(),
                uuid: [0; 16],
                naa: [0x60; 16],
            })
        };
        let lu = LogicalUnit::new(Device::open(&spec).unwrap(), settings);
        let t = T {
            map: LunMap::new(vec![(0, Arc::clone(&lu))]),
            lu,
            nx: Arc::new(Nexus {
                id: 1,
                initiator_port: "iqn.i,i,0x1".into(),
                target_port: "iqn.t,t,0x1".into(),
                relative_port: 1,
                port_group: 1,
            }),
        };
        // Consume the power-on unit attention.
        t.run(&TUR, 0, Vec::new()).await;
        t
    }

    async fn run(&self, cdb: &[u8], expected_len: u32, buf: Vec<u8>) -> (Response, Vec<u8>) {
        let mut c = [0u8; MAX_CDB_LEN];
        c[..cdb.len()].copy_from_slice(cdb);
        let cmd = Command {
            nexus: Arc::clone(&self.nx),
            lun: crate::lun::encode(0),
            cdb: c,
            cdb_len: cdb.len() as u8,
            attr: TaskAttr::Simple,
            tag: 0,
            expected_len,
            data_out: !buf.is_empty(),
        };
        self.map.submit(cmd, buf).await
    }

    async fn write(&self, lba: u64, data: Vec<u8>) {
        let blocks = (data.len() / BS) as u32;
        let cdb = crate::cdb::encode::rw(true, 16, lba, blocks, false, false);
        let (r, _) = self.run(&cdb, data.len() as u32, data).await;
        good(&r);
    }

    async fn read(&self, lba: u64, blocks: u32) -> Vec<u8> {
        let cdb = crate::cdb::encode::rw(false, 16, lba, blocks, false, false);
        let (r, mut data) = self.run(&cdb, blocks * BS as u32, Vec::new()).await;
        good(&r);
        data.truncate(r.data_in_len as usize);
        data
    }

    /// OVERWRITE with `pattern`, count and INVERT.
    async fn overwrite(&self, immed: bool, pattern: &[u8], count: u8, invert: bool) -> Response {
        let list = overwrite_list(pattern, count, invert);
        let cdb = encode(immed, false, sa::OVERWRITE, list.len() as u16);
        self.run(&cdb, list.len() as u32, list).await.0
    }

    /// REQUEST SENSE (fixed format): (key, ASC, ASCQ, sense-key specific bytes).
    async fn request_sense(&self) -> (u8, u8, u8, [u8; 3]) {
        let (r, data) = self
            .run(&[op::REQUEST_SENSE, 0, 0, 0, 252, 0], 252, Vec::new())
            .await;
        good(&r);
        (
            data[2] & 0x0F,
            data[12],
            data[13],
            [data[15], data[16], data[17]],
        )
    }

    /// Waits (yielding to the sanitize task) until TEST UNIT READY is GOOD.
    async fn wait_done(&self) {
        for _ in 0..100_000 {
            if self.run(&TUR, 0, Vec::new()).await.0.status == Status::Good {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("sanitize never finished");
    }
}

const TUR: [u8; 6] = [op::TEST_UNIT_READY, 0, 0, 0, 0, 0];

fn overwrite_list(pattern: &[u8], count: u8, invert: bool) -> Vec<u8> {
    let mut l = vec![count | if invert { 0x80 } else { 0 }, 0];
    l.extend_from_slice(&(pattern.len() as u16).to_be_bytes());
    l.extend_from_slice(pattern);
    l
}

fn good(r: &Response) {
    assert_eq!(r.status, Status::Good, "{r:?}");
}

/// (sense key, ASC, ASCQ) of fixed-format sense.
fn check(r: &Response, key: u8, asc: u8, ascq: u8) {
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    let b = r.sense.as_slice();
    assert_eq!((b[2] & 0x0F, b[12], b[13]), (key, asc, ascq), "{r:?}");
}

fn filled(blocks: usize, byte: u8) -> Vec<u8> {
    vec![byte; blocks * BS]
}

#[tokio::test]
async fn overwrite_repeats_the_pattern_over_every_block() {
    let t = T::new(false, false).await;
    t.write(0, filled(4, b'a')).await;
    t.write(BLOCKS - 4, filled(4, b'a')).await;
    good(&t.overwrite(false, &[1, 2, 3], 1, false).await);
    let want: Vec<u8> = [1u8, 2, 3].iter().copied().cycle().take(BS).collect();
    for lba in [0, 100, BLOCKS - 1] {
        assert_eq!(t.read(lba, 1).await, want, "lba {lba}");
    }
    // Three passes with INVERT: the last pass writes the pattern as given.
    good(&t.overwrite(false, &[0x0F; BS], 3, true).await);
    assert_eq!(t.read(BLOCKS - 1, 1).await, filled(1, 0x0F));
}

#[test]
fn invert_alternates_and_ends_on_the_pattern() {
    let seq = |passes| {
        (0..passes)
            .map(|p| pass_inverted(true, passes, p))
            .collect::<Vec<_>>()
    };
    assert_eq!(seq(1), [false]);
    assert_eq!(seq(2), [true, false]);
    assert_eq!(seq(3), [false, true, false]);
    assert!((0..4).all(|p| !pass_inverted(false, 4, p)));
}

#[tokio::test]
async fn block_erase_reads_zeros_and_deallocates_a_thin_unit() {
    for thin in [true, false] {
        let t = T::new(thin, false).await;
        t.write(0, filled(8, 0xA5)).await;
        t.write(BLOCKS - 8, filled(8, 0xA5)).await;
        let (r, _) = t
            .run(&encode(false, false, sa::BLOCK_ERASE, 0), 0, Vec::new())
            .await;
        good(&r);
        assert_eq!(t.read(0, 8).await, filled(8, 0), "thin {thin}");
        assert_eq!(t.read(BLOCKS - 8, 8).await, filled(8, 0), "thin {thin}");
        if thin {
            let cdb = crate::cdb::provision_encode::get_lba_status(0, 64);
            let (r, data) = t.run(&cdb, 64, Vec::new()).await;
            good(&r);
            // One descriptor: every block deallocated.
            assert_eq!(u32::from_be_bytes(data[0..4].try_into().unwrap()), 20);
            assert_eq!(
                u32::from_be_bytes(data[16..20].try_into().unwrap()),
                BLOCKS as u32
            );
            assert_eq!(data[20], 1);
        }
    }
}

#[tokio::test]
async fn immed_progress_is_reported_and_other_commands_are_not_ready() {
    let t = T::new(false, false).await;
    good(&t.overwrite(true, &[0x5A], 2, false).await);
    // Still running: TEST UNIT READY, READ and a second SANITIZE are refused.
    check(&t.run(&TUR, 0, Vec::new()).await.0, 2, 0x04, 0x1B);
    let read = crate::cdb::encode::rw(false, 10, 0, 1, false, false);
    let (r, _) = t.run(&read, BS as u32, Vec::new()).await;
    check(&r, 2, 0x04, 0x1B);
    assert_eq!(r.sense.as_slice()[15] & 0x80, 0x80, "SKSV with progress");
    let (r, _) = t
        .run(&encode(false, false, sa::BLOCK_ERASE, 0), 0, Vec::new())
        .await;
    check(&r, 2, 0x04, 0x1B);
    // INQUIRY is answered.
    let (r, data) = t.run(&[op::INQUIRY, 0, 0, 0, 36, 0], 36, Vec::new()).await;
    good(&r);
    assert_eq!(&data[8..12], b"ESOS");
    // REQUEST SENSE reports the progress, which rises until the end.
    let mut seen = Vec::new();
    loop {
        let (key, asc, ascq, sks) = t.request_sense().await;
        if key == 0 {
            assert_eq!((asc, ascq), (0, 0));
            break;
        }
        assert_eq!((key, asc, ascq, sks[0]), (2, 0x04, 0x1B, 0x80));
        seen.push(u16::from_be_bytes([sks[1], sks[2]]));
        tokio::task::yield_now().await;
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(seen.iter().any(|&p| p > 0 && p < u16::MAX), "{seen:?}");
    good(&t.run(&TUR, 0, Vec::new()).await.0);
    assert_eq!(t.read(BLOCKS - 1, 1).await, filled(1, 0x5A));
}

#[tokio::test]
async fn without_immed_status_follows_completion() {
    let t = T::new(true, false).await;
    t.write(10, filled(1, 7)).await;
    good(&t.overwrite(false, &[0xC3; 4], 1, false).await);
    // Nothing left running.
    good(&t.run(&TUR, 0, Vec::new()).await.0);
    assert_eq!(t.read(10, 1).await, filled(1, 0xC3));
    assert!(!t.lu.sanitize.running());
}

#[tokio::test]
async fn write_protected_unit_refuses_and_keeps_its_data() {
    let t = T::new(true, true).await;
    check(&t.overwrite(false, &[1], 1, false).await, 7, 0x27, 0);
    let (r, _) = t
        .run(&encode(true, false, sa::BLOCK_ERASE, 0), 0, Vec::new())
        .await;
    check(&r, 7, 0x27, 0);
    good(&t.run(&TUR, 0, Vec::new()).await.0);
}

#[tokio::test]
async fn parameter_list_errors() {
    let t = T::new(false, false).await;
    t.write(0, filled(1, 9)).await;
    // Longer than a block of pattern plus the header: a CDB error.
    let list = overwrite_list(&[1; BS + 1], 1, false);
    let cdb = encode(false, false, sa::OVERWRITE, list.len() as u16);
    check(&t.run(&cdb, list.len() as u32, list).await.0, 5, 0x24, 0);
    let param = |mut list: Vec<u8>, edit: fn(&mut Vec<u8>)| {
        edit(&mut list);
        list
    };
    for list in [
        overwrite_list(&[1; 4], 0, false),
        param(overwrite_list(&[1; 4], 1, false), |l| l[0] |= 0x20),
        param(overwrite_list(&[1; 4], 1, false), |l| l[1] = 1),
        param(overwrite_list(&[1; 4], 1, false), |l| l[3] = 0),
        param(overwrite_list(&[1; 4], 1, false), |l| l[3] = 5),
    ] {
        let cdb = encode(false, false, sa::OVERWRITE, list.len() as u16);
        check(&t.run(&cdb, list.len() as u32, list).await.0, 5, 0x26, 0);
    }
    // A pattern length above the block size, in a list of exactly a block + 4.
    let mut list = overwrite_list(&[1; BS], 1, false);
    list[2..4].copy_from_slice(&(BS as u16 + 4).to_be_bytes());
    let cdb = encode(false, false, sa::OVERWRITE, list.len() as u16);
    check(&t.run(&cdb, list.len() as u32, list).await.0, 5, 0x26, 0);
    // Less data than PARAMETER LIST LENGTH.
    let cdb = encode(false, false, sa::OVERWRITE, 8);
    check(&t.run(&cdb, 6, vec![1, 0, 0, 2, 1, 1]).await.0, 5, 0x0E, 3);
    // Nothing started, nothing changed.
    good(&t.run(&TUR, 0, Vec::new()).await.0);
    assert_eq!(t.read(0, 1).await, filled(1, 9));
}

#[tokio::test]
async fn failure_mode_and_exit() {
    let t = T::new(false, false).await;
    let exit = encode(false, false, sa::EXIT_FAILURE_MODE, 0);
    // No failure: nothing to leave.
    good(&t.run(&exit, 0, Vec::new()).await.0);
    // A failure with AUSE 1: medium access refused until EXIT FAILURE MODE.
    assert!(t.lu.sanitize.begin());
    t.lu.sanitize.finish(false, true);
    check(&t.run(&TUR, 0, Vec::new()).await.0, 3, 0x31, 0x03);
    assert_eq!(t.request_sense().await.0, 3);
    good(&t.run(&exit, 0, Vec::new()).await.0);
    good(&t.run(&TUR, 0, Vec::new()).await.0);
    // With AUSE 0 only a successful sanitize ends it.
    assert!(t.lu.sanitize.begin());
    t.lu.sanitize.finish(false, false);
    check(&t.run(&exit, 0, Vec::new()).await.0, 5, 0x24, 0);
    check(&t.run(&TUR, 0, Vec::new()).await.0, 3, 0x31, 0x03);
    good(&t.overwrite(true, &[0], 1, false).await);
    t.wait_done().await;
    good(&t.run(&TUR, 0, Vec::new()).await.0);
}

#[tokio::test]
async fn advertised_in_opcodes_and_block_device_characteristics() {
    let t = T::new(true, false).await;
    // REPORT SUPPORTED OPERATION CODES, one command with service action.
    for (code, supported) in [
        (sa::OVERWRITE, true),
        (sa::BLOCK_ERASE, true),
        (sa::CRYPTOGRAPHIC_ERASE, false),
        (sa::EXIT_FAILURE_MODE, true),
    ] {
        let cdb = [
            op::MAINTENANCE_IN,
            op::SA_REPORT_SUPPORTED_OPCODES,
            0x02,
            op::SANITIZE,
            0,
            code,
            0,
            0,
            1,
            0,
            0,
            0,
        ];
        let (r, data) = t.run(&cdb, 256, Vec::new()).await;
        good(&r);
        assert_eq!(data[1] & 0x07, if supported { 3 } else { 1 }, "{code:#x}");
    }
    let (r, data) = t
        .run(&[op::INQUIRY, 1, 0xB1, 0, 64, 0], 64, Vec::new())
        .await;
    good(&r);
    assert_eq!(data[7] >> 4, 0b0100, "WABEREQ 01b, WACEREQ 00b");
}

/// A paced sanitize keeps its rate, and aborting a SANITIZE without IMMED ends the command
/// at once while the operation goes on (what libiscsi's Sanitize.Reset checks).
#[tokio::test]
async fn abort_ends_the_wait_not_the_sanitize() {
    // 4 MiB at 2 MiB/s: about two seconds.
    let t = Arc::new(T::paced(false, false, 2 << 20).await);
    let started = tokio::time::Instant::now();
    let waiter = {
        let t = t.clone();
        tokio::spawn(async move { t.overwrite(false, &[0xA5; 4], 1, false).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(t.lu.sanitize.running());
    assert!(!waiter.is_finished(), "paced: still writing after 300 ms");
    t.lu.abort(Some(t.nx.id), Some(0));
    let r = tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
        .await
        .expect("the aborted command ends at once")
        .unwrap();
    assert!(r.is_aborted(), "an aborted task has no status: {r:?}");
    assert!(t.lu.sanitize.running(), "the sanitize itself goes on");
    for _ in 0..200 {
        if !t.lu.sanitize.running() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    t.wait_done().await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1500),
        "4 MiB at 2 MiB/s took {:?}",
        started.elapsed()
    );
    assert_eq!(t.read(BLOCKS - 1, 1).await, filled(1, 0xA5));
}
