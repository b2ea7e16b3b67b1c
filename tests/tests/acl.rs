//! Access-control matrix: initiators × targets × groups (different LUN maps) × CHAP
//! variants, discovery included, against one daemon. Every cell has an expected outcome;
//! the test counts unexpected grants (a login, LUN, device or target listing that should
//! have been refused) and unexpected refusals, and requires zero of both.
//!
//! Expectations: a target admits an initiator when a group names it or `default_luns`
//! exist; a CHAP target needs a correct CHAP response, and refuses an initiator that
//! reflects the target's own challenge as its mutual challenge (RFC 7143 12.1.3); a
//! disabled target admits nobody; SendTargets lists exactly the enabled targets the asking
//! initiator may log in to (RFC 7143 Appendix C: discovery reveals no more than access).

use std::collections::BTreeSet;

use esos_e2e::client::{CHECK_CONDITION, ChapLogin, Conn, LoginOptions};
use esos_e2e::daemon::{Ctx, Daemon};

const IA: &str = "iqn.2026-11.org.esos.acl:initiator-a";
const IB: &str = "iqn.2026-11.org.esos.acl:initiator-b";
const IC: &str = "iqn.2026-11.org.esos.acl:stranger";
const T1: &str = "iqn.2026-11.org.esos.acl:open";
const T2: &str = "iqn.2026-11.org.esos.acl:chap";
const T3: &str = "iqn.2026-11.org.esos.acl:disabled";

const T2_USER: &str = "t2-user";
const T2_SECRET: &str = "t2-secret-0123";
const T2_MUTUAL_USER: &str = "t2-target";
const T2_MUTUAL_SECRET: &str = "t2-mutual-4567";
const DISC_USER: &str = "disc-user";
const DISC_SECRET: &str = "disc-secret-89ab";
const DISC_MUTUAL_USER: &str = "disc-target";
const DISC_MUTUAL_SECRET: &str = "disc-mutual-cdef";

/// LUN numbers probed in every session (beyond every mapped one).
const PROBED_LUNS: u64 = 8;
/// Device sizes in MiB: each device has its own, so READ CAPACITY names the device.
const DEVICE_MIB: [u64; 5] = [1, 2, 3, 4, 5];

fn config(ctx: &Ctx) -> String {
    let devices: String = DEVICE_MIB
        .iter()
        .enumerate()
        .map(|(i, m)| format!("[[device]]\nname = \"d{i}\"\ntype = \"ram\"\nsize = \"{m}M\"\n\n"))
        .collect();
    format!(
        r#"
[server]
data_dir = "{dir}/data"

[[server.portal]]
address = "127.0.0.1:{port}"

[server.discovery_chap]
user = "{DISC_USER}"
secret = "{DISC_SECRET}"
mutual_user = "{DISC_MUTUAL_USER}"
mutual_secret = "{DISC_MUTUAL_SECRET}"

{devices}
[[target]]
name = "{T1}"

[[target.group]]
name = "ga"
initiators = ["{IA}"]
luns = [{{ lun = 0, device = "d0" }}, {{ lun = 1, device = "d1" }}]

[[target.group]]
name = "gb"
initiators = ["{IB}"]
luns = [{{ lun = 0, device = "d1" }}, {{ lun = 5, device = "d2" }}]

[[target]]
name = "{T2}"
chap = {{ user = "{T2_USER}", secret = "{T2_SECRET}", mutual_user = "{T2_MUTUAL_USER}", mutual_secret = "{T2_MUTUAL_SECRET}" }}
default_luns = [{{ lun = 0, device = "d4" }}]

[[target.group]]
name = "ga"
initiators = ["{IA}"]
luns = [{{ lun = 3, device = "d3" }}]

[[target]]
name = "{T3}"
enabled = false
default_luns = [{{ lun = 0, device = "d0" }}]
"#,
        dir = ctx.dir.display(),
        port = ctx.port
    )
}

/// How the initiator authenticates.
#[derive(Clone, Copy, Debug)]
enum Auth {
    None,
    Good,
    WrongSecret,
    GoodMutual,
    /// Correct response, but our mutual challenge is the target's own challenge.
    Reflect,
}

