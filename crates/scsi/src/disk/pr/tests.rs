//! Reservation commands with real CDB bytes through `LunMap::submit`, two initiators.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use esos_block::{Backend, Device, DeviceSpec};

use crate::pr::sa;
use crate::{Command, Identity, LuSettings, MAX_CDB_LEN, Nexus, Response, Status, TaskAttr};
use crate::{LogicalUnit, LunMap};

fn settings(pr_state: Option<PathBuf>) -> LuSettings {
    LuSettings {
        write_cache: true,
        max_transfer_blocks: 64,
        pr_state,
        ..LuSettings::disk(Identity {
            vendor: "ESOS".into(),
            product: "test disk".into(),
            revision: "0001".into(),
            serial: "SN0001".into(),
            uuid: [0; 16],
            naa: [0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        })
    }
}

fn lu(pr_state: Option<PathBuf>) -> Arc<LogicalUnit> {
    let spec = DeviceSpec {
        backend: Backend::Ram {
            size_bytes: 64 * 512,
        },
        block_size: 512,
        read_only: false,
        rotational: None,
    };
    LogicalUnit::try_new(Device::open(&spec).unwrap(), settings(pr_state)).unwrap()
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

async fn run(map: &LunMap, nx: &Arc<Nexus>, cdb: &[u8], data: Vec<u8>, len: u32) -> Response {
    let mut c = [0u8; MAX_CDB_LEN];
    c[..cdb.len()].copy_from_slice(cdb);
    let cmd = Command {
        nexus: Arc::clone(nx),
        lun: 0,
        cdb: c,
        cdb_len: cdb.len() as u8,
        attr: TaskAttr::Simple,
        tag: 0,
        expected_len: len,
        data_out: !data.is_empty(),
    };
    tokio::time::timeout(Duration::from_secs(5), map.submit(cmd, data))
        .await
        .expect("command hung")
        .0
}

async fn run_in(map: &LunMap, nx: &Arc<Nexus>, action: u8) -> (Response, Vec<u8>) {
    let cdb = [0x5E, action, 0, 0, 0, 0, 0, 0x10, 0, 0];
    let mut c = [0u8; MAX_CDB_LEN];
    c[..10].copy_from_slice(&cdb);
    let cmd = Command {
        nexus: Arc::clone(nx),
        lun: 0,
        cdb: c,
        cdb_len: 10,
        attr: TaskAttr::Simple,
        tag: 0,
        expected_len: 4096,
        data_out: false,
    };
    let (r, mut buf) = map.submit(cmd, Vec::new()).await;
    buf.truncate(r.data_in_len as usize);
    (r, buf)
}

fn out_cdb(action: u8, ty: u8, len: u32) -> [u8; 10] {
    let l = len.to_be_bytes();
    [0x5F, action, ty, 0, 0, l[0], l[1], l[2], l[3], 0]
}

fn params(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = flags;
    p
}

async fn out(map: &LunMap, nx: &Arc<Nexus>, action: u8, ty: u8, p: Vec<u8>) -> Response {
    let len = p.len() as u32;
    run(map, nx, &out_cdb(action, ty, len), p, len).await
}

/// Two initiators on one LU, their power-on unit attentions consumed.
async fn two() -> (LunMap, Arc<LogicalUnit>, Arc<Nexus>, Arc<Nexus>) {
    two_on(lu(None)).await
}

async fn two_on(u: Arc<LogicalUnit>) -> (LunMap, Arc<LogicalUnit>, Arc<Nexus>, Arc<Nexus>) {
    let map = LunMap::new(vec![(0, Arc::clone(&u))]);
    let (a, b) = (nexus(1, "iqn.a"), nexus(2, "iqn.b"));
    for n in [&a, &b] {
        let r = run(&map, n, &[0, 0, 0, 0, 0, 0], Vec::new(), 0).await;
        assert_eq!(r.status, Status::CheckCondition);
    }
    (map, u, a, b)
}

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0];
const WRITE10: [u8; 10] = [0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0];

async fn reads(map: &LunMap, nx: &Arc<Nexus>) -> Status {
    run(map, nx, &READ10, Vec::new(), 512).await.status
}

async fn writes(map: &LunMap, nx: &Arc<Nexus>) -> Status {
    run(map, nx, &WRITE10, vec![7u8; 512], 512).await.status
}

const GOOD: Status = Status::Good;
const CONFLICT: Status = Status::ReservationConflict;

#[tokio::test]
async fn exclusive_access_blocks_the_other_initiator() {
    let (map, _, a, b) = two().await;
    assert_eq!(
        out(&map, &a, sa::REGISTER, 0, params(0, 0xA, 0))
            .await
            .status,
        GOOD
    );
    assert_eq!(
        out(&map, &a, sa::RESERVE, 3, params(0xA, 0, 0))
            .await
            .status,
        GOOD
    );
    assert_eq!(reads(&map, &a).await, GOOD);
    assert_eq!(writes(&map, &a).await, GOOD);
    assert_eq!(reads(&map, &b).await, CONFLICT);
    assert_eq!(writes(&map, &b).await, CONFLICT);
    // INQUIRY and PR IN always run.
    let inq = run(&map, &b, &[0x12, 0, 0, 0, 36, 0], Vec::new(), 36).await;
    assert_eq!(inq.status, GOOD);
    let (r, data) = run_in(&map, &b, 1).await;
    assert_eq!(r.status, GOOD);
    assert_eq!(&data[4..8], &16u32.to_be_bytes());
    assert_eq!(&data[8..16], &0xAu64.to_be_bytes());
    assert_eq!(data[21], 3);
    // Release: B can write again.
    assert_eq!(
        out(&map, &a, sa::RELEASE, 3, params(0xA, 0, 0))
            .await
            .status,
        GOOD
    );
    assert_eq!(writes(&map, &b).await, GOOD);
}

#[tokio::test]
async fn write_exclusive_lets_others_read() {
    let (map, _, a, b) = two().await;
    out(&map, &a, sa::REGISTER, 0, params(0, 1, 0)).await;
    out(&map, &a, sa::RESERVE, 1, params(1, 0, 0)).await;
    assert_eq!(reads(&map, &b).await, GOOD);
    assert_eq!(writes(&map, &b).await, CONFLICT);
}

#[tokio::test]
async fn read_keys_and_full_status() {
    let (map, _, a, b) = two().await;
    out(&map, &a, sa::REGISTER_AND_IGNORE, 0, params(0, 0x11, 0)).await;
    out(&map, &b, sa::REGISTER_AND_IGNORE, 0, params(0, 0x22, 0)).await;
    out(&map, &b, sa::RESERVE, 1, params(0x22, 0, 0)).await;
    let (r, keys) = run_in(&map, &a, 0).await;
    assert_eq!(r.status, GOOD);
    assert_eq!(&keys[0..4], &2u32.to_be_bytes(), "generation");
    assert_eq!(&keys[4..8], &16u32.to_be_bytes());
    assert_eq!(&keys[8..16], &0x11u64.to_be_bytes());
    assert_eq!(&keys[16..24], &0x22u64.to_be_bytes());
    let (r, full) = run_in(&map, &a, 3).await;
    assert_eq!(r.status, GOOD);
    let total = u32::from_be_bytes(full[4..8].try_into().unwrap()) as usize;
    assert_eq!(total + 8, full.len());
    // Second descriptor (B) holds the reservation.
    let d1 = 8;
    let tid1 = u32::from_be_bytes(full[d1 + 20..d1 + 24].try_into().unwrap()) as usize;
    let d2 = d1 + 24 + tid1;
    assert_eq!(full[d1 + 12], 0);
    assert_eq!((full[d2 + 12], full[d2 + 13]), (1, 1));
    let (name, _) = crate::pr::decode_transport_id(&full[d1 + 24..]).unwrap();
    assert_eq!(name, a.initiator_port);
    let (r, caps) = run_in(&map, &a, 2).await;
    assert_eq!(r.status, GOOD);
    assert_eq!(&caps[0..2], &[0, 8]);
    assert_eq!(caps[2] & 1, 0, "no state file: PTPL_C 0");
    assert_eq!(&caps[4..6], &[0xEA, 0x01]);
}

#[tokio::test]
async fn parameter_list_and_cdb_errors() {
    let (map, _, a, _) = two().await;
    // Wrong length without SPEC_I_PT: PARAMETER LIST LENGTH ERROR.
    let mut p = params(0, 1, 0);
    p.push(0);
    let r = out(&map, &a, sa::REGISTER, 0, p).await;
    assert_eq!(r.status, Status::CheckCondition);
    assert_eq!(&r.sense.as_slice()[12..14], &[0x1A, 0x00]);
    // APTPL without a state file.
    let r = out(&map, &a, sa::REGISTER, 0, params(0, 1, 1)).await;
    assert_eq!(&r.sense.as_slice()[12..14], &[0x26, 0x00]);
    // PR IN service action 4 and PR OUT 8 are invalid.
    let r = run(&map, &a, &[0x5E, 4, 0, 0, 0, 0, 0, 0, 8, 0], Vec::new(), 8).await;
    assert_eq!(&r.sense.as_slice()[12..14], &[0x24, 0x00]);
    let r = out(&map, &a, 8, 0, params(0, 1, 0)).await;
    assert_eq!(&r.sense.as_slice()[12..14], &[0x24, 0x00]);
}

#[tokio::test]
async fn preempt_posts_unit_attention_to_the_preempted() {
    let (map, _, a, b) = two().await;
    out(&map, &a, sa::REGISTER_AND_IGNORE, 0, params(0, 1, 0)).await;
    out(&map, &b, sa::REGISTER_AND_IGNORE, 0, params(0, 2, 0)).await;
    out(&map, &a, sa::RESERVE, 3, params(1, 0, 0)).await;
    assert_eq!(
        out(&map, &b, sa::PREEMPT, 3, params(2, 1, 0)).await.status,
        GOOD
    );
    let r = run(&map, &a, &[0, 0, 0, 0, 0, 0], Vec::new(), 0).await;
    assert_eq!(r.status, Status::CheckCondition);
    assert_eq!(&r.sense.as_slice()[12..14], &[0x2A, 0x05]);
    assert_eq!(reads(&map, &a).await, CONFLICT);
    assert_eq!(reads(&map, &b).await, GOOD);
}

#[tokio::test]
async fn registrations_survive_the_session_spc2_does_not() {
    let (map, u, a, b) = two().await;
    out(&map, &a, sa::REGISTER_AND_IGNORE, 0, params(0, 5, 0)).await;
    map.nexus_gone(&a);
    // Same I_T nexus name, new session id.
    let a2 = nexus(3, "iqn.a");
    run(&map, &a2, &[0, 0, 0, 0, 0, 0], Vec::new(), 0).await;
    assert_eq!(
        out(&map, &a2, sa::RESERVE, 1, params(5, 0, 0)).await.status,
        GOOD
    );
    assert_eq!(
        out(&map, &a2, sa::CLEAR, 0, params(5, 0, 0)).await.status,
        GOOD
    );
    assert!(u.reservations.snapshot().regs.is_empty());

    // SPC-2: RESERVE(6) from B, A conflicts; released when B's nexus goes.
    let reserve6 = [0x16, 0, 0, 0, 0, 0];
    let release6 = [0x17, 0, 0, 0, 0, 0];
    assert_eq!(run(&map, &b, &reserve6, Vec::new(), 0).await.status, GOOD);
    assert_eq!(run(&map, &b, &reserve6, Vec::new(), 0).await.status, GOOD);
    assert_eq!(
        run(&map, &a2, &reserve6, Vec::new(), 0).await.status,
        CONFLICT
    );
    assert_eq!(run(&map, &a2, &release6, Vec::new(), 0).await.status, GOOD);
    assert_eq!(reads(&map, &a2).await, CONFLICT);
    let ms = [0x1A, 0, 0x3F, 0, 255, 0];
    assert_eq!(run(&map, &a2, &ms, Vec::new(), 255).await.status, CONFLICT);
    assert_eq!(run(&map, &b, &ms, Vec::new(), 255).await.status, GOOD);
    map.nexus_gone(&b);
    assert_eq!(reads(&map, &a2).await, GOOD);
    // A reset releases it too.
    assert_eq!(run(&map, &a2, &reserve6, Vec::new(), 0).await.status, GOOD);
    u.reset(crate::ResetKind::LogicalUnit);
    let b2 = nexus(4, "iqn.b");
    run(&map, &b2, &[0, 0, 0, 0, 0, 0], Vec::new(), 0).await;
    assert_eq!(run(&map, &b2, &reserve6, Vec::new(), 0).await.status, GOOD);
    assert_eq!(run(&map, &b2, &release6, Vec::new(), 0).await.status, GOOD);
    // RESERVE(6) conflicts while a persistent reservation exists (SPC-4 5.9.3).
    out(&map, &b2, sa::REGISTER_AND_IGNORE, 0, params(0, 9, 0)).await;
    out(&map, &b2, sa::RESERVE, 1, params(9, 0, 0)).await;
    assert_eq!(
        run(&map, &b2, &reserve6, Vec::new(), 0).await.status,
        CONFLICT
    );
    // Third-party RESERVE(10) is not implemented.
    let r = run(
        &map,
        &b2,
        &[0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0],
        Vec::new(),
        0,
    )
    .await;
    assert_eq!(r.status, Status::CheckCondition);
}

#[tokio::test]
async fn spec_i_pt_registers_named_initiators() {
    let (map, u, a, b) = two().await;
    let mut p = params(0, 0x77, 0x08);
    let mut tids = Vec::new();
    crate::pr::encode_transport_id("iqn.b", &mut tids);
    p.extend_from_slice(&(tids.len() as u32).to_be_bytes());
    p.extend_from_slice(&tids);
    assert_eq!(out(&map, &a, sa::REGISTER, 0, p).await.status, GOOD);
    assert_eq!(u.reservations.snapshot().regs.len(), 2);
    assert_eq!(
        out(&map, &b, sa::RESERVE, 1, params(0x77, 0, 0))
            .await
            .status,
        GOOD
    );
}

#[tokio::test]
async fn register_and_move_hands_over() {
    let (map, u, a, b) = two().await;
    out(&map, &a, sa::REGISTER, 0, params(0, 1, 0)).await;
    out(&map, &a, sa::RESERVE, 3, params(1, 0, 0)).await;
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&1u64.to_be_bytes());
    p[8..16].copy_from_slice(&2u64.to_be_bytes());
    p[17] = 0x02; // UNREG
    p[18..20].copy_from_slice(&1u16.to_be_bytes());
    let mut tid = Vec::new();
    crate::pr::encode_transport_id(&b.initiator_port, &mut tid);
    p[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
    p.extend_from_slice(&tid);
    assert_eq!(
        out(&map, &a, sa::REGISTER_AND_MOVE, 3, p).await.status,
        GOOD
    );
    let s = u.reservations.snapshot();
    assert_eq!(s.regs.len(), 1);
    assert_eq!(s.holder_key(), Some(2));
    assert_eq!(reads(&map, &a).await, CONFLICT);
    assert_eq!(reads(&map, &b).await, GOOD);
}

fn temp_file(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir()
        .join(format!("esos-pr-{}-{tag}-{nanos}", std::process::id()))
        .join("lu.pr")
}

#[tokio::test]
async fn aptpl_survives_recreating_the_unit() {
    let path = temp_file("aptpl");
    {
        let (map, _, a, b) = two_on(lu(Some(path.clone()))).await;
        let (_, caps) = run_in(&map, &a, 2).await;
        assert_eq!(caps[2] & 1, 1, "PTPL_C");
        assert_eq!(
            out(&map, &a, sa::REGISTER, 0, params(0, 0xAA, 1))
                .await
                .status,
            GOOD
        );
        out(&map, &b, sa::REGISTER_AND_IGNORE, 0, params(0, 0xBB, 1)).await;
        assert_eq!(
            out(&map, &a, sa::RESERVE, 3, params(0xAA, 0, 0))
                .await
                .status,
            GOOD
        );
    }
    // A fresh unit from the same file: same keys, reservation, generation.
    let (map, u, a, b) = two_on(lu(Some(path.clone()))).await;
    let s = u.reservations.snapshot();
    assert!(s.aptpl);
    assert_eq!(
        s.regs.iter().map(|r| r.key).collect::<Vec<_>>(),
        [0xAA, 0xBB]
    );
    assert_eq!(s.holder_key(), Some(0xAA));
    assert_eq!(s.generation, 2);
    assert_eq!(reads(&map, &b).await, CONFLICT);
    assert_eq!(reads(&map, &a).await, GOOD);
    let (_, caps) = run_in(&map, &a, 2).await;
    assert_eq!(caps[3] & 1, 1, "PTPL_A");
    // Clearing APTPL: a restart forgets everything.
    assert_eq!(
        out(&map, &b, sa::REGISTER, 0, params(0xBB, 0xBC, 0))
            .await
            .status,
        GOOD
    );
    drop((map, u));
    let fresh = lu(Some(path.clone()));
    assert!(fresh.reservations.snapshot().regs.is_empty());
    // A corrupt file is an error, not a panic or a silent reset.
    std::fs::write(&path, "esos-pr 1\naptpl 1\nreg x\n").unwrap();
    let spec = DeviceSpec {
        backend: Backend::Ram { size_bytes: 4096 },
        block_size: 512,
        read_only: false,
        rotational: None,
    };
    let e = LogicalUnit::try_new(Device::open(&spec).unwrap(), settings(Some(path.clone())));
    assert!(e.is_err());
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
