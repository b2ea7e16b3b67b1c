//! ALUA: RTPG bytes, STPG validation, filtering per state, unit attentions on change
//! (the table itself is tested in esos-lu); the last tests drive real CDBs through
//! `LunMap::submit`.

use std::sync::Arc;
use std::time::Duration;

use esos_block::{Backend, Device, DeviceSpec};

use super::*;
use crate::LogicalUnit;
use crate::cdb::encode;
use crate::sense::FieldPointer;
use crate::{Command, Identity, LuSettings, LunMap, MAX_CDB_LEN, Response, Status, TaskAttr};

fn spec(id: u16, state: AccessState, ports: &[u16]) -> GroupSpec {
    GroupSpec {
        id,
        state,
        ports: ports.to_vec(),
    }
}

/// Group 1 (ports 1, 3) active/optimized, group 2 (port 2) standby.
fn two_groups(mode: AluaMode) -> PortGroups {
    PortGroups::new(
        mode,
        vec![
            spec(2, AccessState::Standby, &[2]),
            spec(1, AccessState::ActiveOptimized, &[3, 1]),
        ],
    )
    .unwrap()
}

fn nexus(id: u64, port: u16) -> Arc<Nexus> {
    Arc::new(Nexus {
        id,
        initiator_port: format!("iqn.init:{id},i,0x1"),
        target_port: format!("iqn.2026-01.org.esos:t,t,0x{port:04x}"),
        relative_port: port,
        port_group: port,
    })
}

#[test]
fn rtpg_length_only_and_extended() {
    let pg = two_groups(AluaMode::Both);
    let nx = nexus(1, 1);
    let mut out = Vec::new();
    pg.report(&nx, false, &mut out);
    #[rustfmt::skip]
    let want = [
        0, 0, 0, 28,
        // group 1: AO, T/U/S/AN/AO supported, id 1, no status, 2 ports: 1 and 3.
        0x00, 0x8F, 0, 1, 0, 0, 0, 2,
        0, 0, 0, 1,
        0, 0, 0, 3,
        // group 2: standby, id 2, one port: 2.
        0x02, 0x8F, 0, 2, 0, 0, 0, 1,
        0, 0, 0, 2,
    ];
    assert_eq!(out, want);
    pg.report(&nx, true, &mut out);
    assert_eq!(
        &out[..8],
        &[0, 0, 0, 32, 0x10, IMPLICIT_TRANSITION_TIME_S, 0, 0]
    );
    assert_eq!(&out[8..], &want[4..]);
}

#[test]
fn rtpg_status_codes_follow_the_cause_of_a_change() {
    let pg = two_groups(AluaMode::Both);
    let status_of = |pg: &PortGroups| {
        let mut out = Vec::new();
        pg.report(&nexus(1, 1), false, &mut out);
        // Group 1 has two ports (descriptor of 16 bytes), group 2 follows it.
        (out[4 + 5], out[4 + 16 + 5])
    };
    assert_eq!(status_of(&pg), (0x00, 0x00));
    pg.set_state(2, AccessState::ActiveNonOptimized).unwrap();
    assert_eq!(status_of(&pg), (0x00, 0x02), "implicit transition");
    pg.set_target_port_groups(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 2], None)
        .unwrap();
    assert_eq!(
        status_of(&pg),
        (0x01, 0x01),
        "altered by SET TARGET PORT GROUPS"
    );
    assert_eq!(code(pg.state(2).unwrap()), 0x1);
}

#[test]
fn rtpg_without_a_table_reports_the_nexus_port() {
    let pg = PortGroups::default();
    let mut out = Vec::new();
    let mut nx = nexus(1, 7);
    Arc::get_mut(&mut nx).unwrap().port_group = 5;
    pg.report(&nx, false, &mut out);
    assert_eq!(out, [0, 0, 0, 12, 0, 0x8F, 0, 5, 0, 0, 0, 1, 0, 0, 0, 7]);
    assert_eq!((pg.group_id(&nx), pg.mode().tpgs()), (5, 0b01));
    // With a table, the table decides.
    let pg = two_groups(AluaMode::Both);
    assert_eq!((pg.group_id(&nexus(1, 3)), pg.group_id(&nx)), (1, 5));
}