const AUTHS: [Auth; 5] = [
    Auth::None,
    Auth::Good,
    Auth::WrongSecret,
    Auth::GoodMutual,
    Auth::Reflect,
];

fn chap(auth: Auth, user: &str, secret: &str, mutual: (&str, &str)) -> Option<ChapLogin> {
    match auth {
        Auth::None => None,
        Auth::Good => Some(ChapLogin::new(user, secret)),
        Auth::WrongSecret => Some(ChapLogin::new(user, "not-the-secret-000")),
        Auth::GoodMutual => Some(ChapLogin::new(user, secret).mutual(mutual.0, mutual.1)),
        Auth::Reflect => Some(ChapLogin {
            reflect: true,
            ..ChapLogin::new(user, secret)
        }),
    }
}

/// The LUN map (LUN -> device index) `initiator` should get on `target`, or `None` when
/// the login must be refused.
fn expected(initiator: &str, target: &str, auth: Auth) -> Option<Vec<(u64, usize)>> {
    let authenticated = match target {
        // No CHAP configured: only AuthMethod=None logs in (our CHAP-only offer is refused).
        T1 => matches!(auth, Auth::None),
        T2 => matches!(auth, Auth::Good | Auth::GoodMutual),
        _ => false,
    };
    if !authenticated {
        return None;
    }
    match (target, initiator) {
        (T1, IA) => Some(vec![(0, 0), (1, 1)]),
        (T1, IB) => Some(vec![(0, 1), (5, 2)]),
        (T2, IA) => Some(vec![(3, 3)]),
        (T2, _) => Some(vec![(0, 4)]),
        _ => None,
    }
}

/// REPORT LUNS (SPC-4 6.33) decoded to LUN numbers (peripheral or flat addressing).
fn report_luns(c: &mut Conn) -> BTreeSet<u64> {
    let alloc: u32 = 4096;
    let mut cdb = [0u8; 12];
    cdb[0] = 0xa0;
    cdb[6..10].copy_from_slice(&alloc.to_be_bytes());
    let r = c.command(0, &cdb, &[], alloc).expect("REPORT LUNS");
    assert!(r.is_good(), "REPORT LUNS: {r:?}");
    let n = u32::from_be_bytes(r.data[0..4].try_into().unwrap()) as usize / 8;
    (0..n)
        .map(|i| {
            let e = &r.data[8 + 8 * i..16 + 8 * i];
            (u64::from(e[0] & 0x3f) << 8) | u64::from(e[1])
        })
        .collect()
}

/// READ CAPACITY(10) of `lun`: the capacity in bytes, or `None` when the LUN is refused
/// with LOGICAL UNIT NOT SUPPORTED (SPC-4 4.6.4 / SAM-5 5.8).
fn capacity(c: &mut Conn, lun: u64) -> Result<Option<u64>, String> {
    for _ in 0..4 {
        let r = c
            .command(lun, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[], 8)
            .map_err(|e| e.to_string())?;
        if r.is_good() {
            let last = u32::from_be_bytes(r.data[0..4].try_into().unwrap());
            let bs = u32::from_be_bytes(r.data[4..8].try_into().unwrap());
            return Ok(Some((u64::from(last) + 1) * u64::from(bs)));
        }
        match r.sense_triple() {
            Some((0x05, 0x25, 0x00)) if r.status == CHECK_CONDITION => return Ok(None),
            Some((0x06, _, _)) => continue, // unit attention of a new nexus
            other => return Err(format!("LUN {lun}: status {:#x} sense {other:?}", r.status)),
        }
    }
    Err(format!("LUN {lun}: unit attention never cleared"))
}

