//! Parse and validation tests: every refusal names its key and its reason.

use std::path::Path;

use esos_block::Backend;

use super::*;

fn src() -> Source {
    Source {
        label: "esos.toml".into(),
        base_dir: "/etc/esos".into(),
        node: None,
    }
}

fn plan(text: &str) -> Plan {
    let raw = parse(text, "esos.toml").unwrap_or_else(|e| panic!("{e}"));
    validate(&raw, &src()).unwrap_or_else(|e| panic!("{e}"))
}

/// Validation errors as "key: reason" lines.
fn errors(text: &str) -> Vec<String> {
    let raw = parse(text, "esos.toml").unwrap_or_else(|e| panic!("{e}"));
    match validate(&raw, &src()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("esos.toml: invalid configuration"), "{msg}");
            e.key_errors().iter().map(|k| k.to_string()).collect()
        }
    }
}

/// Asserts that exactly one error is reported, on `key`, with `needle` in its reason.
fn assert_one(text: &str, key: &str, needle: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with(&format!("{key}: ")),
        "want key {key}, got {errs:#?}"
    );
    assert!(errs[0].contains(needle), "want {needle:?} in {errs:#?}");
}

const NULL_DEV: &str = r#"
[[device]]
name = "n0"
type = "null"
size = "1G"
"#;

fn with_target(extra: &str) -> String {
    format!(
        "{NULL_DEV}\n[[target]]\nname = \"iqn.2026-11.org.esos:t\"\ndefault_luns = [{{ lun = 0, device = \"n0\" }}]\n{extra}"
    )
}

#[test]
fn empty_config_is_valid_with_defaults() {
    let p = plan("");
    assert_eq!(p.portals.len(), 1);
    assert_eq!(p.portals[0].addr, "0.0.0.0:3260".parse().unwrap());
    assert_eq!(p.portals[0].group_tag, 1);
    assert_eq!(p.data_dir, Path::new("/etc/esos/esos-state"));
    assert_eq!(p.limits, esos_iscsi::server::Limits::default());
    assert_eq!(p.params, esos_iscsi::params::TargetParams::default());
    assert!(p.devices.is_empty() && p.targets.is_empty());
}

#[test]
fn full_server_section() {
    let p = plan(
        r#"
        [server]
        data_dir = "/var/lib/esos"
        log_level = "debug"
        [[server.portal]]
        address = "192.0.2.1:3260"
        group = 1
        [[server.portal]]
        address = "[::1]:3260"
        group = 7
        [server.limits]
        max_sessions = 64
        max_sessions_per_target = 16
        login_timeout_ms = 5000
        max_cmds_per_session = 256
        nop_in_interval_ms = 0
        nop_in_timeout_ms = 10000
        [server.iscsi]
        max_recv_data_segment_length = "64K"
        max_burst_length = 1048576
        first_burst_length = "64K"
        max_outstanding_r2t = 4
        immediate_data = false
        initial_r2t = true
        header_digest = false
        data_digest = true
        default_time2wait = 5
        default_time2retain = 60
        zero_copy_reads = false
        [server.discovery_chap]
        user = "disc"
        secret = "discovery-secret"
        "#,
    );
    assert_eq!(p.data_dir, Path::new("/var/lib/esos"));
    assert_eq!(p.log_level.as_deref(), Some("debug"));
    assert_eq!(p.portals[1].addr, "[::1]:3260".parse().unwrap());
    assert_eq!(p.portals[1].group_tag, 7);
    assert_eq!(p.limits.max_sessions, 64);
    assert_eq!(p.limits.max_sessions_per_target, 16);
    assert_eq!(p.limits.login_timeout_ms, 5000);
    assert_eq!(p.limits.max_cmds_per_session, 256);
    assert_eq!(p.limits.nop_in_interval_ms, 0);
    assert_eq!(p.limits.nop_in_timeout_ms, 10000);
    assert_eq!(p.params.max_recv_data_segment_length, 65536);
    assert_eq!(p.params.max_burst_length, 1 << 20);
    assert_eq!(p.params.first_burst_length, 65536);
    assert_eq!(p.params.max_outstanding_r2t, 4);
    assert!(!p.params.immediate_data && p.params.initial_r2t);
    assert!(!p.params.header_digest_crc32c && p.params.data_digest_crc32c);
    assert_eq!(
        (p.params.default_time2wait, p.params.default_time2retain),
        (5, 60)
    );
    assert!(!p.params.zero_copy_reads);
    let chap = p.discovery_chap.unwrap();
    assert_eq!(chap.user, "disc");
    assert_eq!(chap.secret, b"discovery-secret");
    assert!(
        !format!("{chap:?}").contains("discovery-secret"),
        "Debug leaks the secret"
    );
}

