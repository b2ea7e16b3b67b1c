//! Behaviour tests through `LunMap::submit`: a CD-ROM and a removable disk on RAM devices.

use std::sync::Arc;
use std::time::Duration;

use esos_block::{Backend, Device, DeviceSpec};

use crate::cdb::op;
use crate::{
    Command, Identity, LogicalUnit, LuKind, LuSettings, LunMap, MAX_CDB_LEN, Nexus, ResetKind,
    Response, Status, TaskAttr,
};

fn unit(kind: LuKind, removable: bool) -> Arc<LogicalUnit> {
    let cdrom = kind == LuKind::Cdrom;
    let block_size = if cdrom { 2048 } else { 512 };
    let spec = DeviceSpec {
        backend: Backend::Ram {
            size_bytes: 256 * u64::from(block_size),
        },
        block_size,
        read_only: cdrom,
        rotational: None,
    };
    let settings = LuSettings {
        write_cache: true,
        read_only: cdrom,
        kind,
        removable,
        ..LuSettings::disk(Identity {
            vendor: "ESOS".into(),
            product: "unit".into(),
            revision: "0001".into(),
            serial: "SN1".into(),
            uuid: [0; 16],
            naa: [0x60; 16],
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

/// Runs `cdb` from `nx`; returns the response and the data-in bytes.
async fn run(map: &LunMap, nx: &Arc<Nexus>, cdb: &[u8], expected_len: u32) -> (Response, Vec<u8>) {
    let mut c = [0u8; MAX_CDB_LEN];
    c[..cdb.len()].copy_from_slice(cdb);
    let cmd = Command {
        nexus: Arc::clone(nx),
        lun: 0,
        cdb: c,
        cdb_len: cdb.len() as u8,
        attr: TaskAttr::Simple,
        tag: 0,
        expected_len,
        data_out: false,
    };
    let (r, mut buf) = tokio::time::timeout(Duration::from_secs(5), map.submit(cmd, Vec::new()))
        .await
        .expect("command hung");
    buf.truncate(r.data_in_len as usize);
    (r, buf)
}

fn sense(r: &Response) -> (u8, u8, u8) {
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    let b = r.sense.as_slice();
    (b[2] & 0x0F, b[12], b[13])
}

fn good(r: &Response) {
    assert_eq!(r.status, Status::Good, "{r:?}");
}

const TUR: [u8; 6] = [op::TEST_UNIT_READY, 0, 0, 0, 0, 0];
const EJECT: [u8; 6] = [op::START_STOP_UNIT, 0, 0, 0, 0x02, 0];
const LOAD: [u8; 6] = [op::START_STOP_UNIT, 0, 0, 0, 0x03, 0];
const PREVENT: [u8; 6] = [op::PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 1, 0];
const ALLOW: [u8; 6] = [op::PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 0, 0];

/// A map over `lu` and nexuses whose power-on unit attention is consumed.
async fn setup(lu: &Arc<LogicalUnit>, ids: &[u64]) -> (LunMap, Vec<Arc<Nexus>>) {
    let map = LunMap::new(vec![(0, Arc::clone(lu))]);
    let mut v = Vec::new();
    for &id in ids {
        let nx = nexus(id);
        assert_eq!(sense(&run(&map, &nx, &TUR, 0).await.0), (6, 0x29, 0));
        v.push(nx);
    }
    (map, v)
}

#[tokio::test]
async fn removable_disk_eject_load_prevent_and_reset() {
    let lu = unit(LuKind::Disk, true);
    let (map, nx) = setup(&lu, &[1, 2]).await;
    let (r, inq) = run(&map, &nx[0], &[op::INQUIRY, 0, 0, 0, 96, 0], 96).await;
    good(&r);
    assert_eq!((inq[0], inq[1]), (0, 0x80));

    good(&run(&map, &nx[0], &PREVENT, 0).await.0);
    assert_eq!(
        sense(&run(&map, &nx[1], &EJECT, 0).await.0),
        (5, 0x53, 0x02)
    );
    good(&run(&map, &nx[0], &TUR, 0).await.0);
    // The preventing nexus goes away: its prevention ends.
    map.nexus_gone(&nx[0]);
    good(&run(&map, &nx[1], &EJECT, 0).await.0);
    assert_eq!(sense(&run(&map, &nx[1], &TUR, 0).await.0), (2, 0x3A, 0));
    let read = [op::READ_10, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    assert_eq!(sense(&run(&map, &nx[1], &read, 512).await.0), (2, 0x3A, 0));
    // Commands that need no medium still work; PREVENT works with no medium too.
    good(
        &run(&map, &nx[1], &[op::INQUIRY, 0, 0, 0, 36, 0], 36)
            .await
            .0,
    );
    good(&run(&map, &nx[1], &PREVENT, 0).await.0);
    assert_eq!(sense(&run(&map, &nx[1], &LOAD, 0).await.0), (5, 0x53, 0x02));
    // A LOGICAL UNIT RESET ends every prevention.
    lu.reset(ResetKind::LogicalUnit);
    assert_eq!(sense(&run(&map, &nx[1], &TUR, 0).await.0).0, 6);
    good(&run(&map, &nx[1], &LOAD, 0).await.0);
    good(&run(&map, &nx[1], &TUR, 0).await.0);
    good(&run(&map, &nx[1], &read, 512).await.0);
    // A newcomer after the load sees no medium change; LOEJ 0 and power conditions move
    // nothing.
    let (map, nx3) = setup(&lu, &[3]).await;
    for c in [
        [op::START_STOP_UNIT, 1, 0, 0, 0x00, 0],
        [op::START_STOP_UNIT, 0, 0, 0, 0x24 | 0x02, 0],
    ] {
        good(&run(&map, &nx3[0], &c, 0).await.0);
        good(&run(&map, &nx3[0], &TUR, 0).await.0);
    }
    good(&run(&map, &nx3[0], &ALLOW, 0).await.0);
}

#[tokio::test]
async fn load_tells_other_nexuses_and_fixed_disks_refuse_prevent() {
    let lu = unit(LuKind::Disk, true);
    let (map, nx) = setup(&lu, &[1, 2]).await;
    good(&run(&map, &nx[0], &EJECT, 0).await.0);
    good(&run(&map, &nx[0], &LOAD, 0).await.0);
    good(&run(&map, &nx[0], &TUR, 0).await.0);
    assert_eq!(sense(&run(&map, &nx[1], &TUR, 0).await.0), (6, 0x28, 0));

    let fixed = unit(LuKind::Disk, false);
    let (map, nx) = setup(&fixed, &[1]).await;
    let (r, inq) = run(&map, &nx[0], &[op::INQUIRY, 0, 0, 0, 96, 0], 96).await;
    good(&r);
    assert_eq!(inq[1], 0);
    good(&run(&map, &nx[0], &ALLOW, 0).await.0);
    assert_eq!(sense(&run(&map, &nx[0], &PREVENT, 0).await.0), (5, 0x24, 0));
    // LOEJ on a fixed disk: nothing moves.
    good(&run(&map, &nx[0], &EJECT, 0).await.0);
    good(&run(&map, &nx[0], &TUR, 0).await.0);
}

#[tokio::test]
async fn cdrom_command_set() {
    let lu = unit(LuKind::Cdrom, false);
    let (map, nx) = setup(&lu, &[1]).await;
    let n = &nx[0];
    let (r, inq) = run(&map, n, &[op::INQUIRY, 0, 0, 0, 96, 0], 96).await;
    good(&r);
    assert_eq!((inq[0], inq[1]), (5, 0x80));
    let (r, vpd) = run(&map, n, &[op::INQUIRY, 1, 0, 0, 64, 0], 64).await;
    good(&r);
    assert_eq!(&vpd[..], &[5, 0, 0, 3, 0x00, 0x80, 0x83]);
    let (r, cap) = run(
        &map,
        n,
        &[op::READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        8,
    )
    .await;
    good(&r);
    assert_eq!(&cap[..], &[0, 0, 0, 255, 0, 0, 8, 0]);
    let (r, toc) = run(&map, n, &[0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0], 100).await;
    good(&r);
    assert_eq!(&toc[16..20], &256u32.to_be_bytes());
    let write = [op::WRITE_10, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    assert_eq!(sense(&run(&map, n, &write, 0).await.0), (5, 0x20, 0));
    let (r, rsoc) = run(
        &map,
        n,
        &[op::MAINTENANCE_IN, 0x0C, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0],
        4096,
    )
    .await;
    good(&r);
    assert_eq!(
        u32::from_be_bytes(rsoc[0..4].try_into().unwrap()) as usize,
        8 * super::opcodes::TABLE.len()
    );

    // Eject: tray open; GESN reports the removal once; TOC needs the disc, GET
    // CONFIGURATION does not.
    let gesn = [0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8, 0];
    good(&run(&map, n, &EJECT, 0).await.0);
    assert_eq!(sense(&run(&map, n, &TUR, 0).await.0), (2, 0x3A, 0x02));
    let (r, ev) = run(&map, n, &gesn, 8).await;
    good(&r);
    assert_eq!(&ev[..], &[0, 4, 4, 0x10, 3, 1, 0, 0]);
    assert_eq!(run(&map, n, &gesn, 8).await.1[4], 0);
    assert_eq!(
        sense(
            &run(&map, n, &[0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0], 100)
                .await
                .0
        ),
        (2, 0x3A, 0x02)
    );
    let (r, cfg) = run(&map, n, &[0x46, 0, 0, 0, 0, 0, 0, 0, 8, 0], 8).await;
    good(&r);
    assert_eq!(&cfg[6..8], &[0, 0]);
    let (r, mech) = run(&map, n, &[0xBD, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], 8).await;
    good(&r);
    assert_eq!(mech[1], 0x10, "door open");
    good(&run(&map, n, &LOAD, 0).await.0);
    assert_eq!(run(&map, n, &gesn, 8).await.1[4], 2, "NEW MEDIA");
    let (r, cfg) = run(&map, n, &[0x46, 0, 0, 0, 0, 0, 0, 0, 8, 0], 8).await;
    good(&r);
    assert_eq!(&cfg[6..8], &[0, 0x08]);
}
