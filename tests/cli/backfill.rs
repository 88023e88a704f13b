//! `paytool backfill payments` against a real PostgreSQL.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use predicates::prelude::*;
use sqlx::{Connection, PgConnection};

use crate::harness::{TestDb, cluster, json, wait_for};

/// A migrated database with `orders` orders, plus two items that cannot be snapshotted for
/// overflow: one whose unit price is too big, one whose subtotal is.
async fn migrated_db(orders: i64) -> TestDb {
    let db = crate::harness::seeded_and_migrated(orders).await;
    let mut conn = db.conn().await;
    sqlx::raw_sql(
        "INSERT INTO products (id, name, price) VALUES ('huge-price', 'Distributeur complet', 99999999.99);
         INSERT INTO order_items (id, order_id, product_id, quantity)
         SELECT 'overflow-unit', min(id), 'huge-price', 1 FROM orders;
         INSERT INTO order_items (id, order_id, product_id, quantity)
         SELECT 'overflow-subtotal', max(id), (SELECT min(id) FROM products WHERE price > 1), 100000000 FROM orders;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    db
}

fn backfill_json(db: &TestDb, extra: &[&str]) -> serde_json::Value {
    let (code, report) = crate::harness::run_json(db, &[&["backfill", "payments"], extra].concat());
    assert_eq!(code, 0, "backfill found problems: {report:#}");
    report
}

fn step<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap()
}

async fn scalar(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// An order's total and its payment's amount (the test fails if it has no payment).
async fn total_and_payment(conn: &mut PgConnection, order: &str) -> (i32, i32) {
    sqlx::query_as(
        "SELECT o.amount_total_cents, p.amount_cents FROM orders o JOIN payments p ON p.order_id = o.id
         WHERE o.id = $1",
    )
    .bind(order)
    .fetch_one(conn)
    .await
    .unwrap_or_else(|e| panic!("order {order} with its payment: {e}"))
}

/// An order of the first user with one item of `quantity` of `product` (`None`: no product).
/// A step's longest batches: at most three, longest first, the first the step's longest,
/// each with the time it began (during this run) and the key it started after: the start
/// (`""`) or a row of `table`.
pub(crate) async fn slowest_batches_line_up_with_the_run(
    step: &serde_json::Value,
    conn: &mut PgConnection,
    table: &str,
) {
    let slowest = step["slowest_batches"].as_array().unwrap();
    assert!((1..=3).contains(&slowest.len()), "{step:#}");
    assert_eq!(slowest[0]["ms"], step["longest_batch_ms"]);
    let ms: Vec<u64> = slowest.iter().map(|b| b["ms"].as_u64().unwrap()).collect();
    assert!(ms.is_sorted_by(|a, b| a >= b), "{ms:?}");
    for batch in slowest {
        let started =
            chrono::DateTime::parse_from_rfc3339(batch["started_at"].as_str().unwrap()).unwrap();
        let ago = chrono::Utc::now().signed_duration_since(started);
        assert!(ago >= chrono::TimeDelta::zero() && ago < chrono::TimeDelta::minutes(5));
        assert!(batch["size"].as_i64().unwrap() > 0);
        let after = batch["after"].as_str().unwrap();
        // The table's name is one of this file's constants, never input.
        let sql = format!("SELECT count(*) FROM {table} WHERE id::text = $1");
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert!(
            after.is_empty() || rows == 1,
            "{after:?} is a key of {table}"
        );
    }
}

async fn insert_order_with_item(
    conn: &mut PgConnection,
    order: &str,
    item: &str,
    product: Option<&str>,
    quantity: i32,
) {
    sqlx::query("INSERT INTO orders (id, user_id) SELECT $1, min(id) FROM users")
        .bind(order)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO order_items (id, order_id, product_id, quantity) VALUES ($1, $2, $3, $4)",
    )
    .bind(item)
    .bind(order)
    .bind(product)
    .bind(quantity)
    .execute(&mut *conn)
    .await
    .unwrap();
}

/// The state an order's row has in the order queue.
async fn queue_state(conn: &mut PgConnection, order: &str) -> String {
    sqlx::query_scalar("SELECT state FROM paytool.backfill_order_queue WHERE order_id = $1")
        .bind(order)
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("queue row of {order}: {e}"))
}

/// Every fact the backfill is responsible for, as one digest (payment ids are random, left out).
async fn end_state(conn: &mut PgConnection) -> String {
    sqlx::query_scalar(
        "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
            SELECT 'i' || id || unit_price_cents || ':' || coalesce(label, '~') || ':' || subtotal_cents AS x FROM order_items
            UNION ALL SELECT 'o' || id || amount_total_cents FROM orders
            UNION ALL SELECT 'p' || order_id || coalesce(stripe_payment_intent_id, '~') || amount_cents || currency || status
                      || coalesce(succeeded_at::text, '~') FROM payments) AS facts",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn backfill_snapshots_totals_and_payments_exactly() {
    let db = migrated_db(3_000).await;
    let report = backfill_json(&db, &[]);
    let mut conn = db.conn().await;

    // Items: unit = price × 100 exactly (NUMERIC), label = name, subtotal = unit × quantity.
    let wrong_snapshots = scalar(
        &mut conn,
        "SELECT count(*) FROM order_items i JOIN products p ON p.id = i.product_id
         WHERE i.label IS NOT NULL AND (i.unit_price_cents::numeric <> p.price * 100 OR i.label <> p.name
               OR i.subtotal_cents::numeric <> p.price * 100 * i.quantity)",
    )
    .await;
    assert_eq!(wrong_snapshots, 0);
    let deleted_product = scalar(
        &mut conn,
        "SELECT count(*) FROM order_items WHERE product_id IS NULL",
    )
    .await;
    let missing = scalar(
        &mut conn,
        "SELECT count(*) FROM order_items WHERE label IS NULL",
    )
    .await;
    // The seed itself references a product priced 99,999,999.99 a few times.
    let overflowing = scalar(
        &mut conn,
        "SELECT count(*) FROM order_items i JOIN products p ON p.id = i.product_id
         WHERE p.price * 100 * i.quantity > 2147483647",
    )
    .await;
    assert!(overflowing >= 2);
    assert_eq!(
        missing,
        deleted_product + overflowing,
        "only deleted products and overflows stay unsnapshotted"
    );
    let items = step(&report, "items");
    assert_eq!(items["unresolved"], missing);
    assert_eq!(
        items["changed"],
        scalar(
            &mut conn,
            "SELECT count(*) FROM order_items WHERE label IS NOT NULL"
        )
        .await
    );
    let reasons: Vec<&str> = items["unresolved_by_reason"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["amount_overflows_integer", "product_deleted"]);
    slowest_batches_line_up_with_the_run(items, &mut conn, "order_items").await;
    let overflows = &items["unresolved_by_reason"][0];
    assert_eq!(overflows["rows"], overflowing);
    let sample: Vec<&str> = overflows["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    assert!(
        sample.contains(&"overflow-subtotal") && sample.contains(&"overflow-unit"),
        "{sample:?}"
    );

    // Orders: total = sum of subtotals for every order whose items are all snapshotted.
    let wrong_totals = scalar(
        &mut conn,
        "SELECT count(*) FROM orders o
         WHERE NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND i.label IS NULL)
           AND o.amount_total_cents <> (SELECT coalesce(sum(subtotal_cents), 0) FROM order_items i WHERE i.order_id = o.id)",
    )
    .await;
    assert_eq!(wrong_totals, 0);
    let untotalled = scalar(
        &mut conn,
        "SELECT count(DISTINCT order_id) FROM order_items WHERE label IS NULL",
    )
    .await;
    assert_eq!(step(&report, "orders")["unresolved"], untotalled);

    // Payments: one per resolvable order, same amount and currency, status mapped.
    let orders = scalar(&mut conn, "SELECT count(*) FROM orders").await;
    let payments = scalar(&mut conn, "SELECT count(*) FROM payments").await;
    assert_eq!(payments, orders - untotalled);
    assert_eq!(step(&report, "payments")["changed"], payments);
    // Each written by the orders batch that settled its order, none left to the payment queue.
    assert_eq!(step(&report, "orders")["payments_written"], payments);
    assert_eq!(step(&report, "payments")["payments_written"], 0);
    // The orders step wrote the whole payments table: it refreshed its statistics, as the
    // payments step did when it wrote them (a manual ANALYZE: analyze_count, not autoanalyze).
    wait_for(
        &mut conn,
        "SELECT coalesce((SELECT analyze_count > 0 FROM pg_stat_user_tables WHERE relname = $1), false)",
        "payments",
        "an ANALYZE of payments",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(*) FROM paytool.backfill_payment_queue"
        )
        .await,
        0
    );
    let mismatched = scalar(
        &mut conn,
        "SELECT count(*) FROM payments p JOIN orders o ON o.id = p.order_id
         WHERE p.amount_cents <> o.amount_total_cents OR p.currency <> o.currency
            OR p.stripe_payment_intent_id IS DISTINCT FROM o.stripe_payment_intent_id
            OR p.status <> CASE o.status WHEN 'PAID' THEN 'succeeded' WHEN 'REFUNDED' THEN 'succeeded'
                                         WHEN 'CANCELLED' THEN 'canceled' ELSE 'requires_payment_method' END",
    )
    .await;
    assert_eq!(mismatched, 0);
}