#[test]
fn stpg_validation_points_at_the_field() {
    let exists = |id| id == 1 || id == 2;
    let bad = |list: &[u8]| decode_stpg(list, exists).unwrap_err();
    assert_eq!(decode_stpg(&[], exists).unwrap(), vec![]);
    assert_eq!(
        decode_stpg(&[0, 0, 0, 0, 0x02, 0, 0, 1, 0x00, 0, 0, 2], exists).unwrap(),
        vec![(1, AccessState::Standby), (2, AccessState::ActiveOptimized)]
    );
    // Truncated descriptor.
    assert_eq!(
        bad(&[0, 0, 0, 0, 0, 0]).asc,
        Asc::PARAMETER_LIST_LENGTH_ERROR
    );
    assert_eq!(bad(&[0, 0]).asc, Asc::PARAMETER_LIST_LENGTH_ERROR);
    let field = |list: &[u8]| bad(list).field;
    // Reserved header byte.
    assert_eq!(
        field(&[0, 0, 1, 0, 0, 0, 0, 1]),
        Some(FieldPointer::param(2, Some(0)))
    );
    // Reserved bits above the state, reserved byte 1.
    assert_eq!(
        field(&[0, 0, 0, 0, 0x40, 0, 0, 1]),
        Some(FieldPointer::param(4, Some(6)))
    );
    assert_eq!(
        field(&[0, 0, 0, 0, 0, 0x80, 0, 1]),
        Some(FieldPointer::param(5, Some(7)))
    );
    // Transitioning, offline and reserved codes cannot be asked for.
    for code in [0x4, 0xE, 0xF] {
        let e = bad(&[0, 0, 0, 0, code, 0, 0, 1]);
        assert_eq!(e.asc, Asc::INVALID_FIELD_IN_PARAMETER_LIST);
        assert_eq!(e.field, Some(FieldPointer::param(4, Some(3))));
    }
    // Unknown group, and a group named twice (second descriptor at byte 8).
    assert_eq!(
        field(&[0, 0, 0, 0, 0, 0, 0, 9]),
        Some(FieldPointer::param(6, None))
    );
    assert_eq!(
        field(&[0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 1]),
        Some(FieldPointer::param(10, None))
    );
}

#[test]
fn filtering_per_state() {
    const READ_10: &[u8] = &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    const TUR: &[u8] = &[0, 0, 0, 0, 0, 0];
    const INQUIRY: &[u8] = &[0x12, 0, 0, 0, 96, 0];
    const MODE_SENSE: &[u8] = &[0x1A, 0, 0x3F, 0, 255, 0];
    const PR_IN: &[u8] = &[0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0];
    const RTPG: &[u8] = &[0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    const RSOC: &[u8] = &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    const STPG: &[u8] = &[0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0];
    let pg = two_groups(AluaMode::Both);
    // Ports 1 and 3 are in group 1, port 2 in group 2.
    let refused = |port, cdb: &[u8]| pg.check(&nexus(1, port), cdb).map(|s| (s.key, s.asc));
    let nr = SenseKey::NotReady;
    // Active/optimized, and ports in no group, run everything.
    for cdb in [READ_10, TUR, STPG] {
        assert_eq!(refused(1, cdb), None);
        assert_eq!(refused(99, cdb), None);
    }
    /// State, its refusal, CDBs it runs, CDBs it refuses.
    type Case = (
        AccessState,
        Asc,
        &'static [&'static [u8]],
        &'static [&'static [u8]],
    );
    let cases: [Case; 4] = [
        (
            AccessState::Standby,
            NOT_ACCESSIBLE_STANDBY,
            &[INQUIRY, MODE_SENSE, PR_IN, RTPG, RSOC, STPG],
            &[READ_10, TUR],
        ),
        (
            AccessState::Unavailable,
            NOT_ACCESSIBLE_UNAVAILABLE,
            &[INQUIRY, RTPG, RSOC, STPG],
            &[READ_10, TUR, MODE_SENSE, PR_IN],
        ),
        (
            AccessState::Transitioning,
            NOT_ACCESSIBLE_TRANSITION,
            &[INQUIRY, RTPG],
            &[READ_10, TUR, MODE_SENSE, STPG],
        ),
        (
            AccessState::ActiveNonOptimized,
            NOT_ACCESSIBLE_STANDBY,
            &[INQUIRY, READ_10, TUR, STPG],
            &[],
        ),
    ];
    for (state, asc, ok, no) in cases {
        pg.set_state(2, state).unwrap();
        assert_eq!(refused(3, READ_10), None);
        for cdb in ok {
            assert_eq!(refused(2, cdb), None, "{state} {cdb:02x?}");
        }
        for cdb in no {
            assert_eq!(refused(2, cdb), Some((nr, asc)), "{state} {cdb:02x?}");
        }
    }
    // No CDB bytes at all is refused, never a panic.
    pg.set_state(2, AccessState::Standby).unwrap();
    assert!(refused(2, &[]).is_some());
    assert_eq!(
        pg.set_state(5, AccessState::Standby),
        Err(AluaError::NoSuchGroup(5))
    );
}