#[test]
fn devices_of_every_type() {
    let p = plan(
        r#"
        [[device]]
        name = "f"
        type = "file"
        path = "disks/f.img"
        size = "10G"
        block_size = 4096
        cache = "write-through"
        rotational = true
        [[device]]
        name = "f2"
        type = "file"
        path = "/srv/existing.img"
        read_only = true
        [[device]]
        name = "b"
        type = "blockdev"
        path = "/dev/sdb"
        vendor = "ACME"
        product = "Disk"
        revision = "1.0"
        serial = "SN-1"
        naa = "6001405aabbccddeeff0011223344556"
        [[device]]
        name = "r"
        type = "ram"
        size = 1048576
        [[device]]
        name = "n"
        type = "null"
        size = "1T"
        "#,
    );
    let d = &p.devices;
    assert_eq!(
        d[0].spec.backend,
        Backend::File {
            path: "/etc/esos/disks/f.img".into(),
            size_bytes: Some(10 << 30)
        }
    );
    assert_eq!(d[0].spec.block_size, 4096);
    assert_eq!(d[0].spec.rotational, Some(true));
    assert!(!d[0].write_cache);
    assert_eq!(
        d[1].spec.backend,
        Backend::File {
            path: "/srv/existing.img".into(),
            size_bytes: None
        }
    );
    assert!(d[1].spec.read_only && d[1].write_cache);
    assert_eq!(
        d[2].spec.backend,
        Backend::BlockDev {
            path: "/dev/sdb".into()
        }
    );
    assert_eq!(d[2].overrides.vendor.as_deref(), Some("ACME"));
    assert_eq!(d[2].overrides.serial.as_deref(), Some("SN-1"));
    assert_eq!(d[2].overrides.naa.unwrap()[0], 0x60);
    assert_eq!(d[2].overrides.naa.unwrap()[15], 0x56);
    assert_eq!(
        d[3].spec.backend,
        Backend::Ram {
            size_bytes: 1 << 20
        }
    );
    assert_eq!(
        d[4].spec.backend,
        Backend::Null {
            size_bytes: 1 << 40
        }
    );
    assert!(d.iter().all(|x| x.identity_key == x.name));
    // None is mapped: each gets a warning, not an error.
    assert_eq!(p.warnings.len(), 5);
}

