//! `paytool seed`: the legacy schema of SPEC §2 filled with realistic dirty data, for tests,
//! benchmarks and the demo. Deterministic: the same --orders gives the same ids and values
//! (timestamps are relative to now).

use std::time::Instant;

use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use thiserror::Error;

use crate::db::{self, LEGACY_TABLES};
use crate::exit;

pub const LEGACY_SCHEMA_SQL: &str = include_str!("../../sql/fixtures/legacy_schema.sql");

#[derive(Debug, Error)]
pub enum SeedError {
    #[error(
        "this database already has tables of the legacy schema ({0}); seed only fills an empty database \
         (create one with createdb)"
    )]
    NotEmpty(String),
}

impl SeedError {
    pub fn exit_code(&self) -> u8 {
        exit::USAGE
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SeedOptions {
    pub orders: i64,
    /// Negative stock quantities and duplicate machine slots (the migrate preflight refuses them).
    pub stock_anomalies: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    pub database: String,
    pub rows: Vec<(String, i64)>,
    pub stock_anomalies: bool,
    pub duration_ms: u64,
}

// $1 = number of orders everywhere, so the data of each table scales with it.
const USERS_SQL: &str = "
INSERT INTO users (id, email, name, created_at)
SELECT md5('user-' || g)::uuid::text,
       'user' || g || '@example.com',
       (ARRAY['Zoë Martin', 'José Núñez', 'Ольга Петрова', '李小龍', 'Chloé O''Brien', 'Ahmed 🚀 Ali', NULL])[1 + g % 7],
       (now() AT TIME ZONE 'UTC')::timestamp(3) - (g % 400) * interval '1 day'
FROM generate_series(1, greatest(10, $1 / 10)) AS g";

const MACHINES_SQL: &str = "
INSERT INTO machines (id, name, location)
SELECT md5('machine-' || g)::uuid::text,
       'VM-' || lpad(g::text, 5, '0'),
       (ARRAY['Gare de Lyon, Paris', 'Hauptbahnhof Zürich', 'Bâtiment B — 2ᵉ étage', NULL])[1 + g % 4]
FROM generate_series(1, greatest(5, $1 / 500)) AS g";

// Product 1's price does not fit an INTEGER number of cents: its items cannot be snapshotted.
const PRODUCTS_SQL: &str = "
INSERT INTO products (id, name, price, active)
SELECT md5('product-' || g)::uuid::text,
       (ARRAY['Café crème', 'Thé glacé pêche', 'Eau pétillante', 'Bretzel', 'Chips paprika',
              'Barre chocolat', '抹茶ラテ', 'Limonade 🍋', 'Jus d''orange', 'Sandwich jambon-beurre'])[1 + g % 10]
           || ' #' || g,
       CASE WHEN g = 1 THEN 99999999.99 ELSE round(0.5 + (g * 37 % 950) / 100.0, 2) END,
       g % 17 <> 0
FROM generate_series(1, 200) AS g";

const STOCKS_SQL: &str = "
INSERT INTO stocks (id, machine_id, product_id, slot_number, quantity)
SELECT md5('stock-' || m || '-' || s)::uuid::text,
       md5('machine-' || m)::uuid::text,
       md5('product-' || (2 + (m * 10 + s) % 199))::uuid::text,
       s,
       CASE WHEN $2 AND m % 7 = 1 AND s = 4 THEN -2 ELSE (m * 7 + s * 3) % 21 END
FROM generate_series(1, greatest(5, $1 / 500)) AS m, generate_series(1, 10) AS s";

// A second stocks row for slot 5 of some machines: what the UNIQUE (machine_id, slot_number) refuses.
const DUPLICATE_SLOTS_SQL: &str = "
INSERT INTO stocks (id, machine_id, product_id, slot_number, quantity)
SELECT md5('stock-dup-' || m)::uuid::text, md5('machine-' || m)::uuid::text,
       md5('product-' || (3 + m % 150))::uuid::text, 5, 4
FROM generate_series(1, greatest(5, $1 / 500)) AS m
WHERE $2 AND m % 11 = 2";

const ORDERS_SQL: &str = "
INSERT INTO orders (id, user_id, machine_id, status, created_at, updated_at)
SELECT md5('order-' || g)::uuid::text,
       md5('user-' || (1 + (g * 7919) % greatest(10, $1 / 10)))::uuid::text,
       CASE WHEN g % 20 = 0 THEN NULL ELSE md5('machine-' || (1 + (g * 31) % greatest(5, $1 / 500)))::uuid::text END,
       (CASE WHEN g % 100 < 70 THEN 'PAID' WHEN g % 100 < 80 THEN 'PENDING' WHEN g % 100 < 87 THEN 'FAILED'
             WHEN g % 100 < 95 THEN 'CANCELLED' ELSE 'REFUNDED' END)::order_status,
       t.created_at,
       t.created_at + interval '2 minutes'
FROM generate_series(1, $1) AS g,
     LATERAL (SELECT (now() AT TIME ZONE 'UTC')::timestamp(3)
                     - ((g * 7727) % (90 * 24 * 3600)) * interval '1 second' AS created_at) AS t";

// ~2 items per order; 2% of orders have none; ~1% of items lost their product (deleted:
// product_id NULL); a few have a quantity whose subtotal overflows INTEGER cents.
const ORDER_ITEMS_SQL: &str = "
INSERT INTO order_items (id, order_id, product_id, quantity)
SELECT md5('item-' || g || '-' || k)::uuid::text,
       md5('order-' || g)::uuid::text,
       CASE WHEN (g + k) % 97 = 0 THEN NULL
            WHEN (g * k) % 100003 = 1 THEN md5('product-1')::uuid::text
            ELSE md5('product-' || (2 + (g * 13 + k * 7) % 199))::uuid::text END,
       CASE WHEN (g + k) % 49999 = 0 THEN 100000000 ELSE 1 + (g + k) % 3 END
FROM generate_series(1, $1) AS g
CROSS JOIN LATERAL generate_series(1, CASE WHEN g % 50 = 0 THEN 0 ELSE 1 + (g * 7) % 3 END) AS k";

/// `paytool seed`: on the primary at `url`.
pub async fn run(url: &db::DatabaseUrl, options: SeedOptions) -> anyhow::Result<SeedReport> {
    let mut conn = db::connect(url).await?;
    db::require_primary(&mut conn, url, "seed").await?;
    seed(&mut conn, url.redacted().to_owned(), options).await
}

pub async fn seed(
    conn: &mut PgConnection,
    database: String,
    options: SeedOptions,
) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    let missing = db::missing_legacy_tables(conn).await?;
    if missing.len() < LEGACY_TABLES.len() {
        let present: Vec<&str> = LEGACY_TABLES
            .iter()
            .copied()
            .filter(|t| !missing.iter().any(|m| m == t))
            .collect();
        return Err(SeedError::NotEmpty(present.join(", ")).into());
    }
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(LEGACY_SCHEMA_SQL).execute(&mut *tx).await?;
    for (what, sql) in [
        ("users", USERS_SQL),
        ("machines", MACHINES_SQL),
        ("products", PRODUCTS_SQL),
        ("stocks", STOCKS_SQL),
        ("stocks", DUPLICATE_SLOTS_SQL),
        ("orders", ORDERS_SQL),
        ("order_items", ORDER_ITEMS_SQL),
    ] {
        tracing::info!("seeding {what}");
        sqlx::query(sql)
            .bind(options.orders)
            .bind(options.stock_anomalies)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    // Planner statistics, so that `migrate plan` can estimate rows at once.
    sqlx::raw_sql("ANALYZE users, machines, products, stocks, orders, order_items")
        .execute(&mut *conn)
        .await?;
    let mut rows = Vec::new();
    for table in LEGACY_TABLES {
        // Table names come from the constant list, never from input.
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut *conn)
            .await?;
        rows.push((table.to_owned(), n));
    }
    Ok(SeedReport {
        database,
        rows,
        stock_anomalies: options.stock_anomalies,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