// ---- through the engine ----

fn lu(alua: &Arc<PortGroups>) -> Arc<LogicalUnit> {
    let settings = LuSettings {
        write_cache: true,
        max_transfer_blocks: 64,
        alua: Arc::clone(alua),
        ..LuSettings::disk(Identity {
            vendor: "ESOS".into(),
            product: "alua".into(),
            revision: "1".into(),
            serial: "A1".into(),
            uuid: [0; 16],
            naa: [0x60; 16],
        })
    };
    let spec = DeviceSpec {
        backend: Backend::Ram {
            size_bytes: 64 * 512,
        },
        block_size: 512,
        read_only: false,
        rotational: None,
    };
    LogicalUnit::new(Device::open(&spec).unwrap(), settings)
}

async fn run(map: &LunMap, nx: &Arc<Nexus>, cdb: &[u8], data: Vec<u8>) -> (Response, Vec<u8>) {
    let mut c = [0u8; MAX_CDB_LEN];
    c[..cdb.len()].copy_from_slice(cdb);
    let data_out = !data.is_empty();
    let cmd = Command {
        nexus: Arc::clone(nx),
        lun: crate::lun::encode(0),
        cdb: c,
        cdb_len: cdb.len() as u8,
        attr: TaskAttr::Simple,
        tag: 0,
        expected_len: if data_out { data.len() as u32 } else { 4096 },
        data_out,
    };
    let (r, mut b) = tokio::time::timeout(Duration::from_secs(5), map.submit(cmd, data))
        .await
        .expect("command hung");
    b.truncate(r.data_in_len as usize);
    (r, b)
}

/// (sense key, ASC, ASCQ) of a fixed-format sense.
fn sense(r: &Response) -> (u8, u8, u8) {
    assert_eq!(r.status, Status::CheckCondition, "{r:?}");
    let b = r.sense.as_slice();
    (b[2] & 0x0F, b[12], b[13])
}

const TUR: [u8; 6] = [0, 0, 0, 0, 0, 0];

fn read10() -> Vec<u8> {
    encode::rw(false, 10, 0, 1, false, false)
}

