//! `paytool verify constraints` against a real PostgreSQL: a clean database passes, and each
//! check catches exactly the invariant it is about.

use std::sync::atomic::{AtomicUsize, Ordering};

use predicates::prelude::*;
use tokio::sync::OnceCell;

use crate::harness::{TestDb, cluster, json};

/// Migrated and backfilled once; each test works on its own copy.
static TEMPLATE: OnceCell<TestDb> = OnceCell::const_new();

async fn verified_db(suffix: &str) -> TestDb {
    let template = TEMPLATE
        .get_or_init(|| async {
            let db = cluster().fresh_db().await;
            db.seed(400, false).await;
            db.paytool().args(["migrate", "-q"]).assert().success();
            db.paytool()
                .args(["backfill", "payments", "-q"])
                .assert()
                .success();
            // A refund, so the refund check has rows to look at.
            let mut conn = db.conn().await;
            sqlx::raw_sql(
                "INSERT INTO refunds (payment_id, amount_cents, currency, status)
                 SELECT id, 1, currency, 'succeeded' FROM payments
                 WHERE status = 'succeeded' AND amount_cents > 10 ORDER BY id LIMIT 1",
            )
            .execute(&mut conn)
            .await
            .unwrap();
            db
        })
        .await;
    static COPIES: AtomicUsize = AtomicUsize::new(0);
    let n = COPIES.fetch_add(1, Ordering::SeqCst);
    cluster().copy_of(template, &format!("{suffix}{n}")).await
}

