//! The connections production really has (issue 12, first part): a streaming standby, a role
//! without USAGE on the schema, a Unix-socket URL, a password that needs percent-encoding.

use std::time::{Duration, Instant};

use paytool::demo::cluster::TempCluster;
use predicates::prelude::*;
use sqlx::{Connection, PgConnection};

use crate::harness::{cluster, paytool};

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
async fn a_role_without_usage_on_the_schema_is_told_so() {
    let db = crate::harness::seeded_and_migrated(20).await;
    let mut conn = db.conn().await;
    let role = format!("nousage_{}", db.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'pw'; REVOKE ALL ON SCHEMA public FROM PUBLIC;"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    paytool()
        .env("DATABASE_URL", cluster().url(&role, Some("pw"), &db.name))
        .args(["verify", "constraints"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains(format!(
                "the role {role} may not use the schema public that holds the legacy tables"
            ))
            .and(predicate::str::contains(format!(
                "GRANT USAGE ON SCHEMA public TO {role}"
            ))),
        );
}

#[tokio::test]
async fn a_unix_socket_directory_url_connects() {
    let db = crate::harness::seeded_and_migrated(20).await;
    let url = format!(
        "postgres://postgres@/{}?host={}&port={}",
        db.name,
        cluster().socket_dir.display(),
        cluster().port
    );
    paytool()
        .env("DATABASE_URL", url)
        .args(["verify", "constraints", "--only", "schema"])
        .assert()
        .success();
}

#[test]
fn a_password_with_raw_at_signs_is_refused_before_any_lookup_and_never_printed() {
    paytool()
        .env("DATABASE_URL", "postgres://pwuser:Pw0rd@XY/Z:1@host/db")
        .args(["migrate", "status"])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(
            predicate::str::contains("percent-encode")
                .and(predicate::str::contains("Pw0rd").not())
                .and(predicate::str::contains("XY").not()),
        );
}

#[test]
fn limits_are_checked_when_the_command_line_is_parsed() {
    for args in [
        vec!["migrate", "--lock-timeout", "0"],
        vec!["migrate", "--lock-timeout", "1000000000h"],
        vec!["backfill", "payments", "--lock-timeout", "0ms"],
        vec!["reconcile", "--request-timeout", "0s"],
        vec!["reconcile", "--stripe-base-url", "not-a-url"],
        vec!["backfill", "events", "--stripe-base-url", "ftp://x/"],
    ] {
        paytool()
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")
            .args(&args)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains("must be between")
                    .or(predicate::str::contains("not an http(s) URL")),
            );
    }
}

#[tokio::test]
async fn timeouts_set_by_someone_else_do_not_cut_paytools_work_and_plan_says_so() {
    let db = cluster().fresh_db().await;
    let mut admin = cluster().admin().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {0} SET statement_timeout = '50ms';
         ALTER DATABASE {0} SET idle_in_transaction_session_timeout = '100ms';",
        db.name
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    // A plain session has them: a 200 ms statement is cancelled.
    let mut plain = db.conn().await;
    let cut = sqlx::query("SELECT pg_sleep(0.2)")
        .execute(&mut plain)
        .await;
    assert!(
        cut.unwrap_err()
            .to_string()
            .contains("canceling statement due to statement timeout")
    );
    for args in [
        vec!["seed", "--orders", "3000", "--no-stock-anomalies", "-q"],
        vec!["migrate", "-q"],
        vec!["backfill", "payments", "--dry-run", "-q"],
        vec!["backfill", "payments", "-q"],
        vec!["verify", "constraints", "-q"],
    ] {
        db.paytool().args(&args).assert().success();
    }
    let (code, plan) = crate::harness::run_json(&db, &["migrate", "plan"]);
    assert_eq!(code, 0);
    assert_eq!(
        plan["overridden_timeouts"],
        serde_json::json!([
            ["idle_in_transaction_session_timeout", "100ms"],
            ["statement_timeout", "50ms"]
        ])
    );
    db.paytool()
        .args(["migrate", "plan", "--no-sql"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "This role or database sets idle_in_transaction_session_timeout = 100ms, statement_timeout = 50ms",
        ));
}

#[tokio::test]
async fn a_concurrent_build_names_the_transaction_it_waits_for_and_gives_up_resumably() {
    let db = cluster().fresh_db().await;
    db.paytool()
        .args(["seed", "--orders", "200", "--no-stock-anomalies", "-q"])
        .assert()
        .success();
    // Someone's forgotten transaction, holding a snapshot.
    let mut forgotten = db.conn().await;
    sqlx::raw_sql(
        "SET application_name = 'forgotten-psql';
         BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1 FROM products LIMIT 1;",
    )
    .execute(&mut forgotten)
    .await
    .unwrap();
    let forgotten_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut forgotten)
        .await
        .unwrap();
    let child = db.spawn(&["migrate", "--max-wait", "6s"]);
    // While it waits, `migrate status` says the step is running, not interrupted.
    let mut conn = db.conn().await;
    crate::harness::wait_for(
        &mut conn,
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE $1 AND application_name = 'paytool'",
        "%INDEX CONCURRENTLY%",
        "the concurrent build started",
        Duration::from_secs(30),
    )
    .await;
    let status = db
        .paytool()
        .args(["migrate", "status", "--format", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let states: Vec<&str> = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"running") && !states.contains(&"interrupted"),
        "{status:#}"
    );
    assert!(
        status["running"].as_str().unwrap().contains("paytool pid"),
        "{status:#}"
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let named = format!("pid {forgotten_pid} (forgotten-psql, idle in transaction");
    assert!(
        stderr.contains("for older transactions to end, as it must") && stderr.contains(&named),
        "the wait is said while it lasts: {stderr}"
    );
    assert!(
        stderr.contains("longer than --max-wait") && stderr.contains("run paytool migrate again"),
        "{stderr}"
    );
    // The session ends; the next run finishes the job.
    sqlx::raw_sql("COMMIT")
        .execute(&mut forgotten)
        .await
        .unwrap();
    db.paytool().args(["migrate", "-q"]).assert().success();
    db.paytool()
        .args(["verify", "constraints", "--only", "schema", "-q"])
        .assert()
        .success();
}

#[tokio::test]
async fn a_partitioned_legacy_table_is_refused_before_any_step() {
    let db = cluster().fresh_db().await;
    let mut conn = db.conn().await;
    sqlx::raw_sql(
        "CREATE TABLE users (id text PRIMARY KEY);
         CREATE TABLE machines (id text PRIMARY KEY);
         CREATE TABLE products (id text PRIMARY KEY);
         CREATE TABLE stocks (id text PRIMARY KEY);
         CREATE TABLE orders (id text, created_at timestamp(3) NOT NULL) PARTITION BY RANGE (created_at);
         CREATE TABLE orders_2026 PARTITION OF orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         CREATE TABLE order_items (id text PRIMARY KEY);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for args in [vec!["migrate", "plan"], vec!["migrate"]] {
        db.paytool()
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "orders is partitioned here: paytool migrate does not handle partitioned tables yet",
            ));
    }
    let history: bool = sqlx::query_scalar("SELECT to_regclass('paytool.schema_history') IS NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(history, "nothing was written");
}

/// Rows the backfill has committed so far: snapshots taken plus payments made.
async fn committed(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM order_items WHERE label IS NOT NULL)
              + (SELECT count(*) FROM payments)",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

/// The held run ended by itself with every payment made; returns how many.
async fn assert_finished_by_itself(conn: &mut PgConnection, report: &serde_json::Value) -> i64 {
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(conn)
        .await
        .unwrap();
    assert_eq!(
        report["steps"][2]["changed"].as_i64().unwrap(),
        payments,
        "it finished by itself: {report:#}"
    );
    payments
}

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
    assert_eq!(committed(&mut conn).await, 0, "no batch commits while held");
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
    assert_finished_by_itself(&mut conn, &report).await;
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
    assert_finished_by_itself(&mut conn, &report).await;
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
    let mut before = committed(&mut main).await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = committed(&mut main).await;
        if now == before {
            break;
        }
        before = now;
        assert!(Instant::now() < deadline, "the backfill never held");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        committed(&mut main).await,
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
    assert!(assert_finished_by_itself(&mut main, &report).await > 2_000);
}

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
    crate::harness::wait_for(
        &mut conn,
        "SELECT rows_done > 0 FROM paytool.backfill_workers WHERE step = $1",
        "items",
        "the worker has done a batch",
        Duration::from_secs(30),
    )
    .await;
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
    assert_eq!(crate::harness::run_json(&db, &["backfill", "pause"]).0, 0);
    crate::harness::wait_for(
        &mut conn,
        "SELECT held LIKE 'paused by %' FROM paytool.backfill_workers WHERE step = $1",
        "items",
        "the worker says it is paused",
        Duration::from_secs(10),
    )
    .await;
    let before = committed(&mut conn).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        committed(&mut conn).await,
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
    assert!(assert_finished_by_itself(&mut conn, &report).await > 0);
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

