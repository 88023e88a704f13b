//! Throttling: the health signals and the operators' query that hold a backfill (and migrate's
//! batched copy) between batches, and the sessions a batch makes wait.

use std::time::{Duration, Instant};

use predicates::prelude::*;
use sqlx::{Connection, PgConnection};

use crate::harness::cluster;

#[tokio::test]
async fn the_operators_throttle_query_holds_the_backfill_until_it_says_false() {
    let db = crate::harness::seeded_and_migrated(300).await;
    let mut conn = db.conn().await;
    sqlx::raw_sql(
        "CREATE TABLE hold_flag (hold boolean NOT NULL); INSERT INTO hold_flag VALUES (true)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    db.paytool()
        .args([
            "backfill",
            "payments",
            "--throttle-query",
            "SELECT nope FROM hold_flag",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--throttle-query does not run"));
    let child = db.spawn(&[
        "backfill",
        "payments",
        "--format",
        "json",
        "--throttle-query",
        "SELECT hold FROM hold_flag",
        "--throttle-min-hold",
        "1s",
    ]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        crate::harness::committed(&mut conn).await,
        0,
        "no batch commits while held"
    );
    sqlx::raw_sql("UPDATE hold_flag SET hold = false")
        .execute(&mut conn)
        .await
        .unwrap();
    let (code, report) = crate::harness::json_run(child.wait_with_output().unwrap());
    assert_eq!(code, 0);
    assert!(
        report["held"]["throttle_query"]["ms"].as_u64().unwrap() >= 1_500,
        "{report:#}"
    );
    crate::harness::assert_finished_by_itself(&mut conn, &report).await;
}

/// The lock_waiters signal counts the sessions queued behind this session's locks (the second
/// UPDATE of a row waits for the first one's tuple lock: it counts too), and no other
/// session's: a lock held elsewhere is not the backfill's to make way for.
#[tokio::test]
async fn sessions_waiting_for_a_batch_are_counted_and_others_are_not() {
    let db = crate::harness::seeded_and_migrated(20).await;
    let mut batch = db.conn().await;
    let mut elsewhere = db.conn().await;
    sqlx::raw_sql("BEGIN; UPDATE order_items SET quantity = quantity WHERE id = (SELECT min(id) FROM order_items)")
        .execute(&mut batch)
        .await
        .unwrap();
    sqlx::raw_sql(
        "BEGIN; UPDATE products SET name = name WHERE id = (SELECT min(id) FROM products)",
    )
    .execute(&mut elsewhere)
    .await
    .unwrap();
    let mut waiters = Vec::new();
    for (n, sql) in [
        "UPDATE order_items SET quantity = quantity WHERE id = (SELECT min(id) FROM order_items)",
        "UPDATE order_items SET quantity = quantity WHERE id = (SELECT min(id) FROM order_items)",
        "SELECT 1 FROM order_items WHERE id = (SELECT min(id) FROM order_items) FOR SHARE",
        "UPDATE products SET name = name WHERE id = (SELECT min(id) FROM products)",
    ]
    .into_iter()
    .enumerate()
    {
        let mut conn = PgConnection::connect(&format!("{}?application_name=waiter{n}", db.url))
            .await
            .unwrap();
        waiters.push(tokio::spawn(async move {
            let _ = sqlx::query(sql).execute(&mut conn).await;
        }));
    }
    let mut admin = db.conn().await;
    crate::harness::wait_for(
        &mut admin,
        "SELECT count(*) = 4 FROM pg_stat_activity WHERE application_name LIKE $1 AND wait_event_type = 'Lock'",
        "waiter%",
        "four sessions waiting",
        Duration::from_secs(10),
    )
    .await;
    let waiting = paytool::throttle::sessions_waiting_for_this_batch(&mut batch)
        .await
        .unwrap();
    assert_eq!(
        waiting, 3,
        "the two updates and the FOR SHARE, not the one behind products"
    );
    sqlx::raw_sql("ROLLBACK").execute(&mut batch).await.unwrap();
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut elsewhere)
        .await
        .unwrap();
    for waiter in waiters {
        waiter.await.unwrap();
    }
}

/// The count is the throttle's, not the batch's: when it fails (here the role may not read
/// pg_locks), the batch's writes still commit and the count is 0.
#[tokio::test]
async fn a_count_of_waiters_that_fails_does_not_fail_the_batch() {
    let db = crate::harness::seeded_and_migrated(20).await;
    let role = format!("nolocks_{}", db.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'pw'; GRANT ALL ON ALL TABLES IN SCHEMA public TO {role};
         REVOKE SELECT ON pg_catalog.pg_locks FROM PUBLIC;"
    )))
    .execute(&mut db.conn().await)
    .await
    .unwrap();
    let mut conn = PgConnection::connect(&cluster().url(&role, Some("pw"), &db.name))
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(
        "UPDATE products SET name = 'committed anyway' WHERE id = (SELECT min(id) FROM products)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    assert_eq!(paytool::throttle::count_waiting_or_zero(&mut tx).await, 0);
    tx.commit().await.unwrap();
    let kept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM products WHERE name = 'committed anyway'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(kept, 1);
}

/// A backfill whose batches make the application queue behind them holds after the batch.
#[tokio::test]
async fn a_batch_the_application_queues_behind_makes_the_backfill_hold() {
    let db = crate::harness::seeded_and_migrated(300).await;
    let mut conn = db.conn().await;
    // Each batch of the items step holds its locks 300 ms: long enough to be queued behind.
    sqlx::raw_sql(
        "CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$;
         CREATE TRIGGER slow_batch AFTER UPDATE ON order_items
           FOR EACH STATEMENT EXECUTE FUNCTION slow_batch();",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let child = db.spawn(&[
        "backfill",
        "payments",
        "--format",
        "json",
        "--batch-size",
        "100",
        "--max-lock-waiters",
        "0",
        "--throttle-min-hold",
        "1s",
        "--ignore-autovacuum",
    ]);
    // The application: takes a SHARE lock on order_items again and again, for 4 s.
    let mut app = db.conn().await;
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let _ = sqlx::raw_sql(
            "BEGIN; SET LOCAL lock_timeout = '1s'; LOCK TABLE order_items IN SHARE MODE; COMMIT",
        )
        .execute(&mut app)
        .await;
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut app).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, report) = crate::harness::json_run(child.wait_with_output().unwrap());
    assert_eq!(code, 0, "{report:#}");
    assert!(
        report["held"]["lock_waiters"]["times"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{report:#}"
    );
    crate::harness::assert_finished_by_itself(&mut conn, &report).await;
}

/// migrate's batched copy (step 018) holds between two batches on the same signals.
#[tokio::test]
async fn the_throttle_query_holds_migrates_batched_copy_too() {
    let db = cluster().fresh_db().await;
    db.seed(300, false).await;
    let mut conn = db.conn().await;
    sqlx::raw_sql(
        "CREATE TABLE hold_flag (hold boolean NOT NULL); INSERT INTO hold_flag VALUES (true)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let child = db.spawn(&[
        "migrate",
        "--format",
        "json",
        "--batch-size",
        "50",
        "--throttle-query",
        "SELECT hold FROM hold_flag",
        "--throttle-min-hold",
        "1s",
    ]);
    crate::harness::wait_for(
        &mut conn,
        "SELECT state = 'running' FROM paytool.schema_history WHERE name = $1",
        "018_orders_status_shadow_backfill",
        "step 018 running",
        Duration::from_secs(60),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let copied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE status_new IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(copied, 0, "no batch commits while held");
    sqlx::raw_sql("UPDATE hold_flag SET hold = false")
        .execute(&mut conn)
        .await
        .unwrap();
    let (code, report) = crate::harness::json_run(child.wait_with_output().unwrap());
    assert_eq!(code, 0, "{report:#}");
    let copy = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "018_orders_status_shadow_backfill")
        .unwrap();
    assert_eq!(copy["rows_changed"], 300, "{copy:#}");
    assert!(
        copy["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("held ") && d.contains(" for throttle_query (")),
        "{copy:#}"
    );
}
