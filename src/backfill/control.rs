//! Operators steer running backfills from any machine, through the database: `paytool
//! backfill pause`, `resume` and `set` write one row of settings that every worker reads
//! between two batches; each worker writes where it is, which `paytool backfill status` shows.

use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection};

const CONTROL_SQL: &str = include_str!("../../sql/internal/backfill_control.sql");
const TICK_SQL: &str = include_str!("../../sql/backfill/control_tick.sql");
const STATUS_SQL: &str = include_str!("../../sql/backfill/control_status.sql");
const WORKERS_PID_SQL: &str = include_str!("../../sql/internal/backfill_workers_pid.sql");

const HAS_PID_SQL: &str = "
SELECT EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = 'paytool.backfill_workers'::regclass AND attname = 'pid'
                 AND NOT attisdropped)";

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

/// Whether a worker listed by `backfill status` still works (see control_status.sql).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum WorkerState {
    Running,
    /// Its database session is closed: killed, crashed, or its connection cut.
    Gone,
    /// Its session is open, but it has not said anything for a minute.
    Silent,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Running => "running",
            WorkerState::Gone => "gone",
            WorkerState::Silent => "silent",
        }
    }
}

/// One worker heard from in the last ten minutes, as it last said.
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
    pub state: WorkerState,
    /// Seconds left in its step at its own rate, while it runs.
    #[sqlx(skip)]
    pub eta_seconds: Option<u64>,
}

impl WorkerRow {
    /// Its own rows per second, while it runs: a dead worker has no rate.
    pub fn rate(&self) -> Option<f64> {
        self.rows_per_second
            .filter(|_| self.state == WorkerState::Running)
    }

    fn eta(&self) -> Option<u64> {
        let rate = self.rate().filter(|r| *r > 0.0)?;
        Some(((self.rows_total - self.rows_done).max(0) as f64 / rate) as u64)
    }
}

/// What `backfill status`, `pause`, `resume` and `set` print.
#[derive(Debug, Clone, Serialize)]
pub struct ControlReport {
    pub database: String,
    pub action: &'static str,
    pub settings: ControlSettings,
    /// Workers heard from in the last ten minutes, with their state.
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
    .await?;
    let has_pid: bool = sqlx::query_scalar(HAS_PID_SQL)
        .fetch_one(&mut *conn)
        .await?;
    if !has_pid {
        sqlx::raw_sql(WORKERS_PID_SQL)
            .execute(&mut *conn)
            .await
            .map_err(|err| {
                anyhow::Error::new(err).context(
                    "paytool.backfill_workers, made by an earlier paytool, needs a pid column; \
                     its owner (the role that ran the first backfill) can add it: \
                     ALTER TABLE paytool.backfill_workers ADD COLUMN pid INTEGER",
                )
            })?;
    }
    Ok(())
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

/// Runs an operator's request and reports the state after it. `by`: the operator's login, if
/// any (the database role is recorded otherwise).
pub async fn run(
    url: &crate::db::DatabaseUrl,
    request: &ControlRequest,
    by: Option<&str>,
) -> anyhow::Result<ControlReport> {
    let conn = &mut crate::db::connect(url).await?;
    if !matches!(request, ControlRequest::Status) {
        crate::db::require_primary(conn, url, "backfill pause/resume/set").await?;
    }
    let database = url.redacted().to_owned();
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
                 changed_by = coalesce($1, session_user::TEXT), changed_at = now()",
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
    let mut workers: Vec<WorkerRow> = sqlx::query_as(STATUS_SQL).fetch_all(&mut *conn).await?;
    for worker in &mut workers {
        worker.rows_per_second = worker.rate();
        worker.eta_seconds = worker.eta();
    }
    Ok(ControlReport {
        database,
        action,
        settings,
        workers,
    })
}

async fn change(conn: &mut PgConnection, sql: &str, by: Option<&str>) -> Result<(), sqlx::Error> {
    // `sql` is one of this module's constant statements. Without an operator's login, the
    // database role says who.
    sqlx::query(AssertSqlSafe(format!(
        "{sql}, changed_by = coalesce($1, session_user::TEXT), changed_at = now()"
    )))
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}