#[tokio::test]
async fn a_second_run_changes_nothing_and_snapshots_survive_price_changes() {
    let db = migrated_db(1_000).await;
    backfill_json(&db, &[]);
    let mut conn = db.conn().await;
    let before = end_state(&mut conn).await;
    sqlx::raw_sql(
        "UPDATE products SET price = price + 1, name = name || ' (new recipe)' WHERE price < 1000",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let again = backfill_json(&db, &[]);
    for name in ["items", "orders", "payments"] {
        assert_eq!(
            step(&again, name)["changed"],
            0,
            "{name} changed rows on the second run"
        );
    }
    assert_eq!(
        end_state(&mut conn).await,
        before,
        "a snapshot or total changed"
    );
    // The trigger refuses to change a taken snapshot, whoever tries.
    let rewrite = sqlx::raw_sql("UPDATE order_items SET unit_price_cents = unit_price_cents + 1, subtotal_cents = (unit_price_cents + 1) * quantity WHERE label IS NOT NULL")
        .execute(&mut conn)
        .await;
    assert!(rewrite.is_err());
}

#[tokio::test]
async fn dry_run_counts_exactly_what_a_run_changes_and_changes_nothing() {
    let db = migrated_db(2_000).await;
    let mut conn = db.conn().await;
    let before = end_state(&mut conn).await;
    let planned = backfill_json(&db, &["--dry-run"]);
    assert_eq!(planned["dry_run"], true);
    assert_eq!(end_state(&mut conn).await, before);
    let done = backfill_json(&db, &[]);
    // What the orders step reads: the orders at 0 themselves in its first pass.
    assert_eq!(
        step(&planned, "orders")["scanned"],
        step(&done, "orders")["scanned"]
    );
    for name in ["items", "orders", "payments"] {
        assert_eq!(
            step(&planned, name)["changed"],
            step(&done, name)["changed"],
            "{name}"
        );
        assert_eq!(
            step(&planned, name)["unresolved"],
            step(&done, name)["unresolved"],
            "{name}"
        );
        // Every step says why, with the ids, as the real run does.
        assert_eq!(
            step(&planned, name)["unresolved_by_reason"],
            step(&done, name)["unresolved_by_reason"],
            "{name}"
        );
    }
    assert!(
        step(&planned, "orders")["unresolved"].as_i64().unwrap() > 0,
        "the seed's deleted products leave orders without a total"
    );
    // The table leaves out what a dry run cannot know (rates, batches).
    let table = db
        .paytool()
        .args(["backfill", "payments", "--dry-run"])
        .env("COLUMNS", "200")
        .output()
        .unwrap();
    // Not a terminal, no -v: warnings and errors only, and there are none.
    assert!(
        table.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(!text.contains("rows/s") && !text.contains("p95"), "{text}");
    assert!(
        text.contains("orders: ") && text.contains("payments: "),
        "{text}"
    );
}

#[tokio::test]
async fn strict_turns_unresolved_rows_into_exit_1_and_one_step_runs_alone() {
    let db = migrated_db(300).await;
    db.paytool()
        .args(["backfill", "payments", "--step", "items", "--strict"])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("overflow-subtotal").and(predicate::str::contains("--strict")),
        );
    let mut conn = db.conn().await;
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) FROM payments").await,
        0,
        "--step items ran the payments step"
    );
    assert!(
        scalar(
            &mut conn,
            "SELECT count(*) FROM order_items WHERE label IS NOT NULL"
        )
        .await
            > 0
    );
}