async fn break_with(db: &TestDb, sql: &str) {
    let mut conn = db.conn().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn verify_json(db: &TestDb, extra: &[&str]) -> (i32, serde_json::Value) {
    crate::harness::run_json(db, &[&["verify", "constraints"], extra].concat())
}

fn failing(report: &serde_json::Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

fn check<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

/// Breaks one invariant and asserts that exactly its check fails, with these sample ids, in
/// JSON, in the table and in JUnit.
async fn only_this_check_fails(suffix: &str, sql: &str, id: &str, sample: &[&str]) {
    let db = verified_db(suffix).await;
    break_with(&db, sql).await;
    let (code, report) = verify_json(&db, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(failing(&report), [id], "{report}");
    let found = check(&report, id);
    assert_eq!(found["count"], sample.len(), "{found}");
    assert_eq!(found["sample"], serde_json::json!(sample));

    db.paytool()
        .args(["verify", "constraints"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(id).and(predicate::str::contains(sample[0])));

    let junit = db
        .paytool()
        .args(["verify", "constraints", "--format", "junit"])
        .output()
        .unwrap();
    assert_eq!(junit.status.code(), Some(1));
    let xml = String::from_utf8(junit.stdout).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit output is XML");
    let failures: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase") && n.children().any(|c| c.has_tag_name("failure")))
        .map(|n| n.attribute("name").unwrap())
        .collect();
    assert_eq!(failures, [id]);
    let failure = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    assert!(failure.text().unwrap_or("").contains(sample[0]), "{xml}");
}

#[tokio::test]
async fn a_migrated_and_backfilled_database_passes_every_check() {
    let db = verified_db("clean").await;
    let (code, report) = verify_json(&db, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(failing(&report).is_empty());
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 21);
    // The seed's deliberate dirt shows up as warnings, never as failures.
    for c in checks {
        assert!(c["status"] == "pass" || c["severity"] == "warning", "{c}");
    }
    assert_eq!(check(&report, "data.items_unresolvable")["status"], "warn");
    assert_eq!(report["summary"]["failed"], 0);
    let junit = db
        .paytool()
        .args(["verify", "constraints", "--format", "junit"])
        .output()
        .unwrap();
    assert!(junit.status.success());
    let xml = String::from_utf8(junit.stdout).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let names: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .filter_map(|n| n.attribute("name"))
        .collect();
    assert_eq!(names.len(), 21);
    assert!(names.contains(&"schema.indexes_valid") && names.contains(&"data.order_totals"));
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("testsuite"))
            .count(),
        2
    );
}

#[tokio::test]
async fn only_schema_and_sample_limit() {
    let db = verified_db("only").await;
    let (_, report) = verify_json(&db, &["--only", "schema"]);
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["category"] == "schema")
    );
    let (_, report) = verify_json(&db, &["--only", "data", "--sample", "1"]);
    let unresolvable = check(&report, "data.items_unresolvable");
    assert!(unresolvable["count"].as_i64().unwrap() > 1);
    assert_eq!(unresolvable["sample"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_dropped_index_fails_schema_indexes() {
    only_this_check_fails(
        "dropidx",
        "DROP INDEX orders_status_idx",
        "schema.indexes",
        &["orders_status_idx"],
    )
    .await;
}

#[tokio::test]
async fn an_invalid_index_fails_schema_indexes_valid() {
    only_this_check_fails(
        "invalidx",
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'orders_machine_id_idx'::regclass",
        "schema.indexes_valid",
        &["orders_machine_id_idx"],
    )
    .await;
}

#[tokio::test]
async fn a_not_valid_constraint_fails_schema_constraints_validated() {
    only_this_check_fails(
        "notvalid",
        "ALTER TABLE stocks DROP CONSTRAINT stocks_quantity_non_negative;
         ALTER TABLE stocks ADD CONSTRAINT stocks_quantity_non_negative CHECK (quantity >= 0) NOT VALID",
        "schema.constraints_validated",
        &["stocks.stocks_quantity_non_negative"],
    )
    .await;
}

#[tokio::test]
async fn a_changed_constraint_fails_schema_constraints() {
    only_this_check_fails(
        "conchg",
        "ALTER TABLE payments DROP CONSTRAINT payments_amount_cents_check;
         ALTER TABLE payments ADD CONSTRAINT payments_amount_cents_check CHECK (amount_cents >= -1)",
        "schema.constraints",
        &["payments.payments_amount_cents_check"],
    )
    .await;
}

#[tokio::test]
async fn a_changed_column_fails_schema_columns() {
    only_this_check_fails(
        "colchg",
        "ALTER TABLE orders ALTER COLUMN currency SET DEFAULT 'USD'",
        "schema.columns",
        &["orders.currency"],
    )
    .await;
}

#[tokio::test]
async fn a_missing_trigger_fails_schema_snapshot_trigger() {
    only_this_check_fails(
        "trig",
        "DROP TRIGGER order_items_snapshot_immutable ON order_items",
        "schema.snapshot_trigger",
        &["order_items_snapshot_immutable"],
    )
    .await;
}

#[tokio::test]
async fn a_corrupted_total_fails_data_order_totals() {
    // The payment follows the order, so only the total-vs-items invariant breaks.
    only_this_check_fails(
        "total",
        "UPDATE orders SET amount_total_cents = amount_total_cents + 1 WHERE id = (SELECT min(order_id) FROM payments WHERE amount_cents > 0);
         UPDATE payments SET amount_cents = amount_cents + 1 WHERE order_id = (SELECT min(order_id) FROM payments WHERE amount_cents > 0)",
        "data.order_totals",
        &[&first_paid_order().await],
    )
    .await;
}

/// The order the corruptions above touch, as the template has it.
async fn first_paid_order() -> String {
    let db = verified_db("probe").await;
    sqlx::query_scalar("SELECT min(order_id) FROM payments WHERE amount_cents > 0")
        .fetch_one(&mut db.conn().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_corrupted_payment_amount_fails_data_payment_amounts() {
    only_this_check_fails(
        "amount",
        "UPDATE payments SET amount_cents = amount_cents + 7 WHERE order_id = (SELECT min(order_id) FROM payments WHERE amount_cents > 0)",
        "data.payment_amounts",
        &[&first_paid_order().await],
    )
    .await;
}

#[tokio::test]
async fn a_lower_case_currency_fails_data_currency_codes() {
    // Order and payment together, so their amounts and currencies still agree.
    let order = first_paid_order().await;
    let payment: String = {
        let db = verified_db("probe2").await;
        sqlx::query_scalar("SELECT id FROM payments WHERE order_id = $1")
            .bind(&order)
            .fetch_one(&mut db.conn().await)
            .await
            .unwrap()
    };
    only_this_check_fails(
        "currency",
        &format!(
            "UPDATE orders SET currency = 'eur' WHERE id = '{order}';
             UPDATE payments SET currency = 'eur' WHERE order_id = '{order}'"
        ),
        "data.currency_codes",
        &[&format!("orders:{order}"), &format!("payments:{payment}")],
    )
    .await;
}

#[tokio::test]
async fn an_over_refunded_payment_fails_data_refunds_within_payment() {
    let db = verified_db("probe3").await;
    let payment: String = sqlx::query_scalar("SELECT payment_id FROM refunds LIMIT 1")
        .fetch_one(&mut db.conn().await)
        .await
        .unwrap();
    only_this_check_fails(
        "refund",
        &format!(
            "INSERT INTO refunds (payment_id, amount_cents, currency, status)
             SELECT id, amount_cents, currency, 'pending' FROM payments WHERE id = '{payment}'"
        ),
        "data.refunds_within_payment",
        &[&payment],
    )
    .await;
}

#[tokio::test]
async fn a_different_payment_intent_fails_data_payment_intent_ids() {
    only_this_check_fails(
        "pi",
        "UPDATE payments SET stripe_payment_intent_id = 'pi_other' WHERE order_id = (SELECT min(order_id) FROM payments WHERE amount_cents > 0)",
        "data.payment_intent_ids",
        &[&first_paid_order().await],
    )
    .await;
}

#[tokio::test]
async fn a_paid_order_with_a_failed_payment_fails_data_paid_orders_succeeded() {
    let db = verified_db("probe4").await;
    let order: String = sqlx::query_scalar(
        "SELECT min(o.id) FROM orders o JOIN payments p ON p.order_id = o.id WHERE o.status = 'PAID'",
    )
    .fetch_one(&mut db.conn().await)
    .await
    .unwrap();
    only_this_check_fails(
        "paid",
        &format!("UPDATE payments SET status = 'requires_payment_method', succeeded_at = NULL WHERE order_id = '{order}'"),
        "data.paid_orders_succeeded",
        &[&order],
    )
    .await;
}

#[tokio::test]
async fn an_item_left_without_snapshot_fails_data_items_missing_snapshot() {
    // A new item on an order that has no payment yet, written past step 029's triggers (which
    // snapshot the legacy application's items as they are written): a restore, a replica's apply.
    let db = verified_db("probe5").await;
    let order: String = sqlx::query_scalar(
        "SELECT min(o.id) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id)
           AND EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id)",
    )
    .fetch_one(&mut db.conn().await)
    .await
    .unwrap();
    only_this_check_fails(
        "item",
        &format!(
            "SET session_replication_role = replica;
             INSERT INTO order_items (id, order_id, product_id, quantity)
             VALUES ('late-item', '{order}', (SELECT min(id) FROM products WHERE price BETWEEN 1 AND 100), 1)"
        ),
        "data.items_missing_snapshot",
        &["late-item"],
    )
    .await;
}

#[tokio::test]
async fn a_duplicate_index_is_a_warning_and_does_not_fail_the_run() {
    let db = verified_db("dupidx").await;
    break_with(
        &db,
        "CREATE INDEX orders_status_copy_idx ON orders (status)",
    )
    .await;
    let (code, report) = verify_json(&db, &[]);
    assert_eq!(code, 0);
    let dup = check(&report, "schema.duplicate_indexes");
    assert_eq!(dup["status"], "warn");
    // The prefix-redundant legacy index stays reported until `paytool migrate cleanup`.
    assert_eq!(
        dup["sample"],
        serde_json::json!([
            "orders_status_idx = orders_status_copy_idx",
            "orders_user_id_idx ⊂ orders_user_id_created_at_idx"
        ])
    );
}

#[tokio::test]
async fn an_unindexed_foreign_key_is_a_warning() {
    let db = verified_db("fkidx").await;
    break_with(&db, "DROP INDEX refunds_payment_id_idx").await;
    let (_, report) = verify_json(&db, &[]);
    let fk = check(&report, "schema.foreign_keys_indexed");
    assert_eq!(fk["status"], "warn");
    assert_eq!(
        fk["sample"],
        serde_json::json!(["refunds.refunds_payment_id_fkey"])
    );
    assert_eq!(failing(&report), ["schema.indexes"]);
}

#[tokio::test]
async fn a_select_only_role_can_verify() {
    let db = verified_db("ro").await;
    break_with(
        &db,
        &format!(
            "CREATE ROLE verify_ro_{n} LOGIN PASSWORD 'ro-secret';
             GRANT CONNECT ON DATABASE {n} TO verify_ro_{n};
             GRANT USAGE ON SCHEMA public TO verify_ro_{n};
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO verify_ro_{n};
             ALTER ROLE verify_ro_{n} SET default_transaction_read_only = on",
            n = db.name
        ),
    )
    .await;
    let url = cluster().url(
        &format!("verify_ro_{}", db.name),
        Some("ro-secret"),
        &db.name,
    );
    let out = crate::harness::paytool()
        .env("DATABASE_URL", &url)
        .args(["verify", "constraints", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out.stdout)["summary"]["failed"], 0);
}

#[tokio::test]
async fn a_database_that_was_never_migrated_fails_schema_and_skips_data() {
    let db = cluster().fresh_db().await;
    db.seed(50, false).await;
    let (code, report) = verify_json(&db, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        check(&report, "schema.tables")["sample"],
        serde_json::json!(["payment_events", "payments", "refunds"])
    );
    assert_eq!(check(&report, "data.order_totals")["status"], "skipped");
}

#[tokio::test]
async fn bad_flags_and_unreachable_database() {
    crate::harness::paytool()
        .args(["verify", "constraints", "--only", "everything"])
        .assert()
        .code(2);
    crate::harness::paytool()
        .args(["migrate", "status", "--format", "junit"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--format junit is not available for migrate",
        ));
    crate::harness::paytool()
        .args(["verify", "constraints"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .assert()
        .code(3);
}

#[tokio::test]
async fn data_checks_alone_on_an_unmigrated_database_say_to_migrate_first() {
    let db = cluster().fresh_db().await;
    db.seed(300, false).await;
    let out = db
        .paytool()
        .args(["verify", "constraints", "--only", "data"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run paytool migrate first"), "{stderr}");
    assert!(
        !stderr.contains("does not exist"),
        "a raw SQL error: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn a_missing_table_fails_schema_tables_and_skips_the_data_checks() {
    only_this_check_fails(
        "notable",
        "DROP TABLE refunds",
        "schema.tables",
        &["refunds"],
    )
    .await;
}
