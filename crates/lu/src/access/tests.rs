//! Port groups: table building, the fast-path counter, change notices through the
//! events of registered units, and the state file.

use std::sync::Arc;

use esos_block::{Backend, Device, DeviceSpec};

use super::*;
use crate::events::{Audience, Event, Recipients, Session, Subscriber, SubscriberId};

fn spec(id: u16, state: AccessState, ports: &[u16]) -> GroupSpec {
    GroupSpec {
        id,
        state,
        ports: ports.to_vec(),
    }
}

/// Group 1 (ports 1, 3) active/optimized, group 2 (port 2) standby.
fn two_groups(mode: AccessMode) -> PortGroups {
    PortGroups::new(
        mode,
        vec![
            spec(2, AccessState::Standby, &[2]),
            spec(1, AccessState::ActiveOptimized, &[3, 1]),
        ],
    )
    .unwrap()
}

#[test]
fn table_errors_name_the_problem() {
    let ao = AccessState::ActiveOptimized;
    let cases = [
        (
            vec![spec(1, ao, &[1]), spec(1, ao, &[2])],
            AccessError::DuplicateGroup(1),
        ),
        (vec![spec(4, ao, &[])], AccessError::EmptyGroup(4)),
        (
            vec![spec(1, ao, &[5, 5])],
            AccessError::DuplicatePort { port: 5, group: 1 },
        ),
        (
            vec![spec(1, ao, &[1, 2]), spec(7, ao, &[2])],
            AccessError::PortInTwoGroups {
                port: 2,
                first: 1,
                second: 7,
            },
        ),
        (
            vec![spec(1, ao, &(1..=256).collect::<Vec<u16>>())],
            AccessError::TooManyPorts(1),
        ),
        (
            (1..=MAX_PORT_GROUPS as u16 + 1)
                .map(|i| spec(i, ao, &[i]))
                .collect(),
            AccessError::TooManyGroups,
        ),
    ];
    for (specs, want) in cases {
        assert_eq!(
            PortGroups::new(AccessMode::Implicit, specs).unwrap_err(),
            want
        );
    }
}

#[test]
fn fast_path_counter_follows_every_change() {
    let pg = two_groups(AccessMode::Both);
    let count = || pg.inaccessible.load(Ordering::Relaxed);
    assert_eq!(count(), 1);
    assert!(!pg.all_active());
    pg.set_state(2, AccessState::ActiveNonOptimized).unwrap();
    assert_eq!(count(), 0);
    assert!(pg.all_active());
    pg.set_state(1, AccessState::Unavailable).unwrap();
    pg.set_state(1, AccessState::Transitioning).unwrap();
    pg.set_state(2, AccessState::Standby).unwrap();
    assert_eq!(count(), 2);
    pg.set_explicit(
        &[
            (1, AccessState::ActiveOptimized),
            (2, AccessState::ActiveNonOptimized),
        ],
        None,
    )
    .unwrap();
    assert_eq!(count(), 0);
    assert_eq!(
        pg.states(),
        vec![
            (1, AccessState::ActiveOptimized),
            (2, AccessState::ActiveNonOptimized)
        ]
    );
    assert!(pg.groups().all(|g| g.cause == ChangeCause::Explicit));
    assert_eq!(
        pg.set_explicit(&[(9, AccessState::Standby)], None),
        Err(AccessError::NoSuchGroup(9))
    );
    let g = pg.group_of_port(3).unwrap();
    assert_eq!((g.id, g.ports), (1, &[1u16, 3][..]));
    assert!(pg.group_of_port(4).is_none());
}

#[derive(Default)]
struct Heard(Mutex<Vec<Recipients>>, SubscriberId);

impl Subscriber for Heard {
    fn deliver(&self, event: Event, to: Audience<'_>) {
        assert_eq!(event, Event::AccessStateChanged);
        self.0.locked().push(to.sessions_of(self.1));
    }
}

