//! The manager against a real (in-process) iSCSI server with RAM devices.

use std::path::Path;

use super::*;

fn text(port_line: &str, extra_device: bool, lun1: bool) -> String {
    let mut t = format!(
        r#"# admin's comment, kept verbatim
[server]
data_dir = "state"

[[server.portal]]
{port_line}

[[device]]
name = "a"
type = "ram"
size = "1M"
"#
    );
    if extra_device {
        t.push_str("\n[[device]]\nname = \"b\"\ntype = \"ram\"\nsize = \"2M\"\n");
    }
    t.push_str("\n[[target]]\nname = \"iqn.2026-11.org.esos:t\"\n");
    if lun1 {
        t.push_str("default_luns = [{ lun = 0, device = \"a\" }, { lun = 1, device = \"b\" }]\n");
    } else {
        t.push_str("default_luns = [{ lun = 0, device = \"a\" }]\n");
    }
    t
}

async fn start(dir: &Path) -> Manager {
    let file = dir.join("esos.toml");
    let t = text("address = \"127.0.0.1:0\"", false, false);
    std::fs::write(&file, &t).unwrap();
    let plan = config::load(&file).unwrap();
    std::fs::create_dir_all(&plan.data_dir).unwrap();
    let mut store = IdentityStore::load(&plan.data_dir).unwrap();
    let ids = plan
        .devices
        .iter()
        .map(|d| store.resolve(d, &mut identity::os_random))
        .collect();
    store.save().unwrap();
    let alua = graph::port_groups(&plan).unwrap();
    let units = graph::open_units(&plan, ids, &alua).unwrap();
    let server = esos_iscsi::server::Server::bind(graph::server_config(&plan, &units))
        .await
        .unwrap();
    let m = Manager::new(Running {
        plan,
        text: t,
        config_path: Some(file),
        units,
        alua,
        identities: store,
        server: server.handle(),
        replicated: Vec::new(),
        cluster: None,
    });
    // The server object can go: the handle keeps the shared state, and nothing here logs in.
    drop(server);
    m
}

#[tokio::test]
async fn apply_adds_and_removes_live_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(dir.path()).await;
    let file = dir.path().join("esos.toml");

    // Same text: nothing to do.
    let same = m.export();
    let r = m.apply(&same, false, false).await.unwrap();
    assert!(
        r.devices_added.is_empty() && r.targets_changed.is_empty(),
        "{r:?}"
    );

    // Dry run: reported, not applied, not written.
    let grown = text("address = \"127.0.0.1:0\"", true, true);
    let r = m.apply(&grown, true, false).await.unwrap();
    assert_eq!(r.devices_added, ["b"]);
    assert_eq!(m.devices().len(), 1);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), same);

    let r = m.apply(&grown, false, false).await.unwrap();
    assert_eq!(r.devices_added, ["b"]);
    assert_eq!(r.targets_changed, ["iqn.2026-11.org.esos:t"]);
    assert_eq!(r.persisted_to.as_deref(), Some(file.as_path()));
    let devs = m.devices();
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[1].size_bytes, 2 << 20);
    assert_eq!(devs[1].exports, ["iqn.2026-11.org.esos:t/1"]);
    assert_eq!(devs[1].naa.len(), 32);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), grown);
    assert!(m.export().starts_with("# admin's comment, kept verbatim"));
    // The identity of the new device is stored before initiators can see it.
    let ids = std::fs::read_to_string(dir.path().join("state/identity.toml")).unwrap();
    assert!(ids.contains(&devs[1].serial), "{ids}");

    // And back: the device goes away.
    let r = m.apply(&same, false, false).await.unwrap();
    assert_eq!(r.devices_removed, ["b"]);
    assert_eq!(m.devices().len(), 1);
    assert_eq!(m.targets()[0].default_luns.as_ref().unwrap().len(), 1);
}

#[tokio::test]
async fn a_device_that_fails_to_open_leaves_no_identity_behind() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(dir.path()).await;
    let before = m.export();
    // Passes the preflight (an existing regular file) but not the open: 1,000 bytes is no
    // whole number of 512-byte blocks.
    std::fs::write(dir.path().join("odd.img"), vec![0u8; 1000]).unwrap();
    let bad =
        format!("{before}\n[[device]]\nname = \"odd\"\ntype = \"file\"\npath = \"odd.img\"\n");
    let e = m.apply(&bad, false, false).await.unwrap_err();
    assert!(matches!(e, ApplyError::Device(_)), "{e}");
    assert!(e.to_string().contains("odd.img"), "{e}");
    assert_eq!(m.export(), before);
    assert_eq!(m.devices().len(), 1);

    // The next successful apply saves the identities it made, and none for "odd": a
    // device that never came to exist must not keep one.
    let grown = text("address = \"127.0.0.1:0\"", true, true);
    m.apply(&grown, false, false).await.unwrap();
    let ids = std::fs::read_to_string(dir.path().join("state/identity.toml")).unwrap();
    assert!(ids.contains(&m.devices()[1].serial), "{ids}");
    assert!(!ids.contains("odd"), "{ids}");
}

