//! Databases as production sets them up: roles that are no superuser or lack USAGE, Unix
//! sockets, passwords that need encoding, timeouts set by someone else, concurrent index
//! builds, partitioned tables.

use std::time::Duration;

use predicates::prelude::*;

use crate::harness::{cluster, paytool};

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
        .env_remove("USER")
        .env_remove("LOGNAME")
        .assert()
        .success();
    let (paused, by): (bool, String) =
        sqlx::query_as("SELECT paused, changed_by FROM paytool.backfill_control")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(paused);
    assert_eq!(by, role, "without a login name, the database role says who");
    owner
        .paytool()
        .args(["backfill", "resume"])
        .assert()
        .success();
    let paused: bool = sqlx::query_scalar("SELECT paused FROM paytool.backfill_control")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!paused);

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
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class WHERE relname IN ('payments', 'payment_events', 'refunds')
           AND relkind = 'r'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(left.is_empty(), "down removed the payment tables: {left:?}");
}
