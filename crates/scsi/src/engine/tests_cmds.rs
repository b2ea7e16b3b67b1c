//! Behaviour of COMPARE AND WRITE, ORWRITE, WRITE ATOMIC, PRE-FETCH, READ DEFECT DATA and
//! the MAINTENANCE IN reports: real CDB bytes through `LunMap::submit` onto RAM devices.

use std::sync::Arc;
use std::time::Duration;

use esos_block::{Backend, Device, DeviceSpec};

use super::*;
use crate::cdb::{encode, op};
use crate::{Identity, LuSettings, MAX_CDB_LEN};

const BLOCKS: u64 = 1024;
const BS: usize = 512;
/// Configured MAXIMUM TRANSFER LENGTH, so MAXIMUM COMPARE AND WRITE LENGTH is 128.
const MAX_XFER: u32 = 256;

fn lu(read_only: bool) -> Arc<LogicalUnit> {
    lu_on(
        Backend::Ram {
            size_bytes: BLOCKS * BS as u64,
        },
        read_only,
    )
}

/// A file-backed LU: its I/O really is asynchronous, so commands interleave.
fn file_lu(path: &std::path::Path) -> Arc<LogicalUnit> {
    lu_on(
        Backend::File {
            path: path.to_owned(),
            size_bytes: Some(BLOCKS * BS as u64),
        },
        false,
    )
}

