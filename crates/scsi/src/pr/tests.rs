//! The reservation state machine, TransportIDs and the state file, without an engine.

use super::*;
use esos_lu::events::Event;
use proptest::prelude::*;

const T: &str = "iqn.2026-01.org.esos:t,t,0x0001";

fn port(i: &str) -> Port<'_> {
    Port {
        initiator: i,
        target: T,
        rel_port: 1,
    }
}

const A: &str = "iqn.a,i,0x000000000001";
const B: &str = "iqn.b,i,0x000000000002";
const C: &str = "iqn.c,i,0x000000000003";

fn prm(key: u64, sa_key: u64) -> OutParams {
    OutParams {
        key,
        sa_key,
        ..OutParams::default()
    }
}

fn register(s: &mut PrState, who: &str, key: u64) {
    s.out(port(who), sa::REGISTER_AND_IGNORE, 0, 0, &prm(0, key))
        .unwrap();
}

fn reserve(s: &mut PrState, who: &str, key: u64, ty: PrType) -> Result<Effects, Refusal> {
    s.out(port(who), sa::RESERVE, 0, type_code(ty), &prm(key, 0))
}

#[test]
fn register_needs_matching_key_and_bumps_generation() {
    let mut s = PrState::default();
    // Unregistered with a non-zero key: conflict (SPC-4 5.9.7).
    assert_eq!(
        s.out(port(A), sa::REGISTER, 0, 0, &prm(5, 1)),
        Err(Refusal::Conflict)
    );
    // Unregistering while unregistered: no-op, generation unchanged.
    s.out(port(A), sa::REGISTER, 0, 0, &prm(0, 0)).unwrap();
    assert_eq!(s.generation, 0);
    s.out(port(A), sa::REGISTER, 0, 0, &prm(0, 7)).unwrap();
    assert_eq!((s.generation, s.regs.len()), (1, 1));
    assert_eq!(
        s.out(port(A), sa::REGISTER, 0, 0, &prm(8, 9)),
        Err(Refusal::Conflict)
    );
    s.out(port(A), sa::REGISTER, 0, 0, &prm(7, 9)).unwrap();
    assert_eq!(s.find(port(A)).unwrap().key, 9);
    s.out(port(A), sa::REGISTER, 0, 0, &prm(9, 0)).unwrap();
    assert!(s.regs.is_empty());
    assert_eq!(s.generation, 3);
}

#[test]
fn access_rules_per_type() {
    // (type, registered B reads, registered B writes, unregistered C reads, C writes)
    let table = [
        (PrType::ExclusiveAccess, false, false, false, false),
        (PrType::WriteExclusive, true, false, true, false),
        (
            PrType::ExclusiveAccessRegistrantsOnly,
            true,
            true,
            false,
            false,
        ),
        (
            PrType::WriteExclusiveRegistrantsOnly,
            true,
            true,
            true,
            false,
        ),
        (
            PrType::ExclusiveAccessAllRegistrants,
            true,
            true,
            false,
            false,
        ),
        (
            PrType::WriteExclusiveAllRegistrants,
            true,
            true,
            true,
            false,
        ),
    ];
    for (ty, br, bw, cr, cw) in table {
        let mut s = PrState::default();
        register(&mut s, A, 1);
        register(&mut s, B, 2);
        reserve(&mut s, A, 1, ty).unwrap();
        let ok = |who, acc| !s.conflicts(port(who), acc);
        assert!(ok(A, Access::Read) && ok(A, Access::Write), "{ty:?}");
        assert_eq!(ok(B, Access::Read), br, "{ty:?}");
        assert_eq!(ok(B, Access::Write), bw, "{ty:?}");
        assert_eq!(ok(C, Access::Read), cr, "{ty:?}");
        assert_eq!(ok(C, Access::Write), cw, "{ty:?}");
        assert!(ok(C, Access::Always));
        assert_eq!(
            s.holder_key(),
            Some(if ty.all_registrants() { 0 } else { 1 })
        );
    }
}

