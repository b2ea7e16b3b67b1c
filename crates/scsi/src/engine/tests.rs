//! Behaviour tests: real CDB bytes through `LunMap::submit` onto RAM devices.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use esos_block::{Backend, BlockDevice, Device, DeviceSpec};

use super::*;
use crate::cdb::encode;
use crate::cdb::op;
use crate::{Identity, LuSettings, MAX_CDB_LEN, ResetKind};

const BLOCKS: u64 = 1024;
const BS: usize = 512;

fn settings(read_only: bool, wce: bool) -> LuSettings {
    LuSettings {
        write_cache: wce,
        read_only,
        max_transfer_blocks: 256,
        ..LuSettings::disk(Identity {
            vendor: "ESOS".into(),
            product: "test disk".into(),
            revision: "0001".into(),
            serial: "SN0001".into(),
            uuid: [0; 16],
            naa: [
                0x60, 0x01, 0x40, 0x50, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
            ],
        })
    }
}

fn ram_lu(read_only: bool, wce: bool) -> Arc<LogicalUnit> {
    let spec = DeviceSpec {
        backend: Backend::Ram {
            size_bytes: BLOCKS * BS as u64,
        },
        block_size: BS as u32,
        read_only: false,
        rotational: None,
    };
    LogicalUnit::new(Device::open(&spec).unwrap(), settings(read_only, wce))
}

fn nexus(id: u64) -> Arc<Nexus> {
    Arc::new(Nexus {
        id,
        initiator_port: format!("iqn.init:{id},i,0x1"),
        target_port: "iqn.2026-01.org.esos:t,t,0x0001".into(),
        relative_port: 1,
        port_group: 1,
    })
}

fn cmd(nx: &Arc<Nexus>, lun: u64, cdb: &[u8], expected_len: u32, data_out: bool) -> Command {
    let mut c = [0u8; MAX_CDB_LEN];
    c[..cdb.len()].copy_from_slice(cdb);
    Command {
        nexus: Arc::clone(nx),
        lun: crate::lun::encode(lun),
        cdb: c,
        cdb_len: cdb.len() as u8,
        attr: TaskAttr::Simple,
        tag: 0,
        expected_len,
        data_out,
    }
}

async fn run(map: &LunMap, c: Command, buf: Vec<u8>) -> (Response, Vec<u8>) {
    tokio::time::timeout(Duration::from_secs(5), map.submit(c, buf))
        .await
        .expect("command hung")
}

/// (sense key, ASC, ASCQ) from fixed or descriptor sense.
fn sense(r: &Response) -> (u8, u8, u8) {
    let b = r.sense.as_slice();
    match b[0] & 0x7F {
        0x70 => (b[2] & 0x0F, b[12], b[13]),
        0x72 => (b[1] & 0x0F, b[2], b[3]),
        other => panic!("bad sense response code {other:#x}"),
    }
}

fn check(r: &Response, key: u8, asc: u8, ascq: u8) {
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    assert_eq!(sense(r), (key, asc, ascq), "{r:?}");
}

fn good(r: &Response) {
    assert_eq!(r.status, Status::Good, "{r:?}");
}

/// A map with one RAM LU at LUN 0 and a nexus whose power-on UA is already consumed.
async fn setup(read_only: bool, wce: bool) -> (LunMap, Arc<LogicalUnit>, Arc<Nexus>) {
    let lu = ram_lu(read_only, wce);
    let map = LunMap::new(vec![(0, Arc::clone(&lu))]);
    let nx = nexus(1);
    let (r, _) = run(
        &map,
        cmd(&nx, 0, &[op::TEST_UNIT_READY, 0, 0, 0, 0, 0], 0, false),
        Vec::new(),
    )
    .await;
    check(&r, 6, 0x29, 0x00);
    (map, lu, nx)
}

fn tur() -> [u8; 6] {
    [op::TEST_UNIT_READY, 0, 0, 0, 0, 0]
}

async fn write(
    map: &LunMap,
    nx: &Arc<Nexus>,
    len: usize,
    lba: u64,
    data: Vec<u8>,
    fua: bool,
) -> Response {
    let blocks = (data.len() / BS) as u32;
    let n = data.len() as u32;
    run(
        map,
        cmd(
            nx,
            0,
            &encode::rw(true, len, lba, blocks, fua, false),
            n,
            true,
        ),
        data,
    )
    .await
    .0
}

