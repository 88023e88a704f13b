//! `paytool migrate down`: back to the legacy schema, in one transaction.

use std::time::Instant;

use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection};

use super::apply::{Attempt, retry_transient};
use super::{LockPolicy, MIGRATE_LOCK};
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
    // A backfill under way would lose its tables and checkpoints under it, and die promising a
    // checkpoint to resume from: down waits for it to stop (up to --wait), then says who runs.
    db::BACKFILL_LOCK.acquire(conn, policy.wait).await?;
    let destroyed_rows = count_payment_rows(conn).await?;
    let attempt = Attempt::Down {
        lock_timeout: policy.lock_timeout,
    };
    let (_, retries) = retry_transient(conn, policy, ("down", "orders"), attempt)
        .await
        .map_err(|e| e.context("migrate down did not complete; nothing was changed"))?;
    Ok(DownReport {
        database,
        destroyed_rows,
        retries,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

async fn count_payment_rows(conn: &mut PgConnection) -> anyhow::Result<Vec<(String, i64)>> {
    let mut counts = Vec::new();
    for table in PAYMENT_TABLES {
        if db::relation_exists(conn, table).await? {
            // Table names come from the constant list above, never from input.
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut *conn)
                .await?;
            counts.push((table.to_owned(), n));
        }
    }
    Ok(counts)
}
