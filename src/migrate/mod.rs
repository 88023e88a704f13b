//! `paytool migrate`: the online payment-system schema migration (plan, status, apply, down).
//!
//! paytool drives the steps itself rather than through sqlx's migrator: it needs per-step
//! lock_timeout retries, a record of steps that started but never finished (sqlx records
//! only successes), and the repair of INVALID indexes left by interrupted concurrent builds.

mod apply;
mod down;
pub(crate) mod history;
pub(crate) mod plan;
mod preflight;
pub mod steps;
mod watch;

use std::time::Duration;

use sqlx::PgConnection;
use thiserror::Error;

pub use apply::{ApplyOutcome, ApplyReport, StepRun, apply_after_backfill};
pub use down::DownReport;
pub use history::{StepState, StepStatus};
pub use plan::{MigratePlan, PlannedStep};
pub use preflight::{PreflightFinding, PreflightReport};

use crate::db::{self, AdvisoryLock, DatabaseUrl, IdType};
use crate::exit;
use crate::progress::Progress;
use steps::{Phase, STEPS, Step, StepKind};

/// Serializes `paytool migrate` runs (apply and down) on one database.
pub const MIGRATE_LOCK: AdvisoryLock = AdvisoryLock {
    key: 0x7061_7974_6f6f_6c01,
    operation: "migrate",
};

#[derive(Debug, Error)]
pub enum MigrateError {
    #[error(transparent)]
    BadThrottleQuery(#[from] crate::throttle::BadThrottleQuery),
    #[error(
        "step {step}: could not lock table {table} within lock_timeout {} after {attempts} attempts; \
         sessions holding a lock on it: {holders}. Nothing of this step was applied; run paytool migrate again \
         when they are done (or raise --lock-retries / --lock-timeout)",
        crate::human::duration(*.lock_timeout)
    )]
    LockRetriesExhausted {
        step: &'static str,
        table: &'static str,
        attempts: u32,
        lock_timeout: Duration,
        holders: String,
    },
    #[error("index {index} is still not valid after a concurrent build; run paytool migrate again")]
    IndexInvalidAfterBuild { index: &'static str },
    #[error(
        "step {step}: the concurrent build of {index} waited {} for older transactions to end, longer than --max-wait; \
         they are: {blockers}. The build was cancelled; end those sessions (or let them finish) and run paytool migrate \
         again: it drops the unfinished index and builds it anew",
        crate::human::duration(*.waited)
    )]
    GaveUpWaiting {
        step: &'static str,
        index: &'static str,
        waited: Duration,
        blockers: String,
    },
    #[error(
        "building unique index {index} found duplicate values written after the preflight ran; \
         run paytool migrate again: the preflight will name the rows"
    )]
    DuplicatesDuringBuild { index: &'static str },
    #[error(
        "the database's migration history has steps this paytool does not know ({0}): it was migrated by a newer \
         paytool; use that version"
    )]
    UnknownHistory(String),
    #[error(
        "{pending} step(s) of paytool migrate are not applied yet; run paytool migrate first, deploy the \
         upgraded application, then run paytool migrate cleanup"
    )]
    MigrationUnfinished { pending: usize },
    #[error(
        "{}; run paytool migrate first",
        if .pending == .total {
            "this database is not migrated yet (none of the payment schema's steps is applied)".to_owned()
        } else {
            format!("the payment schema is only partly in place ({} of {} steps of paytool migrate are still to apply)", .pending, .total)
        }
    )]
    NotMigrated { pending: usize, total: usize },
    #[error(
        "migrate down destroys payments, payment_events, refunds, price snapshots and order totals; \
         pass --i-understand-this-destroys-payment-data to confirm"
    )]
    DownNotConfirmed,
}

impl MigrateError {
    pub fn exit_code(&self) -> u8 {
        match self {
            MigrateError::UnknownHistory(_)
            | MigrateError::DownNotConfirmed
            | MigrateError::MigrationUnfinished { .. }
            | MigrateError::NotMigrated { .. }
            | MigrateError::BadThrottleQuery(_) => exit::USAGE,
            MigrateError::DuplicatesDuringBuild { .. } => exit::PROBLEMS_FOUND,
            MigrateError::LockRetriesExhausted { .. }
            | MigrateError::IndexInvalidAfterBuild { .. }
            | MigrateError::GaveUpWaiting { .. } => exit::RUNTIME_FAILURE,
        }
    }
}