#[test]
fn reserve_conflicts_and_release_rules() {
    let mut s = PrState::default();
    register(&mut s, A, 1);
    register(&mut s, B, 2);
    assert_eq!(
        reserve(&mut s, A, 99, PrType::WriteExclusive),
        Err(Refusal::Conflict)
    );
    assert_eq!(
        reserve(&mut s, C, 0, PrType::WriteExclusive),
        Err(Refusal::Conflict)
    );
    reserve(&mut s, A, 1, PrType::WriteExclusive).unwrap();
    // Same holder, same type: no-op; another type or another nexus: conflict.
    reserve(&mut s, A, 1, PrType::WriteExclusive).unwrap();
    assert_eq!(
        reserve(&mut s, A, 1, PrType::ExclusiveAccess),
        Err(Refusal::Conflict)
    );
    assert_eq!(
        reserve(&mut s, B, 2, PrType::WriteExclusive),
        Err(Refusal::Conflict)
    );
    // A non-holder's RELEASE does nothing; the holder's with the wrong type is refused.
    s.out(port(B), sa::RELEASE, 0, 1, &prm(2, 0)).unwrap();
    assert!(s.res.is_some());
    let e = s.out(port(A), sa::RELEASE, 0, 3, &prm(1, 0)).unwrap_err();
    assert_eq!(e, Refusal::Check(Sense::illegal(INVALID_RELEASE_OF_PR)));
    s.out(port(A), sa::RELEASE, 0, 1, &prm(1, 0)).unwrap();
    assert!(s.res.is_none());
    assert_eq!(
        s.generation, 2,
        "RESERVE and RELEASE leave the generation alone"
    );
    // Bad type and bad scope are CDB errors.
    assert!(matches!(
        reserve(&mut s, A, 1, PrType::WriteExclusive).and(s.out(
            port(A),
            sa::RESERVE,
            1,
            1,
            &prm(1, 0)
        )),
        Err(Refusal::Check(_))
    ));
}

#[test]
fn registrants_only_release_tells_the_others() {
    let mut s = PrState::default();
    register(&mut s, A, 1);
    register(&mut s, B, 2);
    reserve(&mut s, A, 1, PrType::WriteExclusiveRegistrantsOnly).unwrap();
    let fx = s.out(port(A), sa::RELEASE, 0, 5, &prm(1, 0)).unwrap();
    assert!(
        fx.notices
            .iter()
            .any(|(w, a)| w.matches(port(B)) && *a == Event::ReservationsReleased)
    );
}

#[test]
fn unregistering_the_holder_releases_except_all_registrants() {
    let mut s = PrState::default();
    register(&mut s, A, 1);
    register(&mut s, B, 2);
    reserve(&mut s, A, 1, PrType::ExclusiveAccess).unwrap();
    s.out(port(A), sa::REGISTER, 0, 0, &prm(1, 0)).unwrap();
    assert!(s.res.is_none());

    let mut s = PrState::default();
    register(&mut s, A, 1);
    register(&mut s, B, 2);
    reserve(&mut s, A, 1, PrType::ExclusiveAccessAllRegistrants).unwrap();
    s.out(port(A), sa::REGISTER, 0, 0, &prm(1, 0)).unwrap();
    assert!(
        s.res.is_some(),
        "AR reservation lasts while B is registered"
    );
    s.out(port(B), sa::REGISTER, 0, 0, &prm(2, 0)).unwrap();
    assert!(s.res.is_none());
}

#[test]
fn clear_removes_everything_and_tells_others() {
    let mut s = PrState::default();
    register(&mut s, A, 1);
    register(&mut s, B, 2);
    reserve(&mut s, B, 2, PrType::WriteExclusive).unwrap();
    let g = s.generation;
    assert_eq!(
        s.out(port(C), sa::CLEAR, 0, 0, &prm(0, 0)),
        Err(Refusal::Conflict)
    );
    let fx = s.out(port(A), sa::CLEAR, 0, 0, &prm(1, 0)).unwrap();
    assert!(s.regs.is_empty() && s.res.is_none());
    assert_eq!(s.generation, g + 1);
    assert!(
        fx.notices
            .iter()
            .any(|(w, a)| w.matches(port(B)) && *a == Event::ReservationsPreempted)
    );
}

