//! `paytool migrate` against a real PostgreSQL: schema, data, concurrency, locks, kills, rollback.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use predicates::prelude::*;
use sqlx::{Connection, PgConnection};

use crate::harness::{TestDb, catalog_snapshot, cluster, json, legacy_data_digest, wait_for};

/// Steps of `paytool migrate` (the cleanup step runs only with `migrate cleanup`).
/// The steps `paytool migrate` applies (27 and 28 are built by the backfill, 25 and 26 by the
/// cleanup).
const STEPS: usize = 25;

async fn history_states(conn: &mut PgConnection) -> Vec<(i32, String)> {
    sqlx::query_as("SELECT version, state FROM paytool.schema_history ORDER BY version")
        .fetch_all(conn)
        .await
        .expect("history")
}

async fn status_values(conn: &mut PgConnection) -> Vec<(String, String)> {
    sqlx::query_as("SELECT id, status::text FROM orders ORDER BY id")
        .fetch_all(conn)
        .await
        .unwrap()
}

fn migrate_json(db: &TestDb) -> serde_json::Value {
    let (code, report) = crate::harness::run_json(db, &["migrate"]);
    assert_eq!(code, 0, "migrate found problems: {report:#}");
    report
}

#[tokio::test]
async fn migrate_reaches_the_target_schema_and_keeps_every_row() {
    let db = cluster().fresh_db().await;
    db.seed(3_000, false).await;
    let mut conn = db.conn().await;
    let data_before = legacy_data_digest(&mut conn).await;
    let statuses_before = status_values(&mut conn).await;

    let report = migrate_json(&db);
    assert_eq!(report["outcome"], "applied");
    assert_eq!(report["steps"].as_array().unwrap().len(), STEPS);
    let shadow_copy = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "batched")
        .unwrap();
    assert_eq!(shadow_copy["rows_changed"], 3_000);

    let schema = catalog_snapshot(&mut conn).await;
    insta::assert_snapshot!("schema_after_migrate", schema);
    assert_eq!(
        legacy_data_digest(&mut conn).await,
        data_before,
        "a legacy value changed"
    );
    assert_eq!(
        status_values(&mut conn).await,
        statuses_before,
        "a status changed"
    );
    let status_type: String = sqlx::query_scalar(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(status_type, "character varying");
    assert!(
        history_states(&mut conn)
            .await
            .iter()
            .all(|(_, state)| state == "applied")
    );

    // A second run changes nothing and says so.
    let again = migrate_json(&db);
    assert_eq!(again["outcome"], "up_to_date");
    assert_eq!(again["steps"].as_array().unwrap().len(), 0);
    assert_eq!(catalog_snapshot(&mut conn).await, schema);
    db.paytool()
        .arg("migrate")
        .assert()
        .success()
        .stdout(predicate::str::contains("Nothing to do"));
}

