use esos_common::limits::MAX_LUN;

use super::*;
use crate::config;

const EXAMPLE: &str = include_str!("../../../../examples/esos.toml");
const VM: &str = "iqn.2026-11.org.example:storage.vm";
const LAB: &str = "iqn.2026-11.org.example:lab";

/// Parses and validates like the daemon does (without opening anything).
fn valid(text: &str) -> config::Plan {
    let raw = config::parse(text, "edited").unwrap_or_else(|e| panic!("{e}\n{text}"));
    config::validate(&raw, &config::Source::file(std::path::Path::new("x.toml")))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn comments(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.find('#').map(|i| l[i..].trim_end()))
        .collect()
}

fn ram(name: &str) -> DeviceSpec {
    DeviceSpec {
        name: name.into(),
        kind: "ram".into(),
        size: Some("1M".into()),
        ..Default::default()
    }
}

#[test]
fn add_then_remove_device_restores_the_text_exactly() {
    let spec = DeviceSpec {
        thin: Some(true),
        block_size: Some(4096),
        cache: Some("write-through".into()),
        ..ram("extra")
    };
    let added = add_device(EXAMPLE, &spec).unwrap();
    let plan = valid(&added);
    let d = plan.devices.iter().find(|d| d.name == "extra").unwrap();
    assert_eq!(d.spec.block_size, 4096);
    assert!(d.thin);
    assert_eq!(comments(&added), comments(EXAMPLE));
    // New device sits after the last one, before the targets section.
    assert!(added.find("name = \"extra\"").unwrap() < added.find("# --- Targets").unwrap());
    assert_eq!(remove_device(&added, "extra").unwrap(), EXAMPLE);
}

#[test]
fn resize_sets_only_the_size() {
    let added = add_device(EXAMPLE, &ram("extra")).unwrap();
    let grown = resize_device(&added, "extra", "8M").unwrap();
    let plan = valid(&grown);
    let d = plan.devices.iter().find(|d| d.name == "extra").unwrap();
    assert_eq!(
        d.spec.backend,
        esos_block::Backend::Ram {
            size_bytes: 8 << 20
        }
    );
    assert_eq!(comments(&grown), comments(EXAMPLE));
    assert_eq!(grown.replace("size = \"8M\"", "size = \"1M\""), added);
    assert!(matches!(
        resize_device(EXAMPLE, "ghost", "1G"),
        Err(EditError::NotFound { .. })
    ));
}