#[test]
fn preempt_without_reservation_removes_registrations() {
    let mut s = PrState::default();
    register(&mut s, A, 1);
    register(&mut s, B, 2);
    let g = s.generation;
    // As libiscsi's PREEMPT test: B removes A's key; one generation step.
    let fx = s.out(port(B), sa::PREEMPT, 0, 3, &prm(2, 1)).unwrap();
    assert_eq!(s.generation, g + 1);
    assert_eq!(s.regs.len(), 1);
    assert_eq!(s.regs[0].key, 2);
    assert!(s.res.is_none());
    assert_eq!(fx.notices.len(), 1);
    assert!(fx.notices[0].0.matches(port(A)));
    assert_eq!(fx.notices[0].1, Event::RegistrationsPreempted);
    // A key nobody has: conflict; key 0 without a reservation: parameter error.
    assert_eq!(
        s.out(port(B), sa::PREEMPT, 0, 3, &prm(2, 77)),
        Err(Refusal::Conflict)
    );
    assert!(matches!(
        s.out(port(B), sa::PREEMPT, 0, 3, &prm(2, 0)),
        Err(Refusal::Check(_))
    ));
}

#[test]
fn preempt_holder_takes_over_and_abort_lists_victims() {
    let mut s = PrState::default();
    register(&mut s, A, 1);
    register(&mut s, B, 2);
    reserve(&mut s, A, 1, PrType::WriteExclusive).unwrap();
    let fx = s
        .out(port(B), sa::PREEMPT_AND_ABORT, 0, 3, &prm(2, 1))
        .unwrap();
    assert_eq!(s.res.unwrap().ty, PrType::ExclusiveAccess);
    assert_eq!(s.holder_key(), Some(2));
    assert!(s.find(port(A)).is_none());
    assert_eq!(fx.abort.len(), 1);
    assert!(fx.abort[0].matches(port(A)));
    assert!(s.conflicts(port(A), Access::Read));
}

#[test]
fn preempt_all_registrants_with_zero_key() {
    let mut s = PrState::default();
    register(&mut s, A, 1);
    register(&mut s, B, 2);
    register(&mut s, C, 3);
    reserve(&mut s, A, 1, PrType::WriteExclusiveAllRegistrants).unwrap();
    s.out(port(B), sa::PREEMPT, 0, 1, &prm(2, 0)).unwrap();
    assert_eq!(s.regs.len(), 1);
    assert_eq!(s.res.unwrap().ty, PrType::WriteExclusive);
    assert_eq!(s.holder_key(), Some(2));
}

#[test]
fn spec_i_pt_and_all_tg_pt() {
    let mut s = PrState::default();
    let mut p = prm(0, 4);
    p.spec_i_pt = true;
    p.transport_ids = vec!["iqn.b".into(), C.into()];
    s.out(port(A), sa::REGISTER, 0, 0, &p).unwrap();
    assert_eq!(s.regs.len(), 3);
    // Format 0 stands for every port of that initiator name.
    assert!(s.find(port(B)).is_some());
    assert!(s.find(port("iqn.b,i,0x00000000ffff")).is_some());
    assert!(s.find(port("iqn.bb,i,0x000000000002")).is_none());
    // A TransportID naming a registered nexus fails the whole command.
    let mut s2 = s.clone();
    let mut p2 = prm(0, 5);
    p2.spec_i_pt = true;
    p2.transport_ids = vec![C.into()];
    let d = "iqn.d,i,0x000000000004";
    assert!(matches!(
        s2.out(port(d), sa::REGISTER, 0, 0, &p2),
        Err(Refusal::Check(_))
    ));
    assert_eq!(s2, s, "nothing registered on failure");
    // SPEC_I_PT with REGISTER AND IGNORE EXISTING KEY is refused.
    assert!(matches!(
        s2.out(port(d), sa::REGISTER_AND_IGNORE, 0, 0, &p2),
        Err(Refusal::Check(_))
    ));
    // ALL_TG_PT registers on every target port.
    let mut all = prm(0, 6);
    all.all_tg_pt = true;
    s2.out(port(d), sa::REGISTER, 0, 0, &all).unwrap();
    let other = Port {
        initiator: d,
        target: "iqn.other,t,0x0002",
        rel_port: 2,
    };
    assert_eq!(s2.find(other).map(|r| r.key), Some(6));
}

