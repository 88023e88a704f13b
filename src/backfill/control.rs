//! Operators steer running backfills from any machine, through the database: `paytool
//! backfill pause`, `resume` and `set` write one row of settings that every worker reads
//! between two batches; each worker writes where it is, which `paytool backfill status` shows.

use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection};

const CONTROL_SQL: &str = include_str!("../../sql/internal/backfill_control.sql");
const TICK_SQL: &str = include_str!("../../sql/backfill/control_tick.sql");
const STATUS_SQL: &str = include_str!("../../sql/backfill/control_status.sql");

const SETTINGS_SQL: &str =
    "SELECT paused, batch_size, pause_ms, target_batch_ms, changed_by, changed_at::TEXT
FROM paytool.backfill_control";

/// What the operators want, read by every worker between two batches.
#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow)]
pub struct ControlSettings {
    pub paused: bool,
    /// Overrides of the workers' own flags; `None`: each keeps its own.
    pub batch_size: Option<i64>,
    pub pause_ms: Option<i64>,
    pub target_batch_ms: Option<i64>,
    pub changed_by: Option<String>,
    pub changed_at: Option<String>,
}

/// One running worker, as it last said.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct WorkerRow {
    pub worker: String,
    pub step: String,
    pub position: Option<String>,
    pub rows_done: i64,
    pub rows_total: i64,
    pub rows_per_second: Option<f64>,
    pub held: Option<String>,
    pub seconds_since_heartbeat: i64,
    pub started_at: String,
}

impl WorkerRow {
    /// Seconds left in its step at its current rate.
    pub fn eta_seconds(&self) -> Option<u64> {
        let rate = self.rows_per_second.filter(|r| *r > 0.0)?;
        Some(((self.rows_total - self.rows_done).max(0) as f64 / rate) as u64)
    }
}

/// What `backfill status`, `pause`, `resume` and `set` print.
#[derive(Debug, Clone, Serialize)]
pub struct ControlReport {
    pub database: String,
    pub action: &'static str,
    pub settings: ControlSettings,
    /// Workers seen in the last minute.
    pub workers: Vec<WorkerRow>,
}

/// What `paytool backfill set` changes; `None` leaves a value as it is.
#[derive(Debug, Clone, Default)]
pub struct SetRequest {
    pub batch_size: Option<i64>,
    pub pause_ms: Option<i64>,
    pub target_batch_ms: Option<i64>,
    /// Back to each worker's own flags.
    pub clear: bool,
}

/// What an operator asks of running backfills.
#[derive(Debug, Clone)]
pub enum ControlRequest {
    Status,
    Pause,
    Resume,
    Set(SetRequest),
}

pub async fn ensure_tables(conn: &mut PgConnection) -> anyhow::Result<()> {
    crate::db::bookkeeping::ensure(
        conn,
        CONTROL_SQL,
        &["paytool.backfill_control", "paytool.backfill_workers"],
    )
    .await
}

/// This worker's name: host and process id, as in pg_stat_activity's client view.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// Where the worker is, in; what the operators want, out.
pub struct Beat<'a> {
    pub worker: &'a str,
    pub step: &'a str,
    pub position: Option<String>,
    pub rows_done: i64,
    pub rows_total: i64,
    pub rows_per_second: f64,
    pub held: Option<String>,
}

pub async fn tick(
    conn: &mut PgConnection,
    beat: &Beat<'_>,
) -> Result<ControlSettings, sqlx::Error> {
    sqlx::query_as(TICK_SQL)
        .bind(beat.worker)
        .bind(beat.step)
        .bind(&beat.position)
        .bind(beat.rows_done)
        .bind(beat.rows_total)
        .bind(beat.rows_per_second)
        .bind(&beat.held)
        .fetch_one(conn)
        .await
}

/// The worker is done: it leaves the status.
pub async fn leave(conn: &mut PgConnection, worker: &str) {
    let _ = sqlx::query("DELETE FROM paytool.backfill_workers WHERE worker = $1")
        .bind(worker)
        .execute(conn)
        .await;
}

/// Runs an operator's request and reports the state after it.
pub async fn run(
    conn: &mut PgConnection,
    database: String,
    request: &ControlRequest,
    by: &str,
) -> anyhow::Result<ControlReport> {
    if matches!(request, ControlRequest::Status) {
        // Read-only: it runs on a standby and for a SELECT-only role, and creates nothing.
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('paytool.backfill_control') IS NOT NULL")
                .fetch_one(&mut *conn)
                .await?;
        if !exists {
            return Ok(ControlReport {
                database,
                action: "status",
                settings: ControlSettings::default(),
                workers: Vec::new(),
            });
        }
    } else {
        ensure_tables(conn).await?;
    }
    let action = match request {
        ControlRequest::Status => "status",
        ControlRequest::Pause => {
            change(
                conn,
                "UPDATE paytool.backfill_control SET paused = true",
                by,
            )
            .await?;
            "pause"
        }
        ControlRequest::Resume => {
            change(
                conn,
                "UPDATE paytool.backfill_control SET paused = false",
                by,
            )
            .await?;
            "resume"
        }
        ControlRequest::Set(set) if set.clear => {
            change(
                conn,
                "UPDATE paytool.backfill_control SET batch_size = NULL, pause_ms = NULL, target_batch_ms = NULL",
                by,
            )
            .await?;
            "set"
        }
        ControlRequest::Set(set) => {
            sqlx::query(
                "UPDATE paytool.backfill_control SET batch_size = coalesce($2, batch_size),
                 pause_ms = coalesce($3, pause_ms), target_batch_ms = coalesce($4, target_batch_ms),
                 changed_by = $1, changed_at = now()",
            )
            .bind(by)
            .bind(set.batch_size)
            .bind(set.pause_ms)
            .bind(set.target_batch_ms)
            .execute(&mut *conn)
            .await?;
            "set"
        }
    };
    let settings = sqlx::query_as(SETTINGS_SQL).fetch_one(&mut *conn).await?;
    let workers = sqlx::query_as(STATUS_SQL).fetch_all(&mut *conn).await?;
    Ok(ControlReport {
        database,
        action,
        settings,
        workers,
    })
}

async fn change(conn: &mut PgConnection, sql: &str, by: &str) -> Result<(), sqlx::Error> {
    // `sql` is one of this module's constant statements.
    sqlx::query(AssertSqlSafe(format!(
        "{sql}, changed_by = $1, changed_at = now()"
    )))
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}