#[tokio::test]
async fn backfill_refuses_a_database_that_is_not_migrated() {
    let db = cluster().fresh_db().await;
    db.seed(100, false).await;
    db.paytool()
        .args(["backfill", "payments"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("run paytool migrate first"));
    db.paytool()
        .args(["backfill", "payments", "--step", "everything"])
        .assert()
        .code(2);
}

async fn wait_for_checkpoint(conn: &mut PgConnection, step: &str, batches: i64) {
    let sql = format!(
        "SELECT coalesce((SELECT batches FROM paytool.backfill_checkpoints WHERE step = $1), 0) >= {batches}"
    );
    let what = format!("the backfill reached {batches} batches of {step}");
    wait_for(conn, &sql, step, &what, Duration::from_secs(60)).await;
}

/// A backfill in small batches, SIGKILLed once its items step has committed 10 batches.
async fn kill_during_the_items_step(db: &TestDb, conn: &mut PgConnection) {
    let mut child = db.spawn_quiet(&[
        "backfill",
        "payments",
        "--batch-size",
        "50",
        "--pause-ms",
        "10",
    ]);
    wait_for_checkpoint(conn, "items", 10).await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn killed_mid_step_then_resumed_ends_like_an_uninterrupted_run() {
    let db = migrated_db(2_000).await;
    // The same database, backfilled without interruption, for comparison.
    let reference = cluster().copy_of(&db, "ref").await;
    backfill_json(&reference, &["--batch-size", "100"]);

    let mut conn = db.conn().await;
    kill_during_the_items_step(&db, &mut conn).await;
    let snapshotted = scalar(
        &mut conn,
        "SELECT count(*) FROM order_items WHERE label IS NOT NULL",
    )
    .await;
    let total_items = scalar(&mut conn, "SELECT count(*) FROM order_items").await;
    assert!(
        snapshotted > 0 && snapshotted < total_items - 100,
        "the kill did not land mid-step ({snapshotted})"
    );

    let resumed = backfill_json(&db, &[]);
    assert!(
        step(&resumed, "items")["resumed_after"].is_string(),
        "{resumed}"
    );
    // Resuming scanned only what was left.
    assert!(step(&resumed, "items")["scanned"].as_i64().unwrap() < total_items);
    assert_eq!(
        end_state(&mut conn).await,
        end_state(&mut reference.conn().await).await
    );
}

#[tokio::test]
async fn a_lost_connection_in_a_batch_is_retried_and_the_run_completes() {
    let db = migrated_db(2_000).await;
    let child = db.spawn(&[
        "backfill",
        "payments",
        "--batch-size",
        "50",
        "--pause-ms",
        "10",
        "--format",
        "json",
    ]);
    let mut conn = db.conn().await;
    wait_for_checkpoint(&mut conn, "items", 5).await;
    sqlx::raw_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'paytool' AND datname = current_database()")
        .execute(&mut conn)
        .await
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out.stdout);
    assert!(step(&report, "items")["retries"].as_u64().unwrap() >= 1);
    let wrong = scalar(
        &mut conn,
        "SELECT count(*) FROM order_items i JOIN products p ON p.id = i.product_id
         WHERE i.label IS NULL AND p.price * 100 * i.quantity <= 2147483647",
    )
    .await;
    assert_eq!(wrong, 0, "resolvable items were left without a snapshot");
}

#[tokio::test]
async fn rows_written_by_the_application_during_the_run_are_never_half_done() {
    let db = migrated_db(2_000).await;
    let mut child = db.spawn_quiet(&[
        "backfill",
        "payments",
        "--batch-size",
        "100",
        "--pause-ms",
        "5",
    ]);
    let mut app = db.conn().await;
    // The legacy application: new orders with two items and no snapshot, at a steady pace, with
    // ids spread over the key space (ahead of the backfill, behind it and past its end).
    let mut live_orders: Vec<String> = Vec::new();
    while child.try_wait().unwrap().is_none() {
        let id: String = sqlx::query_scalar(
            "WITH o AS (INSERT INTO orders (id, user_id)
                        SELECT md5('live-' || $1::text)::uuid::text, min(id) FROM users RETURNING id),
                  i AS (INSERT INTO order_items (id, order_id, product_id, quantity)
                        SELECT o.id || '-' || n, o.id, (SELECT min(id) FROM products WHERE price BETWEEN 1 AND 100), n
                        FROM o, generate_series(1, 2) AS n)
             SELECT id FROM o",
        )
        .bind(live_orders.len() as i64)
        .fetch_one(&mut app)
        .await
        .unwrap();
        live_orders.push(id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(child.wait().unwrap().success());
    assert!(live_orders.len() > 10, "the run ended before the app wrote");
    let half_done = scalar(
        &mut app,
        "SELECT count(*) FROM order_items WHERE label IS NOT NULL AND subtotal_cents::bigint <> unit_price_cents::bigint * quantity",
    )
    .await;
    assert_eq!(half_done, 0);
    let live_items: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_items WHERE order_id = ANY($1)")
            .bind(&live_orders)
            .fetch_one(&mut app)
            .await
            .unwrap();
    assert_eq!(live_items, live_orders.len() as i64 * 2, "an item was lost");
    // An order is either wholly done (total and payment match its items) or untouched.
    let inconsistent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders o
         LEFT JOIN payments p ON p.order_id = o.id
         WHERE o.id = ANY($1)
           AND (o.amount_total_cents <> 0 OR p.order_id IS NOT NULL)
           AND (o.amount_total_cents <> (SELECT sum(subtotal_cents) FROM order_items i WHERE i.order_id = o.id)
                OR p.amount_cents IS DISTINCT FROM o.amount_total_cents AND p.order_id IS NOT NULL)",
    )
    .bind(&live_orders)
    .fetch_one(&mut app)
    .await
    .unwrap();
    assert_eq!(inconsistent, 0);
    // What this run left, the next one takes.
    backfill_json(&db, &[]);
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders o WHERE o.id = ANY($1)
           AND (NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id)
                OR EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND i.label IS NULL))",
    )
    .bind(&live_orders)
    .fetch_one(&mut app)
    .await
    .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_lock_held_too_long_stops_with_exit_3_and_a_checkpoint_to_resume_from() {
    let db = migrated_db(500).await;
    let mut blocker = db.conn().await;
    sqlx::raw_sql("BEGIN; LOCK TABLE order_items IN EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    db.paytool()
        .args([
            "backfill",
            "payments",
            "--lock-timeout",
            "50ms",
            "--max-retries",
            "2",
        ])
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("failed 3 times in a row")
                .and(predicate::str::contains(
                    "sessions holding a lock on order_items: pid ",
                ))
                .and(predicate::str::contains("again to resume")),
        );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .unwrap();
    let mut conn = db.conn().await;
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(*) FROM order_items WHERE label IS NOT NULL"
        )
        .await,
        0
    );
    let report = backfill_json(&db, &[]);
    assert_eq!(step(&report, "items")["retries"], 0);
    assert!(step(&report, "items")["changed"].as_i64().unwrap() > 0);
}

/// The legacy application's new orders: `n` orders with two items each, ids from `prefix`.
async fn new_orders(conn: &mut PgConnection, prefix: &str, n: i64) {
    sqlx::query(
        "WITH o AS (INSERT INTO orders (id, user_id)
                    SELECT $1 || g, (SELECT min(id) FROM users) FROM generate_series(1, $2) AS g
                    RETURNING id)
         INSERT INTO order_items (id, order_id, product_id, quantity)
         SELECT o.id || '-' || k, o.id, (SELECT min(id) FROM products WHERE price BETWEEN 1 AND 100), k
         FROM o, generate_series(1, 2) AS k",
    )
    .bind(prefix)
    .bind(n)
    .execute(conn)
    .await
    .unwrap();
}

