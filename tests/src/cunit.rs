//! Reading the output of libiscsi's `iscsi-test-cu` (a CUnit program) and comparing it with
//! the committed baseline (tests/conformance-baseline.toml).

use serde::Deserialize;

/// Counts of one conformance run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// From CUnit's "Run Summary" `tests` row.
    pub total: u32,
    pub ran: u32,
    pub passed: u32,
    pub failed: u32,
    /// Tests that passed only because they printed "[SKIPPED]" (libiscsi counts a skip as a
    /// pass): the target lacks the feature or the test needs a second path.
    pub skipped: u32,
    /// `SUITE.TEST` of every failed test, in output order.
    pub failed_tests: Vec<String>,
    /// `SUITE.TEST` of every skipped test.
    pub skipped_tests: Vec<String>,
}

impl Summary {
    /// Passed and not skipped: what the target really did right.
    pub fn really_passed(&self) -> u32 {
        self.passed.saturating_sub(self.skipped)
    }

    /// Adds the counts and names of another part of the same run.
    pub fn merge(&mut self, other: Summary) {
        self.total += other.total;
        self.ran += other.ran;
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.failed_tests.extend(other.failed_tests);
        self.skipped_tests.extend(other.skipped_tests);
    }

    /// The closing line, in the form CI log readers recognise.
    pub fn line(&self) -> String {
        format!(
            "conformance: {} passed, {} failed, {} skipped ({} ran of {})",
            self.really_passed(),
            self.failed,
            self.skipped,
            self.ran,
            self.total
        )
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// No "Run Summary" `tests` row: the suite crashed or could not log in.
    NoSummary,
}

/// Parses the whole stdout of `iscsi-test-cu`.
pub fn parse(output: &str) -> Result<Summary, ParseError> {
    let mut s = Summary::default();
    let tests_row = output
        .lines()
        .map(str::split_whitespace)
        .map(|w| w.collect::<Vec<_>>())
        .find(|w| w.first() == Some(&"tests") && w.len() >= 5 && w[1].parse::<u32>().is_ok())
        .ok_or(ParseError::NoSummary)?;
    let num = |i: usize| tests_row.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
    (s.total, s.ran, s.passed, s.failed) = (num(1), num(2), num(3), num(4));

    // Per-test blocks: "Suite: NAME" starts a suite, "  Test: NAME ..." a test, and the
    // result word ("passed" / "FAILED") follows "..." or starts a line; "[FAILED]" and
    // "[SKIPPED]" are messages inside the block.
    let body = output.split("Run Summary").next().unwrap_or(output);
    let mut suite = "";
    for block in split_keep(body) {
        if let Some(rest) = block.strip_prefix("Suite: ") {
            suite = rest.lines().next().unwrap_or("").trim();
            continue;
        }
        let Some(rest) = block.strip_prefix("Test: ") else {
            continue;
        };
        let (name, after) = rest.split_once(" ...").unwrap_or((rest.trim(), ""));
        let name = format!("{suite}.{}", name.trim());
        match result_word(after) {
            Some(false) => s.failed_tests.push(name),
            Some(true) if after.contains("[SKIPPED]") => s.skipped_tests.push(name),
            _ => {}
        }
    }
    s.skipped = s.skipped_tests.len() as u32;
    Ok(s)
}

/// Splits at every "Suite: " and "Test: " marker that starts a line (after indentation).
fn split_keep(text: &str) -> Vec<&str> {
    let mut starts = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("Suite: ") || trimmed.starts_with("Test: ") {
            starts.push(offset + (line.len() - trimmed.len()));
        }
        offset += line.len();
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, &a)| &text[a..starts.get(i + 1).copied().unwrap_or(text.len())])
        .collect()
}

/// `Some(true)` for passed, `Some(false)` for FAILED: the first result word that follows
/// "..." or starts a line (so "[FAILED] message" lines are not taken for results).
fn result_word(after: &str) -> Option<bool> {
    let mut best: Option<(usize, bool)> = None;
    for (word, ok) in [("passed", true), ("FAILED", false)] {
        for (i, _) in after.match_indices(word) {
            let before = after[..i].chars().last();
            let starts_result = match before {
                None => true,
                Some(c) => c == '\n' || c == '.',
            };
            if starts_result {
                if best.is_none_or(|(b, _)| i < b) {
                    best = Some((i, ok));
                }
                break;
            }
        }
    }
    best.map(|(_, ok)| ok)
}

