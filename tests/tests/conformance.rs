//! libiscsi's conformance suite (`iscsi-test-cu --dataloss --allow-sanitize`, every test)
//! against each logical unit of examples/conformance.toml — a thin file LUN, a removable one
//! and a read-only one, each reached through two portals (multipath) — compared with the
//! committed floors in tests/conformance-baseline.toml (one table per run).
//!
//! The full output is kept in `<target>/esos-e2e/conformance-<lun>.log`. Set
//! `ESOS_E2E_SKIP_CONFORMANCE=1` to skip it in a quick local run (CI never sets it).

use std::time::Duration;

use esos_e2e::cunit::{self, Baseline};
use esos_e2e::daemon::Daemon;
use esos_e2e::{cmd, paths, tools};

const TARGET: &str = "iqn.2026-11.org.esos:conformance";

/// Longest one run of the suite may take (about 1.5 min on 2 cores).
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

/// The suites that run on the read-only LUN: everything that does not need to write.
/// libiscsi's other --dataloss tests write and expect GOOD, which a write-protected unit
/// rightly refuses; without --dataloss its reservation tests skip their PROUT commands and
/// then fail on the state they expected those to create.
const READ_ONLY_SUITES: &str = "SCSI.ReadOnly.*,SCSI.Inquiry.*,SCSI.Mandatory.*,SCSI.ModeSense6.*,SCSI.Read6.*,SCSI.Read10.*,SCSI.Read12.*,SCSI.Read16.*,SCSI.ReadCapacity10.*,SCSI.ReadCapacity16.*,SCSI.ReadDefectData10.*,SCSI.ReadDefectData12.*,SCSI.Prefetch10.*,SCSI.Prefetch16.*,SCSI.PrinReadKeys.*,SCSI.PrinServiceactionRange.*,SCSI.PrinReportCapabilities.*,SCSI.ReportSupportedOpcodes.*,SCSI.TestUnitReady.*,SCSI.Verify10.*,SCSI.Verify12.*,SCSI.Verify16.*,SCSI.StartStopUnit.*";

/// (baseline table, LUN in examples/conformance.toml, suite arguments).
const RUNS: [(&str, u32, &[&str]); 3] = [
    ("thin", 0, &["--dataloss", "--allow-sanitize"]),
    ("removable", 1, &["--dataloss", "--allow-sanitize"]),
    ("readonly", 2, &["--dataloss", "-t", READ_ONLY_SUITES]),
];

#[test]
fn libiscsi_conformance_suite() {
    if std::env::var_os("ESOS_E2E_SKIP_CONFORMANCE").is_some_and(|v| v != "0") {
        eprintln!("SKIPPED: ESOS_E2E_SKIP_CONFORMANCE is set");
        return;
    }
    tools::require("iscsi-test-cu");
    let root = paths::workspace_root();
    let baseline_path = root.join("tests/conformance-baseline.toml");
    let text =
        std::fs::read_to_string(&baseline_path).expect("read tests/conformance-baseline.toml");
    let baselines = Baseline::parse_per_lun(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", baseline_path.display()));
    let example = std::fs::read_to_string(root.join("examples/conformance.toml"))
        .expect("read examples/conformance.toml");

    let log_dir = paths::target_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("esos-e2e");
    let _ = std::fs::create_dir_all(&log_dir);
    let _ = std::fs::remove_file(log_dir.join("conformance-summary.txt"));
    // The example as it is, on this test's port; its relative paths land in the test dir.
    let d = Daemon::with_config(TARGET, |ctx| {
        // A read-only device is never created: its image must exist.
        std::fs::File::create(ctx.dir.join("conformance-readonly0.img"))
            .and_then(|f| f.set_len(64 << 20))
            .expect("create the read-only image");
        example.replace(":3260\"", &format!(":{}\"", ctx.port))
    });
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    for (label, lun, args) in RUNS {
        let baseline = baselines
            .get(label)
            .unwrap_or_else(|| panic!("{}: no [{label}] table", baseline_path.display()));
        let second_path = format!("iscsi://127.0.0.2:{}/{TARGET}/{lun}", d.addr().port());
        let url = d.url(lun);
        let mut argv: Vec<&str> = args.to_vec();
        argv.extend([url.as_str(), second_path.as_str()]);
        let out = cmd::run("iscsi-test-cu", &argv, SUITE_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
        let log = log_dir.join(format!("conformance-{label}.log"));
        let _ = std::fs::write(
            &log,
            format!("{}\n--- stderr ---\n{}", out.stdout, out.stderr),
        );
        let summary = cunit::parse(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{label}: no CUnit summary ({e:?}); full output in {}\n{}\n{}",
                log.display(),
                out.describe(),
                d.log()
            )
        });
        let line = format!("{label} LUN {lun}: {}", summary.line());
        eprintln!("{line} ({:?}; output in {})", out.elapsed, log.display());
        eprintln!("esos-e2e: failed tests: {}", summary.failed_tests.join(" "));
        lines.push(line);
        for r in baseline.regressions(&summary) {
            problems.push(format!(
                "{label}: {r}; failed: {}; output: {}",
                summary.failed_tests.join(" "),
                log.display()
            ));
        }
    }
    let _ = std::fs::write(log_dir.join("conformance-esos.log"), d.log());
    // scripts/check prints this file in its summary (test output is captured on success).
    let _ = std::fs::write(
        log_dir.join("conformance-summary.txt"),
        format!("{}\n", lines.join("\n")),
    );
    assert!(
        problems.is_empty(),
        "conformance regressed vs {}:\n  {}",
        baseline_path.display(),
        problems.join("\n  ")
    );
}