fn lu_on(backend: Backend, read_only: bool) -> Arc<LogicalUnit> {
    let spec = DeviceSpec {
        backend,
        block_size: BS as u32,
        read_only: false,
        rotational: None,
    };
    let settings = LuSettings {
        write_cache: true,
        read_only,
        max_transfer_blocks: MAX_XFER,
        ..LuSettings::disk(Identity {
            vendor: "ESOS".into(),
            product: "cmds".into(),
            revision: "0001".into(),
            serial: "SNCMDS".into(),
            uuid: [0; 16],
            naa: [0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        })
    };
    LogicalUnit::new(Device::open(&spec).unwrap(), settings)
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

fn cmd(nx: &Arc<Nexus>, cdb: &[u8], expected_len: u32, data_out: bool) -> Command {
    let mut c = [0u8; MAX_CDB_LEN];
    c[..cdb.len()].copy_from_slice(cdb);
    Command {
        nexus: Arc::clone(nx),
        lun: crate::lun::encode(0),
        cdb: c,
        cdb_len: cdb.len() as u8,
        attr: TaskAttr::Simple,
        tag: 0,
        expected_len,
        data_out,
    }
}

async fn run(
    map: &LunMap,
    nx: &Arc<Nexus>,
    cdb: &[u8],
    len: u32,
    data: Vec<u8>,
) -> (Response, Vec<u8>) {
    let out = !data.is_empty();
    let (r, mut b) = tokio::time::timeout(
        Duration::from_secs(5),
        map.submit(cmd(nx, cdb, len, out), data),
    )
    .await
    .expect("command hung");
    if !out {
        b.truncate(r.data_in_len as usize);
    }
    (r, b)
}

/// (sense key, ASC, ASCQ, INFORMATION if valid) from fixed-format sense.
fn sense(r: &Response) -> (u8, u8, u8, Option<u32>) {
    let b = r.sense.as_slice();
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    let info = (b[0] & 0x80 != 0).then(|| u32::from_be_bytes([b[3], b[4], b[5], b[6]]));
    (b[2] & 0x0F, b[12], b[13], info)
}

fn good(r: &Response) {
    assert_eq!(r.status, Status::Good, "{r:?}");
}

/// One RAM LU and two nexuses whose power-on unit attentions are consumed.
async fn setup(read_only: bool) -> (LunMap, Arc<Nexus>, Arc<Nexus>) {
    setup_on(lu(read_only)).await
}

async fn setup_on(lu: Arc<LogicalUnit>) -> (LunMap, Arc<Nexus>, Arc<Nexus>) {
    let map = LunMap::new(vec![(0, lu)]);
    let (a, b) = (nexus(1), nexus(2));
    for nx in [&a, &b] {
        let (r, _) = run(
            &map,
            nx,
            &[op::TEST_UNIT_READY, 0, 0, 0, 0, 0],
            0,
            Vec::new(),
        )
        .await;
        assert_eq!(sense(&r).0, 6);
    }
    (map, a, b)
}

async fn write(map: &LunMap, nx: &Arc<Nexus>, lba: u64, data: Vec<u8>) {
    let blocks = (data.len() / BS) as u32;
    let c = encode::rw(true, 16, lba, blocks, false, false);
    good(&run(map, nx, &c, data.len() as u32, data).await.0);
}

async fn read(map: &LunMap, nx: &Arc<Nexus>, lba: u64, blocks: u32) -> Vec<u8> {
    let c = encode::rw(false, 16, lba, blocks, false, false);
    let (r, d) = run(map, nx, &c, blocks * BS as u32, Vec::new()).await;
    good(&r);
    d
}

fn caw_cdb(lba: u64, nlb: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op::COMPARE_AND_WRITE;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = nlb;
    c
}

fn cdb16(opcode: u8, lba: u64, len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = opcode;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

fn atomic_cdb(lba: u64, blocks: u16) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op::WRITE_ATOMIC_16;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[12..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

#[tokio::test]
async fn compare_and_write_writes_only_on_match() {
    let (map, a, _) = setup(false).await;
    let old = vec![0xA1u8; 2 * BS];
    let new = vec![0xB2u8; 2 * BS];
    write(&map, &a, 10, old.clone()).await;
    let (r, _) = run(
        &map,
        &a,
        &caw_cdb(10, 2),
        4 * BS as u32,
        [old.clone(), new.clone()].concat(),
    )
    .await;
    good(&r);
    assert_eq!(r.residual, Residual::None);
    assert_eq!(read(&map, &a, 10, 2).await, new);
    // The first difference is in the second block: INFORMATION reports its offset.
    let mut verify = new.clone();
    verify[BS + 7] ^= 1;
    let (r, _) = run(
        &map,
        &a,
        &caw_cdb(10, 2),
        4 * BS as u32,
        [verify, old].concat(),
    )
    .await;
    assert_eq!(sense(&r), (0x0E, 0x1D, 0x00, Some(BS as u32 + 7)));
    assert_eq!(
        read(&map, &a, 10, 2).await,
        new,
        "miscompare must not write"
    );
}

#[tokio::test]
async fn compare_and_write_limits() {
    let (map, a, _) = setup(false).await;
    // NUMBER OF LOGICAL BLOCKS 0: nothing to do.
    good(&run(&map, &a, &caw_cdb(0, 0), 0, Vec::new()).await.0);
    // ... but 256 blocks of data-out with the count wrapped to 0 is an invalid CDB.
    let (r, _) = run(&map, &a, &caw_cdb(0, 0), 512 * BS as u32, vec![0; 512 * BS]).await;
    assert_eq!(sense(&r), (5, 0x24, 0, None));
    // Above MAXIMUM COMPARE AND WRITE LENGTH (MAX_XFER / 2).
    let n = (MAX_XFER / 2 + 1) as usize;
    let (r, _) = run(
        &map,
        &a,
        &caw_cdb(0, n as u8),
        (2 * n * BS) as u32,
        vec![0; 2 * n * BS],
    )
    .await;
    assert_eq!(sense(&r), (5, 0x24, 0, None));
    // Beyond the end of the medium.
    let (r, _) = run(
        &map,
        &a,
        &caw_cdb(BLOCKS - 1, 2),
        4 * BS as u32,
        vec![0; 4 * BS],
    )
    .await;
    assert_eq!(sense(&r), (5, 0x21, 0, None));
    // Data-out that disagrees with NUMBER OF LOGICAL BLOCKS: too much, then too little.
    let (r, _) = run(&map, &a, &caw_cdb(0, 1), 4 * BS as u32, vec![0; 4 * BS]).await;
    assert_eq!(sense(&r), (5, 0x24, 0, None));
    let (r, _) = run(&map, &a, &caw_cdb(0, 3), 4 * BS as u32, vec![0; 4 * BS]).await;
    assert_eq!(sense(&r).0, 5);
    // Read-only LU.
    let (map, a, _) = setup(true).await;
    let (r, _) = run(&map, &a, &caw_cdb(0, 1), 2 * BS as u32, vec![0; 2 * BS]).await;
    assert_eq!(sense(&r), (7, 0x27, 0, None));
}

/// Two nexuses increment a counter with read + COMPARE AND WRITE retries while a third
/// stream of plain writes hits the neighbouring block: no increment may be lost. The LU
/// is file-backed so that I/O is really asynchronous and commands interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_write_is_atomic_across_nexuses() {
    let path = std::env::temp_dir().join(format!("esos-caw-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (map, a, b) = setup_on(file_lu(&path)).await;
    write(&map, &a, 0, vec![0; 2 * BS]).await;
    const PER_NEXUS: u32 = 40;
    let mut tasks = Vec::new();
    for nx in [a.clone(), b.clone()] {
        let map = map.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < PER_NEXUS {
                let cur = read(&map, &nx, 0, 1).await;
                let v = u32::from_be_bytes(cur[..4].try_into().unwrap());
                let mut next = cur.clone();
                next[..4].copy_from_slice(&(v + 1).to_be_bytes());
                let (r, _) = run(
                    &map,
                    &nx,
                    &caw_cdb(0, 1),
                    2 * BS as u32,
                    [cur, next].concat(),
                )
                .await;
                if r.status == Status::Good {
                    done += 1;
                } else {
                    assert_eq!(sense(&r).0, 0x0E);
                }
            }
        }));
    }
    let writer = {
        let (map, a) = (map.clone(), a.clone());
        tokio::spawn(async move {
            for i in 0..100u8 {
                write(&map, &a, 1, vec![i; BS]).await;
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    writer.await.unwrap();
    let v = read(&map, &a, 0, 1).await;
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        u32::from_be_bytes(v[..4].try_into().unwrap()),
        2 * PER_NEXUS
    );
}

#[tokio::test]
async fn orwrite_ors_into_the_medium() {
    let (map, a, _) = setup(false).await;
    write(&map, &a, BLOCKS - 3, vec![0; 3 * BS]).await;
    for fill in [0xA5u8, 0x5A] {
        let c = cdb16(op::ORWRITE_16, BLOCKS - 3, 3);
        good(&run(&map, &a, &c, 3 * BS as u32, vec![fill; 3 * BS]).await.0);
    }
    assert_eq!(read(&map, &a, BLOCKS - 3, 3).await, vec![0xFF; 3 * BS]);
    // Zero blocks, beyond the end, and short data-out.
    good(
        &run(&map, &a, &cdb16(op::ORWRITE_16, 0, 0), 0, Vec::new())
            .await
            .0,
    );
    let (r, _) = run(
        &map,
        &a,
        &cdb16(op::ORWRITE_16, BLOCKS, 1),
        BS as u32,
        vec![0; BS],
    )
    .await;
    assert_eq!(sense(&r), (5, 0x21, 0, None));
    let (r, _) = run(
        &map,
        &a,
        &cdb16(op::ORWRITE_16, 0, 2),
        BS as u32,
        vec![1; BS],
    )
    .await;
    assert_eq!(sense(&r), (5, 0x0E, 0x03, None));
    assert_eq!(
        read(&map, &a, 0, 1).await,
        vec![0; BS],
        "short data-out writes nothing"
    );
    let (map, a, _) = setup(true).await;
    let (r, _) = run(
        &map,
        &a,
        &cdb16(op::ORWRITE_16, 0, 1),
        BS as u32,
        vec![0; BS],
    )
    .await;
    assert_eq!(sense(&r), (7, 0x27, 0, None));
}

#[tokio::test]
async fn write_atomic_and_its_block_limits() {
    let (map, a, _) = setup(false).await;
    let data: Vec<u8> = (0..4 * BS).map(|i| i as u8).collect();
    good(
        &run(&map, &a, &atomic_cdb(7, 4), 4 * BS as u32, data.clone())
            .await
            .0,
    );
    assert_eq!(read(&map, &a, 7, 4).await, data);
    good(&run(&map, &a, &atomic_cdb(0, 0), 0, Vec::new()).await.0);
    let (r, _) = run(
        &map,
        &a,
        &atomic_cdb(BLOCKS - 1, 2),
        2 * BS as u32,
        vec![0; 2 * BS],
    )
    .await;
    assert_eq!(sense(&r), (5, 0x21, 0, None));
    let n = MAX_XFER as u16 + 1;
    let (r, _) = run(
        &map,
        &a,
        &atomic_cdb(0, n),
        u32::from(n) * BS as u32,
        vec![0; usize::from(n) * BS],
    )
    .await;
    assert_eq!(sense(&r), (5, 0x24, 0, None));
    // Block Limits VPD: MAXIMUM COMPARE AND WRITE LENGTH and MAXIMUM ATOMIC TRANSFER LENGTH.
    let (r, bl) = run(
        &map,
        &a,
        &[op::INQUIRY, 1, 0xB0, 0, 255, 0],
        255,
        Vec::new(),
    )
    .await;
    good(&r);
    assert_eq!(u32::from(bl[5]), MAX_XFER / 2);
    assert_eq!(u32::from_be_bytes(bl[44..48].try_into().unwrap()), MAX_XFER);
    assert_eq!(&bl[48..64], &[0; 16]);
}

#[tokio::test]
async fn pre_fetch_checks_the_range() {
    let (map, a, _) = setup(false).await;
    let ten = |lba: u32, len: u16, immed: bool| {
        let mut c = [0u8; 10];
        c[0] = op::PRE_FETCH_10;
        c[1] = if immed { 2 } else { 0 };
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&len.to_be_bytes());
        c
    };
    good(&run(&map, &a, &ten(0, 0, false), 0, Vec::new()).await.0);
    good(
        &run(
            &map,
            &a,
            &ten(BLOCKS as u32 - 256, 256, true),
            0,
            Vec::new(),
        )
        .await
        .0,
    );
    good(
        &run(
            &map,
            &a,
            &cdb16(op::PRE_FETCH_16, BLOCKS - 1, 1),
            0,
            Vec::new(),
        )
        .await
        .0,
    );
    for (lba, len) in [(BLOCKS as u32, 0), (BLOCKS as u32 - 1, 2), (u32::MAX, 1)] {
        let (r, _) = run(&map, &a, &ten(lba, len, false), 0, Vec::new()).await;
        assert_eq!(sense(&r), (5, 0x21, 0, None));
    }
    let (r, _) = run(
        &map,
        &a,
        &cdb16(op::PRE_FETCH_16, u64::MAX, 1),
        0,
        Vec::new(),
    )
    .await;
    assert_eq!(sense(&r), (5, 0x21, 0, None));
}

#[tokio::test]
async fn read_defect_data_and_reports() {
    let (map, a, _) = setup(false).await;
    let (r, d) = run(
        &map,
        &a,
        &[op::READ_DEFECT_DATA_10, 0, 0x18, 0, 0, 0, 0, 0, 32, 0],
        32,
        Vec::new(),
    )
    .await;
    good(&r);
    assert_eq!(d, [0, 0x18, 0, 0]);
    let (r, d) = run(
        &map,
        &a,
        &[op::READ_DEFECT_DATA_12, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
        32,
        Vec::new(),
    )
    .await;
    good(&r);
    assert_eq!(d.len(), 8);
    // REPORT SUPPORTED OPERATION CODES, all commands, cut to the allocation length.
    let rsoc = |alloc: u32| {
        let mut c = [0u8; 12];
        c[0] = op::MAINTENANCE_IN;
        c[1] = op::SA_REPORT_SUPPORTED_OPCODES;
        c[6..10].copy_from_slice(&alloc.to_be_bytes());
        c
    };
    let (r, d) = run(&map, &a, &rsoc(65535), 65535, Vec::new()).await;
    good(&r);
    let len = u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize;
    assert_eq!(len + 4, d.len());
    let ops: Vec<u8> = d[4..].chunks(8).map(|c| c[0]).collect();
    for o in [
        op::COMPARE_AND_WRITE,
        op::ORWRITE_16,
        op::PRE_FETCH_10,
        op::MAINTENANCE_IN,
    ] {
        assert!(ops.contains(&o), "{o:#x} not reported");
    }
    let (r, d) = run(&map, &a, &rsoc(16), 16, Vec::new()).await;
    good(&r);
    assert_eq!(d.len(), 16);
    // REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS.
    let mut c = [0u8; 12];
    c[0] = op::MAINTENANCE_IN;
    c[1] = op::SA_REPORT_SUPPORTED_TMFS;
    c[9] = 4;
    let (r, d) = run(&map, &a, &c, 4, Vec::new()).await;
    good(&r);
    assert_eq!(d[0] & 0x88, 0x88, "ABORT TASK and LOGICAL UNIT RESET");
}
