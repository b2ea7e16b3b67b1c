//! `[cluster]` and replicated devices: the accepted shape, and every refusal by key.

use esos_block::Backend;

use super::*;

fn src(node: Option<&str>) -> Source {
    Source {
        label: "esos.toml".into(),
        base_dir: "/etc/esos".into(),
        node: node.map(str::to_owned),
    }
}

fn check(text: &str, node: Option<&str>) -> Result<Plan, Vec<String>> {
    let raw = parse(text, "esos.toml").map_err(|e| vec![e.to_string()])?;
    validate(&raw, &src(node)).map_err(|e| e.key_errors().iter().map(|k| k.to_string()).collect())
}

/// Node n1 of a pair with a witness, one replicated device mapped on one target.
const PAIR: &str = r#"
[server]
portal = [{ address = "10.77.0.1:3260", group = 1 }]

[cluster]
name = "pair1"
node = "n1"
[[cluster.member]]
name = "n1"
address = "10.77.0.1:7788"
portal_groups = [1]
[[cluster.member]]
name = "n2"
address = "10.77.0.2:7788"
portal_groups = [2]
[cluster.witness]
name = "w"
address = "10.77.0.3:7788"

[[device]]
name = "db-disk"
type = "file"
path = "/var/lib/esos/db.img"
size = "1G"
[[device]]
name = "n0"
type = "null"
size = "1G"
[[device]]
name = "db"
type = "replicated"
backing = "db-disk"
resync_rate = "100M"

[[target]]
name = "iqn.2026-12.org.esos:db"
default_luns = [{ lun = 0, device = "db" }, { lun = 1, device = "n0" }]
"#;

/// `PAIR` with `from` replaced by `to` (which must occur).
fn pair_with(from: &str, to: &str) -> String {
    assert!(PAIR.contains(from), "{from}");
    PAIR.replacen(from, to, 1)
}

