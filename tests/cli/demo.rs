//! `paytool demo`, end to end: its own PostgreSQL, the Stripe simulator, every stage.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use predicates::prelude::*;

use crate::harness::paytool;

/// The cluster directory the demo announced ("PostgreSQL … in /tmp/paytool-demo-XXXX").
fn cluster_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("PostgreSQL ") && l.contains(" in "))
        .expect("the demo names its cluster directory");
    PathBuf::from(line.rsplit(" in ").next().unwrap().trim())
}

fn postgres_running_in(dir: &std::path::Path) -> bool {
    let out = std::process::Command::new("pgrep")
        .args(["-f", &dir.display().to_string()])
        .output()
        .unwrap();
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// The count of one finding kind in reconcile's summary table, first occurrence; a kind the
/// table does not show fails the test (a missing row is not a zero).
fn finding_count(stdout: &str, kind: &str) -> u32 {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("│ {kind} ")) && l.matches('┆').count() == 1)
        .and_then(|l| l.split('┆').nth(1))
        .and_then(|c| c.trim().trim_end_matches('│').trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of {kind} in the reconcile summary:\n{stdout}"))
}

#[test]
fn the_demo_walks_every_stage_and_leaves_nothing_behind() {
    let out = paytool()
        .args(["demo", "--orders", "500"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The preflight refused, then migrate applied.
    assert!(
        stdout.contains("Nothing was changed. Fix these rows"),
        "{stdout}"
    );
    let steps = paytool::migrate::steps::steps_of(paytool::migrate::steps::Phase::Migrate).count();
    assert!(
        stdout.contains(&format!("Applied {steps} step(s)")),
        "{stdout}"
    );
    assert!(
        stdout.contains("Built the partial indexes of the pending rows: order_items_pending_snapshot_idx, order_items_resolvable_snapshot_idx, orders_pending_total_idx"),
        "{stdout}"
    );
    // The backfill did its three steps.
    for step in ["│ items ", "│ orders ", "│ payments "] {
        assert!(stdout.contains(step), "{step}");
    }
    // Every discrepancy kind found by reconcile.
    for kind in [
        "missing_in_stripe",
        "status_mismatch",
        "amount_mismatch",
        "currency_mismatch",
        "unlinked_payment_intent",
        "orphan_payment_intent",
        "duplicate_payment_intents",
        "refund_mismatch",
        "payment_row_mismatch",
        "disputed_payment",
        "stale_payment_intent",
        "failed_webhook_delivery",
    ] {
        assert!(
            finding_count(&stdout, kind) >= 1,
            "{kind} not found:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("6 repair(s) can be made safely"),
        "{stdout}"
    );
    assert!(stdout.contains("Applied 6 repair(s)"), "{stdout}");
    // Closing the month: each payout finding once.
    let month = stdout
        .split("Close the month")
        .nth(1)
        .and_then(|rest| rest.split("] Verify again").next())
        .unwrap();
    for kind in [
        "payout_total_mismatch",
        "payout_failed",
        "paid_order_not_paid_out",
        "unknown_balance_transaction_type",
    ] {
        assert_eq!(
            month.matches(&format!("│ {kind} ")).count(),
            1,
            "{kind}:\n{month}"
        );
    }
    // The orphan's money, and the charge reconcile found 5.00 over its order: two.
    assert_eq!(
        month.matches("│ unmatched_balance_transaction ").count(),
        2,
        "{month}"
    );
    // The events trail filled, the leftovers accepted, the nightly run quiet.
    assert!(
        stdout.contains("│ charge.*         ┆"),
        "backfill events reported per type:\n{stdout}"
    );
    assert!(
        stdout.contains("finding(s) accepted by this run"),
        "{stdout}"
    );
    assert!(stdout.contains("known finding(s) skipped"), "{stdout}");
    // verify passes at the end.
    let last_verify = stdout.rsplit("] Verify again").next().unwrap();
    assert!(last_verify.contains(" 0 failed, "), "{last_verify}");
    assert!(stdout.contains("Demo finished: every stage did what it should."));
    assert!(
        stdout.contains("(15 stages in "),
        "the report of the stages:\n{stdout}"
    );
    // Nothing left.
    let dir = cluster_dir(&stdout);
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert!(!postgres_running_in(&dir));
}

#[test]
fn the_demo_reports_its_stages_as_json_with_the_narration_on_stderr() {
    let out = paytool()
        .args(["demo", "--orders", "300", "--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report = crate::harness::json(&out.stdout);
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 15, "{report:#}");
    for stage in stages {
        assert_eq!(stage["exit"], stage["expected_exit"], "{stage:#}");
    }
    assert_eq!(stages[2]["exit"], 1, "the preflight refused: {report:#}");
    assert_eq!(report["kept"], false);
    assert!(!report["planted"].as_array().unwrap().is_empty());
    assert!(stderr.contains("━━ [15/15] Verify again"), "{stderr}");
    let dir = std::path::PathBuf::from(report["cluster_dir"].as_str().unwrap());
    assert!(!dir.exists(), "{} is still there", dir.display());
}

#[test]
fn ctrl_c_stops_the_demo_and_removes_its_cluster() {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("paytool"))
        .args(["demo", "--orders", "2000"])
        .env("CI", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("[5/15]") {
            break;
        }
        assert!(Instant::now() < deadline, "the demo never reached stage 5");
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let dir = cluster_dir(&seen);
    assert!(
        rest.iter().any(|l| l.contains("Removed the demo cluster")),
        "{rest:?}"
    );
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert!(!postgres_running_in(&dir));
}

#[test]
fn a_wrong_pg_bin_is_named_with_the_postgresql_that_is_there() {
    let out = paytool()
        .args(["demo"])
        .env("PG_BIN", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PG_BIN=/nonexistent has no initdb")
            && stderr.contains("PostgreSQL is installed in")
            && stderr.contains("unset PG_BIN"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one message:\n{stderr}");
}

#[test]
fn as_root_a_tmpdir_postgres_cannot_enter_is_refused_with_the_fix() {
    if !nix::unistd::Uid::effective().is_root() {
        return; // Without root the server runs as us: any TMPDIR we can write works.
    }
    let private = tempfile::Builder::new()
        .prefix("paytool-root-only-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        private.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let out = paytool()
        .args(["demo", "--orders", "300"])
        .env("TMPDIR", private.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the postgres user cannot enter") && stderr.contains("TMPDIR=/tmp"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(private.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left {left:?}");
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    paytool()
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("reconcile")
                .and(predicate::str::contains("--stripe-base-url")),
        );
    paytool()
        .args(["man"])
        .assert()
        .success()
        .stdout(predicate::str::contains(".TH paytool"));
}

#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    for args in [&["man"][..], &["completions", "zsh"][..]] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("paytool"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Like `| head -0`: the reader is gone before paytool writes (it is still starting).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
