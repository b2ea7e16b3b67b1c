use super::*;
use crate::tui::model::{Device, Group, Lun, Session};
use serde_json::json;

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

fn dev(name: &str) -> Device {
    Device {
        name: name.into(),
        kind: "ram".into(),
        size_bytes: 8 << 20,
        block_size: 512,
        ..Device::default()
    }
}

pub(crate) fn sample() -> Snapshot {
    Snapshot {
        devices: vec![dev("d0"), dev("d1"), dev("d2")],
        targets: vec![Target {
            name: "iqn.2026-11.org.esos:t".into(),
            enabled: true,
            default_luns: Some(vec![Lun {
                lun: 0,
                device: "d0".into(),
            }]),
            groups: vec![Group {
                name: "esx".into(),
                initiators: vec!["iqn.1998-01.com.vmware:h1".into()],
                luns: vec![Lun {
                    lun: 0,
                    device: "d1".into(),
                }],
            }],
            sessions: 1,
            ..Target::default()
        }],
        sessions: vec![Session {
            id: 7,
            initiator: "iqn.1998-01.com.vmware:h1".into(),
            target: Some("iqn.2026-11.org.esos:t".into()),
            ..Session::default()
        }],
        stats: vec![],
        port_groups: Some(vec![
            PortGroup {
                id: 1,
                state: "active-optimized".into(),
                portal_groups: vec![1],
                mode: "both".into(),
            },
            PortGroup {
                id: 2,
                state: "active-non-optimized".into(),
                portal_groups: vec![2],
                mode: "both".into(),
            },
        ]),
        config: Some(
            "[server]\n[[server.portal]]\naddress = \"192.0.2.1:3260\"\n\
             [[server.portal]]\naddress = \"[2001:db8::1]:3260\"\ngroup = 2\n"
                .into(),
        ),
        ..Snapshot::default()
    }
}

fn app() -> App {
    let mut a = App::new("/run/esos.sock");
    a.on_poll(Ok(sample()), Instant::now());
    a
}

#[test]
fn tabs_switch_by_number_and_tab_and_quit() {
    let mut a = app();
    assert_eq!(a.on_key(ch('3')), Effect::None);
    assert_eq!(a.tab, Tab::Targets);
    a.on_key(key(KeyCode::Tab));
    assert_eq!(a.tab, Tab::Hosts);
    a.on_key(key(KeyCode::BackTab));
    a.on_key(key(KeyCode::BackTab));
    a.on_key(key(KeyCode::BackTab));
    assert_eq!(a.tab, Tab::Dashboard);
    a.on_key(key(KeyCode::BackTab));
    assert_eq!(a.tab, Tab::System);
    assert_eq!(a.on_key(ch('r')), Effect::Refresh);
    assert_eq!(a.on_key(ch('q')), Effect::Quit);
    assert_eq!(a.on_key(key(KeyCode::Esc)), Effect::Quit);
}

#[test]
fn help_takes_keys_until_closed() {
    let mut a = app();
    a.on_key(ch('?'));
    assert_eq!(a.modal, Some(Modal::Help));
    assert_eq!(a.on_key(ch('4')), Effect::None);
    assert_eq!(
        a.tab,
        Tab::Dashboard,
        "keys under the help screen do nothing"
    );
    assert_eq!(
        a.on_key(key(KeyCode::Esc)),
        Effect::None,
        "Esc closes, not quits"
    );
    assert!(a.modal.is_none());
}

