//! Steering a running backfill from another process: status, pause, set, resume, Ctrl-C, and
//! `migrate down` waiting for it.

use std::time::Duration;

use sqlx::PgConnection;

/// [`slow_backfill`], once its worker shows in the status.
async fn slow_backfill_under_way(
    db: &crate::harness::TestDb,
    conn: &mut PgConnection,
) -> std::process::Child {
    let child = slow_backfill(db);
    crate::harness::wait_for(
        conn,
        "SELECT count(*) > 0 FROM paytool.backfill_workers WHERE step = $1",
        "items",
        "the worker shows in the status",
        Duration::from_secs(30),
    )
    .await;
    child
}

/// Waits until the items step's worker says it committed a batch.
async fn worker_has_done_a_batch(conn: &mut PgConnection) {
    crate::harness::wait_for(
        conn,
        "SELECT rows_done > 0 FROM paytool.backfill_workers WHERE step = $1",
        "items",
        "the worker has done a batch",
        Duration::from_secs(30),
    )
    .await;
}

/// A backfill slow enough to act on while it runs: batches of 100 rows, 100 ms apart.
fn slow_backfill(db: &crate::harness::TestDb) -> std::process::Child {
    db.spawn(&[
        "backfill",
        "payments",
        "--format",
        "json",
        "--batch-size",
        "100",
        "--pause-ms",
        "100",
    ])
}