/// How migrate takes locks: short waits, retried with jittered exponential backoff.
#[derive(Debug, Clone)]
pub struct LockPolicy {
    pub lock_timeout: Duration,
    pub lock_retries: u32,
    pub statement_timeout: Duration,
    pub wait: Duration,
    /// How long a concurrent index build may wait for other sessions' transactions.
    pub max_wait: Duration,
    /// Where a second connection watches what a concurrent build waits for; `None`: unwatched.
    pub observer: Option<DatabaseUrl>,
    /// When the batched copy holds between two batches for the database's health.
    pub throttle: crate::throttle::ThrottleSettings,
}

/// The defaults of `paytool migrate`'s lock flags.
impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            lock_timeout: Duration::from_millis(500),
            lock_retries: 30,
            statement_timeout: Duration::from_secs(15),
            wait: Duration::from_secs(600),
            max_wait: Duration::from_secs(3600),
            observer: None,
            throttle: crate::throttle::ThrottleSettings::default(),
        }
    }
}

/// What `paytool migrate` is asked to do, free of how it was asked.
#[derive(Debug, Clone)]
pub enum MigrateRequest {
    /// Show the plan; change nothing.
    Plan {
        policy: LockPolicy,
        batch_size: i64,
        show_sql: bool,
    },
    Status,
    /// Preflight, then apply the pending steps of `paytool migrate`.
    Apply {
        policy: LockPolicy,
        batch_size: i64,
    },
    /// Drop what only the legacy application needed, after watching the sessions for `watch`.
    Cleanup {
        policy: LockPolicy,
        batch_size: i64,
        watch: Duration,
    },
    /// Back to the legacy schema; refused unless `confirmed`.
    Down {
        policy: LockPolicy,
        confirmed: bool,
    },
}

/// The session timeouts one kind of step runs under; zero means none.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
}

impl Timeouts {
    /// Sets both on the connection, for the session or the current transaction.
    pub async fn set(&self, conn: &mut PgConnection, scope: db::Scope) -> Result<(), sqlx::Error> {
        db::set_timeouts(conn, scope, self.lock_timeout, self.statement_timeout).await
    }
}

impl LockPolicy {
    pub fn timeouts_for(&self, kind: StepKind) -> Timeouts {
        match kind {
            StepKind::Transactional | StepKind::Batched => Timeouts {
                lock_timeout: self.lock_timeout,
                statement_timeout: self.statement_timeout,
            },
            // Scans that never block the application: no statement_timeout.
            StepKind::Validation => Timeouts {
                lock_timeout: self.lock_timeout,
                statement_timeout: Duration::ZERO,
            },
            // SHARE UPDATE EXCLUSIVE never blocks DML, and the build must wait for older
            // transactions: a lock_timeout would abort it half-way and leave an INVALID index.
            StepKind::ConcurrentIndex { .. } | StepKind::ConcurrentDrop { .. } => Timeouts {
                lock_timeout: Duration::ZERO,
                statement_timeout: Duration::ZERO,
            },
        }
    }

    /// Delays between lock attempts: the database backoff, `lock_retries` of them.
    pub fn backoff(&self) -> impl Iterator<Item = Duration> {
        crate::retry::Backoff::DATABASE.delays(self.lock_retries)
    }
}

/// What `paytool migrate` produced, for rendering.
pub enum MigrateOutput {
    Plan(MigratePlan),
    Status(StatusReport),
    Apply(ApplyReport),
    Down(DownReport),
}