#[tokio::test]
async fn the_application_keeps_working_on_the_migrated_schema() {
    let db = cluster().fresh_db().await;
    db.seed(200, false).await;
    migrate_json(&db);
    let mut conn = db.conn().await;
    // An insert the old application would send still works; status has its default.
    sqlx::raw_sql(
        "INSERT INTO orders (id, user_id) SELECT 'new-order', id FROM users LIMIT 1;
         UPDATE orders SET status = 'PAID' WHERE id = 'new-order';",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let (status, currency, total): (String, String, i32) = sqlx::query_as(
        "SELECT status, currency, amount_total_cents FROM orders WHERE id = 'new-order'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), currency.as_str(), total),
        ("PAID", "EUR", 0)
    );
    // A taken snapshot is immutable; the CHECK refuses an inconsistent one.
    let item: String = sqlx::query_scalar("SELECT id FROM order_items LIMIT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE order_items SET unit_price_cents = 150, label = 'Café', subtotal_cents = 150 * quantity WHERE id = $1")
        .bind(&item)
        .execute(&mut conn)
        .await
        .unwrap();
    let change = sqlx::query("UPDATE order_items SET unit_price_cents = 999, subtotal_cents = 999 * quantity WHERE id = $1")
        .bind(&item)
        .execute(&mut conn)
        .await;
    assert!(change.unwrap_err().to_string().contains("cannot change"));
    let bad = sqlx::raw_sql(
        "INSERT INTO order_items (id, order_id, quantity, unit_price_cents, label, subtotal_cents)
         VALUES ('bad-item', 'new-order', 2, 100, 'x', 150)",
    )
    .execute(&mut conn)
    .await;
    assert!(
        bad.unwrap_err()
            .to_string()
            .contains("order_items_snapshot_check")
    );
    // Negative stock and a second row for a slot are refused from now on.
    assert!(
        sqlx::raw_sql("UPDATE stocks SET quantity = -1")
            .execute(&mut conn)
            .await
            .is_err()
    );
    assert!(
        sqlx::raw_sql("INSERT INTO stocks (id, machine_id, product_id, slot_number) SELECT 'dup', machine_id, product_id, slot_number FROM stocks LIMIT 1")
            .execute(&mut conn)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn dirty_data_is_refused_with_the_offending_rows_and_nothing_changes() {
    let db = cluster().fresh_db().await;
    db.seed(2_000, true).await;
    let mut conn = db.conn().await;
    let schema_before = catalog_snapshot(&mut conn).await;
    let data_before = legacy_data_digest(&mut conn).await;

    let out = db
        .paytool()
        .args(["migrate", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out.stdout);
    assert_eq!(report["outcome"], "refused_dirty_data");
    let findings = report["preflight"]["findings"].as_array().unwrap();
    let checks: Vec<&str> = findings
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        ["stocks_negative_quantity", "stocks_duplicate_slot"]
    );

    // The seed makes machine 1's slot 4 negative and gives machine 2 a second slot 5.
    let negative_id: String = sqlx::query_scalar("SELECT id FROM stocks WHERE quantity < 0")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(findings[0]["offending_rows"], 1);
    assert!(
        findings[0]["sample"][0]
            .as_str()
            .unwrap()
            .contains(&negative_id)
    );
    assert_eq!(findings[1]["offending_rows"], 2);
    let duplicate_ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM stocks WHERE (machine_id, slot_number) IN
           (SELECT machine_id, slot_number FROM stocks GROUP BY 1, 2 HAVING count(*) > 1) ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for id in &duplicate_ids {
        assert!(
            findings[1]["sample"][0]
                .as_str()
                .unwrap()
                .contains(id.as_str())
        );
    }
    assert!(
        findings
            .iter()
            .all(|f| !f["fix"].as_str().unwrap().is_empty())
    );

    assert_eq!(
        catalog_snapshot(&mut conn).await,
        schema_before,
        "the schema changed"
    );
    assert_eq!(
        legacy_data_digest(&mut conn).await,
        data_before,
        "the data changed"
    );

    // The human report names the rows and how to fix them.
    db.paytool().arg("migrate").assert().code(1).stdout(
        predicate::str::contains(negative_id.as_str())
            .and(predicate::str::contains("Nothing was changed")),
    );

    // Once fixed, migrate goes through.
    sqlx::raw_sql(
        "UPDATE stocks SET quantity = 0 WHERE quantity < 0;
         DELETE FROM stocks s USING stocks t
         WHERE s.machine_id = t.machine_id AND s.slot_number = t.slot_number AND s.id > t.id;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(migrate_json(&db)["outcome"], "applied");
}

#[tokio::test]
async fn two_migrates_at_once_apply_everything_exactly_once() {
    let db = cluster().fresh_db().await;
    db.seed(20_000, false).await;
    let spawn = || db.spawn(&["migrate", "--format", "json"]);
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let mut outcomes: Vec<String> = outputs
        .iter()
        .map(|out| {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            json(&out.stdout)["outcome"].as_str().unwrap().to_owned()
        })
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["applied", "up_to_date"]);
    let waited = outputs.iter().any(|out| {
        String::from_utf8_lossy(&out.stderr).contains("another paytool migrate is running")
    });
    assert!(waited, "the second run should say it waited");
    let mut conn = db.conn().await;
    assert_eq!(history_states(&mut conn).await.len(), STEPS);
}

#[tokio::test]
async fn a_held_lock_is_retried_while_the_application_keeps_going() {
    let db = cluster().fresh_db().await;
    db.seed(2_000, false).await;
    // A long transaction that read orders: migrate's ACCESS EXCLUSIVE must wait for it.
    let mut holder = db.conn().await;
    sqlx::raw_sql("BEGIN; SELECT count(*) FROM orders;")
        .execute(&mut holder)
        .await
        .unwrap();

    let child = db.spawn(&["migrate", "--format", "json", "--lock-timeout", "200ms"]);

    // Meanwhile the application reads and writes orders. Were migrate's lock request left
    // queued, these would wait behind it; they must never wait a full second.
    let mut app = db.conn().await;
    sqlx::raw_sql("SET lock_timeout = '1s'")
        .execute(&mut app)
        .await
        .unwrap();
    let started = Instant::now();
    let mut queries = 0;
    while started.elapsed() < Duration::from_secs(3) {
        sqlx::raw_sql("SELECT count(*) FROM orders WHERE status::text = 'PAID'")
            .execute(&mut app)
            .await
            .expect("an application read waited for a lock for 1 s");
        sqlx::raw_sql(
            "UPDATE orders SET updated_at = updated_at WHERE id = (SELECT min(id) FROM orders)",
        )
        .execute(&mut app)
        .await
        .expect("an application write waited for a lock for 1 s");
        queries += 1;
    }
    assert!(
        queries > 10,
        "the application got only {queries} rounds through"
    );
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();

    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("retrying in"),
        "no lock retry was logged: {stderr}"
    );
    let report = json(&out.stdout);
    assert_eq!(report["outcome"], "applied");
    let retried = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "002_orders_payment_columns")
        .unwrap();
    assert!(retried["retries"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn lock_retries_give_up_with_a_clear_error_and_nothing_half_applied() {
    let db = cluster().fresh_db().await;
    db.seed(200, false).await;
    let mut holder = db.conn().await;
    sqlx::raw_sql("BEGIN; SELECT count(*) FROM orders;")
        .execute(&mut holder)
        .await
        .unwrap();
    db.paytool()
        .args(["migrate", "--lock-timeout", "50ms", "--lock-retries", "2"])
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("could not lock table orders")
                .and(predicate::str::contains("pid ")),
        );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    let mut conn = db.conn().await;
    // Step 1 (users) went through; step 2 did not, not even partly.
    let applied: Vec<(i32, String)> = history_states(&mut conn).await;
    assert_eq!(applied, [(1, "applied".to_owned())]);
    assert!(
        !paytool::db::column_exists(&mut conn, "orders", "amount_total_cents")
            .await
            .unwrap()
    );
    assert_eq!(migrate_json(&db)["outcome"], "applied");
}

async fn wait_for_invalid_index(conn: &mut PgConnection, index: &str) {
    let what = format!("the concurrent build of {index} started");
    let sql = "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)";
    wait_for(conn, sql, index, &what, Duration::from_secs(60)).await;
}

async fn wait_for_no_paytool_backend(conn: &mut PgConnection) {
    let sql = "SELECT count(*) = 0 FROM pg_stat_activity
               WHERE application_name = $1 AND datname = current_database()";
    let what = "the killed paytool's backend went away";
    wait_for(conn, sql, "paytool", what, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn killed_during_a_concurrent_index_build_then_rerun_finishes_the_job() {
    let db = cluster().fresh_db().await;
    db.seed(2_000, false).await;
    let index = "stocks_machine_id_slot_number_key";
    // A writer's open transaction on stocks: the concurrent build waits for it after
    // registering its (still INVALID) index.
    let mut writer = db.conn().await;
    sqlx::raw_sql(
        "BEGIN; UPDATE stocks SET quantity = quantity WHERE id = (SELECT min(id) FROM stocks);",
    )
    .execute(&mut writer)
    .await
    .unwrap();
    let mut child = db.spawn_quiet(&["migrate"]);
    let mut conn = db.conn().await;
    wait_for_invalid_index(&mut conn, index).await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut writer)
        .await
        .unwrap();
    wait_for_no_paytool_backend(&mut conn).await;

    let states = history_states(&mut conn).await;
    assert_eq!(
        states.last().unwrap(),
        &(7, "running".to_owned()),
        "{states:?}"
    );
    let status = db
        .paytool()
        .args(["migrate", "status", "--format", "json"])
        .output()
        .unwrap();
    // An interrupted step is unfinished work: status fails, as for a pending step.
    assert_eq!(status.status.code(), Some(1));
    assert_eq!(json(&status.stdout)["interrupted"], 1);

    let report = migrate_json(&db);
    assert_eq!(report["outcome"], "applied");
    assert_eq!(report["steps"][0]["name"], "007_stocks_slot_unique_index");
    let invalid: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_index WHERE NOT indisvalid OR NOT indisready")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(invalid, 0, "an INVALID index was left behind");
    assert!(
        history_states(&mut conn)
            .await
            .iter()
            .all(|(_, s)| s == "applied")
    );
    assert_eq!(history_states(&mut conn).await.len(), STEPS);
}

#[tokio::test]
async fn an_invalid_index_from_a_failed_build_is_dropped_and_rebuilt() {
    let db = cluster().fresh_db().await;
    db.seed(2_000, true).await;
    let mut conn = db.conn().await;
    // What a failed earlier attempt leaves: the build hits the duplicate slot and the index
    // stays behind, INVALID. IF NOT EXISTS alone would then skip it.
    let failed = sqlx::raw_sql("CREATE UNIQUE INDEX CONCURRENTLY stocks_machine_id_slot_number_key ON stocks (machine_id, slot_number)")
        .execute(&mut conn)
        .await;
    assert!(failed.is_err());
    sqlx::raw_sql(
        "UPDATE stocks SET quantity = 0 WHERE quantity < 0;
         DELETE FROM stocks s USING stocks t
         WHERE s.machine_id = t.machine_id AND s.slot_number = t.slot_number AND s.id > t.id;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let report = migrate_json(&db);
    let step = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "007_stocks_slot_unique_index")
        .unwrap();
    assert!(
        step["detail"]
            .as_str()
            .unwrap()
            .contains("dropped the INVALID"),
        "{step}"
    );
    let valid: bool = sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'stocks_machine_id_slot_number_key'::regclass")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(valid);
}

#[tokio::test]
async fn status_reports_drift_and_migrate_refuses_it() {
    let db = cluster().fresh_db().await;
    db.seed(100, false).await;
    migrate_json(&db);
    let mut conn = db.conn().await;
    sqlx::raw_sql(
        "UPDATE paytool.schema_history SET checksum = 'edited-by-hand' WHERE version = 5",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let out = db
        .paytool()
        .args(["migrate", "status", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let status = json(&out.stdout);
    assert_eq!(status["drift"], 1);
    assert_eq!(status["steps"][4]["state"], "drift");
    db.paytool()
        .arg("migrate")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("drift"));
}

#[tokio::test]
async fn plan_lists_every_pending_step_with_lock_rows_and_hazards() {
    let db = cluster().fresh_db().await;
    db.seed(1_000, true).await;
    let out = db
        .paytool()
        .args(["migrate", "plan", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let plan = json(&out.stdout);
    let steps = plan["pending"].as_array().unwrap();
    assert_eq!(steps.len(), STEPS);
    let copy = steps
        .iter()
        .find(|s| s["name"] == "018_orders_status_shadow_backfill")
        .unwrap();
    assert_eq!(copy["rows_touched_estimate"], 1_000);
    let index = steps
        .iter()
        .find(|s| s["name"] == "013_orders_user_id_created_at_index")
        .unwrap();
    assert_eq!(index["lock"], "SHARE UPDATE EXCLUSIVE");
    assert_eq!(index["blocks_writes"], false);
    assert_eq!(index["statement_timeout_ms"], serde_json::Value::Null);
    assert!(index["sql"].as_str().unwrap().contains("CONCURRENTLY"));
    let swap = steps
        .iter()
        .find(|s| s["name"] == "022_orders_status_swap")
        .unwrap();
    assert_eq!(swap["lock"], "ACCESS EXCLUSIVE");
    assert!(swap["hazards"].as_array().unwrap().len() >= 2);
    // The plan also runs the preflight, read-only.
    assert_eq!(plan["preflight"]["findings"].as_array().unwrap().len(), 2);
    let mut conn = db.conn().await;
    assert!(
        !paytool::db::relation_exists(&mut conn, "paytool.schema_history")
            .await
            .unwrap()
    );
    db.paytool()
        .args(["migrate", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ALTER TABLE orders"));
}

#[tokio::test]
async fn down_needs_the_explicit_flag_then_returns_to_the_legacy_schema() {
    let db = cluster().fresh_db().await;
    db.seed(1_000, false).await;
    let mut conn = db.conn().await;
    let legacy_schema = catalog_snapshot(&mut conn).await;
    let data_before = legacy_data_digest(&mut conn).await;
    migrate_json(&db);
    let migrated_schema = catalog_snapshot(&mut conn).await;
    sqlx::raw_sql("INSERT INTO payments (order_id, amount_cents, currency, status) SELECT id, 100, 'EUR', 'succeeded' FROM orders LIMIT 3")
        .execute(&mut conn)
        .await
        .unwrap();

    db.paytool()
        .args(["migrate", "down"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--i-understand-this-destroys-payment-data",
        ));
    assert_eq!(
        catalog_snapshot(&mut conn).await,
        migrated_schema,
        "down without the flag changed the schema"
    );

    let out = db
        .paytool()
        .args([
            "migrate",
            "down",
            "--i-understand-this-destroys-payment-data",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out.stdout);
    assert_eq!(
        report["destroyed_rows"][0],
        serde_json::json!(["payments", 3])
    );
    assert_eq!(catalog_snapshot(&mut conn).await, legacy_schema);
    assert_eq!(legacy_data_digest(&mut conn).await, data_before);
    // And it can go forward again.
    assert_eq!(migrate_json(&db)["outcome"], "applied");
}

#[tokio::test]
async fn app_writes_during_the_status_swap_are_not_lost() {
    let db = cluster().fresh_db().await;
    db.seed(20_000, false).await;
    let mut child = db.spawn(&["migrate", "--format", "json", "--batch-size", "500"]);
    // The application keeps inserting and paying orders during the whole run.
    let mut app = PgConnection::connect(&db.url).await.unwrap();
    let user: String = sqlx::query_scalar("SELECT id FROM users LIMIT 1")
        .fetch_one(&mut app)
        .await
        .unwrap();
    let mut inserted = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        let id = format!("live-{inserted}");
        sqlx::query("INSERT INTO orders (id, user_id, status) VALUES ($1, $2, 'FAILED')")
            .bind(&id)
            .bind(&user)
            .execute(&mut app)
            .await
            .unwrap();
        sqlx::query("UPDATE orders SET status = 'REFUNDED' WHERE id = $1")
            .bind(&id)
            .execute(&mut app)
            .await
            .unwrap();
        inserted += 1;
        assert!(Instant::now() < deadline);
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refunded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders WHERE id LIKE 'live-%' AND status = 'REFUNDED'",
    )
    .fetch_one(&mut app)
    .await
    .unwrap();
    assert_eq!(
        refunded, inserted,
        "an order written during the migration lost its status"
    );
    let nulls: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status IS NULL")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(nulls, 0);
}

#[tokio::test]
async fn a_lost_connection_during_the_batched_copy_is_finished_by_the_next_run() {
    let db = cluster().fresh_db().await;
    db.seed(20_000, false).await;
    let mut conn = db.conn().await;
    let statuses_before = status_values(&mut conn).await;
    let mut child = db.spawn(&["migrate", "--batch-size", "50"]);
    // Wait until some batches are done, then cut paytool's connection from the server side.
    // Until step 017 has added status_new the query fails, which counts as "not yet".
    let copy_under_way = "SELECT EXISTS (SELECT 1 FROM paytool.schema_history WHERE version = 18)
                           AND (SELECT count(*) FROM orders WHERE status_new IS NOT NULL) > $1::int";
    let what = "the batched copy passed 1,000 rows";
    wait_for(
        &mut conn,
        copy_under_way,
        "1000",
        what,
        Duration::from_secs(60),
    )
    .await;
    sqlx::raw_sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'paytool' AND datname = current_database()",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("018_orders_status_shadow_backfill"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
    let copied_so_far: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE status_new IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        copied_so_far < 20_000,
        "the run finished before the connection was cut"
    );

    let report = migrate_json(&db);
    assert_eq!(report["outcome"], "applied");
    assert_eq!(
        report["steps"][0]["name"],
        "018_orders_status_shadow_backfill"
    );
    assert_eq!(status_values(&mut conn).await, statuses_before);
    assert!(
        history_states(&mut conn)
            .await
            .iter()
            .all(|(_, s)| s == "applied")
    );
}