#[test]
fn registration_limit() {
    let mut s = PrState::default();
    for i in 0..MAX_REGISTRATIONS {
        register(&mut s, &format!("iqn.x{i},i,0x000000000001"), 1);
    }
    let e = s
        .out(port(A), sa::REGISTER_AND_IGNORE, 0, 0, &prm(0, 1))
        .unwrap_err();
    assert_eq!(
        e,
        Refusal::Check(Sense::illegal(INSUFFICIENT_REGISTRATION_RESOURCES))
    );
}

#[test]
fn register_and_move() {
    let mut s = PrState::default();
    register(&mut s, A, 1);
    let mv = |unreg| MoveParams {
        key: 1,
        sa_key: 9,
        unreg,
        aptpl: false,
        dest: Who {
            initiator: B.into(),
            target: Some(T.into()),
        },
        dest_rel_port: 1,
    };
    // Not the holder: conflict.
    assert_eq!(
        s.register_and_move(port(A), 0, 1, &mv(true)),
        Err(Refusal::Conflict)
    );
    reserve(&mut s, A, 1, PrType::WriteExclusive).unwrap();
    s.register_and_move(port(A), 0, 1, &mv(true)).unwrap();
    assert_eq!(s.holder_key(), Some(9));
    assert!(s.find(port(A)).is_none());
    assert!(s.is_holder(s.find(port(B)).unwrap()));
}

#[test]
fn transport_id_rejects_garbage() {
    let mut ok = Vec::new();
    encode_transport_id(A, &mut ok);
    assert_eq!(decode_transport_id(&ok).unwrap().0, A);
    // Wrong protocol, truncated, format 1 without ISID, bad ISID.
    let mut bad = ok.clone();
    bad[0] = 0x46;
    assert!(decode_transport_id(&bad).is_err());
    assert!(decode_transport_id(&ok[..ok.len() - 4]).is_err());
    let mut f1 = Vec::new();
    encode_transport_id("iqn.a", &mut f1);
    f1[0] |= 0x40;
    assert!(decode_transport_id(&f1).is_err());
    let mut isid = Vec::new();
    encode_transport_id("iqn.a,i,0x12", &mut isid);
    assert!(decode_transport_id(&isid).is_err());
    assert!(decode_transport_id(&[0x05, 0, 0, 4, b'a', b'b', b'c', b'd']).is_err());
}

fn name() -> impl Strategy<Value = String> {
    "iqn\\.[a-z0-9.:-]{1,60}"
}

fn initiator() -> impl Strategy<Value = String> {
    (name(), proptest::option::of("[0-9a-f]{12}")).prop_map(|(n, isid)| match isid {
        Some(i) => format!("{n},i,0x{i}"),
        None => n,
    })
}

proptest! {
    #[test]
    fn transport_id_round_trip(init in initiator()) {
        let mut b = Vec::new();
        encode_transport_id(&init, &mut b);
        prop_assert_eq!(b.len() % 4, 0);
        prop_assert!(b.len() >= 24);
        let (got, used) = decode_transport_id(&b).unwrap();
        prop_assert_eq!(got, init);
        prop_assert_eq!(used, b.len());
    }

    #[test]
    fn transport_id_decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = decode_transport_id(&b);
    }
}

#[test]
fn state_file_errors_name_the_line() {
    let e = decode_state("esos-pr 1\naptpl 1\nreg 1 zz 1 iqn.a *\n", "x.pr").unwrap_err();
    assert_eq!(e.to_string(), "x.pr:3: bad key");
    assert!(decode_state("garbage", "x").is_err());
    // A reservation whose holder is not registered is refused.
    assert!(decode_state("esos-pr 1\naptpl 1\nres 1 4\n", "x").is_err());
    // Without APTPL a restart forgets registrations.
    let s = decode_state("esos-pr 1\naptpl 0\n", "x").unwrap();
    assert_eq!(s, PrState::default());
}

#[test]
fn type_codes_round_trip_and_undefined_codes_are_refused() {
    for code in 0..=u8::MAX {
        match type_from_code(code) {
            Some(ty) => assert_eq!(type_code(ty), code),
            None => assert!(![1, 3, 5, 6, 7, 8].contains(&code), "{code}"),
        }
    }
}
