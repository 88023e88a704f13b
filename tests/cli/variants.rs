//! Legacy schemas that differ from paytool's own fixture the way real ones do (SPEC §2):
//! foreign-key actions as a hand-written schema has them, the application's extra columns and
//! indexes, a legacy index missing. Every command works on each, and verify fails on none of
//! what the application owns.

use crate::harness::{cluster, migrate_down, run_json, verify_check as check};

/// The six legacy foreign keys: (table, constraint, column, referenced table).
const LEGACY_FOREIGN_KEYS: [(&str, &str, &str, &str); 6] = [
    ("orders", "orders_user_id_fkey", "user_id", "users"),
    ("orders", "orders_machine_id_fkey", "machine_id", "machines"),
    ("stocks", "stocks_machine_id_fkey", "machine_id", "machines"),
    ("stocks", "stocks_product_id_fkey", "product_id", "products"),
    (
        "order_items",
        "order_items_order_id_fkey",
        "order_id",
        "orders",
    ),
    (
        "order_items",
        "order_items_product_id_fkey",
        "product_id",
        "products",
    ),
];

/// The six legacy foreign keys with other actions: `actions` replaces Prisma's
/// `ON UPDATE CASCADE ON DELETE …`.
fn foreign_keys_with(actions: &str) -> String {
    LEGACY_FOREIGN_KEYS
        .iter()
        .map(|(table, name, column, parent)| {
            format!(
                "ALTER TABLE {table} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} \
             FOREIGN KEY ({column}) REFERENCES {parent} (id) {actions};"
            )
        })
        .collect()
}

/// Seeds, reshapes the legacy schema with `variant`, then runs migrate, backfill, verify,
/// cleanup and down, asserting each; returns verify's report.
async fn whole_flow_on(variant: &str) -> serde_json::Value {
    let db = cluster().fresh_db().await;
    db.seed(800, false).await;
    let mut conn = db.conn().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(variant.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();

    let (code, report) = run_json(&db, &["migrate"]);
    assert_eq!(
        (code, report["outcome"].as_str()),
        (0, Some("applied")),
        "{variant}"
    );
    let (code, _) = run_json(&db, &["backfill", "payments"]);
    assert_eq!(code, 0, "{variant}");
    let (code, verify) = run_json(&db, &["verify", "constraints"]);
    assert_eq!(code, 0, "{variant}: {verify:#}");
    assert_eq!(verify["summary"]["failed"], 0);
    let (code, _) = run_json(&db, &["migrate", "cleanup", "--watch", "0s"]);
    assert_eq!(code, 0, "{variant}");
    migrate_down(&db);
    verify
}

#[tokio::test]
async fn foreign_keys_without_actions_or_with_delete_cascade_only_are_the_applications_business() {
    for actions in ["", "ON DELETE CASCADE"] {
        let verify = whole_flow_on(&foreign_keys_with(actions)).await;
        let note = check(&verify, "schema.application_objects");
        assert_eq!(note["status"], "note", "{actions}: {note}");
        assert_eq!(
            note["count"], 6,
            "{actions}: the six legacy foreign keys: {note}"
        );
        assert!(
            note["sample"][0]
                .as_str()
                .unwrap()
                .contains("(Prisma: FOREIGN KEY"),
            "{note}"
        );
        assert_eq!(check(&verify, "schema.constraints")["status"], "pass");
    }
}

#[tokio::test]
async fn the_applications_extra_columns_and_indexes_are_left_alone() {
    let verify = whole_flow_on(
        "ALTER TABLE orders ADD COLUMN coupon_code TEXT, ADD COLUMN channel VARCHAR(20) NOT NULL DEFAULT 'app';
         CREATE INDEX orders_coupon_code_idx ON orders (coupon_code);
         ALTER TABLE order_items ADD COLUMN note TEXT;
         CREATE INDEX order_items_order_id_product_id_idx ON order_items (order_id, product_id);",
    )
    .await;
    // Nothing of the application's differs from SPEC §2: extra objects are not differences.
    assert_eq!(
        check(&verify, "schema.application_objects")["status"],
        "pass"
    );
}

#[tokio::test]
async fn a_legacy_database_without_orders_status_idx_migrates_and_gets_it() {
    let verify = whole_flow_on("DROP INDEX orders_status_idx").await;
    assert_eq!(check(&verify, "schema.indexes")["status"], "pass");
}

#[tokio::test]
async fn a_changed_legacy_foreign_key_is_a_note_and_a_changed_paytool_one_a_failure() {
    let db = cluster().fresh_db().await;
    db.seed(300, false).await;
    let (code, _) = run_json(&db, &["migrate"]);
    assert_eq!(code, 0);
    let mut conn = db.conn().await;
    sqlx::raw_sql(
        "ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_fkey,
             ADD CONSTRAINT order_items_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id);
         ALTER TABLE payments DROP CONSTRAINT payments_order_id_fkey,
             ADD CONSTRAINT payments_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let (code, verify) = run_json(&db, &["verify", "constraints", "--only", "schema"]);
    assert_eq!(code, 1, "paytool's own foreign key changed: {verify:#}");
    let failed = check(&verify, "schema.constraints");
    assert_eq!(
        failed["sample"],
        serde_json::json!(["payments.payments_order_id_fkey"])
    );
    let note = check(&verify, "schema.application_objects");
    assert_eq!(note["status"], "note");
    assert_eq!(note["count"], 1);
    assert!(note["sample"][0].as_str().unwrap().starts_with("order_items.order_items_order_id_fkey: FOREIGN KEY (order_id) REFERENCES orders(id) (Prisma:"));
}

/// Every legacy id and reference column as `uuid` (Prisma `@db.Uuid`), foreign keys unchanged.
pub const UUID_IDS: &str = r#"
DO $$
DECLARE
    fk RECORD;
    col RECORD;
    recreate TEXT[] := '{}';
    statement TEXT;
BEGIN
    FOR fk IN SELECT conrelid::REGCLASS AS tbl, conname, pg_get_constraintdef(oid) AS def
              FROM pg_constraint WHERE contype = 'f' AND connamespace = current_schema()::REGNAMESPACE
    LOOP
        recreate := recreate || format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.tbl, fk.conname, fk.def);
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tbl, fk.conname);
    END LOOP;
    FOR col IN SELECT table_name, column_name FROM information_schema.columns
               WHERE table_schema = current_schema() AND data_type = 'text'
                 AND (column_name = 'id' OR column_name LIKE '%\_id')
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE uuid USING %I::uuid',
                       col.table_name, col.column_name, col.column_name);
    END LOOP;
    FOREACH statement IN ARRAY recreate LOOP
        EXECUTE statement;
    END LOOP;
