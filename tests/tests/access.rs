//! Access control from a config file: target CHAP, initiator ACL groups, LUN masking and
//! discovery CHAP, checked with libiscsi and qemu-img as the initiators.

use esos_e2e::daemon::{Ctx, Daemon};
use esos_e2e::tools::{self, QemuIscsi};

const TARGET: &str = "iqn.2026-11.org.esos:e2e-acl";
const FULL: &str = "iqn.2026-11.org.esos:initiator-full";
const MASKED: &str = "iqn.2026-11.org.esos:initiator-masked";
const STRANGER: &str = "iqn.2026-11.org.esos:initiator-stranger";
const USER: &str = "acl-user";
const SECRET: &str = "acl-secret-0123456";
const DISC_USER: &str = "disc-user";
const DISC_SECRET: &str = "disc-secret-0123456";

fn acl_config(ctx: &Ctx) -> String {
    format!(
        r#"
[server]
data_dir = "{dir}/data"

[[server.portal]]
address = "127.0.0.1:{port}"

[[device]]
name = "d0"
type = "ram"
size = "32M"

[[device]]
name = "d1"
type = "ram"
size = "16M"

[[target]]
name = "{TARGET}"
chap = {{ user = "{USER}", secret = "{SECRET}" }}

[[target.group]]
name = "full"
initiators = ["{FULL}"]
luns = [{{ lun = 0, device = "d0" }}, {{ lun = 1, device = "d1" }}]

[[target.group]]
name = "masked"
initiators = ["{MASKED}"]
luns = [{{ lun = 0, device = "d0" }}]
"#,
        dir = ctx.dir.display(),
        port = ctx.port
    )
}

fn discovery_config(ctx: &Ctx) -> String {
    format!(
        r#"
[server]
data_dir = "{dir}/data"

[[server.portal]]
address = "127.0.0.1:{port}"

[server.discovery_chap]
user = "{DISC_USER}"
secret = "{DISC_SECRET}"

[[device]]
name = "d0"
type = "ram"
size = "16M"

[[target]]
name = "{TARGET}"
default_luns = [{{ lun = 0, device = "d0" }}]
"#,
        dir = ctx.dir.display(),
        port = ctx.port
    )
}

fn url(d: &Daemon, user: &str, secret: &str, lun: Option<u32>) -> String {
    match lun {
        Some(l) => format!("iscsi://{user}%{secret}@{}/{}/{l}", d.portal(), d.target),
        None => format!("iscsi://{user}%{secret}@{}", d.portal()),
    }
}

#[test]
fn chap_acl_and_lun_masking() {
    let d = Daemon::with_config(TARGET, acl_config);

    let full = tools::iscsi_ls(&url(&d, USER, SECRET, None), Some(FULL));
    assert!(full.success(), "{}\n{}", full.describe(), d.log());
    assert_eq!(
        tools::luns_in_listing(&full.stdout),
        [0, 1],
        "{}",
        full.stdout
    );

    let masked = tools::iscsi_ls(&url(&d, USER, SECRET, None), Some(MASKED));
    assert!(masked.success(), "{}\n{}", masked.describe(), d.log());
    assert_eq!(
        tools::luns_in_listing(&masked.stdout),
        [0],
        "masked LUN 1 visible:\n{}",
        masked.stdout
    );
    let hidden = tools::libiscsi("iscsi-inq", &url(&d, USER, SECRET, Some(1)), Some(MASKED));
    assert!(
        !hidden.success(),
        "LUN 1 answered INQUIRY for a group that does not map it"
    );

    let ok = tools::libiscsi("iscsi-inq", &url(&d, USER, SECRET, Some(0)), Some(FULL));
    assert!(ok.success(), "{}\n{}", ok.describe(), d.log());

    let wrong = tools::libiscsi(
        "iscsi-inq",
        &url(&d, USER, "not-the-secret-000", Some(0)),
        Some(FULL),
    );
    assert!(
        !wrong.success(),
        "login with a wrong CHAP secret was accepted\n{}",
        wrong.describe()
    );
    let nouser = tools::libiscsi("iscsi-inq", &d.url(0), Some(FULL));
    assert!(
        !nouser.success(),
        "login without CHAP was accepted\n{}",
        nouser.describe()
    );

    let stranger = tools::libiscsi("iscsi-inq", &url(&d, USER, SECRET, Some(0)), Some(STRANGER));
    assert!(
        !stranger.success(),
        "an initiator in no group logged in\n{}",
        stranger.describe()
    );

    let q = QemuIscsi {
        portal: d.portal(),
        target: TARGET.into(),
        lun: 0,
        header_digest: false,
        initiator: Some(STRANGER.into()),
        chap: Some((USER.into(), SECRET.into())),
    };
    let out = d.dir().join("stranger.img");
    let qs = q.download(&out);
    assert!(
        !qs.success(),
        "qemu-img as a stranger read the LUN\n{}",
        qs.describe()
    );
    let q = QemuIscsi {
        initiator: Some(FULL.into()),
        ..q
    };
    let qf = q.download(&out);
    assert!(
        qf.success(),
        "qemu-img as a mapped initiator failed\n{}\n{}",
        qf.describe(),
        d.log()
    );
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 32 << 20);
}

#[test]
fn discovery_chap_refuses_strangers() {
    let d = Daemon::with_config(TARGET, discovery_config);
    let anon = tools::iscsi_ls(&format!("iscsi://{}", d.portal()), None);
    assert!(
        !anon.success() || !anon.stdout.contains(TARGET),
        "discovery without CHAP listed the target\n{}",
        anon.describe()
    );
    let wrong = tools::iscsi_ls(&url(&d, DISC_USER, "wrong-secret-0000", None), None);
    assert!(
        !wrong.success() || !wrong.stdout.contains(TARGET),
        "discovery with a wrong secret listed the target\n{}",
        wrong.describe()
    );
    let ok = tools::iscsi_ls(&url(&d, DISC_USER, DISC_SECRET, None), None);
    assert!(
        ok.success() && ok.stdout.contains(TARGET),
        "{}\n{}",
        ok.describe(),
        d.log()
    );
}
