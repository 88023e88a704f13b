//! Cooperative workers (issue 12): `backfill payments --workers N` in several processes share
//! one run through ranges of keys; a killed process's range is taken over after its lease.

use std::time::Duration;

use crate::harness::{TestDb, backfilled_digest, json, seeded_and_migrated, wait_for};

fn slow_cooperative(db: &TestDb, workers: &str, lease: &str) -> std::process::Child {
    db.spawn(&[
        "backfill",
        "payments",
        "--format",
        "json",
        "--workers",
        workers,
        "--lease",
        lease,
        "--batch-size",
        "100",
        "--pause-ms",
        "20",
        "--ignore-autovacuum",
    ])
}

#[tokio::test]
async fn two_workers_and_a_killed_third_end_as_one_worker_would() {
    let alone = seeded_and_migrated(12_000).await;
    let shared = seeded_and_migrated(12_000).await;
    alone
        .paytool()
        .args(["backfill", "payments", "-q", "--ignore-autovacuum"])
        .assert()
        .success();

    let mut conn = shared.conn().await;
    let mut doomed = slow_cooperative(&shared, "1", "2s");
    let doomed_worker = format!("%:{}/1", doomed.id());
    // The doomed process has a range, and committed batches in it.
    wait_for(
        &mut conn,
        "SELECT EXISTS (SELECT 1 FROM paytool.backfill_ranges WHERE worker LIKE $1 AND last_id <> '')",
        &doomed_worker,
        "the third worker commits batches in its range",
        Duration::from_secs(60),
    )
    .await;
    let pair = slow_cooperative(&shared, "2", "30s");
    wait_for(
        &mut conn,
        "SELECT count(DISTINCT worker) >= 3 FROM paytool.backfill_ranges WHERE done_at IS NULL AND process IS NOT NULL
           AND $1 <> ''",
        "x",
        "three workers hold a range at once",
        Duration::from_secs(60),
    )
    .await;
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let out = pair.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out.stdout);
    let steps = report["steps"].as_array().unwrap();
    let reclaimed: u64 = steps
        .iter()
        .map(|s| s["ranges_reclaimed"].as_u64().unwrap())
        .sum();
    assert!(reclaimed >= 1, "the killed worker's range was taken over");
    assert!(steps.iter().all(|s| s["workers"] == 2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("its lease ran out"), "{stderr}");

    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM paytool.backfill_ranges WHERE done_at IS NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(left, 0, "every range is done");
    let generations: Vec<(String, bool)> = sqlx::query_as(
        "SELECT step, finished_at IS NOT NULL FROM paytool.backfill_generations ORDER BY step",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    // The orders step's first pass walked the orders themselves, and wrote every payment
    // with its order's total: neither its queue nor the payment queue had anything to cut into
    // ranges.
    assert_eq!(
        generations,
        [
            ("items".to_owned(), true),
            ("orders_first_pass".to_owned(), true)
        ]
    );
    assert_eq!(
        backfilled_digest(&mut conn).await,
        backfilled_digest(&mut alone.conn().await).await,
        "the end state is a single worker's, row by row"
    );
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(payments > 10_000);
}

#[tokio::test]
async fn a_killed_cooperative_run_is_finished_by_the_next_and_workers_refuse_restart() {
    let db = seeded_and_migrated(12_000).await;
    let mut conn = db.conn().await;
    let mut first = slow_cooperative(&db, "2", "2s");
    wait_for(
        &mut conn,
        "SELECT count(*) >= 1 FROM paytool.backfill_ranges WHERE done_at IS NOT NULL AND step = $1",
        "items",
        "a range is done",
        Duration::from_secs(60),
    )
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let out = db
        .paytool()
        .args([
            "backfill",
            "payments",
            "--workers",
            "3",
            "--format",
            "json",
            "--ignore-autovacuum",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out.stdout);
    assert_eq!(report["steps"][0]["resumed_after"], "generation 1");
    let alone = seeded_and_migrated(12_000).await;
    alone
        .paytool()
        .args(["backfill", "payments", "-q", "--ignore-autovacuum"])
        .assert()
        .success();
    assert_eq!(
        backfilled_digest(&mut conn).await,
        backfilled_digest(&mut alone.conn().await).await,
        "the killed run and the one after it end as one uninterrupted worker"
    );

    db.paytool()
        .args(["backfill", "payments", "--workers", "2", "--restart"])
        .assert()
        .code(2);
    db.paytool()
        .args(["backfill", "payments", "--lease", "10s"])
        .assert()
        .code(2);
    db.paytool()
        .args(["backfill", "payments", "--workers", "0"])
        .assert()
        .code(2);
}

/// Ranges of uuid keys (a legacy variant, SPEC §2): cut, claimed and walked as uuids, the end
/// state the same as one worker's.
#[tokio::test]
async fn workers_on_uuid_ids_end_as_one_worker_would() {
    let template = crate::harness::cluster().fresh_db().await;
    template.seed(12_000, false).await;
    sqlx::raw_sql(crate::variants::UUID_IDS)
        .execute(&mut template.conn().await)
        .await
        .unwrap();
    template
        .paytool()
        .args(["migrate", "-q"])
        .assert()
        .success();
    let alone = crate::harness::cluster().copy_of(&template, "alone").await;
    let shared = crate::harness::cluster().copy_of(&template, "shared").await;
    alone
        .paytool()
        .args(["backfill", "payments", "-q", "--ignore-autovacuum"])
        .assert()
        .success();
    let out = shared
        .paytool()
        .args([
            "backfill",
            "payments",
            "--format",
            "json",
            "--ignore-autovacuum",
        ])
        .args(["--workers", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out.stdout);
    assert!(
        report["steps"][0]["ranges"].as_u64().unwrap() >= 2,
        "{report:#}"
    );
    // The two workers' longest batches, merged: uuid keys of the items they started after.
    crate::backfill::slowest_batches_line_up_with_the_run(
        &report["steps"][0],
        &mut shared.conn().await,
        "order_items",
    )
    .await;
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&mut shared.conn().await)
        .await
        .unwrap();
    assert!(payments > 11_000, "{payments}");
    assert_eq!(report["steps"][2]["changed"], payments);
    assert_eq!(
        backfilled_digest(&mut shared.conn().await).await,
        backfilled_digest(&mut alone.conn().await).await
    );
}

/// Ctrl-C (here SIGTERM) gives this process's ranges back at once; the next run resumes them
/// as ranges nobody holds, not as ranges taken over from a dead worker.
#[tokio::test]
async fn ranges_given_back_by_a_stopped_run_are_not_taken_over() {
    let db = seeded_and_migrated(12_000).await;
    let mut conn = db.conn().await;
    let stopped = slow_cooperative(&db, "2", "30s");
    wait_for(
        &mut conn,
        "SELECT count(*) >= 2 FROM paytool.backfill_ranges WHERE last_id <> '' AND step = $1",
        "items",
        "two ranges under way",
        Duration::from_secs(60),
    )
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(stopped.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = stopped.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "interrupted");
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM paytool.backfill_ranges WHERE done_at IS NULL AND process IS NOT NULL",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(held, 0, "its ranges were given back");

    let out = db
        .paytool()
        .args([
            "backfill",
            "payments",
            "--workers",
            "2",
            "--format",
            "json",
            "--ignore-autovacuum",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report = json(&out.stdout);
    let reclaimed: u64 = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ranges_reclaimed"].as_u64().unwrap())
        .sum();
    assert_eq!(reclaimed, 0, "{report:#}");
    assert!(!stderr.contains("lease ran out"), "{stderr}");
}