/// Sequential scans and rows fetched by index of the three tables the backfill reads, from
/// the server's statistics (a finished paytool's backend has flushed its counters).
async fn reads(conn: &mut PgConnection) -> (i64, i64) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::raw_sql("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query_as(
        "SELECT sum(seq_scan)::bigint, sum(coalesce(idx_tup_fetch, 0))::bigint FROM pg_stat_user_tables
         WHERE relname IN ('orders', 'order_items', 'payments')",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_catch_up_reads_the_new_rows_and_not_the_tables() {
    let db = migrated_db(20_000).await;
    let mut conn = db.conn().await;
    // Without the items whose amount overflows, which the items step visits again on every
    // run (a price change can make them resolvable). The seed's items whose product is gone
    // stay: no run batches them again.
    sqlx::raw_sql(
        "DELETE FROM order_items i USING products p
          WHERE i.product_id = p.id AND p.price * 100 * i.quantity > 2147483647;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    backfill_json(&db, &[]);
    new_orders(&mut conn, "catch-up-", 100).await;
    let (seq_before, fetched_before) = reads(&mut conn).await;

    let report = backfill_json(&db, &[]);
    // The application's items took their snapshots and its orders their totals as they were
    // written (step 029's triggers); the catch-up reads the 100 queued orders and pays them.
    assert_eq!(step(&report, "items")["changed"], 0);
    assert_eq!(step(&report, "orders")["scanned"], 100);
    assert_eq!(step(&report, "payments")["changed"], 100);
    let (seq_after, fetched_after) = reads(&mut conn).await;
    assert_eq!(seq_after - seq_before, 0, "a table was scanned");
    // 20,000 orders and ~40,000 items: a catch-up of 100 orders reads a few thousand index
    // entries at most (the new rows, their orders and items).
    let fetched = fetched_after - fetched_before;
    // Zero would mean the counters were never flushed, and the check below proves nothing.
    assert!(
        fetched > 0,
        "no index fetch counted: the statistics were not flushed"
    );
    assert!(fetched < 3_000, "{fetched} rows fetched for 300 new ones");
    let product_gone = scalar(
        &mut conn,
        "SELECT count(*) FROM order_items WHERE product_id IS NULL AND label IS NULL",
    )
    .await;
    assert!(
        product_gone > 0,
        "the seed has no item whose product is gone"
    );
    assert_eq!(step(&report, "items")["scanned"], 0, "{report:#}");
    assert!(step(&report, "items")["unresolved"].as_i64().unwrap() >= product_gone);
}

#[tokio::test]
async fn a_catch_up_counts_the_items_whose_product_is_gone_without_reading_them() {
    let db = migrated_db(3_000).await;
    let mut conn = db.conn().await;
    // Items whose product was deleted before the backfill: no run can snapshot them.
    sqlx::raw_sql(
        "UPDATE order_items SET product_id = NULL
          WHERE id IN (SELECT id FROM order_items ORDER BY id LIMIT 3000)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    backfill_json(&db, &[]);
    // Autovacuum's work after a first pass, done now: the pages are all-visible.
    sqlx::raw_sql("VACUUM order_items")
        .execute(&mut conn)
        .await
        .unwrap();
    new_orders(&mut conn, "later-", 20).await;
    // This session's own reads (the UPDATE above) are flushed to the statistics when it ends.
    conn.close().await.unwrap();
    let mut conn = db.conn().await;
    let (_, fetched_before) = reads(&mut conn).await;

    let report = backfill_json(&db, &[]);
    let (_, fetched_after) = reads(&mut conn).await;
    let fetched = fetched_after - fetched_before;
    assert!(
        fetched > 0,
        "no index fetch counted: the statistics were not flushed"
    );
    // Reading each of them, as the items step's extent and the report did through step 027's
    // index, would fetch 6,000 rows.
    assert!(
        fetched < 1_000,
        "{fetched} rows fetched for 20 new orders beside 3,000 items whose product is gone"
    );
    // The walk holds only the two items whose amount overflows (migrated_db's): a price change
    // can make them resolvable.
    assert_eq!(step(&report, "items")["scanned"], 2, "{report:#}");
    assert_eq!(step(&report, "payments")["changed"], 20, "{report:#}");
    // Still reported, exactly: how many, and the first ids.
    let deleted = step(&report, "items")["unresolved_by_reason"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["reason"] == "product_deleted")
        .unwrap_or_else(|| panic!("{report:#}"));
    let product_gone = scalar(
        &mut conn,
        "SELECT count(*) FROM order_items WHERE product_id IS NULL AND label IS NULL",
    )
    .await;
    assert!(product_gone >= 3_000, "{product_gone}");
    assert_eq!(deleted["rows"], product_gone, "{report:#}");
    let first: String = sqlx::query_scalar(
        "SELECT min(id)::TEXT FROM order_items WHERE product_id IS NULL AND label IS NULL",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(deleted["sample"][0], first.as_str(), "{report:#}");
}

#[tokio::test]
async fn orders_settled_at_zero_are_never_read_again() {
    let db = migrated_db(3_000).await;
    let mut conn = db.conn().await;
    // Carts abandoned before their first item: a third of the shop, settled at 0 for good.
    sqlx::raw_sql(
        "INSERT INTO orders (id, user_id) SELECT 'empty-' || g, (SELECT min(id) FROM users)
         FROM generate_series(1, 1000) AS g",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let first = backfill_json(&db, &[]);
    assert!(step(&first, "orders")["scanned"].as_i64().unwrap() >= 4_000);
    let settled_at_zero = scalar(
        &mut conn,
        "SELECT count(*) FROM orders o WHERE o.amount_total_cents = 0
           AND NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id)",
    )
    .await;
    assert!(settled_at_zero >= 1_000, "{settled_at_zero}");

    new_orders(&mut conn, "later-", 20).await;
    let catch_up = backfill_json(&db, &[]);
    // It reads the 20 new orders, not the 1,000+ settled at 0 (nor the unresolved ones).
    assert_eq!(step(&catch_up, "orders")["scanned"], 20, "{catch_up:#}");
    assert_eq!(step(&catch_up, "payments")["changed"], 20);
    let again = backfill_json(&db, &[]);
    assert_eq!(step(&again, "orders")["scanned"], 0, "{again:#}");
    // The unresolved orders are still reported, from the queue, where each keeps its reason.
    assert_eq!(
        step(&again, "orders")["unresolved"],
        step(&first, "orders")["unresolved"]
    );
    let with_reason = scalar(
        &mut conn,
        "SELECT count(*) FROM paytool.backfill_order_queue
         WHERE state IN ('items_without_snapshot', 'total_overflows_integer')",
    )
    .await;
    assert_eq!(step(&again, "orders")["unresolved"], with_reason);

    // An empty cart that gets its first item after the first pass: totalled in the
    // application's write, paid by the next run, which reads that one order.
    sqlx::raw_sql(
        "INSERT INTO order_items (id, order_id, product_id, quantity)
         SELECT 'first-item', 'empty-7', (SELECT min(id) FROM products WHERE price BETWEEN 1 AND 100), 2",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let late = backfill_json(&db, &[]);
    assert_eq!(step(&late, "orders")["scanned"], 1, "{late:#}");
    let (total, paid_amount) = total_and_payment(&mut conn, "empty-7").await;
    let items_total = scalar(
        &mut conn,
        "SELECT sum(subtotal_cents)::bigint FROM order_items WHERE order_id = 'empty-7'",
    )
    .await;
    assert!(total > 0);
    assert_eq!((total as i64, paid_amount), (items_total, total));
}

#[tokio::test]
async fn rows_written_below_the_checkpoint_of_a_killed_run_are_taken_by_the_next_run() {
    let db = migrated_db(2_000).await;
    let mut conn = db.conn().await;
    kill_during_the_items_step(&db, &mut conn).await;
    // Keys that sort before everything the killed run had done ('0…' < any md5 uuid text).
    new_orders(&mut conn, "0000-below-", 5).await;

    backfill_json(&db, &[]);
    let left: i64 = scalar(
        &mut conn,
        "SELECT count(*) FROM orders o WHERE o.id LIKE '0000-below-%'
           AND (NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id)
                OR EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND i.label IS NULL))",
    )
    .await;
    assert_eq!(
        left, 0,
        "rows written below the checkpoint were left behind"
    );
}

#[tokio::test]
async fn follow_keeps_catching_up_until_terminated() {
    let db = migrated_db(1_000).await;
    let child = db.spawn(&[
        "backfill",
        "payments",
        "--follow",
        "--interval",
        "200ms",
        "--format",
        "json",
    ]);
    let mut conn = db.conn().await;
    // The first round is over once its last step is.
    wait_for(
        &mut conn,
        "SELECT EXISTS (SELECT 1 FROM paytool.backfill_checkpoints WHERE step = $1 AND finished_at IS NOT NULL)",
        "payments",
        "the first round",
        Duration::from_secs(30),
    )
    .await;
    new_orders(&mut conn, "followed-", 10).await;
    wait_for(
        &mut conn,
        "SELECT count(*) = 10 FROM payments WHERE order_id LIKE $1",
        "followed-%",
        "a later round paid the new orders",
        Duration::from_secs(30),
    )
    .await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out.stdout);
    assert!(report["rounds"].as_u64().unwrap() >= 2, "{report}");
    assert!(step(&report, "payments")["changed"].as_i64().unwrap() > 900);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("round 1 in") && stderr.contains("payments +"),
        "{stderr}"
    );
}

