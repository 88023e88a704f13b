//! What keeps the legacy application working after the status swap (step 024's operators and
//! the enum type), as plan, verify, cleanup and down see it; and the whole flow in a schema
//! other than public, named the way Prisma's DATABASE_URL names it.

use sqlx::PgConnection;

use crate::harness::{
    TestDb, cluster, json, json_run, migrate_down, run_json, verify_check as check,
};

async fn migrated(orders: i64) -> TestDb {
    crate::harness::seeded_and_migrated(orders).await
}

/// The compat objects present: operators and functions by signature, and the enum type.
async fn compat_objects(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT 'operator ' || oprname || '(' || oprleft::regtype || ',' || oprright::regtype || ')'
           FROM pg_operator WHERE oprnamespace = quote_ident(current_schema())::regnamespace
         UNION ALL
         SELECT 'function ' || oid::regprocedure::text FROM pg_proc
          WHERE pronamespace = quote_ident(current_schema())::regnamespace AND proname LIKE 'order_status_legacy%'
         UNION ALL
         SELECT 'type ' || typname FROM pg_type
          WHERE typnamespace = quote_ident(current_schema())::regnamespace AND typname = 'order_status'
         ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

const ALL_COMPAT: [&str; 5] = [
    "function order_status_legacy_eq(text,order_status)",
    "function order_status_legacy_ne(text,order_status)",
    "operator <>(text,order_status)",
    "operator =(text,order_status)",
    "type order_status",
];

#[tokio::test]
async fn plan_shows_the_operators_before_the_swap_and_the_cleanup_apart() {
    let db = cluster().fresh_db().await;
    db.seed(200, false).await;
    let (code, plan) = run_json(&db, &["migrate", "plan"]);
    assert_eq!(code, 0);
    let pending: Vec<i64> = plan["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["version"].as_i64().unwrap())
        .collect();
    let at = |v: i64| pending.iter().position(|p| *p == v).unwrap();
    assert!(
        at(24) < at(22),
        "the operators come before the swap: {pending:?}"
    );
    let compat = &plan["pending"][at(24)];
    assert_eq!(compat["lock"], "none");
    assert_eq!(compat["blocks_writes"], false);
    assert!(
        compat["sql"]
            .as_str()
            .unwrap()
            .contains("CREATE OPERATOR =")
    );
    assert_eq!(plan["cleanup"][0]["name"], "025_drop_legacy_order_status");
    assert_eq!(
        plan["cleanup"][1]["kind"]["concurrent_drop"]["index"],
        "orders_user_id_idx"
    );
    assert!(
        plan["cleanup"][0]["sql"]
            .as_str()
            .unwrap()
            .contains("DROP TYPE IF EXISTS order_status")
    );

    assert_eq!(run_json(&db, &["migrate"]).0, 0);
    let (_, plan) = run_json(&db, &["migrate", "plan"]);
    assert_eq!(plan["pending"].as_array().unwrap().len(), 0);
    assert_eq!(plan["cleanup"].as_array().unwrap().len(), 2);
    let checks: Vec<&str> = plan["preflight"]["checks_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        ["order_status_still_used", "legacy_clients_connected"]
    );
}

#[tokio::test]
async fn status_exits_1_until_migrate_is_done_and_0_with_only_the_cleanup_pending() {
    let db = cluster().fresh_db().await;
    db.seed(200, false).await;
    let (code, status) = run_json(&db, &["migrate", "status"]);
    assert_eq!(code, 1);
    assert_eq!(status["pending"], 25);
    assert_eq!(run_json(&db, &["migrate"]).0, 0);
    let (code, status) = run_json(&db, &["migrate", "status"]);
    assert_eq!(code, 0);
    assert_eq!(
        (
            status["pending"].as_i64(),
            status["after_backfill_pending"].as_i64(),
            status["cleanup_pending"].as_i64()
        ),
        (Some(0), Some(3), Some(2))
    );
    let out = db.paytool().args(["migrate", "status"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("paytool migrate cleanup removes the legacy enum type")
    );
    assert_eq!(run_json(&db, &["migrate", "cleanup", "--watch", "0s"]).0, 0);
    let (code, status) = run_json(&db, &["migrate", "status"]);
    assert_eq!((code, status["cleanup_pending"].as_i64()), (0, Some(0)));
}

#[tokio::test]
async fn verify_names_each_missing_compat_object_and_any_left_after_cleanup() {
    let db = migrated(300).await;
    let mut conn = db.conn().await;
    assert_eq!(compat_objects(&mut conn).await, ALL_COMPAT);
    let (code, report) = run_json(&db, &["verify", "constraints", "--only", "schema"]);
    assert_eq!(code, 0, "{report}");

    // Each object dropped in turn (in a copy), each named by the check and only by it.
    let breakages = [
        (
            "DROP OPERATOR = (text, order_status)",
            "operator =(text,order_status)",
        ),
        (
            "DROP OPERATOR <> (text, order_status)",
            "operator <>(text,order_status)",
        ),
        (
            "CREATE OR REPLACE FUNCTION order_status_legacy_eq(TEXT, order_status) RETURNS BOOLEAN \
             LANGUAGE sql STABLE AS $$ SELECT true $$",
            "function order_status_legacy_eq",
        ),
        (
            "DROP FUNCTION order_status_legacy_ne(text, order_status) CASCADE",
            "function order_status_legacy_ne",
        ),
    ];
    drop(conn);
    for (i, (sql, named)) in breakages.iter().enumerate() {
        let copy = cluster().copy_of(&db, &format!("c{i}")).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut copy.conn().await)
            .await
            .unwrap();
        let (code, report) = run_json(&copy, &["verify", "constraints", "--only", "schema"]);
        assert_eq!(code, 1, "{sql}");
        let compat = check(&report, "schema.legacy_status_compat");
        assert_eq!(compat["status"], "fail", "{sql}");
        assert!(
            compat["sample"].to_string().contains(named),
            "{sql}: {}",
            compat["sample"]
        );
        assert_eq!(
            report["summary"]["failed"], 1,
            "{sql}: only this check fails"
        );
    }

    // The redundant orders_user_id_idx is reported until the cleanup drops it.
    assert_eq!(
        check(&report, "schema.duplicate_indexes")["sample"],
        serde_json::json!(["orders_user_id_idx ⊂ orders_user_id_created_at_idx"])
    );

    // After the cleanup none may be left: a stray operator on the way back is caught.
    assert_eq!(run_json(&db, &["migrate", "cleanup", "--watch", "0s"]).0, 0);
    let mut conn = db.conn().await;
    assert!(compat_objects(&mut conn).await.is_empty());
    let (code, report) = run_json(&db, &["verify", "constraints", "--only", "schema"]);
    assert_eq!(code, 0);
    assert_eq!(check(&report, "schema.duplicate_indexes")["status"], "pass");
    let (_, models) = run_json(&db, &["prisma", "schema"]);
    let models = models["schema"].as_str().unwrap();
    assert!(
        !models.contains("@@index([userId])\n")
            && models.contains("@@index([userId, createdAt(sort: Desc)])")
    );
    sqlx::raw_sql(
        "CREATE TYPE order_status AS ENUM ('PENDING');
         CREATE FUNCTION order_status_legacy_eq(TEXT, order_status) RETURNS BOOLEAN
             LANGUAGE sql STABLE AS $$ SELECT $1 = $2::TEXT $$;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let (code, report) = run_json(&db, &["verify", "constraints", "--only", "schema"]);
    assert_eq!(code, 1);
    assert_eq!(
        check(&report, "schema.legacy_status_compat")["status"],
        "fail"
    );
}

#[tokio::test]
async fn cleanup_refuses_while_another_object_uses_the_enum_and_changes_nothing() {
    let db = migrated(200).await;
    let mut conn = db.conn().await;
    sqlx::raw_sql("CREATE TABLE app_audit (id SERIAL PRIMARY KEY, old_status order_status)")
        .execute(&mut conn)
        .await
        .unwrap();
    let (code, report) = run_json(&db, &["migrate", "cleanup", "--watch", "0s"]);
    assert_eq!(code, 1);
    assert_eq!(report["outcome"], "refused_in_use");
    let finding = &report["preflight"]["findings"][0];
    assert_eq!(finding["check"], "order_status_still_used");
    assert!(
        finding["sample"][0].as_str().unwrap().contains("app_audit"),
        "{finding}"
    );
    assert_eq!(compat_objects(&mut conn).await, ALL_COMPAT);

    // Not before migrate either: the cleanup is the last thing, never the first.
    let fresh = cluster().fresh_db().await;
    fresh.seed(50, false).await;
    let out = fresh
        .paytool()
        .args(["migrate", "cleanup"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run paytool migrate first"));
}

#[tokio::test]
async fn down_removes_the_operators_and_brings_the_enum_back_even_after_cleanup() {
    for cleanup in [false, true] {
        let db = migrated(300).await;
        if cleanup {
            assert_eq!(run_json(&db, &["migrate", "cleanup", "--watch", "0s"]).0, 0);
        }
        migrate_down(&db);
        let mut conn = db.conn().await;
        assert_eq!(
            compat_objects(&mut conn).await,
            ["type order_status"],
            "cleanup={cleanup}"
        );
        let paid: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'PAID'::order_status")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(paid > 0);
    }
}

#[tokio::test]
async fn the_whole_flow_runs_in_the_schema_of_a_prisma_url() {
    let (db, mut conn) = crate::harness::shop_in_schema_shop(1_500).await;
    // pgbouncer=true is refused (tests/cli/pooler.rs): it says the URL goes through a
    // transaction pooler.
    let url = format!("{}?schema=Shop&connection_limit=5&pool_timeout=10", db.url);
    let paytool = |args: &[&str]| {
        let mut cmd = crate::harness::paytool();
        cmd.env("DATABASE_URL", &url).args(args);
        cmd.output().unwrap()
    };

    let out = paytool(&["-v", "migrate", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ignoring Prisma's own URL parameters: connection_limit, pool_timeout"),
        "{stderr}"
    );
    assert_eq!(json(&out.stdout)["outcome"], "applied");
    let out = paytool(&["backfill", "payments", "--format", "json"]);
    assert!(
        out.status.code().unwrap() <= 1,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM \"Shop\".payments")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(payments > 1_000, "{payments}");
    let (code, report) = json_run(paytool(&["verify", "constraints", "--format", "json"]));
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["summary"]["failed"], 0);
    assert_eq!(paytool(&["migrate", "status"]).status.code(), Some(0));
    assert_eq!(
        paytool(&["migrate", "cleanup", "--watch", "0s"])
            .status
            .code(),
        Some(0)
    );
    let in_public: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(in_public, 0, "nothing may be created in public");
    let out = paytool(&[
        "migrate",
        "down",
        "--i-understand-this-destroys-payment-data",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status_type: String = sqlx::query_scalar(
        "SELECT t.typnamespace::regnamespace || '.' || t.typname FROM pg_attribute a
         JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = '\"Shop\".orders'::regclass AND a.attname = 'status'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(status_type, "\"Shop\".order_status");

    let mut cmd = crate::harness::paytool();
    let out = cmd
        .env("DATABASE_URL", format!("{}?schema=nowhere", db.url))
        .args(["migrate", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"nowhere\" of ?schema= does not exist")
    );
}