#[tokio::test]
async fn refusals_leave_everything_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(dir.path()).await;
    let before = m.export();

    let e = m
        .apply("[[device]]\nname = 3\n", false, false)
        .await
        .unwrap_err();
    assert!(matches!(e, ApplyError::Config(_)), "{e}");
    assert!(e.to_string().contains("name"), "{e}");

    // An address this machine does not have (TEST-NET-1) cannot be bound.
    let foreign = text("address = \"192.0.2.1:3260\"", false, false);
    let e = m.apply(&foreign, false, false).await.unwrap_err();
    assert!(e.to_string().contains("server.portal"), "{e}");
    assert!(e.to_string().contains("192.0.2.1:3260"), "{e}");

    let resized = before.replace("size = \"1M\"", "size = \"4M\"");
    let e = m.apply(&resized, false, false).await.unwrap_err();
    assert!(e.to_string().contains("device \"a\""), "{e}");

    let missing_dir = text("address = \"127.0.0.1:0\"", true, true).replace(
        "type = \"ram\"\nsize = \"2M\"",
        "type = \"file\"\npath = \"/nonexistent-dir/b.img\"\nsize = \"2M\"",
    );
    let e = m.apply(&missing_dir, false, false).await.unwrap_err();
    assert!(e.to_string().contains("nonexistent-dir"), "{e}");

    assert_eq!(m.export(), before);
    assert_eq!(m.devices().len(), 1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("esos.toml")).unwrap(),
        before
    );
}

