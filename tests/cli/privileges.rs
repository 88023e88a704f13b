//! Least privilege, as on a managed service: commands create nothing they do not need, a
//! missing privilege is named with the GRANT that gives it, and throttling reads every signal
//! the role may read.

use std::time::Duration;

use sqlx::PgConnection;

use crate::harness::{TestDb, cluster, json_run};

/// A role that is no superuser, not in pg_monitor, without CREATE on the database; it owns the
/// application's tables (it created them in public).
async fn shop_of_a_plain_role() -> (TestDb, PgConnection, String) {
    let db = cluster().fresh_db().await;
    let role = format!("plain_{}", db.name);
    let mut admin = db.conn().await;
    for statement in [
        format!("CREATE ROLE {role} LOGIN PASSWORD 'pw' NOSUPERUSER NOCREATEDB NOCREATEROLE"),
        format!("GRANT CREATE ON SCHEMA public TO {role}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let shop = TestDb {
        name: db.name.clone(),
        url: cluster().url(&role, Some("pw"), &db.name),
    };
    shop.seed(200, false).await;
    (shop, admin, role)
}

#[tokio::test]
async fn no_create_on_the_database_is_named_and_not_needed_once_paytools_schema_exists() {
    let (shop, mut admin, role) = shop_of_a_plain_role().await;
    let out = shop.paytool_std().args(["migrate"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("the role {role} lacks CREATE on the database"))
            && stderr.contains("GRANT CREATE ON DATABASE")
            && stderr.contains("CREATE SCHEMA paytool AUTHORIZATION"),
        "{stderr}"
    );
    let (schema, payments): (bool, bool) = sqlx::query_as(
        "SELECT to_regnamespace('paytool') IS NOT NULL, to_regclass('payments') IS NOT NULL",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(!schema && !payments, "nothing written before the refusal");

    // What the message proposes, done once by an owner: every command then runs.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA paytool AUTHORIZATION {role}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    for args in [
        vec!["migrate"],
        vec!["backfill", "payments", "--ignore-autovacuum"],
        vec!["verify", "constraints"],
        vec!["backfill", "status"],
    ] {
        let mut full = args.clone();
        full.extend(["--format", "json"]);
        let (code, report) = json_run(shop.paytool_std().args(&full).output().unwrap());
        assert_eq!(code, 0, "{args:?}: {report}");
    }
    let may_create: bool =
        sqlx::query_scalar("SELECT has_database_privilege($1, current_database(), 'CREATE')")
            .bind(&role)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(!may_create, "the role never needed CREATE on the database");
}

#[tokio::test]
async fn a_role_without_pg_monitor_still_holds_for_a_vacuum_it_cannot_see() {
    let (shop, mut admin, role) = shop_of_a_plain_role().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "GRANT CREATE ON DATABASE {} TO {role}",
        shop.name
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let (code, report) = json_run(
        shop.paytool_std()
            .args(["migrate", "--format", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "{report}");
    // A superuser's session holds the lock a vacuum holds on the first step's table. To this
    // role it is a session of another role, as an autovacuum worker is: its kind is hidden.
    let mut vacuum = crate::harness::TestDb {
        name: shop.name.clone(),
        url: cluster().url("postgres", None, &shop.name),
    }
    .conn()
    .await;
    sqlx::raw_sql("BEGIN; LOCK TABLE order_items IN SHARE UPDATE EXCLUSIVE MODE")
        .execute(&mut vacuum)
        .await
        .unwrap();
    let child = shop.spawn(&[
        "backfill",
        "payments",
        "--format",
        "json",
        "--throttle-min-hold",
        "1s",
        // A small shop: hold whatever the step's size.
        "--autovacuum-min-rows",
        "0",
    ]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let snapshotted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_items WHERE label IS NOT NULL")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(snapshotted, 0, "no batch commits while the vacuum runs");
    sqlx::raw_sql("COMMIT").execute(&mut vacuum).await.unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (code, report) = json_run(out);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        report["held"]["autovacuum"]["ms"].as_u64().unwrap_or(0) >= 1_500,
        "{report:#}"
    );
    // Said once, with the grant that would let it read the rest.
    assert_eq!(
        stderr
            .matches("throttling cannot read standbys' replay lag")
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("GRANT pg_monitor TO {role}")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("could not read the database's health"),
        "{stderr}"
    );

    // Holds in proportion: a catch-up of a few rows does not wait for the vacuum.
    sqlx::raw_sql(
        "INSERT INTO orders (id, user_id) SELECT 'late-' || g, (SELECT min(id) FROM users)
         FROM generate_series(1, 5) AS g",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE orders IN SHARE UPDATE EXCLUSIVE MODE")
        .execute(&mut vacuum)
        .await
        .unwrap();
    let out = shop
        .paytool_std()
        .args(["backfill", "payments", "--format", "json"])
        .output()
        .unwrap();
    let (code, report) = json_run(out);
    assert_eq!(code, 0, "{report:#}");
    assert!(report["held"].get("autovacuum").is_none(), "{report:#}");
    assert_eq!(report["steps"][1]["scanned"], 5, "{report:#}");
    sqlx::raw_sql("COMMIT").execute(&mut vacuum).await.unwrap();
}
