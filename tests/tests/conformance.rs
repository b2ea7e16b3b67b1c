//! libiscsi's conformance suite (`iscsi-test-cu --dataloss --allow-sanitize`, every test)
//! against each logical unit of examples/conformance.toml — a thin file LUN, a removable one,
//! a read-only one and one with 4 KiB physical blocks, each reached through two portals
//! (multipath) — compared with the
//! committed floors in tests/conformance-baseline.toml (one table per run).
//!
//! The full output is kept in `<target>/esos-e2e/conformance-<lun>.log`. Set
//! `ESOS_E2E_SKIP_CONFORMANCE=1` to skip it in a quick local run (CI never sets it).

use std::time::Duration;

use esos_e2e::cunit::{self, Baseline};
use esos_e2e::daemon::Daemon;
use esos_e2e::{cmd, paths, tools};

const TARGET: &str = "iqn.2026-11.org.esos:conformance";

/// Longest one invocation of the suite may take (a whole run is about 1.5 min on 2 cores).
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

/// The suites that run on the read-only LUN: everything that does not need to write.
/// libiscsi's other --dataloss tests write and expect GOOD, which a write-protected unit
/// rightly refuses; without --dataloss its reservation tests skip their PROUT commands and
/// then fail on the state they expected those to create.
const READ_ONLY_SUITES: &str = "SCSI.ReadOnly.*,SCSI.Inquiry.*,SCSI.Mandatory.*,SCSI.ModeSense6.*,SCSI.Read6.*,SCSI.Read10.*,SCSI.Read12.*,SCSI.Read16.*,SCSI.ReadCapacity10.*,SCSI.ReadCapacity16.*,SCSI.ReadDefectData10.*,SCSI.ReadDefectData12.*,SCSI.Prefetch10.*,SCSI.Prefetch16.*,SCSI.PrinReadKeys.*,SCSI.PrinServiceactionRange.*,SCSI.PrinReportCapabilities.*,SCSI.ReportSupportedOpcodes.*,SCSI.TestUnitReady.*,SCSI.Verify10.*,SCSI.Verify12.*,SCSI.Verify16.*,SCSI.StartStopUnit.*";

/// Suites whose tests each run in an invocation of their own; every other suite runs in one
/// invocation, in the suite's order. With a second URL, libiscsi's Sanitize.Reservations
/// keeps the second path's RESERVE(6) (it releases only a session it cloned itself), so the
/// Sanitize.Reset that follows in the same invocation rightly gets RESERVATION CONFLICT for
/// its SANITIZE. A fresh invocation starts with fresh sessions: the suite's clean-up logs
/// out and clears reservations. Every test still runs exactly once.
const ISOLATED_SUITES: &[&str] = &["Sanitize"];

/// The test family a whole-suite run takes. libiscsi lists every test under `ALL` and again
/// under `SCSI`, `iSCSI` and `LINUX` (615 entries for 230 distinct tests, the same
/// functions): running `ALL` alone runs each distinct test exactly once, in well under half
/// the time. scripts/conformance runs every family, as `iscsi-test-cu` does by default.
const FAMILY: &str = "ALL";

/// The `-t` arguments of a whole-suite run split as [`ISOLATED_SUITES`] says: a file of
/// every other `ALL.SUITE` (`-t` reads a file of patterns, one a line, in order), then
/// each `ALL.SUITE.TEST` of the isolated suites.
fn parts(list_file: &std::path::Path) -> Vec<String> {
    let listing = cmd::run("iscsi-test-cu", &["-l"], Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("iscsi-test-cu -l: {e}"));
    let isolated = |suite: &str| ISOLATED_SUITES.contains(&suite);
    let mut suites = String::new();
    let mut tests = Vec::new();
    for line in listing.stdout.lines().map(str::trim) {
        match line.split('.').collect::<Vec<_>>()[..] {
            [family, suite] if family == FAMILY && !isolated(suite) => {
                suites.push_str(line);
                suites.push('\n');
            }
            [family, suite, _] if family == FAMILY && isolated(suite) => {
                tests.push(line.to_owned())
            }
            _ => {}
        }
    }
    assert!(
        !suites.is_empty() && !tests.is_empty(),
        "iscsi-test-cu -l listed no suites:\n{}",
        listing.stdout
    );
    std::fs::write(list_file, suites).expect("write the suite list");
    let mut parts = vec![list_file.display().to_string()];
    parts.extend(tests);
    parts
}

