//! Legacy schemas that differ from paytool's own fixture the way real ones do (SPEC §2):
//! foreign-key actions as a hand-written schema has them, the application's extra columns and
//! indexes, a legacy index missing. Every command works on each, and verify fails on none of
//! what the application owns.

use crate::harness::{cluster, migrate_down, run_json, verify_check as check};

/// The six legacy foreign keys with other actions: `actions` replaces Prisma's
/// `ON UPDATE CASCADE ON DELETE …`.
fn foreign_keys_with(actions: &str) -> String {
    [
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
    ]
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
    sqlx::raw_sql(variant).execute(&mut conn).await.unwrap();

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
