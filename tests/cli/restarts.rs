//! What production does to a long backfill: the server restarts under it. On a cluster of its
//! own (restarting the suite's would cut every other test).

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use crate::harness::{TestDb, backfilled_digest, json_run, own_cluster_with_shop, wait_for};

#[tokio::test]
async fn a_server_restart_in_the_middle_of_a_backfill_costs_a_pause_not_the_run() {
    let (pg, db) = own_cluster_with_shop(None, "paytool-test-restart-", 2_000).await;
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

    let child = db.spawn(&[
        "backfill",
        "payments",
        "--format",
        "json",
        "--batch-size",
        "100",
        "--pause-ms",
        "100",
        "--ignore-autovacuum",
    ]);
    {
        let mut conn = db.conn().await;
        wait_for(
            &mut conn,
            "SELECT count(*) > 500 FROM order_items WHERE label IS NOT NULL AND $1 <> ''",
            "x",
            "the backfill is under way",
            Duration::from_secs(60),
        )
        .await;
    }
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
    assert!(retries >= 1, "the restart was seen: {report:#}");

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