/// The suites that run on the LUN with 4 KiB physical blocks: those with tests that skip
/// unless a physical block holds several logical blocks. GetLBAStatus is not among them:
/// its UnmapSingle expects a first descriptor that does not contain the requested LBA when
/// LBPPB > 1 (SBC-3 5.6 says it contains it; docs/conformance.md).
const LBPPB_SUITES: &str =
    "SCSI.CompareAndWrite.*,SCSI.Inquiry.*,SCSI.Unmap.*,SCSI.WriteSame10.*,SCSI.WriteSame16.*";

/// (baseline table, LUN in examples/conformance.toml, suite arguments).
const RUNS: [(&str, u32, &[&str]); 4] = [
    ("thin", 0, &["--dataloss", "--allow-sanitize"]),
    ("removable", 1, &["--dataloss", "--allow-sanitize"]),
    ("readonly", 2, &["--dataloss", "-t", READ_ONLY_SUITES]),
    ("lbppb", 3, &["--dataloss", "-t", LBPPB_SUITES]),
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
    // The removable LUN's image goes to tmpfs where there is one, so that its run covers
    // Data-In sent straight from the page cache (server.iscsi.zero_copy_reads) while the
    // thin LUN's covers the copy path. Declared before the daemon: removed after it stops.
    let shm = paths::tmpfs_dir("esos-e2e-conf-");
    // The example as it is, on this test's port; its relative paths land in the test dir.
    let d = Daemon::with_config(TARGET, |ctx| {
        let mut config = example.replace(":3260\"", &format!(":{}\"", ctx.port));
        if let Some(shm) = &shm {
            let img = shm.path().join("conformance-removable0.img");
            config = config.replace(
                "\"conformance-removable0.img\"",
                &format!("\"{}\"", img.display()),
            );
        }
        config
    });
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    for (label, lun, args) in RUNS {
        let baseline = baselines
            .get(label)
            .unwrap_or_else(|| panic!("{}: no [{label}] table", baseline_path.display()));
        let second_path = format!("iscsi://127.0.0.2:{}/{TARGET}/{lun}", d.addr().port());
        let url = d.url(lun);
        // A run given its own -t runs as it is; a whole-suite run runs in parts.
        let parts: Vec<Option<String>> = if args.contains(&"-t") {
            vec![None]
        } else {
            parts(&log_dir.join("conformance-suites.txt"))
                .into_iter()
                .map(Some)
                .collect()
        };
        let log = log_dir.join(format!("conformance-{label}.log"));
        let mut text = String::new();
        let mut summary = cunit::Summary::default();
        let started = std::time::Instant::now();
        for part in &parts {
            let mut argv: Vec<&str> = args.to_vec();
            if let Some(p) = part {
                argv.extend(["-t", p.as_str()]);
            }
            argv.extend([url.as_str(), second_path.as_str()]);
            let out = cmd::run("iscsi-test-cu", &argv, SUITE_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
            text.push_str(&format!(
                "=== {}\n{}\n--- stderr ---\n{}\n",
                part.as_deref().unwrap_or("all"),
                out.stdout,
                out.stderr
            ));
            let _ = std::fs::write(&log, &text);
            summary.merge(cunit::parse(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "{label}: no CUnit summary ({e:?}) for part {part:?}; full output in {}\n{}\n{}",
                    log.display(),
                    out.describe(),
                    d.log()
                )
            }));
        }
        let line = format!("{label} LUN {lun}: {}", summary.line());
        eprintln!(
            "{line} ({:?}, {} parts; output in {})",
            started.elapsed(),
            parts.len(),
            log.display()
        );
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