#[test]
fn shared_device_maps_to_one_index() {
    let p = plan(
        r#"
        [[device]]
        name = "shared"
        type = "ram"
        size = "1M"
        [[device]]
        name = "other"
        type = "null"
        size = "1M"
        [[target]]
        name = "iqn.2026-11.org.esos:a"
        [[target.group]]
        name = "hosts"
        initiators = ["iqn.1993-08.org.debian:01:AAA", "iqn.1993-08.org.debian:01:bbb"]
        luns = [{ lun = 1, device = "other" }, { lun = 0, device = "shared" }]
        [[target.group]]
        name = "backup"
        initiators = ["iqn.1993-08.org.debian:01:ccc"]
        luns = [{ lun = 5, device = "shared" }]
        [[target]]
        name = "iqn.2026-11.org.esos:b"
        default_luns = [{ lun = 0, device = "shared" }]
        "#,
    );
    let a = &p.targets[0];
    assert_eq!(a.groups[0].luns, vec![(0, 0), (1, 1)], "sorted by LUN");
    assert_eq!(a.groups[1].luns, vec![(5, 0)]);
    assert_eq!(p.targets[1].default_luns.as_deref(), Some(&[(0, 0)][..]));
    assert_eq!(
        a.groups[0].initiators[0], "iqn.1993-08.org.debian:01:aaa",
        "normalised"
    );
    assert!(a.default_luns.is_none());
    assert_eq!(p.mapped_devices(), vec![0, 1]);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn target_options() {
    let p = plan(&with_target(
        r#"alias = "Main disk"
        enabled = false
        portals = ["127.0.0.1:3260"]
        chap = { user = "u", secret = "0123456789ab", mutual_user = "tgt", mutual_secret = "ba9876543210" }
        [server]
        portal = [{ address = "127.0.0.1:3260" }, { address = "127.0.0.2:3260" }]
        "#,
    ));
    let t = &p.targets[0];
    assert_eq!(t.alias.as_deref(), Some("Main disk"));
    assert!(!t.enabled);
    assert_eq!(t.portals, vec!["127.0.0.1:3260".parse().unwrap()]);
    let c = t.chap.as_ref().unwrap();
    assert_eq!(c.mutual, Some(("tgt".into(), b"ba9876543210".to_vec())));
    let creds = c.to_credentials();
    assert_eq!(creds.secret, b"0123456789ab");
}

#[test]
fn parse_errors_name_line_and_key() {
    let text = "[[device]]\nname = \"a\"\ntype = \"null\"\nsize = \"1G\"\nsiz = 3\n";
    let e = parse(text, "x.toml").unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("x.toml:5:"), "{msg}");
    assert!(msg.contains("device[0]"), "{msg}");
    assert!(msg.contains("siz"), "{msg}");

    let text = "[[target]]\nname = \"iqn.2026-11.org.esos:a\"\n[[target.group]]\nname = \"g\"\ninitiators = []\nluns = [{ lun = 0, device = \"d\", extra = 1 }]\n";
    let msg = parse(text, "x.toml").unwrap_err().to_string();
    assert!(msg.contains("target[0].group[0].luns[0]"), "{msg}");
    assert!(msg.contains("extra"), "{msg}");

    let msg = parse("[server]\nportal = 5\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("server.portal"), "{msg}");

    let msg = parse("[[device]]\nname = \"a\"\ntype = \"tape\"\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("device[0].type") && msg.contains("tape"),
        "{msg}"
    );

    let msg = parse(
        "[[device]]\nname = \"a\"\ntype = \"ram\"\ncache = \"writeback\"\n",
        "x.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("device[0].cache"), "{msg}");

    let msg = parse("this is not toml", "x.toml").unwrap_err().to_string();
    assert!(msg.starts_with("x.toml:1:"), "{msg}");

    let msg = parse("[bogus]\n", "x.toml").unwrap_err().to_string();
    assert!(msg.contains("bogus"), "{msg}");
}

#[test]
fn server_refusals() {
    assert_one("[server]\nportal = []\n", "server.portal", "is empty");
    assert_one(
        "[[server.portal]]\naddress = \"localhost:3260\"\n",
        "server.portal[0].address",
        "not an IP address",
    );
    assert_one(
        "[[server.portal]]\naddress = \"10.0.0.1\"\n",
        "server.portal[0].address",
        "with a port",
    );
    assert_one(
        "[[server.portal]]\naddress = \"10.0.0.1:3260\"\ngroup = 0\n",
        "server.portal[0].group",
        "not in 1..=65535",
    );
    assert_one(
        "[[server.portal]]\naddress = \"10.0.0.1:3260\"\n[[server.portal]]\naddress = \"10.0.0.1:3260\"\n",
        "server.portal[1].address",
        "listed twice",
    );
    assert_one("[server]\ndata_dir = \"\"\n", "server.data_dir", "is empty");
    assert_one(
        "[server]\nlog_level = \"info,[\"\n",
        "server.log_level",
        "not a log filter",
    );
    assert_one(
        "[server.limits]\nmax_sessions = 0\n",
        "server.limits.max_sessions",
        "not in 1..=65535",
    );
    assert_one(
        "[server.limits]\nmax_sessions = 70000\nmax_sessions_per_target = 1\n",
        "server.limits.max_sessions",
        "65535",
    );
    assert_one(
        "[server.limits]\nmax_sessions = 10\nmax_sessions_per_target = 11\n",
        "server.limits.max_sessions_per_target",
        "1..=max_sessions (10)",
    );
    assert_one(
        "[server.limits]\nlogin_timeout_ms = 10\n",
        "server.limits.login_timeout_ms",
        "1000..=300000",
    );
    assert_one(
        "[server.limits]\nmax_cmds_per_session = 0\n",
        "server.limits.max_cmds_per_session",
        "1..=4096",
    );
    assert_one(
        "[server.limits]\nnop_in_interval_ms = 5\n",
        "server.limits.nop_in_interval_ms",
        "0 disables",
    );
    assert_one(
        "[server.limits]\nnop_in_timeout_ms = 0\n",
        "server.limits.nop_in_timeout_ms",
        "not in",
    );
    assert_one(
        "[server.iscsi]\nmax_recv_data_segment_length = 100\n",
        "server.iscsi.max_recv_data_segment_length",
        "512..=16777215",
    );
    assert_one(
        "[server.iscsi]\nmax_burst_length = \"16M\"\nfirst_burst_length = 512\n",
        "server.iscsi.max_burst_length",
        "16777215",
    );
    assert_one(
        "[server.iscsi]\nmax_burst_length = \"lots\"\n",
        "server.iscsi.max_burst_length",
        "not a size",
    );
    assert_one(
        "[server.iscsi]\nmax_burst_length = \"64K\"\nfirst_burst_length = \"128K\"\n",
        "server.iscsi.first_burst_length",
        "exceeds max_burst_length",
    );
    assert_one(
        "[server.iscsi]\nmax_outstanding_r2t = 0\n",
        "server.iscsi.max_outstanding_r2t",
        "1..=65535",
    );
    assert_one(
        "[server.iscsi]\ndefault_time2wait = 3601\n",
        "server.iscsi.default_time2wait",
        "0..=3600",
    );
    assert_one(
        "[server.iscsi]\ndefault_time2retain = 9999\n",
        "server.iscsi.default_time2retain",
        "0..=3600",
    );
}

#[test]
fn chap_refusals_never_echo_the_secret() {
    let chap = |body: &str| format!("[server.discovery_chap]\n{body}\n");
    assert_one(
        &chap("user = \"u\"\nsecret = \"tooshort\""),
        "server.discovery_chap.secret",
        "at least 12 bytes",
    );
    assert!(!errors(&chap("user = \"u\"\nsecret = \"tooshort\""))[0].contains("tooshort"));
    assert_one(
        &chap(&format!("user = \"u\"\nsecret = \"{}\"", "x".repeat(256))),
        "server.discovery_chap.secret",
        "at most 255",
    );
    assert_one(
        &chap("user = \"\"\nsecret = \"0123456789ab\""),
        "server.discovery_chap.user",
        "is empty",
    );
    assert_one(
        &chap("user = \"u\"\nsecret = \"0123456789ab\"\nmutual_user = \"t\""),
        "server.discovery_chap.mutual_secret",
        "is missing",
    );
    assert_one(
        &chap("user = \"u\"\nsecret = \"0123456789ab\"\nmutual_secret = \"0123456789abc\""),
        "server.discovery_chap.mutual_user",
        "is missing",
    );
    assert_one(
        &chap(
            "user = \"u\"\nsecret = \"0123456789ab\"\nmutual_user = \"t\"\nmutual_secret = \"0123456789ab\"",
        ),
        "server.discovery_chap.mutual_secret",
        "must differ from secret",
    );
    assert_one(
        &chap(
            "user = \"u\"\nsecret = \"0123456789ab\"\nmutual_user = \"t\"\nmutual_secret = \"short\"",
        ),
        "server.discovery_chap.mutual_secret",
        "at least 12",
    );
    assert_one(
        &with_target("chap = { user = \"u\", secret = \"abc\" }"),
        "target[0].chap.secret",
        "at least 12",
    );
}

#[test]
fn device_refusals() {
    let dev = |body: &str| format!("[[device]]\n{body}\n");
    assert_one(
        &dev("name = \"a/b\"\ntype = \"null\"\nsize = \"1M\""),
        "device[0].name",
        "only letters",
    );
    assert_one(
        &dev("name = \"\"\ntype = \"null\"\nsize = \"1M\""),
        "device[0].name",
        "is empty",
    );
    assert_one(
        &format!("{NULL_DEV}{NULL_DEV}"),
        "device[1].name",
        "already the name of device[0]",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"file\""),
        "device[0].path",
        "is required for type \"file\"",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"blockdev\""),
        "device[0].path",
        "is required for type \"blockdev\"",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"file\"\npath = \"\""),
        "device[0].path",
        "is empty",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\"\npath = \"/x\"\nsize = \"1M\""),
        "device[0].path",
        "not allowed for type \"ram\"",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"null\""),
        "device[0].size",
        "is required for type \"null\"",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\""),
        "device[0].size",
        "is required for type \"ram\"",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"blockdev\"\npath = \"/dev/sdb\"\nsize = \"1G\""),
        "device[0].size",
        "not allowed for type \"blockdev\"",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\"\nsize = \"1.5G\""),
        "device[0].size",
        "is not a size",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\"\nsize = 0"),
        "device[0].size",
        "is zero",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\"\nsize = 1000"),
        "device[0].size",
        "not a multiple of the block size 512",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\"\nsize = \"2K\"\nblock_size = 4096"),
        "device[0].size",
        "block size 4096",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\"\nsize = \"1M\"\nblock_size = 1024"),
        "device[0].block_size",
        "not 512 or 4096",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\"\nsize = \"1M\"\nvendor = \"TOOLONGVENDOR\""),
        "device[0].vendor",
        "at most 8",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\"\nsize = \"1M\"\nproduct = \"ABCDEFGHIJKLMNOPQ\""),
        "device[0].product",
        "at most 16",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\"\nsize = \"1M\"\nrevision = \"12345\""),
        "device[0].revision",
        "at most 4",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\"\nsize = \"1M\"\nserial = \"sérial\""),
        "device[0].serial",
        "printable ASCII",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\"\nsize = \"1M\"\nserial = \" x\""),
        "device[0].serial",
        "leading or trailing",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\"\nsize = \"1M\"\nserial = \"\""),
        "device[0].serial",
        "is empty",
    );
    assert_one(
        &dev("name = \"a\"\ntype = \"ram\"\nsize = \"1M\"\nnaa = \"6001\""),
        "device[0].naa",
        "32 hex digits",
    );
    assert_one(
        &dev(
            "name = \"a\"\ntype = \"ram\"\nsize = \"1M\"\nnaa = \"5001405aabbccddeeff0011223344556\"",
        ),
        "device[0].naa",
        "must start with 6",
    );
    assert_one(
        "[[device]]\nname = \"a\"\ntype = \"file\"\npath = \"x.img\"\n[[device]]\nname = \"b\"\ntype = \"file\"\npath = \"/etc/esos/x.img\"\n",
        "device[1].path",
        "already used by device[0]",
    );
    assert_one(
        "[[device]]\nname = \"a\"\ntype = \"ram\"\nsize = \"1M\"\nserial = \"S\"\n[[device]]\nname = \"b\"\ntype = \"ram\"\nsize = \"1M\"\nserial = \"S\"\n",
        "device[1].serial",
        "already the serial of device[0]",
    );
    let naa = "naa = \"6001405aabbccddeeff0011223344556\"";
    assert_one(
        &format!(
            "[[device]]\nname = \"a\"\ntype = \"ram\"\nsize = \"1M\"\n{naa}\n[[device]]\nname = \"b\"\ntype = \"ram\"\nsize = \"1M\"\n{naa}\n"
        ),
        "device[1].naa",
        "already the NAA of device[0]",
    );
}