END $$;
"#;

#[tokio::test]
async fn uuid_ids_give_payments_order_id_their_type() {
    let verify = whole_flow_on(UUID_IDS).await;
    assert_eq!(verify["id_type"], "uuid");
    assert_eq!(check(&verify, "schema.columns")["status"], "pass");
    // The application's uuid ids are what verify expects of it, not differences.
    assert_eq!(
        check(&verify, "schema.application_objects")["status"],
        "pass"
    );
}

#[tokio::test]
async fn on_uuid_ids_plan_says_so_and_backfill_catches_up_with_uuid_keys() {
    let db = cluster().fresh_db().await;
    db.seed(600, false).await;
    let mut conn = db.conn().await;
    sqlx::raw_sql(UUID_IDS).execute(&mut conn).await.unwrap();

    let (code, plan) = run_json(&db, &["migrate", "plan"]);
    assert_eq!(code, 0, "{plan:#}");
    assert_eq!(plan["id_type"], "uuid");
    let payment_tables = plan["pending"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["version"] == 23)
        .unwrap();
    assert!(
        payment_tables["sql"]
            .as_str()
            .unwrap()
            .contains("order_id UUID NOT NULL")
    );
    assert!(
        payment_tables["hazards"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h.as_str().unwrap().contains("orders.id is uuid")),
        "{payment_tables:#}"
    );

    // Small batches: many key ranges, each bound as uuid.
    let (code, _) = run_json(&db, &["migrate", "--batch-size", "50"]);
    assert_eq!(code, 0);
    let (code, status) = run_json(&db, &["migrate", "status"]);
    assert_eq!(code, 0, "{status:#}");
    let (code, first) = run_json(&db, &["backfill", "payments", "--batch-size", "40"]);
    assert_eq!(code, 0, "{first:#}");
    assert!(first["steps"][2]["changed"].as_i64().unwrap() > 500);
    let unresolved = first["steps"][0]["unresolved_by_reason"][0]["sample"][0]
        .as_str()
        .unwrap();
    assert!(uuid::Uuid::parse_str(unresolved).is_ok(), "{unresolved}");

    // An order the application writes afterwards, with its item.
    let order = "7d3c7f8e-3a55-4a0e-9c55-2d8f1c2b9a01";
    sqlx::query(
        "INSERT INTO orders (id, user_id, status) SELECT $1::uuid, id, 'PAID' FROM users LIMIT 1;",
    )
    .bind(order)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO order_items (id, order_id, product_id, quantity)
         SELECT gen_random_uuid(), $1::uuid, id, 3 FROM products WHERE price BETWEEN 1 AND 100 LIMIT 1",
    )
    .bind(order)
    .execute(&mut conn)
    .await
    .unwrap();
    let (code, again) = run_json(&db, &["backfill", "payments"]);
    assert_eq!(code, 0, "{again:#}");
    let changed: Vec<i64> = again["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["changed"].as_i64().unwrap())
        .collect();
    // The item took its snapshot in the application's own write (step 029's triggers); the
    // order, written PAID, keeps its total for the catch-up to make (the triggers never change
    // a paid order's total), which reads that one queued order and makes its payment.
    assert_eq!(changed, [0, 1, 1], "{again:#}");
    let (status, amount): (String, i32) = sqlx::query_as(
        "SELECT p.status, p.amount_cents FROM payments p JOIN orders o ON o.id = p.order_id
         WHERE o.id = $1::uuid AND p.amount_cents = o.amount_total_cents",
    )
    .bind(order)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(status, "succeeded");
    assert!(amount > 0);

    // Prisma: the upgraded models keep @db.Uuid, and payments.order_id has it too.
    let out = db.paytool().args(["prisma", "schema"]).output().unwrap();
    assert!(out.status.success());
    let schema = String::from_utf8(out.stdout).unwrap();
    let payment_order_id = schema
        .lines()
        .skip_while(|l| !l.starts_with("model Payment "))
        .find(|l| l.trim_start().starts_with("orderId"))
        .unwrap();
    assert!(payment_order_id.ends_with("@db.Uuid"), "{payment_order_id}");
    // A baseline with nothing that creates the application's uuid tables is refused.
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    let out = db
        .paytool()
        .args(["prisma", "baseline", "--migrations-dir"])
        .arg(&migrations)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ids are uuid"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