async fn read(
    map: &LunMap,
    nx: &Arc<Nexus>,
    len: usize,
    lba: u64,
    blocks: u32,
) -> (Response, Vec<u8>) {
    let n = blocks * BS as u32;
    let (r, mut b) = run(
        map,
        cmd(
            nx,
            0,
            &encode::rw(false, len, lba, blocks, false, false),
            n,
            false,
        ),
        Vec::with_capacity(n as usize),
    )
    .await;
    b.truncate(r.data_in_len as usize);
    (r, b)
}

fn pattern(blocks: usize, seed: u8) -> Vec<u8> {
    (0..blocks * BS)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn power_on_unit_attention_per_nexus() {
    let lu = ram_lu(false, true);
    let map = LunMap::new(vec![(0, lu)]);
    let (a, b) = (nexus(1), nexus(2));
    // INQUIRY neither reports nor clears the unit attention (SAM-5 5.14).
    let (r, _) = run(
        &map,
        cmd(&a, 0, &[op::INQUIRY, 0, 0, 0, 96, 0], 96, false),
        Vec::new(),
    )
    .await;
    good(&r);
    let (r, _) = run(&map, cmd(&a, 0, &tur(), 0, false), Vec::new()).await;
    check(&r, 6, 0x29, 0x00);
    let (r, _) = run(&map, cmd(&a, 0, &tur(), 0, false), Vec::new()).await;
    good(&r);
    // REQUEST SENSE returns the other nexus's unit attention as data and clears it.
    let (r, d) = run(
        &map,
        cmd(&b, 0, &[op::REQUEST_SENSE, 0, 0, 0, 18, 0], 18, false),
        Vec::new(),
    )
    .await;
    good(&r);
    assert_eq!((d[2], d[12], d[13]), (6, 0x29, 0));
    let (r, _) = run(&map, cmd(&b, 0, &tur(), 0, false), Vec::new()).await;
    good(&r);
    // A nexus that went away and came back is new again.
    map.nexus_gone(&a);
    let (r, _) = run(&map, cmd(&a, 0, &tur(), 0, false), Vec::new()).await;
    check(&r, 6, 0x29, 0x00);
}

#[tokio::test]
async fn read_after_write_every_cdb_size() {
    let (map, _lu, nx) = setup(false, true).await;
    for (i, len) in [6usize, 10, 12, 16].into_iter().enumerate() {
        let data = pattern(3, i as u8);
        let lba = 10 + 7 * i as u64;
        good(&write(&map, &nx, len, lba, data.clone(), len == 16).await);
        let (r, got) = read(&map, &nx, len, lba, 3).await;
        good(&r);
        assert_eq!(r.residual, Residual::None);
        assert_eq!(got, data, "CDB length {len}");
    }
    // READ(6) with length 0 transfers 256 blocks (SBC-3 5.9).
    let (r, b) = run(
        &map,
        cmd(&nx, 0, &[op::READ_6, 0, 0, 0, 0, 0], 256 * BS as u32, false),
        Vec::new(),
    )
    .await;
    good(&r);
    assert_eq!(r.data_in_len as usize, 256 * BS);
    assert_eq!(&b[10 * BS..13 * BS], &pattern(3, 0)[..]);
}

#[tokio::test]
async fn out_of_range_and_limits() {
    let (map, _lu, nx) = setup(false, true).await;
    let (r, _) = read(&map, &nx, 10, BLOCKS, 1).await;
    check(&r, 5, 0x21, 0);
    let (r, _) = read(&map, &nx, 16, BLOCKS - 1, 2).await;
    check(&r, 5, 0x21, 0);
    let (r, _) = read(&map, &nx, 16, u64::MAX, 1).await;
    check(&r, 5, 0x21, 0);
    // Zero blocks past the end is still out of range; at LBA 0 it is fine.
    let (r, _) = read(&map, &nx, 10, BLOCKS + 1, 0).await;
    check(&r, 5, 0x21, 0);
    let (r, _) = read(&map, &nx, 10, 0, 0).await;
    good(&r);
    // Above the maximum transfer length: INVALID FIELD IN CDB at the length field.
    let (r, _) = read(&map, &nx, 10, 0, 257).await;
    check(&r, 5, 0x24, 0);
    assert_eq!(&r.sense.as_slice()[15..18], &[0xC0, 0, 7]);
    // Unsupported command (UNMAP) → INVALID COMMAND OPERATION CODE.
    let (r, _) = run(
        &map,
        cmd(&nx, 0, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], 24, true),
        vec![0; 24],
    )
    .await;
    check(&r, 5, 0x20, 0);
}