fn errors(text: &str, node: Option<&str>) -> Vec<String> {
    match check(text, node) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

fn assert_error(text: &str, want: &str) {
    let errs = errors(text, None);
    assert!(
        errs.iter().any(|e| e.starts_with(want)),
        "want {want:?} in {errs:#?}"
    );
}

#[test]
fn pair_plan_folds_the_backing_into_the_replicated_device() {
    let p = check(PAIR, None).unwrap();
    let c = p.cluster.as_ref().unwrap();
    assert_eq!((c.name.as_str(), c.me.as_str()), ("pair1", "n1"));
    assert!(c.auto_promote);
    assert_eq!((c.lease_ms, c.io_timeout_ms), (1500, 5000));
    assert_eq!(c.my_member().portal_groups, vec![1]);
    assert_eq!(c.peers().len(), 1);
    assert_eq!(c.peers()[0].0.as_str(), "n2");
    let voters: Vec<String> = c.voters().iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(voters, ["n1", "n2", "w"]);
    // The backing is no longer an exportable device; LUN maps point at the right ones.
    let names: Vec<&str> = p.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["n0", "db"]);
    let luns = p.targets[0].default_luns.as_ref().unwrap();
    assert_eq!(p.devices[luns[0].1].name, "db");
    assert_eq!(p.devices[luns[1].1].name, "n0");
    let db = &p.devices[1];
    assert_eq!(db.kind, DeviceType::Replicated);
    let r = db.replica.as_ref().unwrap();
    assert_eq!(r.cluster, "pair1");
    assert_eq!(r.backing.name, "db-disk");
    assert_eq!(r.resync_rate, 100 << 20);
    assert_eq!(
        db.spec, r.backing.spec,
        "the LU has the backing's size and blocks"
    );
    assert!(matches!(db.spec.backend, Backend::File { .. }));
    assert!(
        p.warnings.iter().all(|w| !w.contains("db-disk")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn node_comes_from_the_override_first() {
    let text = pair_with("node = \"n1\"\n", "");
    assert_error(&text, "cluster.node: is not set");
    // n2's portals are group 2: the override must agree with the portals too.
    let n2 = text.replace("group = 1 }", "group = 2 }");
    let p = check(&n2, Some("n2")).unwrap();
    assert_eq!(p.cluster.unwrap().me.as_str(), "n2");
    let errs = errors(&n2, Some("n9"));
    assert!(
        errs[0]
            .starts_with("cluster.node: \"n9\" (from --node / ESOS_NODE) is not a cluster.member"),
        "{errs:?}"
    );
    // Without a witness, a pair warns that either node down stops I/O.
    let p = check(
        &pair_with(
            "[cluster.witness]\nname = \"w\"\naddress = \"10.77.0.3:7788\"\n",
            "",
        ),
        None,
    )
    .unwrap();
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("no [cluster.witness]")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn member_refusals_name_the_key() {
    let cases: [(&str, &str, &str); 10] = [
        (
            "name = \"n2\"\naddress = \"10.77.0.2:7788\"",
            "name = \"n 2\"\naddress = \"10.77.0.2:7788\"",
            "cluster.member[1].name: \"n 2\" is not",
        ),
        (
            "name = \"n2\"\naddress = \"10.77.0.2:7788\"",
            "name = \"n1\"\naddress = \"10.77.0.2:7788\"",
            "cluster.member[1].name: n1 is already the name of cluster.member[0]",
        ),
        (
            "address = \"10.77.0.2:7788\"",
            "address = \"10.77.0.2\"",
            "cluster.member[1].address: \"10.77.0.2\" is not an IP address with a port",
        ),
        (
            "address = \"10.77.0.2:7788\"",
            "address = \"10.77.0.1:7788\"",
            "cluster.member[1].address: 10.77.0.1:7788 is already the address of cluster.member[0]",
        ),
        (
            "portal_groups = [2]",
            "portal_groups = [1]",
            "cluster.member[1].portal_groups[0]: portal group 1 is already a portal group of cluster.member[0]",
        ),
        (
            "portal_groups = [2]",
            "portal_groups = []",
            "cluster.member[1].portal_groups: is empty",
        ),
        (
            "portal_groups = [2]",
            "portal_groups = [0]",
            "cluster.member[1].portal_groups[0]: 0 is not in 1..=65535",
        ),
        (
            "name = \"pair1\"",
            "name = \"pair one\"",
            "cluster.name: \"pair one\" is not",
        ),
        (
            "name = \"w\"",
            "name = \"n2\"",
            "cluster.witness.name: n2 is already the name of cluster.member[1]",
        ),
        (
            "address = \"10.77.0.3:7788\"",
            "address = \"10.77.0.2:7788\"",
            "cluster.witness.address: 10.77.0.2:7788 is already the address of cluster.member[1]",
        ),
    ];
    for (from, to, want) in cases {
        assert_error(&pair_with(from, to), want);
    }
    // One member, or four.
    let one = PAIR.replacen(
        "[[cluster.member]]\nname = \"n2\"\naddress = \"10.77.0.2:7788\"\nportal_groups = [2]\n",
        "",
        1,
    );
    assert_error(&one, "cluster.member: has 1 members; a cluster has 2 or 3");
    let member = |n: u32| {
        format!(
            "[[cluster.member]]\nname = \"n{n}\"\naddress = \"10.77.1.{n}:7788\"\nportal_groups = [{n}]\n"
        )
    };
    let four = pair_with(
        "[cluster.witness]",
        &format!("{}{}[cluster.witness]", member(3), member(4)),
    );
    assert_error(&four, "cluster.member: has 4 members; a cluster has 2 or 3");
    let three = pair_with(
        "[cluster.witness]",
        &format!("{}[cluster.witness]", member(3)),
    );
    assert_eq!(
        check(&three, None).unwrap().cluster.unwrap().members.len(),
        3
    );
}

#[test]
fn portals_must_be_exactly_this_members_groups() {
    assert_error(
        &pair_with("group = 1 }", "group = 2 }"),
        "server.portal[0].group: 2 is not a portal group of this node (n1",
    );
    assert_error(
        &pair_with("portal_groups = [1]", "portal_groups = [1, 5]"),
        "cluster.member[0].portal_groups[1]: portal group 5 of this node (n1) has no server.portal",
    );
    assert_error(
        &pair_with("node = \"n1\"", "node = \"n1\"\nlease_ms = 10"),
        "cluster.lease_ms: 10 is not in 600..=60000",
    );
    assert_error(
        &pair_with("node = \"n1\"", "node = \"n1\"\nio_timeout_ms = 0"),
        "cluster.io_timeout_ms: 0 is not in 100..=600000",
    );
    let e = errors(
        &pair_with("node = \"n1\"", "node = \"n1\"\nquorum = 2"),
        None,
    );
    assert!(e[0].contains("cluster.quorum: unknown field"), "{e:?}");
}

#[test]
fn replicated_device_refusals_name_the_key() {
    let cases = [
        (
            "backing = \"db-disk\"\n",
            "",
            "device[2].backing: is required",
        ),
        (
            "backing = \"db-disk\"",
            "backing = \"nope\"",
            "device[2].backing: no device is named \"nope\"",
        ),
        (
            "backing = \"db-disk\"",
            "backing = \"n0\"",
            "device[2].backing: device \"n0\" is of type \"null\"",
        ),
        (
            "backing = \"db-disk\"",
            "backing = \"db-disk\"\nsize = \"1G\"",
            "device[2].size: is not allowed for type \"replicated\"",
        ),
        (
            "backing = \"db-disk\"",
            "backing = \"db-disk\"\npath = \"x.img\"",
            "device[2].path: is not allowed for type \"replicated\"",
        ),
        (
            "backing = \"db-disk\"",
            "backing = \"db-disk\"\nblock_size = 4096",
            "device[2].block_size: is not allowed",
        ),
        (
            "resync_rate = \"100M\"",
            "resync_rate = \"fast\"",
            "device[2].resync_rate:",
        ),
        (
            "type = \"null\"\nsize = \"1G\"",
            "type = \"null\"\nsize = \"1G\"\nbacking = \"db-disk\"",
            "device[1].backing: is only for type \"replicated\"",
        ),
        (
            "{ lun = 1, device = \"n0\" }",
            "{ lun = 1, device = \"db-disk\" }",
            "target[0].default_luns[1].device: device \"db-disk\" is the backing of replicated device \"db\"; map \"db\" instead",
        ),
    ];
    for (from, to, want) in cases {
        assert_error(&pair_with(from, to), want);
    }
    let twice = format!(
        "{PAIR}\n[[device]]\nname = \"db2\"\ntype = \"replicated\"\nbacking = \"db-disk\"\n"
    );
    assert_error(
        &twice,
        "device[3].backing: device \"db-disk\" already backs device[2]",
    );
    // No [cluster]: a replicated device has no peers to replicate to.
    let start = PAIR.find("[cluster]").unwrap();
    let end = PAIR.find("[[device]]").unwrap();
    let alone = format!("{}{}", &PAIR[..start], &PAIR[end..]);
    assert_error(
        &alone,
        "device[2].type: \"replicated\" needs a [cluster] section",
    );
}

#[test]
fn a_config_without_cluster_has_none() {
    let p = check(
        "[[device]]\nname = \"n\"\ntype = \"null\"\nsize = \"1M\"\n",
        None,
    )
    .unwrap();
    assert!(p.cluster.is_none());
    assert!(p.devices[0].replica.is_none());
}