#[test]
fn removing_a_device_needs_confirmation() {
    let mut a = app();
    a.on_key(ch('2'));
    a.on_key(key(KeyCode::Down));
    assert_eq!(a.on_key(ch('d')), Effect::None);
    assert!(matches!(&a.modal, Some(Modal::Confirm { message, .. }) if message.contains("d1")));
    a.on_key(ch('x'));
    assert!(a.modal.is_some(), "other keys leave the question open");
    assert_eq!(a.on_key(ch('n')), Effect::None);
    assert!(a.modal.is_none() && a.busy.is_none());

    a.on_key(ch('d'));
    assert_eq!(
        a.on_key(ch('y')),
        Effect::Run(Action::RemoveDevice("d1".into()))
    );
    // One change at a time.
    a.on_key(ch('d'));
    assert_eq!(a.on_key(ch('y')), Effect::None);
    assert_eq!(a.status.as_ref().unwrap().0, Level::Error);
    a.on_done(
        &Action::RemoveDevice("d1".into()),
        Err("device \"d1\": in use".into()),
    );
    assert_eq!(
        a.status,
        Some((Level::Error, "device \"d1\": in use".into()))
    );
    assert!(a.busy.is_none());
    assert!(
        a.log
            .back()
            .unwrap()
            .ends_with("refused: device \"d1\": in use")
    );
}