impl MigrateOutput {
    pub fn exit_code(&self) -> u8 {
        let problems = match self {
            MigrateOutput::Plan(_) | MigrateOutput::Down(_) => false,
            MigrateOutput::Status(status) => status.needs_attention(),
            MigrateOutput::Apply(apply) => apply.problems_found(),
        };
        if problems {
            exit::PROBLEMS_FOUND
        } else {
            exit::OK
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusReport {
    pub database: String,
    pub applied: usize,
    /// Steps of `paytool migrate` not applied yet.
    pub pending: usize,
    pub interrupted: usize,
    /// The paytool migrate running now (its session), if one is.
    pub running: Option<String>,
    pub drift: usize,
    /// Steps of `paytool migrate cleanup` not applied yet: normal until the legacy application
    /// is gone, so they do not fail the status.
    pub cleanup_pending: usize,
    /// Partial indexes `paytool backfill payments` builds after its first complete pass: normal
    /// until then, so they do not fail the status.
    pub after_backfill_pending: usize,
    pub steps: Vec<StepStatus>,
}

impl StatusReport {
    /// Drift, or steps of `paytool migrate` that still have to run: a deploy pipeline gates on it,
    /// as on `prisma migrate status`.
    pub fn needs_attention(&self) -> bool {
        self.drift > 0 || self.pending > 0 || self.interrupted > 0
    }
}

pub async fn run(
    request: &MigrateRequest,
    url: &DatabaseUrl,
    progress: &Progress,
) -> anyhow::Result<MigrateOutput> {
    if let MigrateRequest::Down {
        confirmed: false, ..
    } = request
    {
        return Err(MigrateError::DownNotConfirmed.into());
    }
    let mut conn = db::connect(url).await?;
    let database = url.redacted().to_owned();
    match request {
        MigrateRequest::Apply { .. } => db::require_primary(&mut conn, url, "migrate").await?,
        MigrateRequest::Down { .. } => db::require_primary(&mut conn, url, "migrate down").await?,
        MigrateRequest::Cleanup { .. } => {
            db::require_primary(&mut conn, url, "migrate cleanup").await?
        }
        MigrateRequest::Plan { .. } | MigrateRequest::Status => {}
    }
    match request {
        MigrateRequest::Plan {
            policy,
            batch_size,
            show_sql,
        } => Ok(MigrateOutput::Plan(
            make_plan(&mut conn, database, policy, *batch_size, *show_sql).await?,
        )),
        MigrateRequest::Status => Ok(MigrateOutput::Status(status(&mut conn, database).await?)),
        MigrateRequest::Down { policy, .. } => Ok(MigrateOutput::Down(
            down::down(&mut conn, database, policy).await?,
        )),
        MigrateRequest::Cleanup {
            policy,
            batch_size,
            watch,
        } => Ok(MigrateOutput::Apply(
            apply::apply(
                &mut conn,
                database,
                Phase::Cleanup,
                &watched(policy, url),
                *batch_size,
                *watch,
                progress,
            )
            .await?,
        )),
        MigrateRequest::Apply { policy, batch_size } => Ok(MigrateOutput::Apply(
            apply::apply(
                &mut conn,
                database,
                Phase::Migrate,
                &watched(policy, url),
                *batch_size,
                Duration::ZERO,
                progress,
            )
            .await?,
        )),
    }
}

/// The policy with the database to watch concurrent builds through.
fn watched(policy: &LockPolicy, url: &DatabaseUrl) -> LockPolicy {
    LockPolicy {
        observer: Some(url.clone()),
        ..policy.clone()
    }
}

/// The embedded steps compared with the history; refuses histories from a newer paytool.
pub async fn current_statuses(conn: &mut PgConnection) -> anyhow::Result<Vec<StepStatus>> {
    let orders_id = IdType::of(conn, "orders", "id").await?;
    statuses_for(conn, orders_id).await
}

async fn statuses_for(
    conn: &mut PgConnection,
    orders_id: IdType,
) -> anyhow::Result<Vec<StepStatus>> {
    let rows = history::load(conn).await?;
    let steps = steps::steps_for(orders_id);
    let (statuses, unknown) = history::compare(steps, &rows);
    if !unknown.is_empty() {
        let names: Vec<String> = unknown
            .iter()
            .map(|h| format!("{} {}", h.version, h.name))
            .collect();
        return Err(MigrateError::UnknownHistory(names.join(", ")).into());
    }
    Ok(statuses)
}

/// What the commands that read or write the payment schema need to know of a migrated
/// database, worked out once by [`require_migrated`].
#[derive(Debug, Clone, Copy)]
pub struct Migrated {
    /// The type of orders.id, and so of every key that names an order.
    pub orders_id: IdType,
}

/// Refuses a database on which `paytool migrate` has not finished (the cleanup may be pending):
/// the commands that read or write the payment schema need all of it. Checks the legacy
/// schema first.
pub async fn require_migrated(conn: &mut PgConnection) -> anyhow::Result<Migrated> {
    db::require_legacy_schema(conn).await?;
    let orders_id = IdType::of(conn, "orders", "id").await?;
    let statuses = statuses_for(conn, orders_id).await?;
    let pending = pending_steps(&statuses, Phase::Migrate).count();
    if pending > 0 {
        let total = steps::steps_of(Phase::Migrate).count();
        return Err(MigrateError::NotMigrated { pending, total }.into());
    }
    Ok(Migrated { orders_id })
}

/// The steps of `phase` not applied yet, in the order they run.
pub fn pending_steps(
    statuses: &[StepStatus],
    phase: Phase,
) -> impl Iterator<Item = &'static Step> + '_ {
    statuses
        .iter()
        .filter(|s| s.state != StepState::Applied)
        .map(|s| s.step)
        .filter(move |step| step.phase == phase)
}

async fn status(conn: &mut PgConnection, database: String) -> anyhow::Result<StatusReport> {
    db::require_legacy_schema(conn).await?;
    let mut steps = current_statuses(conn).await?;
    // A step started and not finished is interrupted, unless a migrate is running it now.
    let running = MIGRATE_LOCK.held_elsewhere(conn).await?;
    if let Some(holder) = &running {
        for step in steps
            .iter_mut()
            .filter(|s| s.state == StepState::Interrupted)
        {
            step.state = StepState::Running;
        }
        tracing::info!("a paytool migrate is running: {holder}");
    }
    let count = |state, phase| {
        steps
            .iter()
            .filter(|s| s.state == state && s.phase == phase)
            .count()
    };
    Ok(StatusReport {
        database,
        applied: steps
            .iter()
            .filter(|s| s.state == StepState::Applied)
            .count(),
        pending: count(StepState::Pending, Phase::Migrate),
        interrupted: count(StepState::Interrupted, Phase::Migrate)
            + count(StepState::Interrupted, Phase::Cleanup),
        running: running.clone(),
        drift: steps.iter().filter(|s| s.state == StepState::Drift).count(),
        cleanup_pending: count(StepState::Pending, Phase::Cleanup),
        // An index build the backfill was killed in is redone by its next complete pass, not by
        // `paytool migrate`: it is still the backfill's, and does not fail the status.
        after_backfill_pending: count(StepState::Pending, Phase::AfterBackfill)
            + count(StepState::Interrupted, Phase::AfterBackfill),
        steps,
    })
}

async fn make_plan(
    conn: &mut PgConnection,
    database: String,
    policy: &LockPolicy,
    batch_size: i64,
    show_sql: bool,
) -> anyhow::Result<MigratePlan> {
    db::require_legacy_schema(conn).await?;
    db::require_plain_tables(conn).await?;
    let statuses = current_statuses(conn).await?;
    let rows = db::estimated_rows(conn).await?;
    let not_applied: Vec<&Step> = statuses
        .iter()
        .filter(|s| s.state != StepState::Applied)
        .map(|s| s.step)
        .collect();
    let plan::Phases {
        migrate: pending,
        after_backfill,
        cleanup,
    } = plan::plan_phases(&not_applied, &rows, policy, batch_size);
    // The preflight of what runs next: the migration, or once it is done, the cleanup.
    let next_phase = if pending.is_empty() {
        Phase::Cleanup
    } else {
        Phase::Migrate
    };
    let next_steps: Vec<&Step> = not_applied
        .iter()
        .copied()
        .filter(|s| s.phase == next_phase)
        .collect();
    let preflight = preflight::run(conn, &next_steps, Duration::ZERO).await?;
    let overridden_timeouts = db::inherited_timeouts(conn).await?;
    Ok(MigratePlan {
        overridden_timeouts,
        database,
        id_type: IdType::of(conn, "orders", "id").await?,
        steps_total: STEPS.len(),
        steps_applied: STEPS.len() - pending.len() - after_backfill.len() - cleanup.len(),
        pending,
        after_backfill,
        cleanup,
        preflight,
        show_sql,
    })
}