/// As on a managed service: the database and every table belong to a role that is no
/// superuser, may not create databases or roles and is not in pg_monitor; it runs the whole flow.
#[tokio::test]
async fn an_owner_that_is_no_superuser_runs_every_command() {
    let db = cluster().fresh_db().await;
    let role = format!("owner_{}", db.name);
    let mut admin = db.conn().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'pw' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
         ALTER DATABASE {0} OWNER TO {role};",
        db.name
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let owner = crate::harness::TestDb {
        name: db.name.clone(),
        url: cluster().url(&role, Some("pw"), &db.name),
    };
    // The application's tables are the owner's: it created them.
    owner.seed(300, false).await;
    drop(admin);
    let before = cluster().copy_of(&owner, "before").await;
    let run = |args: &[&str]| crate::harness::run_json(&owner, args);

    let (code, report) = run(&["migrate"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["outcome"], "applied");
    let (code, report) = run(&["backfill", "payments"]);
    assert_eq!(code, 0, "{report}");
    let mut conn = owner.conn().await;
    // Row by row what a superuser's run makes of the same data.
    let reference = cluster().copy_of(&before, "ref").await;
    reference
        .paytool()
        .args(["migrate", "-q"])
        .assert()
        .success();
    reference
        .paytool()
        .args(["backfill", "payments", "-q"])
        .assert()
        .success();
    assert_eq!(
        crate::harness::backfilled_digest(&mut conn).await,
        crate::harness::backfilled_digest(&mut reference.conn().await).await
    );
    let (code, report) = run(&["verify", "constraints"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["summary"]["failed"], 0);
    owner
        .paytool()
        .args(["migrate", "status"])
        .assert()
        .success();
    owner
        .paytool()
        .args(["backfill", "pause"])
        .assert()
        .success();
    owner
        .paytool()
        .args(["backfill", "resume"])
        .assert()
        .success();

    // reconcile --apply writes its repair and its audit row as the owner.
    sqlx::raw_sql(
        "UPDATE orders SET created_at = '2025-06-01';
         INSERT INTO orders (id, user_id, status, amount_total_cents, currency, stripe_payment_intent_id, created_at)
         SELECT 'o-managed', min(id), 'PENDING', 1000, 'EUR', 'pi_managed', '2026-01-09 10:00' FROM users;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let sim = paytool::stripe_sim::StripeSim::start("sk_test_managed").unwrap();
    sim.add_payment_intent(paytool::stripe_sim::SimPaymentIntent {
        id: "pi_managed".into(),
        amount: 1000,
        currency: "eur".into(),
        status: "succeeded".into(),
        created: 1_768_000_000,
        order_id: Some("o-managed".into()),
        charge: Some(("ch_managed".into(), 1_768_000_060)),
        last_error: None,
    });
    let (code, report) = crate::harness::json_run(
        owner
            .paytool()
            .env("STRIPE_SECRET_KEY", "sk_test_managed")
            .args(["reconcile", "--apply", "--format", "json"])
            .args(["--since", "2026-01-01", "--until", "2026-01-31"])
            .args(["--stripe-base-url", &sim.base_url()])
            .output()
            .unwrap(),
    );
    assert_eq!(code, 1, "{report}");
    let status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = 'o-managed'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(status, "PAID", "{report}");
    assert_eq!(sim.mutations(), 0);

    owner
        .paytool()
        .args(["migrate", "cleanup", "--watch", "0s"])
        .assert()
        .success();
    let not_owned: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('public', 'paytool') AND c.relowner <> '{role}'::regrole"
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(not_owned, 0, "everything paytool made is the owner's");
    owner
        .paytool()
        .args([
            "migrate",
            "down",
            "--i-understand-this-destroys-payment-data",
        ])
        .assert()
        .success();
}
