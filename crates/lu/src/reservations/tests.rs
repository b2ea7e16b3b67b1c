//! The neutral state machine: the SCSI suite (esos-scsi `pr/tests.rs`) drives every
//! service action through SPC codes; these cover what is protocol-neutral on its own.

use proptest::prelude::*;

use super::*;

const A: &str = "iqn.1993-08.org.debian:01:a,i,0x230000000001";
const B: &str = "iqn.1993-08.org.debian:01:b,i,0x230000000001";
const T: &str = "iqn.2026-01.org.esos:t,t,0x0001";

fn port(initiator: &str) -> Port<'_> {
    Port {
        initiator,
        target: T,
        rel_port: 1,
    }
}

fn register(s: &mut PrState, who: &str, key: u64) {
    let prm = OutParams {
        sa_key: key,
        ..OutParams::default()
    };
    s.apply(port(who), Action::Register, UNIT_WE, &prm).unwrap();
}

const UNIT_WE: Requested = Requested {
    unit_scope: true,
    ty: Some(ReservationType::WriteExclusive),
};

#[test]
fn neutral_errors_and_notices() {
    let mut s = PrState::default();
    register(&mut s, A, 1);
    register(&mut s, B, 2);
    let key = |k| OutParams {
        key: k,
        ..OutParams::default()
    };
    let bad_scope = Requested {
        unit_scope: false,
        ..UNIT_WE
    };
    let bad_type = Requested {
        ty: None,
        ..UNIT_WE
    };
    let reserve = Action::Reserve;
    assert_eq!(
        s.apply(port(A), reserve, bad_scope, &key(1)),
        Err(PrError::InvalidScope)
    );
    assert_eq!(
        s.apply(port(A), reserve, bad_type, &key(1)),
        Err(PrError::InvalidType)
    );
    assert_eq!(
        s.apply(port(A), reserve, UNIT_WE, &key(9)),
        Err(PrError::Conflict)
    );
    s.apply(port(A), reserve, UNIT_WE, &key(1)).unwrap();
    assert!(s.conflicts(port(B), Access::Write));
    assert!(!s.conflicts(port(B), Access::Read));
    let ea = Requested {
        ty: Some(ReservationType::ExclusiveAccess),
        ..UNIT_WE
    };
    assert_eq!(
        s.apply(port(A), Action::Release, ea, &key(1)),
        Err(PrError::InvalidRelease)
    );
    let fx = s.apply(port(B), Action::Clear, UNIT_WE, &key(2)).unwrap();
    assert!(
        fx.notices
            .iter()
            .all(|(_, e)| *e == Event::ReservationsPreempted)
    );
    assert!(s.regs.is_empty() && s.res.is_none());
}

/// An NVMe host registers as `<host NQN>,h,0x<host id>` with no target port: it holds on
/// every controller, and its bare NQN names all of its host ids.
#[test]
fn nvme_hosts_fit_the_same_identity() {
    let host = "nqn.2014-08.org.nvmexpress:uuid:1b4e28ba,h,0x0123456789abcdef0123456789abcdef";
    let who = Who {
        initiator: host.into(),
        target: None,
    };
    let any_controller = Port {
        initiator: host,
        target: "nqn.2026-01.org.esos:subsys,p,0x0002",
        rel_port: 2,
    };
    assert!(who.matches(any_controller));
    let bare = Who {
        initiator: "nqn.2014-08.org.nvmexpress:uuid:1b4e28ba".into(),
        target: None,
    };
    assert!(bare.matches(any_controller));
}

/// A state file as deployed systems wrote it (SPC type codes) still loads.
#[test]
fn existing_state_files_load() {
    let text = "esos-pr 1\naptpl 1\ngeneration 7\n\
                reg 3 00000000000000ab 1 iqn.a,i,0x230000000001 iqn.t,t,0x0001\n\
                reg 4 00000000000000cd 0 iqn.b *\n\
                res 5 3\n";
    let s = decode_state(text, "f").unwrap();
    assert_eq!(s.generation, 7);
    assert_eq!(s.regs.len(), 2);
    assert_eq!(s.regs[1].who.target, None);
    assert_eq!(
        s.res,
        Some(Reservation {
            ty: ReservationType::WriteExclusiveRegistrantsOnly,
            holder: Some(3),
        })
    );
    assert_eq!(encode_state(&s), text);
}

fn initiator() -> impl Strategy<Value = String> {
    ("[a-z0-9.:-]{1,40}", proptest::option::of("[0-9a-f]{12}")).prop_map(|(n, isid)| match isid {
        Some(i) => format!("iqn.{n},i,0x{i}"),
        None => format!("iqn.{n}"),
    })
}

proptest! {
    #[test]
    fn state_file_round_trip(
        regs in proptest::collection::vec((any::<u64>(), initiator(), proptest::option::of("[ -~]{1,40}"), any::<u16>()), 0..6),
        generation in any::<u32>(),
        ty in prop_oneof![Just(1u8), Just(3), Just(5), Just(6), Just(7), Just(8)],
        reserved in any::<bool>(),
    ) {
        let mut s = PrState { aptpl: true, generation, ..PrState::default() };
        for (key, init, target, rel_port) in regs {
            s.add(key, Who { initiator: init, target }, rel_port).unwrap();
        }
        if reserved && !s.regs.is_empty() {
            let ty = ReservationType::from_file_code(ty).unwrap();
            s.res = Some(Reservation { ty, holder: (!ty.all_registrants()).then_some(s.regs[0].id) });
        }
        let text = encode_state(&s);
        prop_assert_eq!(decode_state(&text, "f").unwrap(), s);
    }

    #[test]
    fn state_file_decode_never_panics(t in "[ -~\n]{0,200}") {
        let _ = decode_state(&format!("{FILE_MAGIC}\n{t}"), "f");
    }
}