#[tokio::test]
async fn a_second_process_pauses_steers_and_resumes_a_running_backfill() {
    let db = crate::harness::seeded_and_migrated(3000).await;
    let mut conn = db.conn().await;
    let child = slow_backfill_under_way(&db, &mut conn).await;
    worker_has_done_a_batch(&mut conn).await;
    let (code, status) = crate::harness::run_json(&db, &["backfill", "status"]);
    assert_eq!(code, 0);
    assert_eq!(status["workers"][0]["step"], "items", "{status:#}");
    // Started from a job (JSON on stdout, no terminal: no bar drawn), it still says how far it
    // is and how fast it goes, so the status has a real total and an ETA.
    let worker = &status["workers"][0];
    assert!(worker["rows_total"].as_i64().unwrap() > 5_000, "{status:#}");
    assert!(worker["rows_done"].as_i64().unwrap() > 0, "{status:#}");
    assert!(
        worker["rows_per_second"].as_f64().unwrap_or(0.0) > 0.0,
        "{status:#}"
    );
    assert_eq!(worker["state"], "running", "{status:#}");
    assert!(
        worker["eta_seconds"].as_u64().unwrap_or(0) > 0,
        "a real ETA without a terminal: {status:#}"
    );
    assert_eq!(crate::harness::run_json(&db, &["backfill", "pause"]).0, 0);
    crate::harness::wait_for(
        &mut conn,
        "SELECT held LIKE 'paused by %' FROM paytool.backfill_workers WHERE step = $1",
        "items",
        "the worker says it is paused",
        Duration::from_secs(10),
    )
    .await;
    let before = crate::harness::committed(&mut conn).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        crate::harness::committed(&mut conn).await,
        before,
        "no batch commits while paused"
    );
    let table = db.paytool().args(["backfill", "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("paused") && text.contains("items"), "{text}");
    let (_, set) = crate::harness::run_json(
        &db,
        &["backfill", "set", "--batch-size", "2500", "--pause-ms", "0"],
    );
    assert_eq!(set["settings"]["batch_size"], 2500);
    assert_eq!(crate::harness::run_json(&db, &["backfill", "resume"]).0, 0);
    let (code, report) = crate::harness::json_run(child.wait_with_output().unwrap());
    assert_eq!(code, 0);
    assert!(
        report["held"]["paused"]["ms"].as_u64().unwrap() >= 2_000,
        "{report:#}"
    );
    assert_eq!(
        report["steps"][0]["last_batch_size"], 2500,
        "set took effect: {report:#}"
    );
    let (_, after) = crate::harness::run_json(&db, &["backfill", "status"]);
    assert_eq!(
        after["workers"],
        serde_json::json!([]),
        "a finished run leaves the status"
    );
    db.paytool()
        .args(["backfill", "set", "--clear", "--batch-size", "5"])
        .assert()
        .code(2);
    let (_, cleared) = crate::harness::run_json(&db, &["backfill", "set", "--clear"]);
    assert_eq!(cleared["settings"]["batch_size"], serde_json::Value::Null);
}

#[tokio::test]
async fn migrate_down_waits_for_a_running_backfill_and_never_cuts_it() {
    let db = crate::harness::seeded_and_migrated(3000).await;
    let mut conn = db.conn().await;
    let child = slow_backfill_under_way(&db, &mut conn).await;
    let out = db
        .paytool_std()
        .args([
            "migrate",
            "down",
            "--i-understand-this-destroys-payment-data",
            "--wait",
            "1s",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("another paytool backfill") && stderr.contains("paytool pid"),
        "{stderr}"
    );
    // The backfill went on undisturbed and finished; down, run again, then goes through.
    let (code, report) = crate::harness::json_run(child.wait_with_output().unwrap());
    assert_eq!(code, 0, "{report:#}");
    assert!(crate::harness::assert_finished_by_itself(&mut conn, &report).await > 0);
    drop(conn);
    crate::harness::migrate_down(&db);
}

#[tokio::test]
async fn ctrl_c_commits_the_batch_under_way_and_the_next_run_resumes() {
    let db = crate::harness::seeded_and_migrated(3000).await;
    let mut conn = db.conn().await;
    let child = slow_backfill(&db);
    crate::harness::wait_for(
        &mut conn,
        "SELECT batches >= 3 FROM paytool.backfill_checkpoints WHERE step = $1",
        "items",
        "a few batches committed",
        Duration::from_secs(30),
    )
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("interrupted: the batch under way was committed"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["interrupted"], true);
    let (finished, last_id): (bool, String) = sqlx::query_as(
        "SELECT finished_at IS NOT NULL, last_id FROM paytool.backfill_checkpoints WHERE step = 'items'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        !finished && !last_id.is_empty(),
        "a checkpoint to resume from"
    );
    let (code, resumed) = crate::harness::run_json(&db, &["backfill", "payments"]);
    assert_eq!(code, 0);
    assert_eq!(resumed["steps"][0]["resumed_after"], last_id.as_str());
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(payments > 2_000, "the resumed run finished: {payments}");
}

#[tokio::test]
async fn workers_paused_together_report_the_pause_once() {
    let db = crate::harness::seeded_and_migrated(3000).await;
    let mut conn = db.conn().await;
    let child = db.spawn(&[
        "backfill",
        "payments",
        "--format",
        "json",
        "--workers",
        "3",
        "--batch-size",
        "100",
        "--pause-ms",
        "100",
    ]);
    crate::harness::wait_for(
        &mut conn,
        "SELECT count(*) >= 2 FROM paytool.backfill_workers WHERE step = $1 AND rows_done > 0",
        "items",
        "two workers walk ranges",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(crate::harness::run_json(&db, &["backfill", "pause"]).0, 0);
    crate::harness::wait_for(
        &mut conn,
        "SELECT count(*) >= 2 FROM paytool.backfill_workers WHERE step = $1 AND held LIKE 'paused by %'",
        "items",
        "the workers say they are paused",
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(crate::harness::run_json(&db, &["backfill", "resume"]).0, 0);
    let (code, report) = crate::harness::json_run(child.wait_with_output().unwrap());
    assert_eq!(code, 0, "{report:#}");
    let paused = &report["held"]["paused"];
    let ms = paused["ms"].as_u64().unwrap();
    // Two or three workers each adding their own wait would say 5 s or more.
    assert!(
        (2_500..4_500).contains(&ms),
        "once, not per worker: {report:#}"
    );
    assert_eq!(paused["times"], 1, "{report:#}");
}

#[tokio::test]
async fn a_killed_worker_is_listed_as_gone_without_a_rate() {
    let db = crate::harness::seeded_and_migrated(3000).await;
    let mut conn = db.conn().await;
    let mut child = slow_backfill_under_way(&db, &mut conn).await;
    worker_has_done_a_batch(&mut conn).await;
    child.kill().unwrap();
    child.wait().unwrap();
    crate::harness::wait_for(
        &mut conn,
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                              AND pid <> pg_backend_pid() AND application_name = $1)",
        "paytool",
        "its session is gone",
        Duration::from_secs(10),
    )
    .await;
    let (code, status) = crate::harness::run_json(&db, &["backfill", "status"]);
    assert_eq!(code, 0);
    let worker = &status["workers"][0];
    assert_eq!(worker["state"], "gone", "{status:#}");
    assert_eq!(
        worker["rows_per_second"],
        serde_json::Value::Null,
        "{status:#}"
    );
    assert_eq!(worker["eta_seconds"], serde_json::Value::Null, "{status:#}");
    let table = db.paytool().args(["backfill", "status"]).output().unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("gone"), "{text}");
}

#[tokio::test]
async fn a_paused_backfill_whose_session_is_terminated_still_hears_the_resume() {
    let db = crate::harness::seeded_and_migrated(3000).await;
    let mut conn = db.conn().await;
    let mut child = slow_backfill_under_way(&db, &mut conn).await;
    worker_has_done_a_batch(&mut conn).await;
    assert_eq!(crate::harness::run_json(&db, &["backfill", "pause"]).0, 0);
    crate::harness::wait_for(
        &mut conn,
        "SELECT held LIKE 'paused by %' FROM paytool.backfill_workers WHERE step = $1",
        "items",
        "the worker says it is paused",
        Duration::from_secs(10),
    )
    .await;
    // Its session holds the backfill lock.
    let terminated: Vec<i32> = sqlx::query_scalar(
        "WITH main AS MATERIALIZED (
             SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND pid <> pg_backend_pid())
         SELECT pid FROM main WHERE pg_terminate_backend(pid)",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(terminated.len(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(crate::harness::run_json(&db, &["backfill", "resume"]).0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the paused worker never heard the resume"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, report) = crate::harness::json_run(child.wait_with_output().unwrap());
    assert_eq!(code, 0, "{report:#}");
    assert!(crate::harness::assert_finished_by_itself(&mut conn, &report).await > 0);
}