async fn index_exists(conn: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_first_complete_pass_builds_the_pending_indexes_after_its_hot_updates() {
    let db = migrated_db(3_000).await;
    let mut conn = db.conn().await;
    for index in [
        "order_items_pending_snapshot_idx",
        "orders_pending_total_idx",
    ] {
        assert!(
            !index_exists(&mut conn, index).await,
            "{index} before the backfill"
        );
    }
    // verify does not count them missing before the backfill built them.
    let (code, verify) =
        crate::harness::run_json(&db, &["verify", "constraints", "--only", "schema"]);
    assert_eq!(code, 0, "{verify:#}");

    // A killed run builds nothing.
    kill_during_the_items_step(&db, &mut conn).await;
    assert!(!index_exists(&mut conn, "order_items_pending_snapshot_idx").await);

    // The items step alone builds its own index.
    let items = backfill_json(&db, &["--step", "items"]);
    assert_eq!(
        items["indexes_built"],
        serde_json::json!([
            "order_items_pending_snapshot_idx",
            "order_items_resolvable_snapshot_idx"
        ])
    );
    // Without the partial index, the snapshot updates could stay on their page (HOT): its
    // predicate names the column they write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::raw_sql("SELECT pg_stat_clear_snapshot()")
        .execute(&mut conn)
        .await
        .unwrap();
    let hot = scalar(
        &mut conn,
        "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'order_items'",
    )
    .await;
    assert!(hot > 0, "no HOT update of order_items");

    let all = backfill_json(&db, &[]);
    assert_eq!(
        all["indexes_built"],
        serde_json::json!(["orders_pending_total_idx"])
    );
    assert_eq!(
        backfill_json(&db, &[])["indexes_built"],
        serde_json::json!([])
    );
    let (code, status) = crate::harness::run_json(&db, &["migrate", "status"]);
    assert_eq!(
        (code, status["after_backfill_pending"].as_i64()),
        (0, Some(0))
    );
    // Once built, they are checked exactly.
    sqlx::raw_sql(
        "DROP INDEX orders_pending_total_idx;
         CREATE INDEX orders_pending_total_idx ON orders (id) WHERE amount_total_cents < 0;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let (code, verify) =
        crate::harness::run_json(&db, &["verify", "constraints", "--only", "schema"]);
    assert_eq!(code, 1);
    assert_eq!(
        crate::harness::verify_check(&verify, "schema.indexes")["sample"],
        serde_json::json!(["orders_pending_total_idx"])
    );
}

#[tokio::test]
async fn a_complete_pass_whose_indexes_cannot_be_built_succeeds_and_the_next_run_builds_them() {
    let db = migrated_db(500).await;
    let mut conn = db.conn().await;
    // A paytool migrate holds its lock (in another session) for longer than --wait.
    let mut holder = db.conn().await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(paytool::migrate::MIGRATE_LOCK.key)
        .execute(&mut holder)
        .await
        .unwrap();
    let first = backfill_json(&db, &["--wait", "1s"]);
    assert_eq!(first["indexes_built"], serde_json::json!([]));
    assert!(
        first["indexes_not_built"]
            .as_str()
            .is_some_and(|r| r.contains("migrate")),
        "{first:#}"
    );
    assert!(!index_exists(&mut conn, "orders_pending_total_idx").await);
    // The backfill itself is complete.
    let payments = scalar(&mut conn, "SELECT count(*) FROM payments").await;
    assert!(payments > 0);
    assert_eq!(first["steps"][2]["changed"].as_i64(), Some(payments));
    drop(holder);
    let second = backfill_json(&db, &[]);
    assert_eq!(
        second["indexes_built"].as_array().map(Vec::len),
        Some(3),
        "{second:#}"
    );
    assert!(second["indexes_not_built"].is_null());
}

#[tokio::test]
async fn statistics_of_a_table_held_by_maintenance_are_left_to_it_without_waiting() {
    let db = migrated_db(500).await;
    // Another session's maintenance (as a VACUUM or an index build) holds payments; an ANALYZE
    // would queue behind it (an autovacuum, it would have cancelled).
    let mut holder = db.conn().await;
    sqlx::raw_sql("BEGIN; LOCK TABLE payments IN SHARE UPDATE EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let out = db
        .paytool()
        .args(["backfill", "payments", "--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Skipped before asking for the lock, naming who holds it; not after a lock timeout.
    assert!(
        stderr.contains("could not refresh the statistics of payments (client backend")
            && !stderr.contains("lock timeout"),
        "{stderr}"
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    let mut conn = db.conn().await;
    // The tables nothing held were analyzed as usual (their statistics are flushed
    // asynchronously).
    wait_for(
        &mut conn,
        "SELECT coalesce((SELECT analyze_count > 0 FROM pg_stat_user_tables WHERE relname = $1), false)",
        "orders",
        "an ANALYZE of orders",
        Duration::from_secs(10),
    )
    .await;
    let payments: i64 = sqlx::query_scalar(
        "SELECT coalesce((SELECT analyze_count FROM pg_stat_user_tables WHERE relname = $1), 0)",
    )
    .bind("payments")
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(payments, 0, "payments was analyzed behind the lock");
}

/// The node on the inner side of every nested loop in an EXPLAIN (FORMAT JSON) plan.
fn inner_sides_of_nested_loops<'a>(
    node: &'a serde_json::Value,
    found: &mut Vec<&'a serde_json::Value>,
) {
    let children = node["Plans"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if node["Node Type"] == "Nested Loop" {
        found.extend(
            children
                .iter()
                .filter(|c| c["Parent Relationship"] == "Inner"),
        );
    }
    for child in children {
        inner_sides_of_nested_loops(child, found);
    }
}

/// The orders step's UPDATE looks each order up by its key from the batch's totals, whatever
/// the estimates. With the key range on both sides and both estimated at one row (a table
/// rewritten since its last ANALYZE), the planner once scanned the totals once per order: a
/// batch of 1,821 orders then took 790 ms instead of ~100 (the orders step's outliers).
#[tokio::test]
async fn the_orders_batch_looks_each_order_up_by_key_whatever_the_estimates() {
    let db = migrated_db(200).await;
    // Statistics as wrong as a table rewritten since they were taken: a batch of three orders
    // is estimated at one row of orders and thousands of queued ones (a big queue without
    // statistics). The old plan then put the totals on the inner side of the nested loop.
    db.paytool()
        .args(["backfill", "payments", "-q"])
        .assert()
        .success();
    let mut conn = db.conn().await;
    sqlx::raw_sql(
        "ANALYZE orders; ANALYZE paytool.backfill_order_queue;
         UPDATE pg_class SET reltuples = 1000000, relpages = 10000
         WHERE oid = 'paytool.backfill_order_queue'::regclass",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    paytool::db::set_batch_planner(&mut conn, false)
        .await
        .unwrap();
    let (low, high): (String, String) = sqlx::query_as(
        "SELECT min(id), max(id) FROM (SELECT id FROM orders ORDER BY id LIMIT 3) AS o",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let batch = include_str!("../../sql/backfill/orders_batch.sql");
    let explain = format!("EXPLAIN (FORMAT JSON) {batch}");
    // The queue's batches, and the first pass's over the orders themselves.
    for first_pass in [false, true] {
        let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(explain.clone()))
            .bind(&low)
            .bind(&high)
            .bind(first_pass)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let mut sides = Vec::new();
        inner_sides_of_nested_loops(&plan[0]["Plan"], &mut sides);
        let inner: Vec<String> = sides
            .iter()
            .map(|side| {
                let relation = side["Relation Name"].as_str().or(side["CTE Name"].as_str());
                format!(
                    "{} {}",
                    side["Node Type"].as_str().unwrap_or("?"),
                    relation.unwrap_or("")
                )
            })
            .collect();
        assert!(
            !inner.iter().any(|side| side.starts_with("CTE Scan")),
            "a CTE is scanned once per outer row: {inner:?}\n{plan:#}"
        );
        assert!(
            inner.iter().any(|side| side == "Index Scan orders"),
            "orders is not looked up by key: {inner:?}"
        );
    }
}

/// A first-pass batch looks the queue and payments up order by order only if its key range
/// holds a row of them: most ranges of a first pass hold none, and each lookup is an index
/// descent per order (4% of the orders step at 1M orders).
#[tokio::test]
async fn a_first_pass_batch_looks_up_the_queue_and_payments_only_where_they_have_rows() {
    first_pass_lookups_are_gated(&migrated_db(200).await).await;
}

/// On a migrated database not backfilled yet (the version matrix runs it on every major): a
/// first-pass batch of the orders step looks each order's queue row and payment up only if
/// that table has a row in the batch's key range.
pub(crate) async fn first_pass_lookups_are_gated(db: &TestDb) {
    let mut conn = db.conn().await;
    let (low, high): (String, String) = sqlx::query_as(
        "SELECT min(id), max(id) FROM (SELECT id FROM orders ORDER BY id LIMIT 20) AS o",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let explain = format!(
        "EXPLAIN (ANALYZE, FORMAT JSON) {}",
        include_str!("../../sql/backfill/orders_batch.sql")
    );
    // How many times the batch's totals looked `index` up per order: the scans on the inner
    // side of their nested loops, through the one-time filter above them if any.
    let lookups = |plan: &serde_json::Value, index: &str| -> i64 {
        let totals = plan[0]["Plan"]["Plans"]
            .as_array()
            .and_then(|ctes| ctes.iter().find(|c| c["Subplan Name"] == "CTE totals"))
            .unwrap_or_else(|| panic!("no CTE totals in {plan:#}"));
        let mut sides = Vec::new();
        inner_sides_of_nested_loops(totals, &mut sides);
        sides
            .into_iter()
            .map(|mut scan| {
                // The one-time filter's child, not its InitPlan (the gate's own probe).
                while let Some(child) = (scan["Node Type"] == "Result")
                    .then(|| scan["Plans"].as_array())
                    .flatten()
                    .and_then(|plans| plans.iter().find(|p| p["Parent Relationship"] == "Outer"))
                {
                    scan = child;
                }
                scan
            })
            .filter(|scan| scan["Index Name"] == index)
            .map(|scan| scan["Actual Loops"].as_i64().unwrap_or(0))
            .sum()
    };
    let add_payment = "INSERT INTO payments (order_id, amount_cents, currency, status)
                       SELECT id, 0, currency, 'requires_payment_method' FROM orders
                       WHERE id <= $1 ORDER BY id DESC LIMIT 1";
    let add_queue_row = "INSERT INTO paytool.backfill_order_queue (order_id)
                         SELECT id FROM orders WHERE id <= $1 ORDER BY id DESC LIMIT 1";
    for (added, sql) in [
        ("nothing", None),
        ("a payment", Some(add_payment)),
        ("a queue row", Some(add_queue_row)),
    ] {
        let mut tx = conn.begin().await.unwrap();
        if let Some(sql) = sql {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&high)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        paytool::db::set_batch_planner(&mut tx, true).await.unwrap();
        // The range ($1, $2] below holds 19 orders: the first one is its lower bound.
        let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(explain.clone()))
            .bind(&low)
            .bind(&high)
            .bind(true)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        let payments = lookups(&plan, "payments_order_id_key");
        let queue = lookups(&plan, "backfill_order_queue_pkey");
        match added {
            "nothing" => assert_eq!((payments, queue), (0, 0), "{plan:#}"),
            "a payment" => assert!(payments >= 19 && queue == 0, "{payments} {queue}"),
            _ => assert!(queue >= 19 && payments == 0, "{payments} {queue}"),
        }
    }
}

/// A batch is planned for its own keys, but what PostgreSQL runs inside it is not planned again
/// row by row: the foreign-key check of each payment an orders batch writes keeps one generic
/// plan, even where the database's default is `plan_cache_mode = force_custom_plan`. With that
/// setting in the batch itself, the check was planned again for every payment: 17-20% of the
/// orders step at 1M orders.
#[tokio::test]
async fn a_batch_plans_the_foreign_key_check_of_its_payments_once() {
    foreign_key_check_is_planned_once(&migrated_db(200).await).await;
}

/// On a migrated database not backfilled yet (the version matrix runs it on every major): one
/// items batch and one orders batch over every key, in a session whose database defaults to
/// `force_custom_plan` (left so: later runs on that database plan under it too), leave the
/// payments' foreign-key check with one generic plan.
pub(crate) async fn foreign_key_check_is_planned_once(db: &TestDb) {
    let mut conn = db.conn().await;
    sqlx::raw_sql(
        "DO $$ BEGIN
             EXECUTE format('ALTER DATABASE %I SET plan_cache_mode = force_custom_plan',
                            current_database());
         END $$",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // A new session, which takes the database's default.
    let mut conn = db.conn().await;
    let mut tx = conn.begin().await.unwrap();
    paytool::db::set_batch_planner(&mut tx, true).await.unwrap();
    let mut whole_table_batch = async |table: &str, batch_sql: &'static str| -> i64 {
        let last: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT max(id)::TEXT FROM {table}"
        )))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let (_, payments): (i64, i64) = sqlx::query_as(batch_sql)
            .persistent(false)
            .bind(None::<String>)
            .bind(&last)
            .bind(true)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        payments
    };
    whole_table_batch(
        "order_items",
        include_str!("../../sql/backfill/items_batch.sql"),
    )
    .await;
    let payments = whole_table_batch(
        "orders",
        include_str!("../../sql/backfill/orders_batch.sql"),
    )
    .await;
    assert!(payments >= 100, "{payments} payments written");
    // A generic plan lives in its own memory context, named after its statement; a custom
    // plan is dropped once it has run.
    let generic_fk_plans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_backend_memory_contexts
         WHERE name = 'CachedPlan'
           AND ident LIKE 'SELECT 1 FROM ONLY \"public\".\"orders\" x %FOR KEY SHARE OF x'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(
        generic_fk_plans, 1,
        "the payments' foreign-key check has no generic plan"
    );
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(mode, "auto");
    tx.rollback().await.unwrap();
}

/// The items step skips an item without a product (it cannot take a snapshot from nothing);
/// nothing is lost by that: the application's write that gives it a product back takes the
/// snapshot (step 029), and the next run totals and pays its order.
#[tokio::test]
async fn an_item_given_a_product_back_is_snapshotted_and_its_order_paid_by_the_next_run() {
    let db = migrated_db(500).await;
    let mut conn = db.conn().await;
    insert_order_with_item(&mut conn, "orphan-order", "orphan-item", None, 3).await;
    let first = backfill_json(&db, &[]);
    assert_eq!(
        queue_state(&mut conn, "orphan-order").await,
        "items_without_snapshot"
    );
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(*) FROM payments WHERE order_id = 'orphan-order'"
        )
        .await,
        0
    );

    sqlx::raw_sql(
        "UPDATE order_items
         SET product_id = (SELECT min(id) FROM products WHERE price BETWEEN 1 AND 100)
         WHERE id = 'orphan-item'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // Snapshotted in the application's own write.
    let subtotal = scalar(
        &mut conn,
        "SELECT subtotal_cents::bigint FROM order_items WHERE id = 'orphan-item' AND label IS NOT NULL",
    )
    .await;
    assert!(subtotal > 0);

    let next = backfill_json(&db, &[]);
    // The items step reads only the unsnapshotted items that have a product (the fixture's
    // overflowing ones), never the product-less ones beside them.
    let with_product = scalar(
        &mut conn,
        "SELECT count(*) FROM order_items WHERE label IS NULL AND product_id IS NOT NULL",
    )
    .await;
    let without_product = scalar(
        &mut conn,
        "SELECT count(*) FROM order_items WHERE label IS NULL AND product_id IS NULL",
    )
    .await;
    assert!(without_product > 0, "the seed has no product-less item");
    assert_eq!(step(&next, "items")["scanned"], with_product, "{next:#}");
    assert_eq!(step(&next, "orders")["scanned"], 1, "{next:#}");
    assert_eq!(
        step(&next, "orders")["unresolved"].as_i64().unwrap(),
        step(&first, "orders")["unresolved"].as_i64().unwrap() - 1
    );
    let (total, paid) = total_and_payment(&mut conn, "orphan-order").await;
    assert_eq!((total as i64, paid as i64), (subtotal, subtotal));
}

/// Orders an earlier paytool totalled without writing their payment (its payments step came
/// later, from a queue this version no longer fills) get it from the payments step: the
/// payment queue is seeded with them once, when it is made.
#[tokio::test]
async fn orders_totalled_without_a_payment_by_an_earlier_run_are_paid_by_the_payments_step() {
    let db = migrated_db(400).await;
    backfill_json(&db, &[]);
    let mut conn = db.conn().await;
    let before = end_state(&mut conn).await;
    // What an earlier paytool left: totals written, payments not yet, no payment queue.
    sqlx::raw_sql(
        "DELETE FROM payments WHERE order_id IN (
             SELECT id FROM orders WHERE amount_total_cents > 0 ORDER BY id LIMIT 25);
         DROP TABLE paytool.backfill_payment_queue;",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let report = backfill_json(&db, &[]);
    assert_eq!(step(&report, "orders")["scanned"], 0, "{report:#}");
    assert_eq!(step(&report, "payments")["scanned"], 25, "{report:#}");
    assert_eq!(step(&report, "payments")["changed"], 25);
    assert_eq!(step(&report, "payments")["payments_written"], 25);
    assert_eq!(end_state(&mut conn).await, before);
}

/// A payment still waiting to be paid follows its order's final total when its order is
/// queued again: what an application's edit leaves when it lands while a batch writes that
/// payment (the trigger's snapshot does not see the batch's uncommitted row). A paid one is
/// never touched.
#[tokio::test]
async fn a_waiting_payment_behind_its_orders_total_takes_it_when_the_order_is_queued_again() {
    let db = migrated_db(400).await;
    backfill_json(&db, &[]);
    let mut conn = db.conn().await;
    let before = end_state(&mut conn).await;
    let (waiting, paid): (String, String) = sqlx::query_as(
        "SELECT (SELECT min(order_id) FROM payments WHERE status = 'requires_payment_method' AND amount_cents > 0),
                (SELECT min(order_id) FROM payments WHERE status = 'succeeded' AND amount_cents > 0)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    // The race's outcome, written as paytool's batches write (the triggers leave them alone).
    sqlx::query(
        "WITH marked AS (SELECT set_config('paytool.backfill', 'on', false)),
         stale AS (
             UPDATE payments SET amount_cents = amount_cents - 1
             WHERE order_id IN ($1, $2) AND EXISTS (SELECT 1 FROM marked) RETURNING order_id)
         INSERT INTO paytool.backfill_order_queue (order_id) SELECT order_id FROM stale",
    )
    .bind(&waiting)
    .bind(&paid)
    .execute(&mut conn)
    .await
    .unwrap();

    let report = backfill_json(&db, &[]);
    assert_eq!(step(&report, "orders")["scanned"], 2, "{report:#}");
    let amounts: Vec<(String, i32, i32)> = sqlx::query_as(
        "SELECT o.id, o.amount_total_cents, p.amount_cents FROM orders o JOIN payments p ON p.order_id = o.id
         WHERE o.id IN ($1, $2) ORDER BY o.id = $1 DESC",
    )
    .bind(&waiting)
    .bind(&paid)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let (_, total, amount) = &amounts[0];
    assert_eq!(amount, total, "the waiting payment follows the total");
    let (_, total, amount) = &amounts[1];
    assert_eq!(*amount, total - 1, "a succeeded payment is left as it is");
    sqlx::raw_sql("SET paytool.backfill = 'on'")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE payments SET amount_cents = amount_cents + 1 WHERE order_id = $1")
        .bind(&paid)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(end_state(&mut conn).await, before);
}

/// The orders step's first pass walks the orders at 0 themselves; killed in the middle of it,
/// the next run walks them again (each once) before the queue, and ends as an uninterrupted
/// run; only a completed first pass hands the orders over to the queue.
#[tokio::test]
async fn killed_in_the_orders_first_pass_then_resumed_ends_like_an_uninterrupted_run() {
    let db = migrated_db(2_000).await;
    let reference = cluster().copy_of(&db, "ref").await;
    backfill_json(&reference, &["--batch-size", "100"]);

    let mut conn = db.conn().await;
    let mut child = db.spawn_quiet(&[
        "backfill",
        "payments",
        "--batch-size",
        "50",
        "--pause-ms",
        "10",
    ]);
    wait_for_checkpoint(&mut conn, "orders_first_pass", 5).await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let paid = scalar(&mut conn, "SELECT count(*) FROM payments").await;
    assert!(
        paid > 0 && paid < 1_900,
        "the kill did not land mid-pass ({paid})"
    );
    let at_zero = scalar(
        &mut conn,
        "SELECT count(*) FROM orders WHERE amount_total_cents = 0",
    )
    .await;
    let handed_over =
        "SELECT count(*) FROM paytool.backfill_checkpoints WHERE step = 'order_queue_seeded'";
    assert_eq!(scalar(&mut conn, handed_over).await, 0);
    // The items' pass completed before the kill: its index was built right after it, so the
    // next run's items step reads only the pending items; the orders' index waits for its pass.
    assert!(index_exists(&mut conn, "order_items_pending_snapshot_idx").await);
    assert!(!index_exists(&mut conn, "orders_pending_total_idx").await);

    let resumed = backfill_json(&db, &[]);
    let orders = step(&resumed, "orders");
    assert!(orders["resumed_after"].is_string(), "{resumed}");
    // The orders still at 0, each once: those left, and those the killed run settled at 0.
    assert_eq!(orders["scanned"], at_zero, "{resumed}");
    assert_eq!(scalar(&mut conn, handed_over).await, 1);
    assert_eq!(
        end_state(&mut conn).await,
        end_state(&mut reference.conn().await).await
    );
    let again = backfill_json(&db, &[]);
    assert_eq!(step(&again, "orders")["scanned"], 0, "{again}");
}

/// An order left unresolved because one of its items could not be snapshotted is totalled and
/// paid by the run that snapshots that item once its product's price is fixed: the items step
/// queues it again (migrate's triggers leave paytool's own writes alone).
#[tokio::test]
async fn an_order_whose_item_is_snapshotted_by_a_later_run_is_totalled_by_it() {
    let db = migrated_db(300).await;
    let mut conn = db.conn().await;
    insert_order_with_item(
        &mut conn,
        "fixable-order",
        "fixable-item",
        Some("huge-price"),
        2,
    )
    .await;
    let first = backfill_json(&db, &[]);
    assert_eq!(
        queue_state(&mut conn, "fixable-order").await,
        "items_without_snapshot"
    );

    sqlx::raw_sql("UPDATE products SET price = 12.34 WHERE id = 'huge-price'")
        .execute(&mut conn)
        .await
        .unwrap();
    let next = backfill_json(&db, &[]);
    assert!(
        step(&next, "items")["changed"].as_i64().unwrap() >= 1,
        "{next:#}"
    );
    let (total, paid) = total_and_payment(&mut conn, "fixable-order").await;
    assert_eq!((total, paid), (2468, 2468));
    assert!(
        step(&next, "orders")["unresolved"].as_i64().unwrap()
            < step(&first, "orders")["unresolved"].as_i64().unwrap()
    );
}

/// A payment the upgraded application made for an order the backfill had not totalled yet
/// (its amount 0, the total not written) takes the total the orders step writes.
#[tokio::test]
async fn a_waiting_payment_of_an_order_not_totalled_yet_takes_the_total_the_run_writes() {
    let db = migrated_db(300).await;
    let mut conn = db.conn().await;
    let order: String = sqlx::query_scalar(
        "INSERT INTO payments (order_id, amount_cents, currency, status)
         SELECT o.id, 0, o.currency, 'requires_payment_method' FROM orders o
         WHERE o.status = 'PENDING' AND o.amount_total_cents = 0
           AND EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND i.product_id IS NOT NULL)
           AND NOT EXISTS (
               SELECT 1 FROM order_items i LEFT JOIN products p ON p.id = i.product_id
               WHERE i.order_id = o.id
                 AND (p.id IS NULL OR p.price < 0 OR i.quantity < 0 OR p.price * 100 * i.quantity > 2147483647))
         ORDER BY o.id LIMIT 1
         RETURNING order_id",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    backfill_json(&db, &[]);
    let (total, amount) = total_and_payment(&mut conn, &order).await;
    assert!(total > 0);
    assert_eq!(amount, total);
}