#[test]
fn add_device_then_map_it() {
    let mut a = app();
    a.on_key(ch('2'));
    a.on_key(ch('a'));
    a.on_key(key(KeyCode::Right));
    a.on_key(key(KeyCode::Right));
    a.on_key(key(KeyCode::Tab));
    for c in "d3".chars() {
        a.on_key(ch(c));
    }
    a.on_key(key(KeyCode::Tab));
    a.on_key(key(KeyCode::Tab));
    for c in "16M".chars() {
        a.on_key(ch(c));
    }
    let Effect::Run(add) = a.on_key(key(KeyCode::Enter)) else {
        panic!("no run: {:?}", a.status)
    };
    assert_eq!(
        add,
        Action::AddDevice {
            name: "d3".into(),
            body: json!({ "name": "d3", "type": "ram", "size": "16M" })
        }
    );
    a.on_done(&add, Ok(json!({ "dry_run": false, "report": {} })));
    assert_eq!(a.status, Some((Level::Ok, "device d3 added".into())));

    // Map: the picker offers only devices not yet in the default map.
    a.on_key(ch('3'));
    a.on_key(ch('m'));
    let Some(Modal::Pick(p)) = &a.modal else {
        panic!("no picker")
    };
    let names: Vec<_> = p
        .items
        .iter()
        .map(|(l, _)| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(names, ["d1", "d2"]);
    a.on_key(key(KeyCode::Down));
    a.on_key(key(KeyCode::Down));
    assert_eq!(
        a.on_key(key(KeyCode::Enter)),
        Effect::Run(Action::MapLun {
            target: "iqn.2026-11.org.esos:t".into(),
            group: None,
            device: "d2".into()
        })
    );
}

#[test]
fn hosts_tab_acts_on_the_selected_group() {
    let mut a = app();
    a.on_key(ch('4'));
    assert_eq!(a.host_rows().len(), 2);
    a.on_key(ch('i'));
    assert!(a.modal.is_none(), "the default map has no initiators");
    assert_eq!(a.status.as_ref().unwrap().0, Level::Error);
    a.on_key(key(KeyCode::Down));
    a.on_key(ch('m'));
    let Some(Modal::Pick(p)) = &a.modal else {
        panic!("no picker")
    };
    assert_eq!(p.items.len(), 2, "d1 is already in group esx");
    assert!(matches!(&p.items[0].1, Action::MapLun { group: Some(g), .. } if g == "esx"));
    a.on_key(key(KeyCode::Esc));
    a.on_key(ch('u'));
    a.on_key(key(KeyCode::Enter));
    assert!(
        matches!(a.modal, Some(Modal::Confirm { .. })),
        "unmap asks first"
    );
    assert_eq!(
        a.on_key(ch('y')),
        Effect::Run(Action::UnmapLun {
            target: "iqn.2026-11.org.esos:t".into(),
            group: Some("esx".into()),
            lun: 0
        })
    );
    a.on_done(
        &Action::UnmapLun {
            target: "t".into(),
            group: None,
            lun: 0,
        },
        Ok(json!({})),
    );
    a.on_key(ch('d'));
    assert!(
        matches!(&a.modal, Some(Modal::Confirm { action: Action::RemoveGroup { name, .. }, .. }) if name == "esx")
    );
}

#[test]
fn disabling_a_target_with_sessions_asks_first() {
    let mut a = app();
    a.on_key(ch('3'));
    assert_eq!(a.on_key(ch('e')), Effect::None);
    assert!(matches!(a.modal, Some(Modal::Confirm { .. })));
    assert_eq!(
        a.on_key(ch('y')),
        Effect::Run(Action::SetEnabled {
            target: "iqn.2026-11.org.esos:t".into(),
            enabled: false
        })
    );
}

#[test]
fn polls_compute_rates_and_report_the_connection() {
    let mut a = App::new("s");
    let t0 = Instant::now();
    let mut s = sample();
    s.stats = vec![Stats {
        name: "d0".into(),
        read_commands: 100,
        ..Stats::default()
    }];
    a.on_poll(Ok(s.clone()), t0);
    assert!(a.rate_of("d0").is_none());
    s.stats[0].read_commands = 300;
    a.on_poll(Ok(s), t0 + std::time::Duration::from_secs(2));
    assert_eq!(a.rate_of("d0").unwrap().iops, 100.0);

    a.on_poll(Err("connection refused".into()), Instant::now());
    assert_eq!(a.connected, Some(false));
    assert!(a.rate_of("d0").is_none());
    assert!(a.status.as_ref().unwrap().1.contains("connection refused"));
    a.on_poll(Ok(Snapshot::default()), Instant::now());
    assert_eq!(a.status.as_ref().unwrap().0, Level::Ok);
    assert_eq!(a.sel.device, 0);
}

#[test]
fn selections_stay_in_their_lists() {
    let mut a = app();
    a.on_key(ch('2'));
    a.on_key(key(KeyCode::End));
    assert_eq!(a.sel.device, 2);
    a.on_key(key(KeyCode::Down));
    assert_eq!(a.sel.device, 2);
    let mut s = sample();
    s.devices.truncate(1);
    a.on_poll(Ok(s), Instant::now());
    assert_eq!(a.sel.device, 0);
    a.on_key(key(KeyCode::Home));
    a.on_key(key(KeyCode::Up));
    assert_eq!(a.sel.device, 0);
}

#[test]
fn a_poll_without_config_keeps_the_last_one() {
    let mut a = app();
    let mut s = sample();
    s.config = None;
    a.on_poll(Ok(s), Instant::now());
    assert_eq!(a.snapshot.config, sample().config);
    assert!(!a.wants_config());
    a.on_key(ch('6'));
    assert!(a.wants_config());
    a.on_key(ch('3'));
    assert!(a.wants_config(), "the Targets tab shows the portals");
}

#[test]
fn resize_form_sends_the_new_size_and_shows_a_refusal() {
    let mut a = app();
    a.on_key(ch('2'));
    a.on_key(key(KeyCode::Down));
    a.on_key(ch('s'));
    let Some(Modal::Form(f)) = &a.modal else {
        panic!("no form")
    };
    assert_eq!(f.title, "Resize d1 (now 8M)");
    assert_eq!(
        a.on_key(key(KeyCode::Enter)),
        Effect::None,
        "a size is required"
    );
    assert_eq!(a.status, Some((Level::Error, "new size: required".into())));
    for c in "2G".chars() {
        a.on_key(ch(c));
    }
    let want = Action::ResizeDevice {
        name: "d1".into(),
        size: "2G".into(),
    };
    assert_eq!(a.on_key(key(KeyCode::Enter)), Effect::Run(want.clone()));
    assert!(a.modal.is_none());
    let refusal = "device \"d1\": a RAM device cannot be resized";
    a.on_done(&want, Err(refusal.into()));
    assert_eq!(a.status, Some((Level::Error, refusal.into())));
    a.on_done(&want, Ok(serde_json::Value::Null));
    assert_eq!(
        a.status,
        Some((Level::Ok, "device d1 resized to 2G".into()))
    );
}

#[test]
fn port_group_state_asks_before_stopping_io() {
    let mut a = app();
    a.on_key(ch('5'));
    a.on_key(key(KeyCode::End));
    assert_eq!(a.sel.port_group, 1);
    a.on_key(ch('s'));
    let Some(Modal::Form(f)) = &a.modal else {
        panic!("no form")
    };
    assert_eq!(
        f.fields[0].value, "active-non-optimized",
        "starts at the current state"
    );
    // To active/optimized: no question.
    a.on_key(key(KeyCode::Left));
    assert_eq!(
        a.on_key(key(KeyCode::Enter)),
        Effect::Run(Action::SetPortGroupState {
            id: 2,
            state: "active-optimized".into()
        })
    );
    a.on_done(
        &Action::SetPortGroupState {
            id: 2,
            state: "active-optimized".into(),
        },
        Ok(serde_json::Value::Null),
    );
    // To standby: asks, and n keeps it.
    a.on_key(ch('s'));
    a.on_key(key(KeyCode::Right));
    assert_eq!(a.on_key(key(KeyCode::Enter)), Effect::None);
    let Some(Modal::Confirm { message, .. }) = &a.modal else {
        panic!("no confirmation: {:?}", a.modal)
    };
    assert!(
        message.contains("standby") && message.contains("I/O"),
        "{message}"
    );
    a.on_key(ch('n'));
    assert!(a.modal.is_none() && a.busy.is_none());
    // No poll came in between: the form starts at the listed active-non-optimized.
    a.on_key(ch('s'));
    for _ in 0..2 {
        a.on_key(key(KeyCode::Right));
    }
    a.on_key(key(KeyCode::Enter));
    assert_eq!(
        a.on_key(ch('y')),
        Effect::Run(Action::SetPortGroupState {
            id: 2,
            state: "unavailable".into()
        })
    );

    // A daemon that does not list port groups: nothing to set, said so.
    let mut b = app();
    let mut s = sample();
    s.port_groups = None;
    b.on_poll(Ok(s), Instant::now());
    b.on_key(ch('5'));
    b.on_key(ch('s'));
    assert!(b.modal.is_none());
    assert_eq!(b.status.as_ref().unwrap().0, Level::Error);
}

#[test]
fn portals_are_added_and_removed_from_the_targets_tab() {
    let mut a = app();
    a.on_key(ch('3'));
    a.on_key(ch('p'));
    for c in "198.51.100.7:3260".chars() {
        a.on_key(ch(c));
    }
    a.on_key(key(KeyCode::Tab));
    a.on_key(ch('x'));
    assert_eq!(a.on_key(key(KeyCode::Enter)), Effect::None);
    assert!(a.status.as_ref().unwrap().1.starts_with("group: \"x\""));
    a.on_key(key(KeyCode::Backspace));
    a.on_key(ch('3'));
    assert_eq!(
        a.on_key(key(KeyCode::Enter)),
        Effect::Run(Action::AddPortal {
            address: "198.51.100.7:3260".into(),
            group: Some(3)
        })
    );
    a.on_done(
        &Action::AddPortal {
            address: "198.51.100.7:3260".into(),
            group: Some(3),
        },
        Ok(json!({})),
    );

    a.on_key(key(KeyCode::Char('P')));
    let Some(Modal::Pick(p)) = &a.modal else {
        panic!("no picker: {:?}", a.status)
    };
    assert_eq!(p.items.len(), 2);
    assert!(p.items[1].0.starts_with("[2001:db8::1]:3260"));
    a.on_key(key(KeyCode::Down));
    a.on_key(key(KeyCode::Enter));
    assert!(
        matches!(&a.modal, Some(Modal::Confirm { message, .. }) if message.contains("closes its sessions"))
    );
    assert_eq!(
        a.on_key(ch('y')),
        Effect::Run(Action::RemovePortal("[2001:db8::1]:3260".into()))
    );

    // Without the config text there is nothing to pick from.
    let mut b = App::new("s");
    let mut s = sample();
    s.config = None;
    b.on_poll(Ok(s), Instant::now());
    b.on_key(ch('3'));
    b.on_key(key(KeyCode::Char('P')));
    assert!(b.modal.is_none());
    assert_eq!(b.status.as_ref().unwrap().0, Level::Error);
}

#[test]
fn chap_is_set_with_a_form_and_cleared_after_a_question() {
    let mut a = app();
    a.on_key(ch('3'));
    a.on_key(ch('c'));
    for c in "host1".chars() {
        a.on_key(ch(c));
    }
    a.on_key(key(KeyCode::Tab));
    for c in "s3cret s3cret".chars() {
        a.on_key(ch(c));
    }
    a.on_key(key(KeyCode::Tab));
    for c in "tgt".chars() {
        a.on_key(ch(c));
    }
    let Effect::Run(action) = a.on_key(key(KeyCode::Enter)) else {
        panic!("not sent: {:?}", a.status)
    };
    let t = "iqn.2026-11.org.esos:t";
    assert_eq!(
        action,
        Action::SetChap {
            target: t.into(),
            user: "host1".into(),
            secret: crate::tui::action::Secret("s3cret s3cret".into()),
            mutual_user: Some("tgt".into()),
            mutual_secret: None,
        }
    );
    // The daemon's validation message shows as it comes; the secret never does.
    let refusal = "mutual_user: mutual CHAP needs both mutual_user and mutual_secret";
    a.on_done(&action, Err(refusal.into()));
    assert_eq!(a.status, Some((Level::Error, refusal.into())));
    a.on_done(&action, Ok(json!({})));
    assert!(!a.status.as_ref().unwrap().1.contains("s3cret"));
    assert!(a.log.iter().all(|l| !l.contains("s3cret")));
    assert!(!format!("{action:?}").contains("s3cret"));

    // Clearing: only when there is CHAP, and after y.
    a.on_key(key(KeyCode::Char('C')));
    assert!(a.modal.is_none(), "no CHAP to clear");
    let mut s = sample();
    s.targets[0].chap = true;
    a.on_poll(Ok(s), Instant::now());
    a.on_key(key(KeyCode::Char('C')));
    assert!(matches!(a.modal, Some(Modal::Confirm { .. })));
    assert_eq!(a.on_key(ch('y')), Effect::Run(Action::ClearChap(t.into())));
}

#[test]
fn hosts_tab_removes_one_initiator_after_a_question() {
    let mut a = app();
    a.on_key(ch('4'));
    a.on_key(key(KeyCode::Char('I')));
    assert!(a.modal.is_none(), "the default map has no initiators");
    a.on_key(key(KeyCode::Down));
    a.on_key(key(KeyCode::Char('I')));
    let Some(Modal::Pick(p)) = &a.modal else {
        panic!("no picker")
    };
    assert_eq!(p.items.len(), 1);
    a.on_key(key(KeyCode::Enter));
    assert!(
        matches!(&a.modal, Some(Modal::Confirm { message, .. }) if message.contains("iqn.1998-01.com.vmware:h1"))
    );
    assert_eq!(
        a.on_key(ch('y')),
        Effect::Run(Action::RemoveInitiator {
            target: "iqn.2026-11.org.esos:t".into(),
            group: "esx".into(),
            initiator: "iqn.1998-01.com.vmware:h1".into(),
        })
    );
}

#[test]
fn log_is_bounded() {
    let mut a = app();
    for i in 0..MAX_LOG_LINES + 5 {
        a.on_done(&Action::CloseSession(i as u64), Ok(json!({})));
    }
    assert_eq!(a.log.len(), MAX_LOG_LINES);
    assert!(
        a.log
            .back()
            .unwrap()
            .ends_with(&format!("session {} logged out", MAX_LOG_LINES + 4))
    );
}