#[test]
fn access_control_matrix_has_no_unexpected_grant() {
    let d = Daemon::with_config(T1, config);
    let mut grants: Vec<String> = Vec::new();
    let mut refusals: Vec<String> = Vec::new();
    let mut cells = 0;
    for initiator in [IA, IB, IC] {
        for target in [T1, T2, T3] {
            for auth in AUTHS {
                cells += 1;
                let cell = format!("{initiator} -> {target} auth {auth:?}");
                let mut o = LoginOptions::normal(target);
                o.initiator = initiator.into();
                o.chap = chap(auth, T2_USER, T2_SECRET, (T2_MUTUAL_USER, T2_MUTUAL_SECRET));
                let want = expected(initiator, target, auth);
                let got = Conn::login(d.addr(), &o);
                let (mut c, want) = match (got, want) {
                    (Err(_), None) => continue,
                    (Ok(c), None) => {
                        grants.push(format!("{cell}: logged in"));
                        let _ = c.logout();
                        continue;
                    }
                    (Err(e), Some(_)) => {
                        refusals.push(format!("{cell}: {e}"));
                        continue;
                    }
                    (Ok(c), Some(w)) => (c, w),
                };
                let _ = c.test_unit_ready(0);
                let luns = report_luns(&mut c);
                let want_luns: BTreeSet<u64> = want.iter().map(|l| l.0).collect();
                for l in luns.difference(&want_luns) {
                    grants.push(format!("{cell}: REPORT LUNS lists LUN {l}"));
                }
                for l in want_luns.difference(&luns) {
                    refusals.push(format!("{cell}: REPORT LUNS misses LUN {l}"));
                }
                let probe: BTreeSet<u64> =
                    (0..PROBED_LUNS).chain(want_luns.iter().copied()).collect();
                for lun in probe {
                    let dev = want.iter().find(|l| l.0 == lun).map(|l| l.1);
                    match (capacity(&mut c, lun), dev) {
                        (Ok(None), None) => {}
                        (Ok(Some(bytes)), None) => {
                            grants.push(format!("{cell}: LUN {lun} answers ({bytes} bytes)"))
                        }
                        (Ok(Some(bytes)), Some(i)) if bytes != DEVICE_MIB[i] << 20 => grants.push(
                            format!("{cell}: LUN {lun} is a {bytes}-byte device, not d{i}"),
                        ),
                        (Ok(Some(_)), Some(_)) => {}
                        (Ok(None), Some(i)) => {
                            refusals.push(format!("{cell}: LUN {lun} (d{i}) not supported"))
                        }
                        (Err(e), _) => refusals.push(format!("{cell}: {e}")),
                    }
                }
                let _ = c.logout();
            }
        }
        // Discovery: CHAP required; the listing is filtered by what the initiator may reach.
        for auth in AUTHS {
            cells += 1;
            let cell = format!("{initiator} discovery auth {auth:?}");
            let o = LoginOptions {
                chap: chap(
                    auth,
                    DISC_USER,
                    DISC_SECRET,
                    (DISC_MUTUAL_USER, DISC_MUTUAL_SECRET),
                ),
                ..LoginOptions::discovery(initiator)
            };
            let may_log_in = matches!(auth, Auth::Good | Auth::GoodMutual);
            match (Conn::login(d.addr(), &o), may_log_in) {
                (Err(_), false) => {}
                (Err(e), true) => refusals.push(format!("{cell}: {e}")),
                (Ok(c), false) => {
                    grants.push(format!("{cell}: logged in"));
                    let _ = c.logout();
                }
                (Ok(mut c), true) => {
                    let listed: BTreeSet<String> = c
                        .send_targets()
                        .expect("SendTargets")
                        .into_iter()
                        .filter(|(k, _)| k == "TargetName")
                        .map(|(_, v)| v)
                        .collect();
                    let want: BTreeSet<String> = [T1, T2, T3]
                        .into_iter()
                        .filter(|t| AUTHS.iter().any(|&a| expected(initiator, t, a).is_some()))
                        .map(str::to_owned)
                        .collect();
                    for t in listed.difference(&want) {
                        grants.push(format!("{cell}: SendTargets lists {t}"));
                    }
                    for t in want.difference(&listed) {
                        refusals.push(format!("{cell}: SendTargets misses {t}"));
                    }
                    let _ = c.logout();
                }
            }
        }
    }
    eprintln!(
        "esos-e2e: access-control matrix: {cells} cells, {} unexpected grants, {} unexpected refusals",
        grants.len(),
        refusals.len()
    );
    assert!(
        grants.is_empty(),
        "unexpected grants:\n{}\n{}",
        grants.join("\n"),
        d.log()
    );
    assert!(
        refusals.is_empty(),
        "unexpected refusals:\n{}\n{}",
        refusals.join("\n"),
        d.log()
    );
}
