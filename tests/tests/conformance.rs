//! libiscsi's conformance suite (`iscsi-test-cu --dataloss`, every test) against a thin file
//! LUN reached through two portals (multipath),
//! compared with the committed floor in tests/conformance-baseline.toml.
//!
//! The full output is kept in `<target>/esos-e2e/conformance.log`. Set
//! `ESOS_E2E_SKIP_CONFORMANCE=1` to skip it in a quick local run (CI never sets it).

use std::time::Duration;

use esos_e2e::cunit::{self, Baseline};
use esos_e2e::daemon::Daemon;
use esos_e2e::{cmd, paths, tools};

const TARGET: &str = "iqn.2026-11.org.esos:conformance";

/// Longest the whole suite may run (about 1.5 min against tgt on 2 cores).
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

#[test]
fn libiscsi_conformance_suite() {
    if std::env::var_os("ESOS_E2E_SKIP_CONFORMANCE").is_some_and(|v| v != "0") {
        eprintln!("SKIPPED: ESOS_E2E_SKIP_CONFORMANCE is set");
        return;
    }
    tools::require("iscsi-test-cu");
    let baseline_path = paths::workspace_root().join("tests/conformance-baseline.toml");
    let text =
        std::fs::read_to_string(&baseline_path).expect("read tests/conformance-baseline.toml");
    let baseline =
        Baseline::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", baseline_path.display()));

    let log_dir = paths::target_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("esos-e2e");
    let _ = std::fs::remove_file(log_dir.join("conformance-summary.txt"));
    // A thin-provisioned file LUN (the UNMAP, WRITE SAME and GET LBA STATUS tests need one)
    // behind two portals in two portal groups: the multipath tests get a second path to
    // the same logical unit.
    let d = Daemon::with_config(TARGET, |ctx| {
        format!(
            r#"
[server]
data_dir = "{dir}/state"

[[server.portal]]
address = "127.0.0.1:{port}"
group = 1

[[server.portal]]
address = "127.0.0.2:{port}"
group = 2

[[device]]
name = "thin0"
type = "file"
path = "{dir}/thin0.img"
size = "64M"
thin = true

[[target]]
name = "{TARGET}"
default_luns = [{{ lun = 0, device = "thin0" }}]
"#,
            dir = ctx.dir.display(),
            port = ctx.port
        )
    });
    let second_path = format!("iscsi://127.0.0.2:{}/{TARGET}/0", d.addr().port());
    let out = cmd::run(
        "iscsi-test-cu",
        &["--dataloss", &d.url(0), &second_path],
        SUITE_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let log_dir = paths::target_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("esos-e2e");
    let _ = std::fs::create_dir_all(&log_dir);
    let log = log_dir.join("conformance.log");
    let _ = std::fs::write(
        &log,
        format!("{}\n--- stderr ---\n{}", out.stdout, out.stderr),
    );
    let _ = std::fs::write(log_dir.join("conformance-esos.log"), d.log());

    let summary = cunit::parse(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no CUnit summary ({e:?}); full output in {}\n{}\n{}",
            log.display(),
            out.describe(),
            d.log()
        )
    });
    eprintln!("{}", summary.line());
    // scripts/check prints this file in its summary (test output is captured on success).
    let _ = std::fs::write(
        log_dir.join("conformance-summary.txt"),
        format!("{}\n", summary.line()),
    );
    eprintln!(
        "esos-e2e: suite took {:?}; output in {}",
        out.elapsed,
        log.display()
    );
    eprintln!("esos-e2e: failed tests: {}", summary.failed_tests.join(" "));
    let regressions = baseline.regressions(&summary);
    assert!(
        regressions.is_empty(),
        "conformance regressed vs {}:\n  {}\nfailed tests: {}\nfull output: {}",
        baseline_path.display(),
        regressions.join("\n  "),
        summary.failed_tests.join(" "),
        log.display()
    );
}