#[tokio::test]
async fn metrics_count_what_the_units_did() {
    let dir = tempfile::tempdir().unwrap();
    let m = Arc::new(start(dir.path()).await);
    let (_, lu) = m.units().remove(0);
    let map = esos_scsi::LunMap::new(vec![(0, lu)]);
    let nexus = Arc::new(esos_scsi::Nexus {
        id: 1,
        initiator_port: "iqn.i,i,0x1".into(),
        target_port: "iqn.t,t,0x1".into(),
        relative_port: 1,
        port_group: 1,
    });
    let mut cdb = [0u8; esos_scsi::MAX_CDB_LEN];
    // READ(10) of 8 blocks at LBA 0 (the first one only reports the power-on unit
    // attention, at admission: not counted), then one beyond the end (a counted error).
    for lba in [0u8, 0, 0xFF] {
        cdb[..10].copy_from_slice(&[0x28, 0, lba, 0, 0, 0, 0, 0, 8, 0]);
        let cmd = esos_scsi::Command {
            nexus: nexus.clone(),
            lun: 0,
            cdb,
            cdb_len: 10,
            attr: esos_scsi::TaskAttr::Simple,
            tag: 1,
            expected_len: 4096,
            data_out: false,
        };
        map.submit(cmd, Vec::new()).await;
    }
    let text = crate::metrics::render(&m);
    assert!(
        text.contains(r#"esos_device_commands_total{device="a",direction="read"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"esos_device_transferred_bytes_total{device="a",direction="read"} 4096"#),
        "{text}"
    );
    assert!(
        text.contains(r#"esos_device_errors_total{device="a"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"esos_device_latency_seconds_count{device="a",direction="read"} 2"#),
        "{text}"
    );
    assert!(text.contains("esos_logins_total 0"), "{text}");
    assert!(
        text.contains(r#"esos_sessions{target="iqn.2026-11.org.esos:t"} 0"#),
        "{text}"
    );
}

#[tokio::test]
async fn portals_are_added_and_removed_live() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(dir.path()).await;
    let one = m.export();
    let two = text(
        // Same portal group: a new group would change the ALUA port groups derived from
        // them, which needs a restart.
        "address = \"127.0.0.1:0\"\n\n[[server.portal]]\naddress = \"127.0.0.2:0\"\ngroup = 1",
        false,
        false,
    );
    let r = m.apply(&two, false, false).await.unwrap();
    assert!(r.portals_changed, "{r:?}");
    let bound = m.server.portals();
    assert_eq!(bound.len(), 2, "{bound:?}");
    let is_second = |p: &&esos_iscsi::server::PortalConfig| p.addr.ip().to_string() == "127.0.0.2";
    let second = bound.iter().find(is_second).unwrap().addr;
    assert_ne!(second.port(), 0);
    std::net::TcpStream::connect(second).expect("the new portal accepts connections");

    // Re-applying keeps the same listeners (port 0 is not re-bound).
    let r = m.apply(&two, false, false).await.unwrap();
    assert!(!r.portals_changed, "{r:?}");
    assert_eq!(
        m.server.portals().iter().find(is_second).unwrap().addr,
        second
    );

    let r = m.apply(&one, false, false).await.unwrap();
    assert!(r.portals_changed, "{r:?}");
    assert_eq!(m.server.portals().len(), 1);
}

#[tokio::test]
async fn a_file_device_grows_live_and_never_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(dir.path()).await;
    let with = |size: &str| {
        text("address = \"127.0.0.1:0\"", true, true).replace(
            "name = \"b\"\ntype = \"ram\"\nsize = \"2M\"",
            &format!("name = \"b\"\ntype = \"file\"\npath = \"b.img\"\nsize = \"{size}\""),
        )
    };
    m.apply(&with("2M"), false, false).await.unwrap();
    let (_, lu) = m.units().into_iter().find(|(n, _)| n == "b").unwrap();
    // A nexus that has seen the unit gets CAPACITY DATA HAS CHANGED after the growth.
    let map = esos_scsi::LunMap::new(vec![(0, lu.clone())]);
    let nexus = Arc::new(esos_scsi::Nexus {
        id: 7,
        initiator_port: "iqn.i,i,0x1".into(),
        target_port: "iqn.t,t,0x1".into(),
        relative_port: 1,
        port_group: 1,
    });
    let tur = |nexus: &Arc<esos_scsi::Nexus>| esos_scsi::Command {
        nexus: nexus.clone(),
        lun: 0,
        cdb: [0; esos_scsi::MAX_CDB_LEN],
        cdb_len: 6,
        attr: esos_scsi::TaskAttr::Simple,
        tag: 1,
        expected_len: 0,
        data_out: false,
    };
    let (r, _) = map.submit(tur(&nexus), Vec::new()).await;
    assert_eq!(r.sense.as_slice()[12], 0x29, "power on first");

    let r = m.apply(&with("8M"), false, false).await.unwrap();
    assert_eq!(r.devices_changed, ["b"]);
    assert_eq!(lu.capacity_bytes(), 8 << 20);
    assert_eq!(
        std::fs::metadata(dir.path().join("b.img")).unwrap().len(),
        8 << 20
    );
    let (r, _) = map.submit(tur(&nexus), Vec::new()).await;
    assert_eq!(
        (r.sense.as_slice()[12], r.sense.as_slice()[13]),
        (0x2A, 0x09),
        "capacity data has changed"
    );

    let e = m.apply(&with("4M"), false, false).await.unwrap_err();
    assert!(e.to_string().contains("device \"b\""), "{e}");
    assert_eq!(lu.capacity_bytes(), 8 << 20);
}

#[tokio::test]
async fn port_group_states_change_live() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(dir.path()).await;
    let groups = m.port_groups();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(
        (
            groups[0].id,
            groups[0].state.as_str(),
            groups[0].portal_groups.as_slice()
        ),
        (1, "active-optimized", &[1u16][..])
    );
    let (_, lu) = m.units().remove(0);
    let map = esos_scsi::LunMap::new(vec![(0, lu)]);
    let nexus = Arc::new(esos_scsi::Nexus {
        id: 9,
        initiator_port: "iqn.i,i,0x1".into(),
        target_port: "iqn.t,t,0x1".into(),
        relative_port: 1,
        port_group: 1,
    });
    let read = |nexus: &Arc<esos_scsi::Nexus>| {
        let mut cdb = [0u8; esos_scsi::MAX_CDB_LEN];
        cdb[..10].copy_from_slice(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        esos_scsi::Command {
            nexus: nexus.clone(),
            lun: 0,
            cdb,
            cdb_len: 10,
            attr: esos_scsi::TaskAttr::Simple,
            tag: 1,
            expected_len: 512,
            data_out: false,
        }
    };
    map.submit(read(&nexus), Vec::new()).await; // power-on unit attention
    m.set_port_group_state(1, "standby").unwrap();
    assert_eq!(m.port_groups()[0].state, "standby");
    let (r, _) = map.submit(read(&nexus), Vec::new()).await;
    let s = r.sense.as_slice();
    assert_eq!(
        (s[12], s[13]),
        (0x2A, 0x06),
        "state changed is reported first"
    );
    let (r, _) = map.submit(read(&nexus), Vec::new()).await;
    let s = r.sense.as_slice();
    assert_eq!(
        (s[2] & 0x0F, s[12], s[13]),
        (0x02, 0x04, 0x0B),
        "standby refuses READ"
    );

    assert!(matches!(
        m.set_port_group_state(7, "standby"),
        Err(PortGroupError::NotFound(7))
    ));
    assert!(matches!(
        m.set_port_group_state(1, "asleep"),
        Err(PortGroupError::BadState(_))
    ));
    m.set_port_group_state(1, "active-optimized").unwrap();
    let (r, _) = map.submit(read(&nexus), Vec::new()).await;
    assert_eq!(r.sense.as_slice()[12], 0x2A);
    let (r, _) = map.submit(read(&nexus), Vec::new()).await;
    assert_eq!(r.status, esos_scsi::Status::Good);
}

#[tokio::test]
async fn a_portal_that_cannot_be_bound_leaves_devices_ungrown() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(dir.path()).await;
    let with = |size: &str, portals: &str| {
        text(portals, true, true).replace(
            "name = \"b\"\ntype = \"ram\"\nsize = \"2M\"",
            &format!("name = \"b\"\ntype = \"file\"\npath = \"b.img\"\nsize = \"{size}\""),
        )
    };
    let local = "address = \"127.0.0.1:0\"";
    m.apply(&with("2M", local), false, false).await.unwrap();
    let before = m.export();
    let portals = m.server.portals().len();
    let (_, lu) = m.units().into_iter().find(|(n, _)| n == "b").unwrap();

    // Grows "b" and adds an address this machine does not have (TEST-NET-1): the bind
    // fails, and it fails before anything grows.
    let foreign = format!("{local}\n\n[[server.portal]]\naddress = \"192.0.2.1:3260\"");
    let e = m
        .apply(&with("8M", &foreign), false, false)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("server.portal"), "{e}");
    assert_eq!(lu.capacity_bytes(), 2 << 20);
    assert_eq!(
        std::fs::metadata(dir.path().join("b.img")).unwrap().len(),
        2 << 20
    );
    assert_eq!(m.server.portals().len(), portals);
    assert_eq!(m.export(), before);

    // The same growth alone goes through.
    let r = m.apply(&with("8M", local), false, false).await.unwrap();
    assert_eq!(r.devices_changed, ["b"]);
    assert_eq!(lu.capacity_bytes(), 8 << 20);
}

