//! Applying the pending steps online: advisory lock, preflight, then each step by its kind.

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::history::{self, StepState, StepStatus};
use super::preflight::{self, PreflightReport};
use super::steps::{Phase, Step, StepKind};
use super::{LockPolicy, MIGRATE_LOCK, MigrateError, Timeouts};
use crate::db::{self, IdType, IndexState, Key};
use crate::domain::BackfillStep;
use crate::progress::Progress;
use crate::throttle::Throttle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyOutcome {
    /// Pending steps were applied; the schema is now the target schema.
    Applied,
    /// Nothing was pending.
    UpToDate,
    /// The preflight found data that would break a constraint: nothing was changed.
    RefusedDirtyData,
    /// The history does not match the embedded SQL: nothing was changed.
    RefusedDrift,
    /// The cleanup found the legacy enum type still in use: nothing was changed.
    RefusedInUse,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRun {
    pub version: i32,
    pub name: &'static str,
    pub kind: StepKind,
    pub duration_ms: u64,
    /// Attempts that gave up on lock_timeout (or a deadlock/serialization failure) and were retried.
    pub retries: u32,
    /// Rows changed (batched steps only).
    pub rows_changed: Option<i64>,
    /// What happened beyond "applied": an INVALID index rebuilt, an index found already built.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub database: String,
    /// `migrate` applies the migration; `cleanup` removes what only the legacy application needed.
    pub phase: Phase,
    pub outcome: ApplyOutcome,
    pub waited_for_other_run_ms: u64,
    pub steps: Vec<StepRun>,
    pub drift: Vec<StepStatus>,
    pub preflight: PreflightReport,
    pub duration_ms: u64,
}

impl ApplyReport {
    pub fn problems_found(&self) -> bool {
        matches!(
            self.outcome,
            ApplyOutcome::RefusedDirtyData
                | ApplyOutcome::RefusedDrift
                | ApplyOutcome::RefusedInUse
        )
    }
}

/// Applies the pending steps of `phase`. The cleanup phase runs only on a fully migrated
/// database.
pub async fn apply(
    conn: &mut PgConnection,
    database: String,
    phase: Phase,
    policy: &LockPolicy,
    batch_size: i64,
    watch: Duration,
    progress: &Progress,
) -> anyhow::Result<ApplyReport> {
    let started = Instant::now();
    db::require_legacy_schema(conn).await?;
    db::require_plain_tables(conn).await?;
    let waited = MIGRATE_LOCK.acquire(conn, policy.wait).await?;
    let mut report = ApplyReport {
        database,
        phase,
        outcome: ApplyOutcome::UpToDate,
        waited_for_other_run_ms: waited.as_millis() as u64,
        steps: Vec::new(),
        drift: Vec::new(),
        preflight: PreflightReport::default(),
        duration_ms: 0,
    };

    let statuses = super::current_statuses(conn).await?;
    report.drift = statuses
        .iter()
        .filter(|s| s.state == StepState::Drift)
        .cloned()
        .collect();
    if !report.drift.is_empty() {
        report.outcome = ApplyOutcome::RefusedDrift;
        return Ok(finish(report, started));
    }
    if phase == Phase::Cleanup {
        let unfinished = super::pending_steps(&statuses, Phase::Migrate).count();
        if unfinished > 0 {
            return Err(MigrateError::MigrationUnfinished {
                pending: unfinished,
            }
            .into());
        }
    }
    let pending: Vec<&Step> = super::pending_steps(&statuses, phase).collect();
    if pending.is_empty() {
        tracing::info!("the schema is up to date: nothing to apply");
        return Ok(finish(report, started));
    }

    report.preflight = preflight::run(conn, &pending, watch).await?;
    if !report.preflight.passed() {
        report.outcome = match phase {
            Phase::Migrate | Phase::AfterBackfill => ApplyOutcome::RefusedDirtyData,
            Phase::Cleanup => ApplyOutcome::RefusedInUse,
        };
        return Ok(finish(report, started));
    }

    history::ensure_table(conn).await?;
    let bar = progress.steps(pending.len() as u64);
    for step in pending {
        bar.set_message(step.name);
        MIGRATE_LOCK.ensure_held(conn).await?;
        let run = run_step(conn, step, policy, batch_size, progress).await?;
        tracing::info!(
            "step {} {} applied in {} ms{}",
            step.version,
            step.name,
            run.duration_ms,
            if run.retries > 0 {
                format!(" after {} lock retries", run.retries)
            } else {
                String::new()
            }
        );
        report.steps.push(run);
        bar.inc(1);
    }
    bar.finish_and_clear();
    report.outcome = ApplyOutcome::Applied;
    Ok(finish(report, started))
}

/// The steps of [`Phase::AfterBackfill`] that wait for one of `passes` and are not applied yet,
/// run by `paytool backfill payments` once those passes completed. Under the migrate lock
/// (waiting up to `wait`), with paytool's default lock policy.
pub async fn apply_after_backfill(
    conn: &mut PgConnection,
    passes: &[BackfillStep],
    wait: Duration,
    progress: &Progress,
) -> anyhow::Result<Vec<StepRun>> {
    let waits_for_passes = |s: &Step| s.after_pass.is_some_and(|pass| passes.contains(&pass));
    let statuses = super::current_statuses(conn).await?;
    if !super::pending_steps(&statuses, Phase::AfterBackfill).any(waits_for_passes) {
        return Ok(Vec::new());
    }
    let policy = LockPolicy {
        wait,
        ..LockPolicy::default()
    };
    MIGRATE_LOCK.acquire(conn, policy.wait).await?;
    // Read again under the lock: a cooperative peer may have built them while this process
    // waited, and only one of them may say it did.
    let statuses = match super::current_statuses(conn).await {
        Ok(statuses) => statuses,
        Err(err) => {
            MIGRATE_LOCK.release(conn).await?;
            return Err(err);
        }
    };
    let pending: Vec<&Step> = super::pending_steps(&statuses, Phase::AfterBackfill)
        .filter(|s| waits_for_passes(s))
        .collect();
    let mut runs = Vec::new();
    for step in pending {
        let run = run_step(conn, step, &policy, 0, progress).await;
        match run {
            Ok(run) => {
                tracing::info!(
                    "step {} {} applied in {} ms",
                    step.version,
                    step.name,
                    run.duration_ms
                );
                runs.push(run);
            }
            Err(err) => {
                MIGRATE_LOCK.release(conn).await?;
                return Err(err);
            }
        }
    }
    MIGRATE_LOCK.release(conn).await?;
    Ok(runs)
}

fn finish(mut report: ApplyReport, started: Instant) -> ApplyReport {
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

async fn run_step(
    conn: &mut PgConnection,
    step: &Step,
    policy: &LockPolicy,
    batch_size: i64,
    progress: &Progress,
) -> anyhow::Result<StepRun> {
    let started = Instant::now();
    let timeouts = policy.timeouts_for(step.kind);
    let mut run = StepRun {
        version: step.version,
        name: step.name,
        kind: step.kind,
        duration_ms: 0,
        retries: 0,
        rows_changed: None,
        detail: None,
    };
    match step.kind {
        StepKind::Transactional | StepKind::Validation => {
            let attempt = Attempt::Transaction {
                step,
                timeouts,
                started,
            };
            let (_, retries) =
                retry_transient(conn, policy, (step.name, step.table), attempt).await?;
            run.retries = retries;
        }
        StepKind::ConcurrentIndex { index } => {
            history::mark_running(conn, step).await?;
            let (detail, retries) = build_index_concurrently(conn, step, index, policy).await?;
            history::mark_applied(conn, step, started.elapsed().as_millis() as i64).await?;
            run.detail = detail;
            run.retries = retries;
        }
        StepKind::ConcurrentDrop { .. } => {
            history::mark_running(conn, step).await?;
            let timeouts = policy.timeouts_for(step.kind);
            timeouts.set(conn, db::Scope::Session).await?;
            let (_, retries) = retry_transient(
                conn,
                policy,
                (step.name, step.table),
                Attempt::Statement(step.sql),
            )
            .await?;
            history::mark_applied(conn, step, started.elapsed().as_millis() as i64).await?;
            run.retries = retries;
        }
        StepKind::Batched => {
            history::mark_running(conn, step).await?;
            let (rows, retries, held) =
                run_batches(conn, step, policy, timeouts, batch_size, progress).await?;
            history::mark_applied(conn, step, started.elapsed().as_millis() as i64).await?;
            run.rows_changed = Some(rows);
            run.retries = retries;
            run.detail = held;
        }
    }
    run.duration_ms = started.elapsed().as_millis() as u64;
    Ok(run)
}

/// The step's SQL and its history row in one transaction: applied whole or not at all.
async fn transactional_attempt(
    conn: &mut PgConnection,
    step: &Step,
    timeouts: Timeouts,
    started: Instant,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    timeouts.set(&mut tx, db::Scope::Transaction).await?;
    sqlx::raw_sql(step.sql).execute(&mut *tx).await?;
    history::mark_applied(&mut tx, step, started.elapsed().as_millis() as i64).await?;
    tx.commit().await
}

/// One retryable unit of work.
pub(super) enum Attempt<'a> {
    /// The step's SQL with its history row, in one transaction.
    Transaction {
        step: &'a Step,
        timeouts: Timeouts,
        started: Instant,
    },
    /// One statement outside any transaction.
    Statement(&'a str),
    /// One batch of a batched step, from the row after `after`, in a transaction of its own;
    /// with `count_waiting`, the sessions waiting for its locks are counted before it commits.
    Batch {
        sql: &'a str,
        after: &'a Key,
        size: i64,
        count_waiting: bool,
    },
    /// `migrate down`'s SQL in one transaction: no statement_timeout (the enum conversion
    /// rewrites orders) but a bounded lock wait.
    Down { lock_timeout: Duration },
}

/// What a batch did; nothing for the other attempts.
#[derive(Debug, Default)]
pub(super) struct AttemptResult {
    /// The batch's last id; `None` once the table is done.
    last_id: Option<String>,
    changed: i64,
    /// Sessions waiting for the batch's locks just before it committed.
    waiting: i64,
}

impl Attempt<'_> {
    async fn perform(&self, conn: &mut PgConnection) -> Result<AttemptResult, sqlx::Error> {
        match self {
            Attempt::Transaction {
                step,
                timeouts,
                started,
            } => {
                transactional_attempt(conn, step, *timeouts, *started).await?;
                Ok(AttemptResult::default())
            }
            Attempt::Statement(sql) => {
                // Step SQL ships with paytool (sql/migrate), never from input.
                sqlx::raw_sql(AssertSqlSafe(*sql)).execute(conn).await?;
                Ok(AttemptResult::default())
            }
            Attempt::Batch {
                sql,
                after,
                size,
                count_waiting,
            } => {
                let mut tx = conn.begin().await?;
                // Unnamed, so planned for these keys (db::set_batch_planner says why).
                let (last_id, changed): (Option<String>, i64) = sqlx::query_as(AssertSqlSafe(*sql))
                    .persistent(false)
                    .bind(*after)
                    .bind(*size)
                    .fetch_one(&mut *tx)
                    .await?;
                let waiting = if *count_waiting {
                    crate::throttle::count_waiting_or_zero(&mut tx).await
                } else {
                    0
                };
                tx.commit().await?;
                Ok(AttemptResult {
                    last_id,
                    changed,
                    waiting,
                })
            }
            Attempt::Down { lock_timeout } => {
                down_attempt(conn, *lock_timeout).await?;
                Ok(AttemptResult::default())
            }
        }
    }
}

/// Performs `attempt` until it succeeds, retrying lock timeouts, deadlocks and serialization
/// failures with jittered exponential backoff. Between attempts no lock is held or queued,
/// so the application's queries go through.
/// `name` and `table` say what was being done where, in logs and in the final error.
pub(super) async fn retry_transient(
    conn: &mut PgConnection,
    policy: &LockPolicy,
    (name, table): (&'static str, &'static str),
    attempt: Attempt<'_>,
) -> anyhow::Result<(AttemptResult, u32)> {
    let mut delays = policy.backoff();
    let mut retries = 0;
    loop {
        match attempt.perform(conn).await {
            Ok(value) => return Ok((value, retries)),
            Err(err) if db::is_transient(&err) => {
                let Some(delay) = delays.next() else {
                    let holders = db::lock_holders(conn, table).await;
                    return Err(MigrateError::LockRetriesExhausted {
                        step: name,
                        table,
                        attempts: retries + 1,
                        lock_timeout: policy.lock_timeout,
                        holders,
                    }
                    .into());
                };
                retries += 1;
                tracing::warn!(
                    "step {}: {} on {} (attempt {}); retrying in {}",
                    name,
                    short_reason(&err),
                    table,
                    retries,
                    crate::human::duration(delay)
                );
                tokio::time::sleep(delay).await;
            }
            Err(err) => {
                return Err(anyhow::Error::new(err).context(format!("step {name} failed")));
            }
        }
    }
}

fn short_reason(err: &sqlx::Error) -> String {
    err.as_database_error()
        .map_or_else(|| err.to_string(), |db| db.message().to_owned())
}

/// `CREATE INDEX CONCURRENTLY IF NOT EXISTS` silently keeps an INVALID index left by an
/// interrupted build, so the index's state is checked before and after the build.
async fn build_index_concurrently(
    conn: &mut PgConnection,
    step: &Step,
    index: &'static str,
    policy: &LockPolicy,
) -> anyhow::Result<(Option<String>, u32)> {
    let timeouts = policy.timeouts_for(step.kind);
    timeouts.set(conn, db::Scope::Session).await?;
    let mut detail = None;
    let mut retries = 0;
    match db::index_state(conn, index).await? {
        IndexState::Valid => return Ok((Some(format!("{index} was already built")), 0)),
        IndexState::Invalid => {
            tracing::warn!(
                "{index} is INVALID (an interrupted concurrent build): dropping and rebuilding it"
            );
            retries += drop_index_concurrently(conn, step, index, policy).await?;
            detail = Some(format!(
                "dropped the INVALID {index} left by an interrupted build, then rebuilt it"
            ));
        }
        IndexState::Missing => {}
    }
    let watcher = match &policy.observer {
        Some(url) => {
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *conn)
                .await?;
            let what = format!("step {} (CREATE INDEX CONCURRENTLY {index})", step.name);
            super::watch::Watcher::start(url, pid, what, policy.max_wait).await
        }
        None => None,
    };
    let built = retry_transient(
        conn,
        policy,
        (step.name, step.table),
        Attempt::Statement(step.sql),
    )
    .await;
    if let Some(gave_up) = watcher.and_then(super::watch::Watcher::stop) {
        return Err(MigrateError::GaveUpWaiting {
            step: step.name,
            index,
            waited: gave_up.waited,
            blockers: gave_up.blockers,
        }
        .into());
    }
    let (_, build_retries) = built.map_err(|err| translate_unique_violation(err, index))?;
    retries += build_retries;
    if db::index_state(conn, index).await? != IndexState::Valid {
        return Err(MigrateError::IndexInvalidAfterBuild { index }.into());
    }
    Ok((detail, retries))
}