#[tokio::test]
async fn standby_path_refuses_io_and_stpg_moves_it_with_unit_attentions() {
    let alua = Arc::new(two_groups(AluaMode::Explicit));
    let (a, b) = (lu(&alua), lu(&alua));
    let (map_a, map_b) = (
        LunMap::new(vec![(0, Arc::clone(&a))]),
        LunMap::new(vec![(0, Arc::clone(&b))]),
    );
    let (opt, stby) = (nexus(1, 1), nexus(2, 2));
    for map in [&map_a, &map_b] {
        for nx in [&opt, &stby] {
            assert_eq!(sense(&run(map, nx, &TUR, vec![]).await.0), (6, 0x29, 0));
        }
    }
    // Standby path: READ and TEST UNIT READY refused, INQUIRY with TPGS 10b answered.
    assert_eq!(
        sense(&run(&map_a, &stby, &read10(), vec![]).await.0),
        (2, 4, 0x0B)
    );
    assert_eq!(
        sense(&run(&map_a, &stby, &TUR, vec![]).await.0),
        (2, 4, 0x0B)
    );
    let (r, inq) = run(&map_a, &stby, &[0x12, 0, 0, 0, 96, 0], vec![]).await;
    assert_eq!(r.status, Status::Good);
    assert_eq!(inq[5] & 0x30, 0x20);
    let (r, _) = run(&map_a, &opt, &read10(), vec![]).await;
    assert_eq!(r.status, Status::Good);
    // RTPG through the standby path shows both groups.
    let (r, d) = run(
        &map_a,
        &stby,
        &[0xA3, 0x2A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        vec![],
    )
    .await;
    assert_eq!(r.status, Status::Good);
    assert_eq!((d[4], d[8], d[8 + 16 + 3]), (0x10, 0x00, 2));
    assert_eq!(d[8 + 16], 0x02, "group 2 standby");
    // STPG through the optimized path swaps the states.
    let list = vec![0, 0, 0, 0, 0x02, 0, 0, 1, 0x00, 0, 0, 2];
    let stpg = [0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0];
    let (r, _) = run(&map_a, &opt, &stpg, list).await;
    assert_eq!(r.status, Status::Good, "{r:?}");
    // Every nexus hears of it once, except the sender on the unit that got the command.
    for map in [&map_a, &map_b] {
        assert_eq!(
            sense(&run(map, &stby, &TUR, vec![]).await.0),
            (6, 0x2A, 0x06)
        );
        assert_eq!(
            run(map, &stby, &read10(), vec![]).await.0.status,
            Status::Good
        );
    }
    assert_eq!(
        sense(&run(&map_a, &opt, &read10(), vec![]).await.0),
        (2, 4, 0x0B)
    );
    assert_eq!(
        sense(&run(&map_b, &opt, &TUR, vec![]).await.0),
        (6, 0x2A, 0x06)
    );
    // An implicit change reaches every nexus, the sender of the last STPG too.
    alua.set_state(1, AccessState::ActiveNonOptimized).unwrap();
    assert_eq!(
        sense(&run(&map_a, &opt, &TUR, vec![]).await.0),
        (6, 0x2A, 0x06)
    );
    assert_eq!(
        sense(&run(&map_a, &stby, &TUR, vec![]).await.0),
        (6, 0x2A, 0x06)
    );
    assert_eq!(
        run(&map_a, &opt, &read10(), vec![]).await.0.status,
        Status::Good
    );
}

#[tokio::test]
async fn implicit_only_refuses_stpg_and_hides_it() {
    let alua = Arc::new(two_groups(AluaMode::Implicit));
    let map = LunMap::new(vec![(0, lu(&alua))]);
    let nx = nexus(1, 1);
    run(&map, &nx, &TUR, vec![]).await;
    let stpg = [0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0];
    let (r, _) = run(&map, &nx, &stpg, vec![0, 0, 0, 0, 0, 0, 0, 2]).await;
    assert_eq!(sense(&r), (5, 0x20, 0));
    assert_eq!(alua.state(2), Some(AccessState::Standby));
    // REPORT SUPPORTED OPERATION CODES: RTPG supported, STPG not.
    let rsoc = |opcode: u8| [0xA3, 0x0C, 0x02, opcode, 0, 0x0A, 0, 0, 1, 0, 0, 0];
    let (_, d) = run(&map, &nx, &rsoc(0xA3), vec![]).await;
    assert_eq!(d[1] & 0x07, 0x03);
    let (_, d) = run(&map, &nx, &rsoc(0xA4), vec![]).await;
    assert_eq!(d[1] & 0x07, 0x01);
    let (_, inq) = run(&map, &nx, &[0x12, 0, 0, 0, 96, 0], vec![]).await;
    assert_eq!(inq[5] & 0x30, 0x10);
}