/// A node of a pair with one replicated device, `extra` appended.
fn cluster_plan(extra: &str, lease_ms: u64) -> config::Plan {
    let text = format!(
        r#"
        [server]
        portal = [{{ address = "127.0.0.1:3260", group = 1 }}]
        [cluster]
        name = "pair1"
        node = "n1"
        lease_ms = {lease_ms}
        member = [
            {{ name = "n1", address = "127.0.0.1:7788", portal_groups = [1] }},
            {{ name = "n2", address = "127.0.0.2:7788", portal_groups = [2] }},
        ]
        [[device]]
        name = "db-disk"
        type = "file"
        path = "db.img"
        size = "1M"
        [[device]]
        name = "db"
        type = "replicated"
        backing = "db-disk"
        {extra}
        "#
    );
    let raw = config::parse(&text, "t").unwrap();
    config::validate(
        &raw,
        &Source {
            label: "t".into(),
            base_dir: "/tmp".into(),
            node: None,
        },
    )
    .unwrap()
}

#[test]
fn replicated_devices_are_added_live_but_never_changed_or_removed() {
    let old = cluster_plan("", 1500);
    let more = "[[device]]\nname = \"d2\"\ntype = \"file\"\npath = \"d2.img\"\nsize = \"1M\"\n\
                [[device]]\nname = \"r2\"\ntype = \"replicated\"\nbacking = \"d2\"\n";
    let new = cluster_plan(more, 1500);
    static_unchanged(&old, &new).unwrap();
    assert_eq!(diff(&old, &new).unwrap().devices_added, vec!["r2"]);
    let e = diff(&new, &old).unwrap_err().to_string();
    assert!(e.contains("device \"r2\"") && e.contains("restart"), "{e}");
    let bigger = cluster_plan("", 1500);
    let mut grown = bigger.clone();
    grown.devices[0].spec.backend = esos_block::Backend::File {
        path: "/tmp/db.img".into(),
        size_bytes: Some(2 << 20),
    };
    let e = diff(&bigger, &grown).unwrap_err().to_string();
    assert!(
        e.contains("device \"db\"") && e.contains("cannot change"),
        "{e}"
    );
    let e = static_unchanged(&old, &cluster_plan("", 3000))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cluster: ") && e.contains("restart"), "{e}");
}
