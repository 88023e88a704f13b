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

/// The same shop, migrated by its role (granted CREATE on the database for paytool's schema).
async fn migrated_shop_of_a_plain_role() -> (TestDb, PgConnection, String) {
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
    (shop, admin, role)
}

/// A superuser's session holding `table` with the lock a vacuum holds, in an open transaction
/// (COMMIT it to release). To the shop's role it is a session of another role, as an
/// autovacuum worker is: its kind is hidden.
async fn held_by_a_superuser(shop: &TestDb, table: &str) -> PgConnection {
    let mut vacuum = TestDb {
        name: shop.name.clone(),
        url: cluster().url("postgres", None, &shop.name),
    }
    .conn()
    .await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE"
    )))
    .execute(&mut vacuum)
    .await
    .unwrap();
    vacuum
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
    let (shop, mut admin, role) = migrated_shop_of_a_plain_role().await;
    // A superuser's session holds the lock a vacuum holds on the first step's table. To this
    // role it is a session of another role, as an autovacuum worker is: its kind is hidden.
    let mut vacuum = held_by_a_superuser(&shop, "order_items").await;
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

/// Statistics after a rewrite: a table held by a session the role may not see (an autovacuum,
/// to a role without pg_read_all_stats) is left to autovacuum at once, without queueing an
/// ANALYZE behind it (which would have an autovacuum cancelled).
#[tokio::test]
async fn statistics_of_a_table_held_by_a_hidden_session_are_left_to_autovacuum() {
    let (shop, _admin, _role) = migrated_shop_of_a_plain_role().await;
    let mut vacuum = held_by_a_superuser(&shop, "payments").await;
    let out = shop
        .paytool_std()
        .args(["backfill", "payments", "-v", "--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (code, report) = json_run(out);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        report["steps"][1]["payments_written"].as_i64() > Some(0),
        "{report:#}"
    );
    assert!(
        stderr.contains(
            "a session this role may not see (autovacuum, or another role's maintenance) holds payments"
        ) && !stderr.contains("could not refresh the statistics of payments"),
        "{stderr}"
    );
    sqlx::raw_sql("COMMIT").execute(&mut vacuum).await.unwrap();
}

/// The application's role, granted only the legacy tables (no privilege on payments nor on
/// paytool's schema), edits carts: step 029's triggers, running as their owner, keep totals,
/// pending payments and the backfill's queue true all the same.
#[tokio::test]
async fn an_application_role_without_privileges_on_payments_still_keeps_them_true() {
    let db = crate::harness::seeded_and_migrated(300).await;
    let (code, report) = json_run(
        db.paytool_std()
            .args([
                "backfill",
                "payments",
                "--format",
                "json",
                "--ignore-autovacuum",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0, "{report}");
    let role = format!("app_{}", db.name);
    let mut admin = db.conn().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'pw';
         GRANT SELECT, INSERT, UPDATE, DELETE ON orders, order_items, products, users TO {role};"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let may: (bool, bool) = sqlx::query_as(
        "SELECT has_table_privilege($1, 'payments', 'UPDATE'), has_schema_privilege($1, 'paytool', 'USAGE')",
    )
    .bind(&role)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(may, (false, false));
    let order: String = sqlx::query_scalar(
        "SELECT o.id FROM orders o JOIN payments p ON p.order_id = o.id
         WHERE o.status = 'PENDING' AND p.status = 'requires_payment_method'
           AND (SELECT count(*) FROM order_items i WHERE i.order_id = o.id AND i.label IS NOT NULL) >= 2
           AND NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND i.label IS NULL)
         ORDER BY o.id LIMIT 1",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let app = TestDb {
        name: db.name.clone(),
        url: cluster().url(&role, Some("pw"), &db.name),
    };
    let mut conn = app.conn().await;
    for statement in [
        "UPDATE order_items SET quantity = quantity + 1
         WHERE id = (SELECT min(id) FROM order_items WHERE order_id = $1)",
        "DELETE FROM order_items WHERE id = (SELECT max(id) FROM order_items WHERE order_id = $1)",
        "INSERT INTO order_items (id, order_id, product_id, quantity)
         SELECT 'added-by-app', $1, (SELECT min(id) FROM products WHERE price BETWEEN 1 AND 100), 2",
        "INSERT INTO orders (id, user_id) SELECT 'new-by-app', (SELECT min(id) FROM users) WHERE $1 <> ''",
    ] {
        sqlx::query(statement)
            .bind(&order)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let (total, items_total, paid_amount): (i32, i64, i32) = sqlx::query_as(
        "SELECT o.amount_total_cents, (SELECT sum(subtotal_cents)::bigint FROM order_items WHERE order_id = o.id),
                p.amount_cents
         FROM orders o JOIN payments p ON p.order_id = o.id WHERE o.id = $1",
    )
    .bind(&order)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(total as i64, items_total);
    assert_eq!(paid_amount, total);
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM paytool.backfill_order_queue WHERE order_id IN ($1, 'new-by-app') AND state = 'pending'",
    )
    .bind(&order)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(queued, 2);
}

#[tokio::test]
async fn a_prisma_schema_the_role_may_not_use_is_named_as_such() {
    let (db, mut conn) = crate::harness::shop_in_schema_shop(20).await;
    let role = format!("nousage_{}", db.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'pw'"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let url = format!("{}?schema=Shop", cluster().url(&role, Some("pw"), &db.name));
    let out = crate::harness::paytool()
        .env("DATABASE_URL", url)
        .args(["migrate", "status"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("may not use the schema Shop") && stderr.contains("GRANT USAGE ON SCHEMA"),
        "{stderr}"
    );
}