/// tests/conformance-baseline.toml: the floor a run must reach.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// Fewest tests that must really pass (passed minus skipped).
    pub min_passed: u32,
    /// Most tests that may fail.
    pub max_failed: u32,
    /// Fewest tests that must have run (guards against a suite that stopped early).
    #[serde(default)]
    pub min_ran: u32,
}

impl Baseline {
    pub fn parse(text: &str) -> Result<Baseline, toml::de::Error> {
        toml::from_str(text)
    }

    /// A baseline file with one table per logical unit (`[thin]`, `[removable]`, ...).
    pub fn parse_per_lun(
        text: &str,
    ) -> Result<std::collections::BTreeMap<String, Baseline>, toml::de::Error> {
        toml::from_str(text)
    }

    /// Every way `s` falls short of the baseline; empty when it holds.
    pub fn regressions(&self, s: &Summary) -> Vec<String> {
        let mut r = Vec::new();
        if s.really_passed() < self.min_passed {
            r.push(format!(
                "{} tests passed; the baseline requires at least {}",
                s.really_passed(),
                self.min_passed
            ));
        }
        if s.failed > self.max_failed {
            r.push(format!(
                "{} tests failed; the baseline allows at most {}",
                s.failed, self.max_failed
            ));
        }
        if s.ran < self.min_ran {
            r.push(format!(
                "{} tests ran; the baseline requires at least {}",
                s.ran, self.min_ran
            ));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Suite: GetLBAStatus
  Test: Simple ...passed
  Test: BeyondEol ...    [FAILED] GET_LBA_STATUS successful but should have failed
FAILED
Suite: WriteAtomic16
  Test: Simple ...    [SKIPPED] WRITEATOMIC16 is not implemented.
    [SKIPPED] WRITEATOMIC16 is not implemented.
passed
  Test: LUNReset ...passed    [FAILED] PRIN command: failed with sense.
Suite: iSCSIcmdsn
  Test: iSCSIDataSnInvalid ...FAILED
    1. test_iscsi_datasn_invalid.c:60  - CU_ASSERT_EQUAL(ret,0)

Run Summary:    Type  Total    Ran Passed Failed Inactive
              suites      3      3    n/a      0        0
               tests      6      6      4      2        0
             asserts     20     20     18      2      n/a

Elapsed time =    1.000 seconds
";

    #[test]
    fn parses_counts_and_names() {
        let s = parse(SAMPLE).unwrap();
        assert_eq!(
            (s.total, s.ran, s.passed, s.failed, s.skipped),
            (6, 6, 4, 2, 1)
        );
        assert_eq!(
            s.failed_tests,
            ["GetLBAStatus.BeyondEol", "iSCSIcmdsn.iSCSIDataSnInvalid"]
        );
        assert_eq!(s.skipped_tests, ["WriteAtomic16.Simple"]);
        assert_eq!(s.really_passed(), 3);
        assert_eq!(
            s.line(),
            "conformance: 3 passed, 2 failed, 1 skipped (6 ran of 6)"
        );
    }

    #[test]
    fn no_summary_is_an_error() {
        assert_eq!(
            parse("Failed to login to target\n"),
            Err(ParseError::NoSummary)
        );
    }

    #[test]
    fn baseline_regressions() {
        let b = Baseline::parse("min_passed = 3\nmax_failed = 2\nmin_ran = 6\n").unwrap();
        let s = parse(SAMPLE).unwrap();
        assert!(b.regressions(&s).is_empty());
        let worse = Summary {
            failed: 3,
            ..s.clone()
        };
        assert_eq!(b.regressions(&worse).len(), 1);
        let fewer = Summary {
            passed: 2,
            ran: 5,
            ..s
        };
        assert_eq!(b.regressions(&fewer).len(), 2);
        assert!(Baseline::parse("min_passed = 1\nbogus = 2\nmax_failed = 0").is_err());
    }
}
