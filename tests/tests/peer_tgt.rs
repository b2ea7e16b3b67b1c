//! Validates the harness' own clients against Debian's tgt, so that a failure against esos
//! points at esos. Skipped with a message when tgt is not installed.

use esos_e2e::client::{Conn, LoginOptions};
use esos_e2e::tgt::Tgt;
use esos_e2e::tools::{self, QemuIscsi};
use esos_e2e::{data, net};

const LUN_BYTES: u64 = 32 << 20;

fn tgt() -> Option<Tgt> {
    let t = Tgt::start(LUN_BYTES);
    if t.is_none() {
        eprintln!("SKIPPED: tgtd is not installed");
    }
    t
}

#[test]
fn raw_client_round_trip_with_digests_against_tgt() {
    let Some(t) = tgt() else { return };
    let mut c =
        Conn::login(t.addr(), &LoginOptions::normal(&t.target).digests()).expect("login to tgt");
    assert!(
        c.neg.header_digest && c.neg.data_digest,
        "tgt did not accept digests: {:?}",
        c.neg.keys
    );
    c.clear_unit_attention(1).unwrap();
    let (_, bs) = c.read_capacity10(1).unwrap();
    let payload = data::pattern(42, 128 * bs as usize);
    let w = c.write10(1, 8, 128, &payload, true).unwrap();
    assert!(w.is_good(), "{w:?}");
    let r = c.read10(1, 8, 128, bs).unwrap();
    assert!(r.is_good(), "{:?}", r.sense_triple());
    assert!(r.data == payload, "read back differs");
    assert!(c.synchronize_cache10(1).unwrap().is_good());
    let echo = c.ping(b"hello tgt").unwrap();
    assert_eq!(echo, b"hello tgt");
    c.logout().unwrap();
    let on_disk = std::fs::read(t.image()).unwrap();
    let at = 8 * bs as usize;
    assert!(
        on_disk[at..at + payload.len()] == payload[..],
        "FUA write not in tgt's backing file"
    );
}

#[test]
fn libiscsi_and_qemu_against_tgt() {
    let Some(t) = tgt() else { return };
    let ls = tools::iscsi_ls(&format!("iscsi://127.0.0.1:{}", t.port), None).ok();
    assert!(ls.stdout.contains(&t.target), "{}", ls.stdout);
    assert!(tools::luns_in_listing(&ls.stdout).contains(&1));
    let q = QemuIscsi {
        portal: format!("127.0.0.1:{}", t.port),
        target: t.target.clone(),
        lun: 1,
        header_digest: true,
        initiator: None,
        chap: None,
    };
    tools::qemu_round_trip(&q, t.dir(), LUN_BYTES, data::seed("qemu-tgt"));
    let _ = net::free_port();
}