async fn drop_index_concurrently(
    conn: &mut PgConnection,
    step: &Step,
    index: &'static str,
    policy: &LockPolicy,
) -> anyhow::Result<u32> {
    // The name comes from the embedded step list, never from input.
    let sql = format!("DROP INDEX CONCURRENTLY IF EXISTS {index}");
    let (_, retries) = retry_transient(
        conn,
        policy,
        (step.name, step.table),
        Attempt::Statement(&sql),
    )
    .await?;
    Ok(retries)
}

fn translate_unique_violation(err: anyhow::Error, index: &'static str) -> anyhow::Error {
    let duplicate = err
        .chain()
        .filter_map(|e| e.downcast_ref::<sqlx::Error>())
        .any(|e| db::sqlstate_of(e).as_deref() == Some(db::sqlstate::UNIQUE_VIOLATION));
    if duplicate {
        MigrateError::DuplicatesDuringBuild { index }.into()
    } else {
        err
    }
}

async fn run_batches(
    conn: &mut PgConnection,
    step: &Step,
    policy: &LockPolicy,
    timeouts: Timeouts,
    batch_size: i64,
    progress: &Progress,
) -> anyhow::Result<(i64, u32, Option<String>)> {
    timeouts.set(conn, db::Scope::Session).await?;
    db::set_batch_planner(conn, false).await?;
    let remaining: i64 = match step.remaining_sql {
        Some(sql) => sqlx::query_scalar(sql).fetch_one(&mut *conn).await?,
        None => 0,
    };
    let bar = progress.rows(step.name, remaining as u64);
    let key_type = IdType::of(conn, step.table, "id").await?;
    let mut last_id = Key::start(key_type);
    let mut changed_total = 0;
    let mut retries = 0;
    let mut throttle = Throttle::new(policy.throttle.clone(), "migrate");
    throttle
        .check_query(conn)
        .await
        .map_err(MigrateError::from)?;
    loop {
        // The same health checks as the backfill's, between two batches: nothing is held then.
        if let Err(err) = throttle
            .wait_until_healthy(conn, step.table, None, &bar)
            .await
        {
            tracing::warn!(
                "step {}: could not read the database's health ({err})",
                step.name
            );
        }
        let attempt = Attempt::Batch {
            sql: step.sql,
            after: &last_id,
            size: batch_size,
            count_waiting: throttle.settings.enabled,
        };
        let (batch, batch_retries) =
            retry_transient(conn, policy, (step.name, step.table), attempt).await?;
        retries += batch_retries;
        changed_total += batch.changed;
        bar.inc(batch.changed as u64);
        throttle.batch_was_waited_for(batch.waiting);
        match batch.last_id {
            Some(id) => last_id = Key::parse(key_type, &id)?,
            None => break,
        }
    }
    bar.finish_and_clear();
    // Said in the step's note: the copy took longer than its rows for a reason.
    let held = crate::throttle::held_summary(&throttle.held).map(|held| format!("held {held}"));
    db::reset_batch_planner(conn).await?;
    // The next steps validate and index this column, and the application's queries plan on it.
    db::analyze_after_rewrite(conn, step.table).await;
    Ok((changed_total, retries, held))
}

async fn down_attempt(conn: &mut PgConnection, lock_timeout: Duration) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    db::set_timeouts(
        &mut tx,
        db::Scope::Transaction,
        lock_timeout,
        Duration::ZERO,
    )
    .await?;
    sqlx::raw_sql(super::steps::DOWN_SQL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