#[test]
fn target_refusals() {
    let t = |name: &str, body: &str| format!("{NULL_DEV}\n[[target]]\nname = \"{name}\"\n{body}\n");
    let luns = "default_luns = [{ lun = 0, device = \"n0\" }]";
    assert_one(
        &t("iqn.2026-11.org.Esos:x", luns),
        "target[0].name",
        "lower-case",
    );
    assert_one(&t("iqn.2026-13.org.esos:x", luns), "target[0].name", "date");
    assert_one(
        &t("iqn.2026-11:x", luns),
        "target[0].name",
        "reversed domain",
    );
    assert_one(
        &t("disk1", luns),
        "target[0].name",
        "must start with \"iqn.\"",
    );
    assert_one(&t("eui.123", luns), "target[0].name", "16 hex digits");
    assert_one(
        &format!(
            "{}\n[[target]]\nname = \"IQN.2026-11.org.esos:T\"\n{luns}\n",
            with_target("")
        )
        .replace("IQN.2026-11.org.esos:T", "iqn.2026-11.org.esos:t"),
        "target[1].name",
        "already the name of target[0]",
    );
    assert_one(
        &t("iqn.2026-11.org.esos:x", ""),
        "target[0]",
        "no group and no default_luns",
    );
    // A disabled target may have no LUNs yet.
    assert!(
        validate(
            &parse(&t("iqn.2026-11.org.esos:x", "enabled = false"), "x").unwrap(),
            &src()
        )
        .is_ok()
    );
    assert_one(
        &with_target("alias = \"a\\nb\""),
        "target[0].alias",
        "control character",
    );
    assert_one(
        &with_target(&format!("alias = \"{}\"", "a".repeat(256))),
        "target[0].alias",
        "at most 255",
    );
    assert_one(
        &with_target("portals = []"),
        "target[0].portals",
        "is empty",
    );
    assert_one(
        &with_target("portals = [\"10.9.9.9:3260\"]"),
        "target[0].portals[0]",
        "not one of the server.portal",
    );
    assert_one(
        &with_target("portals = [\"nope\"]"),
        "target[0].portals[0]",
        "not an IP address",
    );
    assert_one(
        &with_target("portals = [\"0.0.0.0:3260\", \"0.0.0.0:3260\"]"),
        "target[0].portals[1]",
        "listed twice",
    );
}

