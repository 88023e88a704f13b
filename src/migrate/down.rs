//! `paytool migrate down`: back to the legacy schema, in one transaction.

use std::time::Instant;

use serde::Serialize;
use sqlx::{Connection, PgConnection};

use super::steps::DOWN_SQL;
use super::{LockPolicy, MIGRATE_LOCK, MigrateError};
use crate::db;

#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    pub database: String,
    /// Rows of the payment tables destroyed, table by table (tables that did not exist are absent).
    pub destroyed_rows: Vec<(String, i64)>,
    pub retries: u32,
    pub duration_ms: u64,
}

const PAYMENT_TABLES: [&str; 3] = ["payments", "payment_events", "refunds"];

pub async fn down(
    conn: &mut PgConnection,
    database: String,
    policy: &LockPolicy,
) -> anyhow::Result<DownReport> {
    let started = Instant::now();
    db::require_legacy_schema(conn).await?;
    MIGRATE_LOCK.acquire(conn, policy.wait).await?;
    let destroyed_rows = count_payment_rows(conn).await?;
    let mut delays = policy.backoff();
    let mut retries = 0;
    loop {
        match attempt(conn, policy).await {
            Ok(()) => break,
            Err(err) if db::is_transient(&err) => {
                let Some(delay) = delays.next() else {
                    return Err(MigrateError::LockRetriesExhausted {
                        step: "down",
                        table: "orders",
                        attempts: retries + 1,
                        lock_timeout: policy.lock_timeout,
                        holders: "see pg_locks".to_owned(),
                    }
                    .into());
                };
                retries += 1;
                tracing::warn!(
                    "migrate down: lock timeout (attempt {retries}); retrying in {delay:?}"
                );
                tokio::time::sleep(delay).await;
            }
            Err(err) => {
                return Err(
                    anyhow::Error::new(err).context("migrate down failed; nothing was changed")
                );
            }
        }
    }
    Ok(DownReport {
        database,
        destroyed_rows,
        retries,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

async fn attempt(conn: &mut PgConnection, policy: &LockPolicy) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    // The enum conversion rewrites orders: no statement_timeout, but a bounded lock wait.
    sqlx::query(
        "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', '0', true)",
    )
    .bind(format!("{}ms", policy.lock_timeout.as_millis()))
    .execute(&mut *tx)
    .await?;
    sqlx::raw_sql(DOWN_SQL).execute(&mut *tx).await?;
    tx.commit().await
}

async fn count_payment_rows(conn: &mut PgConnection) -> anyhow::Result<Vec<(String, i64)>> {
    let mut counts = Vec::new();
    for table in PAYMENT_TABLES {
        if db::relation_exists(conn, table).await? {
            // Table names come from the constant list above, never from input.
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&mut *conn)
                .await?;
            counts.push((table.to_owned(), n));
        }
    }
    Ok(counts)
}