#[tokio::test]
async fn read_only_lun_rejects_writes() {
    let (map, _lu, nx) = setup(true, true).await;
    let r = write(&map, &nx, 10, 0, pattern(1, 1), false).await;
    check(&r, 7, 0x27, 0);
    let (r, _) = read(&map, &nx, 10, 0, 1).await;
    good(&r);
    // MODE SENSE reports WP.
    let (r, d) = run(
        &map,
        cmd(
            &nx,
            0,
            &[op::MODE_SENSE_6, 0x08, 0x3F, 0, 255, 0],
            255,
            false,
        ),
        Vec::new(),
    )
    .await;
    good(&r);
    assert_eq!(d[2] & 0x80, 0x80);
}

#[tokio::test]
async fn unmapped_lun_behaviour() {
    let (map, _lu, nx) = setup(false, true).await;
    let (r, d) = run(
        &map,
        cmd(&nx, 7, &[op::INQUIRY, 0, 0, 0, 36, 0], 36, false),
        Vec::new(),
    )
    .await;
    good(&r);
    assert_eq!(r.data_in_len, 36);
    assert_eq!(d[0], 0x7F);
    let (r, _) = run(&map, cmd(&nx, 7, &tur(), 0, false), Vec::new()).await;
    check(&r, 5, 0x25, 0);
    let (r, d) = run(
        &map,
        cmd(&nx, 7, &[op::REQUEST_SENSE, 0, 0, 0, 252, 0], 252, false),
        Vec::new(),
    )
    .await;
    good(&r);
    assert_eq!((d[2], d[12], d[13]), (5, 0x25, 0));
    assert_eq!(r.residual, Residual::Underflow(252 - 18));
    let rl = [op::REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let (r, d) = run(&map, cmd(&nx, 7, &rl, 256, false), Vec::new()).await;
    good(&r);
    assert_eq!(&d[..4], &8u32.to_be_bytes());
    assert_eq!(&d[8..16], &[0; 8]);
    assert_eq!(r.data_in_len, 16);
}

#[tokio::test]
async fn vpd_pages_through_inquiry() {
    let (map, _lu, nx) = setup(false, true).await;
    let (r, list) = run(
        &map,
        cmd(&nx, 0, &[op::INQUIRY, 1, 0, 0, 255, 0], 255, false),
        Vec::new(),
    )
    .await;
    good(&r);
    let pages = list[4..r.data_in_len as usize].to_vec();
    assert_eq!(pages, [0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2]);
    for p in pages {
        let (r, d) = run(
            &map,
            cmd(&nx, 0, &[op::INQUIRY, 1, p, 0, 255, 0], 255, false),
            Vec::new(),
        )
        .await;
        good(&r);
        assert_eq!(d[1], p);
        assert_eq!(
            usize::from(u16::from_be_bytes([d[2], d[3]])) + 4,
            r.data_in_len as usize
        );
    }
    let (r, _) = run(
        &map,
        cmd(&nx, 0, &[op::INQUIRY, 1, 0x89, 0, 255, 0], 255, false),
        Vec::new(),
    )
    .await;
    check(&r, 5, 0x24, 0);
    // Allocation length shorter than the data: cut, no overflow (SPC-4 4.2.5.6).
    let (r, _) = run(
        &map,
        cmd(&nx, 0, &[op::INQUIRY, 0, 0, 0, 5, 0], 5, false),
        Vec::new(),
    )
    .await;
    good(&r);
    assert_eq!((r.data_in_len, r.residual), (5, Residual::None));
}

/// Builds a MODE SELECT(6) of the caching page with WCE as asked, from MODE SENSE data.
async fn select_wce(map: &LunMap, nx: &Arc<Nexus>, wce: bool) -> Response {
    let (r, d) = run(
        map,
        cmd(
            nx,
            0,
            &[op::MODE_SENSE_6, 0x08, 0x08, 0, 255, 0],
            255,
            false,
        ),
        Vec::new(),
    )
    .await;
    good(&r);
    let mut list = d[..r.data_in_len as usize].to_vec();
    list[0] = 0;
    list[2] = 0;
    if wce {
        list[6] |= 0x04;
    } else {
        list[6] &= !0x04;
    }
    let n = list.len() as u8;
    run(
        map,
        cmd(
            nx,
            0,
            &[op::MODE_SELECT_6, 0x10, 0, 0, n, 0],
            u32::from(n),
            true,
        ),
        list,
    )
    .await
    .0
}

#[tokio::test]
async fn wce_switch_makes_writes_fua_and_tells_other_nexus() {
    let (map, lu, nx) = setup(false, true).await;
    let other = nexus(2);
    let (r, _) = run(&map, cmd(&other, 0, &tur(), 0, false), Vec::new()).await;
    check(&r, 6, 0x29, 0);

    good(&write(&map, &nx, 10, 0, pattern(1, 0), false).await);
    assert_eq!(
        lu.fua_writes.load(Ordering::Relaxed),
        0,
        "WCE 1: no FUA unless asked"
    );
    good(&write(&map, &nx, 10, 0, pattern(1, 0), true).await);
    assert_eq!(lu.fua_writes.load(Ordering::Relaxed), 1, "FUA bit honoured");

    good(&select_wce(&map, &nx, false).await);
    good(&write(&map, &nx, 10, 0, pattern(1, 0), false).await);
    assert_eq!(
        lu.fua_writes.load(Ordering::Relaxed),
        2,
        "WCE 0: every write is FUA"
    );
    // WRITE AND VERIFY is always durable.
    good(&select_wce(&map, &nx, true).await);
    let wv = [op::WRITE_AND_VERIFY_10, 0, 0, 0, 0, 1, 0, 0, 1, 0];
    good(
        &run(&map, cmd(&nx, 0, &wv, BS as u32, true), pattern(1, 0))
            .await
            .0,
    );
    assert_eq!(lu.fua_writes.load(Ordering::Relaxed), 3);

    // The other nexus learns about the change once; the changer does not.
    let (r, _) = run(&map, cmd(&other, 0, &tur(), 0, false), Vec::new()).await;
    check(&r, 6, 0x2A, 0x01);
    good(
        &run(&map, cmd(&other, 0, &tur(), 0, false), Vec::new())
            .await
            .0,
    );
    good(&run(&map, cmd(&nx, 0, &tur(), 0, false), Vec::new()).await.0);

    // A LU reset restores the default (WCE 1 here) and posts 29/03 everywhere.
    good(&select_wce(&map, &nx, false).await);
    lu.reset(ResetKind::LogicalUnit);
    assert!(lu.mode.wce());
    for n in [&nx, &other] {
        let (r, _) = run(&map, cmd(n, 0, &tur(), 0, false), Vec::new()).await;
        check(&r, 6, 0x29, 0x03);
    }
}

#[tokio::test]
async fn mode_select_rejects_bad_lists() {
    let (map, _lu, nx) = setup(false, true).await;
    // SP=1: no saved pages.
    let (r, _) = run(
        &map,
        cmd(&nx, 0, &[op::MODE_SELECT_6, 0x11, 0, 0, 24, 0], 24, true),
        vec![0; 24],
    )
    .await;
    check(&r, 5, 0x24, 0);
    // Unknown page 0x19.
    let mut list = vec![0u8; 4 + 8];
    list[4] = 0x19;
    list[5] = 6;
    let (r, _) = run(
        &map,
        cmd(&nx, 0, &[op::MODE_SELECT_6, 0x10, 0, 0, 12, 0], 12, true),
        list,
    )
    .await;
    check(&r, 5, 0x26, 0);
    // Saved values cannot be read.
    let (r, _) = run(
        &map,
        cmd(&nx, 0, &[op::MODE_SENSE_6, 0, 0xFF, 0, 255, 0], 255, false),
        Vec::new(),
    )
    .await;
    check(&r, 5, 0x39, 0);
}

#[tokio::test]
async fn d_sense_selects_descriptor_format() {
    let (map, _lu, nx) = setup(false, true).await;
    let (r, d) = run(
        &map,
        cmd(
            &nx,
            0,
            &[op::MODE_SENSE_6, 0x08, 0x0A, 0, 255, 0],
            255,
            false,
        ),
        Vec::new(),
    )
    .await;
    good(&r);
    let mut list = d[..r.data_in_len as usize].to_vec();
    list[0] = 0;
    list[6] |= 0x04;
    let n = list.len() as u8;
    good(
        &run(
            &map,
            cmd(
                &nx,
                0,
                &[op::MODE_SELECT_6, 0x10, 0, 0, n, 0],
                u32::from(n),
                true,
            ),
            list,
        )
        .await
        .0,
    );
    let (r, _) = read(&map, &nx, 16, u64::MAX, 1).await;
    check(&r, 5, 0x21, 0);
    assert_eq!(r.sense.as_slice()[0], 0x72);
}

#[tokio::test]
async fn software_write_protect() {
    let (map, _lu, nx) = setup(false, true).await;
    let (r, d) = run(
        &map,
        cmd(
            &nx,
            0,
            &[op::MODE_SENSE_6, 0x08, 0x0A, 0, 255, 0],
            255,
            false,
        ),
        Vec::new(),
    )
    .await;
    good(&r);
    let mut list = d[..r.data_in_len as usize].to_vec();
    list[0] = 0;
    list[8] |= 0x08;
    let n = list.len() as u8;
    good(
        &run(
            &map,
            cmd(
                &nx,
                0,
                &[op::MODE_SELECT_6, 0x10, 0, 0, n, 0],
                u32::from(n),
                true,
            ),
            list,
        )
        .await
        .0,
    );
    check(
        &write(&map, &nx, 10, 0, pattern(1, 0), false).await,
        7,
        0x27,
        0x02,
    );
    good(&read(&map, &nx, 10, 0, 1).await.0);
}

#[tokio::test]
async fn residuals() {
    let (map, _lu, nx) = setup(false, true).await;
    let rd = encode::rw(false, 10, 0, 1, false, false);
    let (r, _) = run(&map, cmd(&nx, 0, &rd, 10000, false), Vec::new()).await;
    good(&r);
    assert_eq!(
        (r.data_in_len, r.residual),
        (512, Residual::Underflow(10000 - 512))
    );
    let (r, _) = run(&map, cmd(&nx, 0, &rd, 200, false), Vec::new()).await;
    good(&r);
    assert_eq!((r.data_in_len, r.residual), (200, Residual::Overflow(312)));
    let (r, _) = run(&map, cmd(&nx, 0, &rd, 0, false), Vec::new()).await;
    assert_eq!((r.data_in_len, r.residual), (0, Residual::Overflow(512)));

    // Write of 2 blocks with only 1 block of EDTL: the block sent is written, GOOD,
    // overflow reported (RFC 7143 11.4.5.2).
    good(&write(&map, &nx, 10, 0, vec![b'a'; 2 * BS], false).await);
    let wr = encode::rw(true, 10, 0, 2, false, false);
    let (r, _) = run(&map, cmd(&nx, 0, &wr, BS as u32, true), vec![b'b'; BS]).await;
    good(&r);
    assert_eq!(r.residual, Residual::Overflow(512));
    let got = read(&map, &nx, 10, 0, 2).await.1;
    assert_eq!(&got[..BS], &[b'b'; BS][..]);
    assert_eq!(&got[BS..], &[b'a'; BS][..]);
    // Less than one block of EDTL: nothing written, GOOD, overflow reported.
    let wr1 = encode::rw(true, 10, 0, 1, false, false);
    let (r, _) = run(&map, cmd(&nx, 0, &wr1, 200, true), vec![b'c'; 200]).await;
    good(&r);
    assert_eq!(r.residual, Residual::Overflow(312));
    assert_eq!(&read(&map, &nx, 10, 0, 1).await.1[..], &[b'b'; BS][..]);
    good(&write(&map, &nx, 10, 0, vec![b'a'; 2 * BS], false).await);
    // EDTL larger than the transfer: only the transfer is written.
    let wr = encode::rw(true, 10, 0, 1, false, false);
    let (r, _) = run(
        &map,
        cmd(&nx, 0, &wr, 2 * BS as u32, true),
        vec![b'b'; 2 * BS],
    )
    .await;
    good(&r);
    assert_eq!(r.residual, Residual::Underflow(512));
    let got = read(&map, &nx, 10, 0, 2).await.1;
    assert_eq!(&got[..BS], &[b'b'; BS][..]);
    assert_eq!(&got[BS..], &[b'a'; BS][..]);
}

#[tokio::test]
async fn verify_compares_medium() {
    let (map, _lu, nx) = setup(false, true).await;
    let data = pattern(2, 9);
    good(&write(&map, &nx, 10, 4, data.clone(), false).await);
    let v = [op::VERIFY_10, 0x02, 0, 0, 0, 4, 0, 0, 2, 0];
    good(
        &run(&map, cmd(&nx, 0, &v, 2 * BS as u32, true), data.clone())
            .await
            .0,
    );
    let mut bad = data.clone();
    bad[700] ^= 0xFF;
    let (r, _) = run(&map, cmd(&nx, 0, &v, 2 * BS as u32, true), bad).await;
    check(&r, 0x0E, 0x1D, 0);
    let s = r.sense.as_slice();
    assert_eq!(s[0] & 0x80, 0x80, "INFORMATION valid");
    assert_eq!(u32::from_be_bytes(s[3..7].try_into().unwrap()), 700);
    // BYTCHK 0: range only.
    let v0 = [op::VERIFY_16, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0];
    good(&run(&map, cmd(&nx, 0, &v0, 0, false), Vec::new()).await.0);
    let mut oob = v0;
    oob[9] = 0xFF;
    oob[8] = 0xFF;
    check(
        &run(&map, cmd(&nx, 0, &oob, 0, false), Vec::new()).await.0,
        5,
        0x21,
        0,
    );
}

#[tokio::test]
async fn capacity_sync_cache_and_misc() {
    let (map, _lu, nx) = setup(false, true).await;
    let (r, d) = run(
        &map,
        cmd(
            &nx,
            0,
            &[op::READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            8,
            false,
        ),
        Vec::new(),
    )
    .await;
    good(&r);
    assert_eq!(&d[..8], &[0, 0, 0x03, 0xFF, 0, 0, 2, 0]);
    let mut rc16 = [0u8; 16];
    rc16[0] = op::SERVICE_ACTION_IN_16;
    rc16[1] = op::SA_READ_CAPACITY_16;
    rc16[13] = 32;
    let (r, d) = run(&map, cmd(&nx, 0, &rc16, 32, false), Vec::new()).await;
    good(&r);
    assert_eq!(u64::from_be_bytes(d[..8].try_into().unwrap()), BLOCKS - 1);
    let sc = [op::SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    good(&run(&map, cmd(&nx, 0, &sc, 0, false), Vec::new()).await.0);
    let sc = [op::SYNCHRONIZE_CACHE_10, 0x02, 0, 0, 0, 0, 0, 0, 8, 0];
    good(&run(&map, cmd(&nx, 0, &sc, 0, false), Vec::new()).await.0);
    let sc = [op::SYNCHRONIZE_CACHE_10, 0, 0, 0, 0x10, 0, 0, 0, 1, 0];
    check(
        &run(&map, cmd(&nx, 0, &sc, 0, false), Vec::new()).await.0,
        5,
        0x21,
        0,
    );
    let ssu = [op::START_STOP_UNIT, 1, 0, 0, 1, 0];
    good(&run(&map, cmd(&nx, 0, &ssu, 0, false), Vec::new()).await.0);
    // ACA attribute: we report NormACA 0.
    let mut c = cmd(&nx, 0, &tur(), 0, false);
    c.attr = TaskAttr::Aca;
    check(&run(&map, c, Vec::new()).await.0, 5, 0x49, 0);
}

#[tokio::test]
async fn ordered_waits_for_earlier_simple() {
    let (map, _lu, nx) = setup(false, true).await;
    let simple = map.submit(
        cmd(
            &nx,
            0,
            &encode::rw(true, 10, 0, 1, false, false),
            BS as u32,
            true,
        ),
        vec![b'x'; BS],
    );
    let mut c = cmd(
        &nx,
        0,
        &encode::rw(false, 10, 0, 1, false, false),
        BS as u32,
        false,
    );
    c.attr = TaskAttr::Ordered;
    let ordered = tokio::spawn(map.submit(c, Vec::new()));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        !ordered.is_finished(),
        "ORDERED ran before the earlier SIMPLE"
    );
    good(&simple.await.0);
    let (r, d) = tokio::time::timeout(Duration::from_secs(5), ordered)
        .await
        .unwrap()
        .unwrap();
    good(&r);
    assert_eq!(
        &d[..BS],
        &[b'x'; BS][..],
        "ORDERED read saw the earlier write"
    );
    // HEAD OF QUEUE is not held back by a pending ORDERED command.
    let mut c = cmd(&nx, 0, &tur(), 0, false);
    c.attr = TaskAttr::Ordered;
    let blocker = map.submit(cmd(&nx, 0, &tur(), 0, false), Vec::new());
    let ordered = map.submit(c, Vec::new());
    let mut h = cmd(&nx, 0, &tur(), 0, false);
    h.attr = TaskAttr::HeadOfQueue;
    good(&run(&map, h, Vec::new()).await.0);
    drop(blocker);
    good(
        &tokio::time::timeout(Duration::from_secs(5), ordered)
            .await
            .unwrap()
            .0,
    );
}

#[tokio::test]
async fn report_luns_lists_mapped_luns_and_clears_luns_changed() {
    let (a, b) = (ram_lu(false, true), ram_lu(false, true));
    let map = LunMap::new(vec![(300, b), (0, Arc::clone(&a))]);
    let nx = nexus(1);
    good(
        &run(
            &map,
            cmd(&nx, 0, &[op::INQUIRY, 0, 0, 0, 36, 0], 36, false),
            Vec::new(),
        )
        .await
        .0,
    );
    let _ = run(&map, cmd(&nx, 0, &tur(), 0, false), Vec::new()).await;
    map.luns_changed();
    let rl = [op::REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let (r, d) = run(&map, cmd(&nx, 0, &rl, 256, false), Vec::new()).await;
    good(&r);
    assert_eq!(&d[..4], &16u32.to_be_bytes());
    assert_eq!(&d[8..10], &[0, 0]);
    assert_eq!(&d[16..18], &[0x41, 0x2C]);
    // REPORT LUNS cleared REPORTED LUNS DATA HAS CHANGED.
    good(&run(&map, cmd(&nx, 0, &tur(), 0, false), Vec::new()).await.0);
    assert_eq!(map.luns().map(|(n, _)| n).collect::<Vec<_>>(), vec![0, 300]);
}

/// Transports hand non-write commands a pooled buffer as it is: READ must overwrite every
/// byte it returns, and other commands must not append to the stale bytes.
#[tokio::test]
async fn stale_scratch_buffers_never_leak() {
    let (map, _lu, nx) = setup(false, true).await;
    let data: Vec<u8> = (0..2 * BS).map(|i| (i % 251) as u8).collect();
    good(&write(&map, &nx, 10, 4, data.clone(), false).await);
    for stale_len in [0, BS, 2 * BS, 8 * BS] {
        let rd = encode::rw(false, 10, 4, 2, false, false);
        let (r, got) = run(
            &map,
            cmd(&nx, 0, &rd, (2 * BS) as u32, false),
            vec![0xEE; stale_len],
        )
        .await;
        good(&r);
        assert_eq!(r.data_in_len as usize, 2 * BS);
        assert_eq!(&got[..2 * BS], &data[..], "stale length {stale_len}");
    }
    let inq = [op::INQUIRY, 0, 0, 0, 96, 0];
    let (r, clean) = run(&map, cmd(&nx, 0, &inq, 96, false), Vec::new()).await;
    good(&r);
    let (r2, dirty) = run(&map, cmd(&nx, 0, &inq, 96, false), vec![0xEE; 4096]).await;
    good(&r2);
    assert_eq!(r.data_in_len, r2.data_in_len);
    let n = r.data_in_len as usize;
    assert_eq!(&clean[..n], &dirty[..n]);
}

/// READs from a file on tmpfs answered by reference: the transport gets the file range and
/// sends it itself; the task stays in the task set until the transport drops the reference.
#[tokio::test]
async fn reads_by_reference_from_a_resident_file() {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("skipped: no /dev/shm");
        return;
    }
    let dir = tempfile::tempdir_in(shm).unwrap();
    let spec = DeviceSpec {
        backend: Backend::File {
            path: dir.path().join("lu.img"),
            size_bytes: Some(BLOCKS * BS as u64),
        },
        block_size: BS as u32,
        read_only: false,
        rotational: None,
    };
    let lu = LogicalUnit::new(Device::open(&spec).unwrap(), settings(false, true));
    if lu.device.resident_slice(0, BS as u64).unwrap().is_none() {
        eprintln!("skipped: /dev/shm is not a tmpfs here");
        return;
    }
    let map = LunMap::new(vec![(0, Arc::clone(&lu))]);
    let nx = nexus(1);
    let (r, _) = run(&map, cmd(&nx, 0, &tur(), 0, false), Vec::new()).await;
    check(&r, 6, 0x29, 0x00);
    let data = pattern(64, 9);
    good(&write(&map, &nx, 10, 8, data.clone(), false).await);
    let rd = encode::rw(false, 10, 8, 64, false, false);
    let submit = |expected: u32, min: u32| {
        tokio::time::timeout(
            Duration::from_secs(5),
            map.submit_ref(cmd(&nx, 0, &rd, expected, false), Vec::new(), min),
        )
    };

    let (r, buf, data_ref) = submit(64 * BS as u32, 4096).await.unwrap();
    good(&r);
    assert_eq!(r.data_in_len as usize, 64 * BS);
    assert!(buf.is_empty(), "nothing copied into the buffer");
    let data_ref = data_ref.expect("a resident file is sent by reference");
    assert_eq!(
        (data_ref.slice.offset, data_ref.slice.len),
        (8 * BS as u64, 64 * BS as u64)
    );
    let mut sent = vec![0; 64 * BS];
    std::os::unix::fs::FileExt::read_exact_at(&*data_ref.slice.file, &mut sent, 8 * BS as u64)
        .unwrap();
    assert_eq!(sent, data);

    // The READ's task ends with the reference: an ORDERED command waits for it.
    let mut c = cmd(&nx, 0, &tur(), 0, false);
    c.attr = TaskAttr::Ordered;
    let ordered = tokio::spawn(map.submit(c, Vec::new()));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        !ordered.is_finished(),
        "ORDERED ran before the READ's data was sent"
    );
    drop(data_ref);
    good(
        &tokio::time::timeout(Duration::from_secs(5), ordered)
            .await
            .unwrap()
            .unwrap()
            .0,
    );

    // An EDTL below the transfer: the reference covers what the initiator takes.
    let (r, _, data_ref) = submit(16 * BS as u32, 4096).await.unwrap();
    assert_eq!(r.data_in_len as usize, 16 * BS);
    assert_eq!(data_ref.unwrap().slice.len, 16 * BS as u64);

    // Below the transport's minimum, or not asked for: copied into the buffer as usual.
    for min in [64 * BS as u32 + 1, 0] {
        let (r, buf, data_ref) = submit(64 * BS as u32, min).await.unwrap();
        good(&r);
        assert!(data_ref.is_none());
        assert_eq!(&buf[..64 * BS], &data[..]);
    }

    // Out of range: the same sense as any READ, no reference.
    let far = encode::rw(false, 16, BLOCKS - 1, 64, false, false);
    let (r, _, data_ref) = map
        .submit_ref(cmd(&nx, 0, &far, 64 * BS as u32, false), Vec::new(), 4096)
        .await;
    check(&r, 5, 0x21, 0x00);
    assert!(data_ref.is_none());

    // RAM devices are copied: their memory is not a file.
    let (ram_map, _, nx) = setup(false, true).await;
    let (r, _, data_ref) = ram_map
        .submit_ref(cmd(&nx, 0, &rd, 64 * BS as u32, false), Vec::new(), 4096)
        .await;
    good(&r);
    assert!(data_ref.is_none());
}