#[test]
fn device_errors_are_precise() {
    assert_eq!(
        add_device(EXAMPLE, &ram("scratch"))
            .unwrap_err()
            .to_string(),
        r#"device "scratch" already exists"#
    );
    assert_eq!(
        remove_device(EXAMPLE, "nope").unwrap_err().to_string(),
        r#"no device "nope""#
    );
    let e = remove_device(EXAMPLE, "scratch").unwrap_err();
    assert!(matches!(e, EditError::InUse { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("{VM}/backup/lun 1")), "{msg}");
    assert!(msg.contains(&format!("{LAB}/lun 1")), "{msg}");
    assert!(matches!(
        add_device(EXAMPLE, &ram("")),
        Err(EditError::Invalid { ref field, .. }) if field == "name"
    ));
    assert!(matches!(
        add_device("this is not toml", &ram("a")),
        Err(EditError::Parse(_))
    ));
}

#[test]
fn devices_in_an_inline_list() {
    let text = "device = [{ name = \"a\", type = \"null\", size = \"1G\" }]\n";
    let added = add_device(text, &ram("b")).unwrap();
    assert_eq!(
        added,
        "device = [{ name = \"a\", type = \"null\", size = \"1G\" }, \
         { name = \"b\", type = \"ram\", size = \"1M\" }]\n"
    );
    assert_eq!(
        remove_device(&added, "a").unwrap(),
        "device = [{ name = \"b\", type = \"ram\", size = \"1M\" }]\n"
    );
    assert_eq!(remove_device(&added, "b").unwrap(), text);
}

#[test]
fn device_into_an_empty_config() {
    let added = add_device("# my san\n", &ram("a")).unwrap();
    assert!(added.starts_with("# my san\n"));
    assert_eq!(valid(&added).devices.len(), 1);
}

#[test]
fn new_target_starts_disabled_and_round_trips() {
    let spec = TargetSpec {
        name: "iqn.2026-11.org.example:new".into(),
        alias: Some("New one".into()),
        portals: Some(vec!["127.0.0.1:3260".into()]),
        enabled: None,
    };
    let added = add_target(EXAMPLE, &spec).unwrap();
    let plan = valid(&added);
    let t = plan.targets.iter().find(|t| t.name == spec.name).unwrap();
    assert!(!t.enabled);
    assert_eq!(comments(&added), comments(EXAMPLE));
    assert_eq!(remove_target(&added, &spec.name).unwrap(), EXAMPLE);
    // Names compare case-insensitively, like the validator does.
    let upper = TargetSpec {
        name: LAB.to_uppercase(),
        ..spec
    };
    assert_eq!(
        add_target(EXAMPLE, &upper).unwrap_err(),
        EditError::exists("target", &upper.name)
    );
    assert_eq!(
        remove_target(EXAMPLE, "iqn.2026-11.org.example:none").unwrap_err(),
        EditError::not_found("target", "iqn.2026-11.org.example:none")
    );
}

#[test]
fn enable_and_disable_keep_a_trailing_comment() {
    let text = format!("[[target]]\nname = \"{LAB}\"\nenabled = true   # on\n");
    let off = set_target_enabled(&text, LAB, false).unwrap();
    assert_eq!(off, text.replace("true", "false"));
    let added = set_target_enabled(EXAMPLE, LAB, false).unwrap();
    assert!(!valid(&added).targets[1].enabled);
    assert!(matches!(
        set_target_enabled(EXAMPLE, "iqn.2026-11.org.example:x", true),
        Err(EditError::NotFound { kind: "target", .. })
    ));
}

#[test]
fn chap_set_replace_and_clear() {
    let chap = ChapSpec {
        user: "lab".into(),
        secret: "a-secret-of-16ch".into(),
        ..Default::default()
    };
    let set = set_chap(EXAMPLE, LAB, &chap).unwrap();
    let plan = valid(&set);
    assert_eq!(plan.targets[1].chap.as_ref().unwrap().user, "lab");
    assert_eq!(clear_chap(&set, LAB).unwrap(), EXAMPLE);
    // Replacing the storage.vm CHAP drops its mutual half.
    let replaced = set_chap(EXAMPLE, VM, &chap).unwrap();
    assert!(!replaced.contains("mutual"));
    assert!(valid(&replaced).targets[0].chap.is_some());
    assert_eq!(
        clear_chap(EXAMPLE, LAB).unwrap_err().to_string(),
        format!("no chap on target {LAB:?}")
    );
    let half = ChapSpec {
        mutual_user: Some("m".into()),
        ..chap
    };
    let e = set_chap(EXAMPLE, LAB, &half).unwrap_err();
    assert!(matches!(e, EditError::Invalid { ref field, .. } if field == "mutual_user"));
    assert!(!format!("{half:?}").contains("a-secret"));
}

#[test]
fn groups_and_initiators() {
    let g = GroupSpec {
        name: "lab-hosts".into(),
        initiators: vec!["iqn.1993-08.org.debian:01:h1".into()],
    };
    let added = add_group(EXAMPLE, LAB, &g).unwrap();
    assert_eq!(valid(&added).targets[1].groups.len(), 1);
    assert_eq!(remove_group(&added, LAB, "lab-hosts").unwrap(), EXAMPLE);
    assert_eq!(
        add_group(&added, LAB, &g).unwrap_err(),
        EditError::exists("group", "lab-hosts")
    );
    // An initiator may be in one group of a target only.
    let esxi = GroupSpec {
        name: "other".into(),
        initiators: vec!["IQN.1998-01.com.vmware:esxi-01-5a3b1c2d".into()],
    };
    let e = add_group(EXAMPLE, VM, &esxi).unwrap_err();
    assert!(e.to_string().contains("already in group \"esxi\""), "{e}");
    let empty = GroupSpec {
        name: "x".into(),
        initiators: vec![],
    };
    assert!(matches!(
        add_group(EXAMPLE, VM, &empty),
        Err(EditError::Invalid { ref field, .. }) if field == "initiators"
    ));

    // Initiators of the multi-line esxi list: comments and layout kept.
    let h3 = vec!["iqn.1998-01.com.vmware:esxi-03-7c5d3e4f".to_string()];
    let more = add_initiators(EXAMPLE, VM, "esxi", &h3).unwrap();
    assert!(
        more.contains(
            "    \"iqn.1998-01.com.vmware:esxi-02-6b4c2d3e\",\n    \
         \"iqn.1998-01.com.vmware:esxi-03-7c5d3e4f\",\n]"
        ),
        "{more}"
    );
    assert_eq!(valid(&more).targets[0].groups[0].initiators.len(), 3);
    assert_eq!(remove_initiators(&more, VM, "esxi", &h3).unwrap(), EXAMPLE);
    assert!(matches!(
        remove_initiators(EXAMPLE, VM, "esxi", &h3),
        Err(EditError::NotFound {
            kind: "initiator",
            ..
        })
    ));
    let backup = vec!["iqn.1993-08.org.debian:01:backup01".to_string()];
    assert!(matches!(
        remove_initiators(EXAMPLE, VM, "backup", &backup),
        Err(EditError::InUse { .. })
    ));
    assert!(matches!(
        add_initiators(EXAMPLE, VM, "esxi", &backup),
        Err(EditError::InUse { .. })
    ));
    assert!(matches!(
        add_initiators(EXAMPLE, VM, "nope", &h3),
        Err(EditError::NotFound { kind: "group", .. })
    ));
}

#[test]
fn lun_map_and_unmap_keep_line_comments() {
    // backup's luns: one per line, a comment after each.
    let (mapped, m) = map_lun(EXAMPLE, VM, LunMap::Group("backup"), None, "bench").unwrap();
    assert_eq!(m.lun, 2);
    assert!(
        mapped.contains(
            "    { lun = 1, device = \"scratch\" },\n    { lun = 2, device = \"bench\" },\n]"
        ),
        "{mapped}"
    );
    assert_eq!(comments(&mapped), comments(EXAMPLE));
    let plan = valid(&mapped);
    assert_eq!(plan.targets[0].groups[1].luns.len(), 3);
    assert_eq!(
        unmap_lun(&mapped, VM, LunMap::Group("backup"), 2).unwrap(),
        EXAMPLE
    );
    // A single-line list.
    let (one, m) = map_lun(EXAMPLE, VM, LunMap::Group("esxi"), Some(7), "bench").unwrap();
    assert_eq!(m.lun, 7);
    assert!(
        one.contains(
            "luns = [{ lun = 0, device = \"vm-store\" }, { lun = 7, device = \"bench\" }]"
        )
    );
    assert_eq!(
        unmap_lun(&one, VM, LunMap::Group("esxi"), 7).unwrap(),
        EXAMPLE
    );
}

#[test]
fn unmapping_the_last_line_of_a_list_keeps_the_others_comments() {
    let (mapped, _) = map_lun(EXAMPLE, VM, LunMap::Group("backup"), None, "bench").unwrap();
    let back = unmap_lun(&mapped, VM, LunMap::Group("backup"), 2).unwrap();
    assert_eq!(back, EXAMPLE);
}

#[test]
fn default_luns_are_created_when_absent() {
    let (mapped, m) = map_lun(EXAMPLE, VM, LunMap::Default, None, "bench").unwrap();
    assert_eq!(m.lun, 0);
    let plan = valid(&mapped);
    assert!(plan.targets[0].default_luns.is_some());
    let back = unmap_lun(&mapped, VM, LunMap::Default, 0).unwrap();
    // The now empty map stays: removing it would change who may log in.
    assert!(back.contains("default_luns = []"));
}

#[test]
fn lun_errors_are_precise() {
    assert_eq!(
        map_lun(EXAMPLE, LAB, LunMap::Default, Some(1), "vm-store")
            .unwrap_err()
            .to_string(),
        format!("lun 1 is already mapped to \"scratch\" in default_luns of {LAB:?}")
    );
    assert_eq!(
        map_lun(EXAMPLE, LAB, LunMap::Default, None, "ghost").unwrap_err(),
        EditError::not_found("device", "ghost")
    );
    assert!(matches!(
        map_lun(EXAMPLE, LAB, LunMap::Default, None, "bench"),
        Err(EditError::InUse { .. })
    ));
    assert!(matches!(
        map_lun(EXAMPLE, LAB, LunMap::Default, Some(MAX_LUN + 1), "vm-store"),
        Err(EditError::Invalid { ref field, .. }) if field == "lun"
    ));
    assert!(matches!(
        map_lun(EXAMPLE, LAB, LunMap::Group("g"), None, "vm-store"),
        Err(EditError::NotFound { kind: "group", .. })
    ));
    assert_eq!(
        unmap_lun(EXAMPLE, LAB, LunMap::Default, 9)
            .unwrap_err()
            .to_string(),
        format!("lun 9 is not mapped in default_luns of {LAB:?}")
    );
    assert!(matches!(
        unmap_lun(EXAMPLE, VM, LunMap::Default, 0),
        Err(EditError::LunNotMapped { .. })
    ));
}

#[test]
fn portals() {
    let added = add_portal(EXAMPLE, "127.0.0.2:3260", Some(3)).unwrap();
    assert_eq!(valid(&added).portals.len(), 3);
    assert_eq!(remove_portal(&added, "127.0.0.2:3260").unwrap(), EXAMPLE);
    assert_eq!(
        add_portal(EXAMPLE, "[::1]:3260", None).unwrap_err(),
        EditError::exists("portal", "[::1]:3260")
    );
    assert_eq!(
        remove_portal(EXAMPLE, "10.0.0.1:3260").unwrap_err(),
        EditError::not_found("portal", "10.0.0.1:3260")
    );
    let fresh = add_portal("", "127.0.0.1:3260", None).unwrap();
    assert_eq!(fresh, "[[server.portal]]\naddress = \"127.0.0.1:3260\"\n");
}

#[test]
fn a_non_list_is_a_layout_error() {
    assert!(matches!(
        add_device("device = 3\n", &ram("a")),
        Err(EditError::Layout { .. })
    ));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Mapping a sequence of devices into a group then unmapping them all in any
        /// order gives back the original text, byte for byte.
        #[test]
        fn map_unmap_round_trip(luns in proptest::collection::btree_set(0u64..64, 1..3),
                                reverse in any::<bool>()) {
            let devices = ["bench", "scratch"];
            let mut text = EXAMPLE.to_owned();
            let luns: Vec<u64> = luns.into_iter().collect();
            for (l, d) in luns.iter().zip(devices) {
                text = map_lun(&text, VM, LunMap::Group("esxi"), Some(*l + 1), d).unwrap().0;
            }
            valid(&text);
            let mut order = luns.clone();
            if reverse { order.reverse(); }
            for l in order {
                text = unmap_lun(&text, VM, LunMap::Group("esxi"), l + 1).unwrap();
            }
            prop_assert_eq!(text, EXAMPLE);
        }
    }
}

#[test]
fn add_a_replicated_device_over_a_new_backing() {
    let pair = include_str!("../../../../examples/ha-pair.toml");
    let with_disk = add_device(
        pair,
        &DeviceSpec {
            name: "logs-disk".into(),
            kind: "file".into(),
            path: Some("disks/ha-logs.img".into()),
            size: Some("1G".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let text = add_device(
        &with_disk,
        &DeviceSpec {
            name: "logs".into(),
            kind: "replicated".into(),
            backing: Some("logs-disk".into()),
            resync_rate: Some("50M".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(text.contains("backing = \"logs-disk\""), "{text}");
    let plan = valid(&text);
    let logs = plan.devices.iter().find(|d| d.name == "logs").unwrap();
    let r = logs.replica.as_ref().unwrap();
    assert_eq!(
        (r.backing.name.as_str(), r.resync_rate),
        ("logs-disk", 50 << 20)
    );
    assert!(plan.devices.iter().all(|d| !d.name.ends_with("-disk")));
}
