//! What production does to a long backfill: the server restarts under it, its sessions are
//! terminated. The restarts run on a cluster of their own (restarting the suite's would cut
//! every other test).

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use crate::harness::{TestDb, backfilled_digest, json_run, own_cluster_with_shop, wait_for};

/// The batches slow enough for something to happen to the run while it goes.
const SLOW: [&str; 5] = [
    "--batch-size",
    "100",
    "--pause-ms",
    "100",
    "--ignore-autovacuum",
];

/// Waits until the backfill has snapshotted more than `items` items.
async fn under_way(conn: &mut PgConnection, items: u32) {
    wait_for(
        conn,
        "SELECT count(*) > $1::INT FROM order_items WHERE label IS NOT NULL",
        &items.to_string(),
        "the backfill is under way",
        Duration::from_secs(60),
    )
    .await;
}

/// Backfills `db` with `extra` flags, restarting the server once the run is under way, and
/// checks the run finished by itself (exit 0, the restart seen as retries) with the end state
/// of an uninterrupted run.
async fn restart_under(extra: &[&str], prefix: &str) {
    let (pg, db) = own_cluster_with_shop(None, prefix, 2_000).await;
    let mut admin = PgConnection::connect(&pg.url("postgres", None, "postgres"))
        .await
        .unwrap();
    let out = db.paytool_std().args(["migrate", "-q"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same data backfilled without interruption, for the end state.
    sqlx::raw_sql("CREATE DATABASE reference TEMPLATE shop")
        .execute(&mut admin)
        .await
        .unwrap();
    drop(admin);
    let reference = TestDb {
        name: "reference".to_owned(),
        url: pg.url("postgres", None, "reference"),
    };

    let mut args = vec!["backfill", "payments", "--format", "json"];
    args.extend(SLOW);
    args.extend(extra);
    let child = db.spawn(&args);
    under_way(&mut db.conn().await, 500).await;
    // Down for 1.5 s: longer than the first retry delays (200 ms, 400 ms), as a real restart
    // or failover is.
    pg.restart_after(Duration::from_millis(1_500))
        .expect("the server restarts");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (code, report) = json_run(out);
    assert_eq!(code, 0, "{stderr}");
    let retries: u64 = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["retries"].as_u64().unwrap())
        .sum();
    assert!(retries >= 1, "the restart was seen: {report:#}\n{stderr}");

    let ok = reference
        .paytool_std()
        .args(["backfill", "payments", "-q", "--ignore-autovacuum"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert_eq!(
        backfilled_digest(&mut db.conn().await).await,
        backfilled_digest(&mut reference.conn().await).await,
        "the end state of an uninterrupted run"
    );
}

#[tokio::test]
async fn a_server_restart_in_the_middle_of_a_backfill_costs_a_pause_not_the_run() {
    restart_under(&[], "paytool-test-restart-").await;
}

#[tokio::test]
async fn a_server_restart_in_the_middle_of_a_cooperative_backfill_costs_a_pause_not_the_run() {
    // Every connection dies at once: the main one (the shared lock, the leases, the cuts) and
    // each worker's; all are made again under the retry policy.
    restart_under(&["--workers", "2"], "paytool-test-restart-coop-").await;
}

#[tokio::test]
async fn a_cooperative_process_whose_main_session_is_terminated_carries_on() {
    let db = crate::harness::seeded_and_migrated(2_000).await;
    let reference = crate::harness::cluster().copy_of(&db, "reference").await;
    let mut args = vec!["backfill", "payments", "--format", "json", "--workers", "2"];
    args.extend(SLOW);
    let child = db.spawn(&args);
    let mut conn = db.conn().await;
    under_way(&mut conn, 300).await;
    // The main session is the one holding the backfill lock (shared); the workers' hold none.
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
    assert_eq!(terminated.len(), 1, "one main session: {terminated:?}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (code, report) = json_run(out);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("expected to read"), "{stderr}");
    assert!(report["steps"].as_array().unwrap().len() == 3, "{report:#}");
    let ok = reference
        .paytool_std()
        .args(["backfill", "payments", "-q", "--ignore-autovacuum"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert_eq!(
        backfilled_digest(&mut conn).await,
        backfilled_digest(&mut reference.conn().await).await,
        "the end state of an uninterrupted run"
    );
}