fn unit(pg: &Arc<PortGroups>) -> (Arc<Unit>, Arc<Heard>) {
    let spec = DeviceSpec {
        backend: Backend::Ram {
            size_bytes: 64 * 512,
        },
        block_size: 512,
        read_only: false,
        rotational: None,
    };
    let unit = Arc::new(Unit::new(
        Device::open(&spec).unwrap(),
        crate::identity::Identity {
            vendor: "ESOS".into(),
            product: "test".into(),
            revision: "1".into(),
            serial: "S".into(),
            uuid: [0; 16],
            naa: [0x60; 16],
        },
        Arc::clone(pg),
        crate::reservations::Reservations::without_file(),
    ));
    pg.register(&unit);
    let heard = Arc::new(Heard::default());
    let weak = Arc::downgrade(&heard) as Weak<dyn Subscriber>;
    unit.events.subscribe(heard.1, weak).unwrap();
    (unit, heard)
}

#[test]
fn changes_reach_every_unit_but_not_the_asking_session() {
    let pg = Arc::new(two_groups(AccessMode::Both));
    let (_u1, a) = unit(&pg);
    let (_u2, b) = unit(&pg);
    let from = Session {
        subscriber: a.1,
        session: 4,
    };
    pg.set_explicit(&[(2, AccessState::ActiveOptimized)], Some(from))
        .unwrap();
    // No change, no notice.
    pg.set_explicit(&[(2, AccessState::ActiveOptimized)], Some(from))
        .unwrap();
    pg.set_state(1, AccessState::Standby).unwrap();
    assert_eq!(*a.0.locked(), vec![Recipients::AllBut(4), Recipients::All]);
    assert_eq!(*b.0.locked(), vec![Recipients::All, Recipients::All]);
}

#[test]
fn state_file_keeps_explicit_changes_until_the_config_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alua.state");
    let pg = two_groups(AccessMode::Explicit)
        .with_state_file(path.clone())
        .unwrap();
    assert!(!path.exists(), "nothing is written before a change");
    pg.set_explicit(
        &[(1, AccessState::Standby), (2, AccessState::ActiveOptimized)],
        None,
    )
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("group 1 active-optimized standby"), "{text}");
    let again = two_groups(AccessMode::Explicit)
        .with_state_file(path.clone())
        .unwrap();
    assert_eq!(
        again.states(),
        vec![(1, AccessState::Standby), (2, AccessState::ActiveOptimized)]
    );
    assert_eq!(again.inaccessible.load(Ordering::Relaxed), 1);
    // Implicit changes are saved too, so a restart never brings back an older state.
    again.set_state(2, AccessState::Unavailable).unwrap();
    let third = two_groups(AccessMode::Explicit)
        .with_state_file(path.clone())
        .unwrap();
    assert_eq!(third.state(2), Some(AccessState::Unavailable));
    again.set_state(2, AccessState::ActiveOptimized).unwrap();
    // Group 1 configured differently now: the config wins for it, not for group 2.
    let edited = PortGroups::new(
        AccessMode::Explicit,
        vec![
            spec(1, AccessState::ActiveNonOptimized, &[1]),
            spec(2, AccessState::Standby, &[2]),
        ],
    )
    .unwrap()
    .with_state_file(path.clone())
    .unwrap();
    assert_eq!(
        edited.states(),
        vec![
            (1, AccessState::ActiveNonOptimized),
            (2, AccessState::ActiveOptimized)
        ]
    );
    // A damaged file is a precise error.
    std::fs::write(&path, "esos-alua 1\ngroup 1 standby sideways\n").unwrap();
    let e = two_groups(AccessMode::Explicit)
        .with_state_file(path.clone())
        .unwrap_err()
        .to_string();
    assert!(e.contains(":2: bad state"), "{e}");
    std::fs::write(&path, "hello\n").unwrap();
    assert!(
        two_groups(AccessMode::Explicit)
            .with_state_file(path)
            .is_err()
    );
}

#[test]
fn state_file_text_round_trips() {
    let groups = vec![
        (1, AccessState::ActiveOptimized, AccessState::Standby),
        (65535, AccessState::Unavailable, AccessState::Transitioning),
    ];
    assert_eq!(decode_state(&encode_state(&groups), "f").unwrap(), groups);
    for s in ALL_STATES {
        assert_eq!(s.as_str().parse(), Ok(s));
        assert_eq!(AccessState::from_index(s.index()), s);
    }
}
