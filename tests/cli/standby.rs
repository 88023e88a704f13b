//! A streaming standby: refused for every command that writes, read by verify, and its replay
//! lag holding a backfill until it catches up.

use std::time::{Duration, Instant};

use paytool::demo::cluster::TempCluster;
use predicates::prelude::*;
use sqlx::{Connection, PgConnection};

use crate::harness::paytool;

#[tokio::test]
async fn a_standby_is_refused_for_every_command_that_writes_and_verify_runs_on_it() {
    let primary = TempCluster::start("paytool-test-primary-", &[]).unwrap();
    let primary_url = primary.url("postgres", None, "postgres");
    for args in [
        vec!["seed", "--orders", "40", "--no-stock-anomalies", "-q"],
        vec!["migrate", "-q"],
        vec!["backfill", "payments", "-q"],
    ] {
        paytool()
            .env("DATABASE_URL", &primary_url)
            .args(&args)
            .assert()
            .success();
    }
    let standby = primary.standby("paytool-test-standby-").unwrap();
    let standby_url = standby.url("postgres", None, "postgres");
    let mut replica = PgConnection::connect(&standby_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let replayed: bool = sqlx::query_scalar(
            "SELECT pg_is_in_recovery() AND to_regclass('payments') IS NOT NULL
                    AND (SELECT count(*) FROM payments) > 0",
        )
        .fetch_one(&mut replica)
        .await
        .unwrap_or(false);
        if replayed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby never replayed the backfill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for args in [
        vec!["migrate"],
        vec!["migrate", "cleanup"],
        vec!["backfill", "payments"],
        vec!["backfill", "payments", "--dry-run"],
        vec!["backfill", "events", "--stripe-key", "sk_test_x"],
        vec!["reconcile", "--apply", "--stripe-key", "sk_test_x"],
        vec!["prisma", "baseline", "--migrations-dir", "/nonexistent"],
        vec!["backfill", "pause"],
    ] {
        paytool()
            .env("DATABASE_URL", &standby_url)
            .args(&args)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains("is a standby (in recovery, read-only)")
                    .and(predicate::str::contains(
                        "point --database-url at the primary",
                    ))
                    .and(predicate::str::contains("read-only transaction").not()),
            );
    }
    // Reading commands work on it: the CI gate without touching the primary.
    paytool()
        .env("DATABASE_URL", &standby_url)
        .args(["verify", "constraints", "--only", "schema"])
        .assert()
        .success();
    paytool()
        .env("DATABASE_URL", &standby_url)
        .args(["migrate", "status"])
        .assert()
        .success();
    paytool()
        .env("DATABASE_URL", &standby_url)
        .args(["backfill", "status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("No backfill is running"));
}

#[tokio::test]
async fn a_standby_whose_replay_is_paused_holds_the_backfill_until_it_catches_up() {
    let primary = TempCluster::start("paytool-test-primary-", &[]).unwrap();
    let primary_url = primary.url("postgres", None, "postgres");
    for args in [
        vec!["seed", "--orders", "3000", "--no-stock-anomalies", "-q"],
        vec!["migrate", "-q"],
    ] {
        paytool()
            .env("DATABASE_URL", &primary_url)
            .args(&args)
            .assert()
            .success();
    }
    let standby = primary.standby("paytool-test-standby-").unwrap();
    let mut replica = PgConnection::connect(&standby.url("postgres", None, "postgres"))
        .await
        .unwrap();
    let mut main = PgConnection::connect(&primary_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let caught_up: bool = sqlx::query_scalar(
            "SELECT coalesce(bool_and(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) < 65536), false)
                    AND count(*) = 1
             FROM pg_stat_replication",
        )
        .fetch_one(&mut main)
        .await
        .unwrap();
        if caught_up {
            break;
        }
        assert!(Instant::now() < deadline, "the standby never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut replica)
        .await
        .unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("paytool"))
        .env("DATABASE_URL", &primary_url)
        .env("CI", "true")
        .args([
            "backfill",
            "payments",
            "--format",
            "json",
            "--max-replica-lag-bytes",
            "512kB",
            "--throttle-min-hold",
            "1s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It holds once the standby is 512 kB behind (its own setup may be enough): then nothing
    // more commits, and it is still running.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut before = crate::harness::committed(&mut main).await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = crate::harness::committed(&mut main).await;
        if now == before {
            break;
        }
        before = now;
        assert!(Instant::now() < deadline, "the backfill never held");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        crate::harness::committed(&mut main).await,
        before,
        "no batch commits while held"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "it holds, it did not end"
    );
    let status = paytool()
        .env("DATABASE_URL", &primary_url)
        .args(["backfill", "status", "--format", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["workers"][0]["held"]
            .as_str()
            .is_some_and(|h| h.starts_with("replica_lag_bytes ")),
        "status says what holds it: {status:#}"
    );
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut replica)
        .await
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (code, report) = crate::harness::json_run(out);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        report["held"]["replica_lag_bytes"]["ms"].as_u64().unwrap() >= 2_000,
        "{report:#}"
    );
    assert!(
        stderr.contains("backfill holds: replica_lag_bytes is"),
        "{stderr}"
    );
    assert!(crate::harness::assert_finished_by_itself(&mut main, &report).await > 2_000);
}