#[test]
fn lun_and_group_refusals() {
    let t = |body: &str| {
        format!(
            "{NULL_DEV}\n[[device]]\nname = \"n1\"\ntype = \"null\"\nsize = \"1G\"\n[[target]]\nname = \"iqn.2026-11.org.esos:t\"\n{body}\n"
        )
    };
    assert_one(
        &t("default_luns = [{ lun = 16384, device = \"n0\" }]"),
        "target[0].default_luns[0].lun",
        "not in 0..=16383",
    );
    assert!(
        validate(
            &parse(&t("default_luns = [{ lun = 16383, device = \"n0\" }]"), "x").unwrap(),
            &src()
        )
        .is_ok()
    );
    assert_one(
        &t("default_luns = [{ lun = 0, device = \"nope\" }]"),
        "target[0].default_luns[0].device",
        "no device is named \"nope\"",
    );
    assert_one(
        &t("default_luns = [{ lun = 1, device = \"n0\" }, { lun = 1, device = \"n1\" }]"),
        "target[0].default_luns[1].lun",
        "LUN 1 is already mapped by target[0].default_luns[0]",
    );
    assert_one(
        &t("default_luns = [{ lun = 0, device = \"n0\" }, { lun = 1, device = \"n0\" }]"),
        "target[0].default_luns[1].device",
        "mapped twice",
    );
    let g = |name: &str, inits: &str, luns: &str| {
        format!("[[target.group]]\nname = \"{name}\"\ninitiators = {inits}\nluns = {luns}\n")
    };
    let ok_luns = "[{ lun = 0, device = \"n0\" }]";
    let init = "[\"iqn.1993-08.org.debian:01:a\"]";
    assert_one(
        &t(&(g("g", init, ok_luns) + &g("g", "[\"iqn.1993-08.org.debian:01:b\"]", ok_luns))),
        "target[0].group[1].name",
        "already the name of group[0]",
    );
    assert_one(
        &t(&g("bad name", init, ok_luns)),
        "target[0].group[0].name",
        "only letters",
    );
    assert_one(
        &t(&g("g", "[]", ok_luns)),
        "target[0].group[0].initiators",
        "at least one initiator",
    );
    assert_one(
        &t(&g("g", "[\"host1\"]", ok_luns)),
        "target[0].group[0].initiators[0]",
        "\"host1\"",
    );
    assert_one(
        &t(&(g("a", init, ok_luns) + &g("b", "[\"IQN.1993-08.ORG.DEBIAN:01:A\"]", ok_luns))),
        "target[0].group[1].initiators[0]",
        "already in group[0]",
    );
    assert_one(
        &t(&g(
            "g",
            "[\"iqn.1993-08.org.debian:01:a\", \"iqn.1993-08.org.debian:01:a\"]",
            ok_luns,
        )),
        "target[0].group[0].initiators[1]",
        "already in this group",
    );
    assert_one(
        &t(&g("g", init, "[{ lun = 20000, device = \"n0\" }]")),
        "target[0].group[0].luns[0].lun",
        "0..=16383",
    );
    assert_one(
        &t(&(g("g", init, ok_luns)
            + &g(
                "h",
                "[\"iqn.1993-08.org.debian:01:b\"]",
                "[{ lun = 0, device = \"ghost\" }]",
            ))),
        "target[0].group[1].luns[0].device",
        "no device is named \"ghost\"",
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let errs = errors(
        r#"
        [server.limits]
        max_sessions = 0
        [[device]]
        name = "a"
        type = "ram"
        [[target]]
        name = "bad"
        default_luns = [{ lun = 99999, device = "zz" }]
        "#,
    );
    let keys: Vec<&str> = errs.iter().map(|e| e.split(": ").next().unwrap()).collect();
    for k in [
        "server.limits.max_sessions",
        "device[0].size",
        "target[0].name",
        "target[0].default_luns[0].lun",
        "target[0].default_luns[0].device",
    ] {
        assert!(keys.contains(&k), "missing {k} in {errs:#?}");
    }
}

#[test]
fn example_config_parses_and_validates() {
    let path = examples_dir().join("esos.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let raw = parse(&text, "examples/esos.toml").unwrap_or_else(|e| panic!("{e}"));
    let plan = validate(&raw, &Source::file(&path)).unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<_> = plan.devices.iter().map(|d| d.kind).collect();
    for k in [DeviceType::File, DeviceType::Ram, DeviceType::Null] {
        assert!(kinds.contains(&k), "example lacks a {k:?} device");
    }
    assert!(plan.targets.len() >= 2);
    assert!(plan.targets.iter().any(|t| t.chap.is_some()));
    assert!(
        plan.targets.iter().any(|t| t.groups.len() >= 2),
        "example shows LUN masking"
    );
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
}

fn examples_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// What `esos config check` does, for every shipped example, where it ships: a newcomer's
/// first command must pass on a fresh clone (the example carries the directories and
/// files its devices need).
#[test]
fn every_example_passes_config_check_as_shipped() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let plan = load(&path).unwrap_or_else(|e| panic!("{e}"));
        crate::graph::preflight(&plan).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    for name in ["conformance.toml", "esos.toml"] {
        assert!(
            checked.iter().any(|c| c == name),
            "{name} not checked: {checked:?}"
        );
    }
}

#[test]
fn load_reads_file_and_warns_about_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("esos.toml");
    std::fs::write(&path, with_target("")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let p = load(&path).unwrap();
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("readable by group or others")),
        "{:?}",
        p.warnings
    );
    assert_eq!(p.data_dir, dir.path().join("esos-state"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(load(&path).unwrap().warnings.is_empty());

    let e = load(&dir.path().join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.toml: cannot read"), "{e}");
    std::fs::write(&path, "[server]\nnope = 1\n").unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert!(e.contains("esos.toml:2:") && e.contains("nope"), "{e}");
}

proptest::proptest! {
    /// Arbitrary text never panics the parser or the validator.
    #[test]
    fn arbitrary_text_never_panics(text in "(\\[\\[?[a-z.]{0,12}\\]\\]?\n|[a-z_]{1,10} = (\"[ -~]{0,12}\"|[0-9]{1,6}|true|\\[\\])\n){0,12}") {
        if let Ok(raw) = parse(&text, "p.toml") {
            let _ = validate(&raw, &src());
        }
    }
}

#[test]
fn physical_block_size_sets_the_lbppb_exponent() {
    let p = plan(
        r#"
        [[device]]
        name = "a"
        type = "ram"
        size = "1M"
        physical_block_size = 4096
        [[device]]
        name = "b"
        type = "ram"
        size = "1M"
        block_size = 4096
        physical_block_size = 65536
        [[device]]
        name = "c"
        type = "ram"
        size = "1M"
        "#,
    );
    let e: Vec<u8> = p.devices.iter().map(|d| d.lbppb_exponent).collect();
    assert_eq!(e, [3, 4, 0]);
}

#[test]
fn bad_physical_block_sizes_are_refused() {
    let dev = |pbs: &str, bs: u32| {
        format!(
            "[[device]]\nname = \"a\"\ntype = \"ram\"\nsize = \"1M\"\nblock_size = {bs}\nphysical_block_size = {pbs}"
        )
    };
    let key = "device[0].physical_block_size";
    assert_one(&dev("3000", 512), key, "not a power of two");
    assert_one(&dev("0", 512), key, "not a power of two");
    assert_one(&dev("2048", 4096), key, "smaller than the block size 4096");
    assert_one(&dev("131072", 512), key, "larger than 65536");
}

#[test]
fn cdrom_and_removable_devices() {
    let p = plan(
        r#"
[[device]]
name = "cd"
type = "cdrom"
path = "disc.iso"

[[device]]
name = "usb"
type = "ram"
size = "8M"
removable = true
"#,
    );
    let cd = &p.devices[0];
    assert_eq!(cd.kind, DeviceType::Cdrom);
    assert_eq!(
        (cd.spec.block_size, cd.spec.read_only, cd.removable),
        (2048, true, true)
    );
    assert_eq!(
        cd.spec.backend,
        Backend::File {
            path: "/etc/esos/disc.iso".into(),
            size_bytes: None
        }
    );
    assert!(p.devices[1].removable && !p.devices[1].spec.read_only);

    let cd = |extra: &str| format!("[[device]]\nname = \"cd\"\ntype = \"cdrom\"\n{extra}\n");
    assert_one(&cd(""), "device[0].path", "required");
    assert_one(
        &cd("path = \"a.iso\"\nsize = \"1M\""),
        "device[0].size",
        "image's size",
    );
    assert_one(
        &cd("path = \"a.iso\"\nblock_size = 512"),
        "device[0].block_size",
        "2048-byte blocks",
    );
    for (key, line) in [
        ("read_only", "read_only = false"),
        ("removable", "removable = false"),
        ("thin", "thin = true"),
    ] {
        assert_one(
            &cd(&format!("path = \"a.iso\"\n{line}")),
            &format!("device[0].{key}"),
            "cdrom",
        );
    }
    // 2048-byte blocks stay a CD-ROM thing.
    assert_one(
        "[[device]]\nname = \"d\"\ntype = \"ram\"\nsize = \"1M\"\nblock_size = 2048\n",
        "device[0].block_size",
        "not 512 or 4096",
    );
}
