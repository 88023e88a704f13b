//! paytool.backfill_checkpoints: the last committed key of each step.

use sqlx::{Connection, PgConnection};

pub const CHECKPOINTS_SQL: &str = include_str!("../../sql/internal/backfill_checkpoints.sql");

const LOAD_SQL: &str =
    "SELECT last_id, finished_at IS NOT NULL FROM paytool.backfill_checkpoints WHERE step = $1";

const START_SQL: &str = "
INSERT INTO paytool.backfill_checkpoints (step, last_id) VALUES ($1, '')
ON CONFLICT (step) DO UPDATE
SET last_id = '', scanned = 0, changed = 0, batches = 0, started_at = now(), updated_at = now(), finished_at = NULL";

const ADVANCE_SQL: &str = "
UPDATE paytool.backfill_checkpoints
SET last_id = $2, scanned = scanned + $3, changed = changed + $4, batches = batches + 1, updated_at = now()
WHERE step = $1";

const FINISH_SQL: &str = "UPDATE paytool.backfill_checkpoints SET finished_at = now(), updated_at = now() WHERE step = $1";

const PAYMENT_QUEUE_SQL: &str = include_str!("../../sql/internal/backfill_payment_queue.sql");

const PAYMENT_QUEUE_SEED_SQL: &str = include_str!("../../sql/backfill/payment_queue_seed.sql");

/// Whether the orders step's first pass is done: from then on the order queue (made by migrate,
/// with the triggers that feed it) holds every order still to settle. The name is that of the
/// seed of the queue that earlier versions ran instead of the first pass.
const FIRST_PASS_DONE_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM paytool.backfill_checkpoints WHERE step = 'order_queue_seeded')";

/// A dry run before any run: no checkpoint yet.
const CHECKPOINTS_EXIST_SQL: &str =
    "SELECT to_regclass('paytool.backfill_checkpoints') IS NOT NULL";

const FIRST_PASS_FINISH_SQL: &str = "
INSERT INTO paytool.backfill_checkpoints (step, last_id, finished_at)
VALUES ('order_queue_seeded', '', now())
ON CONFLICT (step) DO NOTHING";

/// Whether the payment queue is missing, or keyed by another type than orders.id (made by a
/// paytool that did not know uuid ids).
const PAYMENT_QUEUE_NEEDED_SQL: &str = "
SELECT to_regclass('paytool.backfill_payment_queue') IS NULL
    OR (SELECT atttypid FROM pg_attribute
        WHERE attrelid = to_regclass('paytool.backfill_payment_queue') AND attname = 'order_id')
       IS DISTINCT FROM
       (SELECT atttypid FROM pg_attribute WHERE attrelid = to_regclass('orders') AND attname = 'id')";

/// paytool's backfill tables, once, and the payment queue (made here) with the orders an
/// earlier paytool totalled without a payment.
pub async fn ensure_table(conn: &mut PgConnection) -> anyhow::Result<()> {
    let mut tx = conn.begin().await?;
    crate::db::bookkeeping::ensure(&mut tx, CHECKPOINTS_SQL, &["paytool.backfill_checkpoints"])
        .await?;
    let queue_needed: bool = sqlx::query_scalar(PAYMENT_QUEUE_NEEDED_SQL)
        .fetch_one(&mut *tx)
        .await?;
    if queue_needed {
        sqlx::raw_sql(PAYMENT_QUEUE_SQL).execute(&mut *tx).await?;
        sqlx::raw_sql(PAYMENT_QUEUE_SEED_SQL)
            .execute(&mut *tx)
            .await?;
    }
    Ok(tx.commit().await?)
}

/// Whether the orders step's first pass has completed once (catalogue::ORDERS_FIRST_PASS).
pub async fn first_pass_done(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let checkpoints: bool = sqlx::query_scalar(CHECKPOINTS_EXIST_SQL)
        .fetch_one(&mut *conn)
        .await?;
    if !checkpoints {
        return Ok(false);
    }
    sqlx::query_scalar(FIRST_PASS_DONE_SQL)
        .fetch_one(conn)
        .await
}

/// The orders step's first pass has completed: later runs read the order queue alone.
pub async fn finish_first_pass(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(FIRST_PASS_FINISH_SQL).execute(conn).await?;
    Ok(())
}

/// The key to resume after, if an earlier run of the step stopped before its end.
pub async fn unfinished(
    conn: &mut PgConnection,
    step: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(String, bool)> = sqlx::query_as(LOAD_SQL)
        .bind(step)
        .fetch_optional(conn)
        .await?;
    Ok(row.and_then(|(last_id, finished)| (!finished).then_some(last_id)))
}

pub async fn start(conn: &mut PgConnection, step: &str) -> Result<(), sqlx::Error> {
    sqlx::query(START_SQL).bind(step).execute(conn).await?;
    Ok(())
}

/// The last committed key: the truth after a lost connection, whose last COMMIT may or may
/// not have happened.
pub async fn last_id(conn: &mut PgConnection, step: &str) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT last_id FROM paytool.backfill_checkpoints WHERE step = $1")
        .bind(step)
        .fetch_one(conn)
        .await
}

pub async fn finish(conn: &mut PgConnection, step: &str) -> Result<(), sqlx::Error> {
    sqlx::query(FINISH_SQL).bind(step).execute(conn).await?;
    Ok(())
}

/// In the batch's transaction, so the checkpoint and the batch commit together.
pub async fn advance(
    conn: &mut PgConnection,
    step: &str,
    last_id: &str,
    scanned: i64,
    changed: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(ADVANCE_SQL)
        .bind(step)
        .bind(last_id)
        .bind(scanned)
        .bind(changed)
        .execute(conn)
        .await?;
    Ok(())
}
