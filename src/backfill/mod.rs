//! `paytool backfill payments`: item snapshots, order totals and payment rows for existing
//! data, in keyset batches that each commit with their checkpoint.
//!
//! Laid out as GitLab's batched migrations: the step catalogue (`catalogue`, SQL in
//! `sql/backfill/`), the runner (`runner`: the walk, the batches, the retry policy every
//! connection lives under), the batch optimizer (`optimizer`), between-batch control
//! (`between`: operators' pause and settings, health holds), the run's counters (`counters`),
//! cooperative workers (`workers`), the report (`report`) and the dry run (`dry_run`). This
//! file runs the rounds.

mod between;
mod catalogue;
mod checkpoint;
pub mod control;
mod counters;
mod dry_run;
mod optimizer;
mod report;
mod runner;
mod workers;

pub use crate::throttle::ThrottleSettings;
use crate::throttle::{self, Throttle};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use thiserror::Error;

pub use crate::domain::BackfillStep;
pub use optimizer::BatchPolicy;
pub use report::BackfillReport;
#[cfg(test)]
pub use report::{StepReport, Unresolved};
pub use workers::Cooperation;

use catalogue::{ORDERS_FIRST_PASS, STEPS, StepDef};
use runner::Runner;

use crate::db::{self, DatabaseUrl, IdType};
use crate::exit;
use crate::migrate::{self, steps::StepKind};
use crate::progress::Progress;

pub use crate::db::BACKFILL_LOCK;

/// Serializes the creation of paytool's backfill tables, for one transaction.
const SETUP_LOCK: i64 = 0x7061_7974_6f6f_6c06;

/// What `paytool backfill payments` is asked to do, free of how it was asked.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    /// Only this step; all three in order when `None`.
    pub step: Option<BackfillStep>,
    pub dry_run: bool,
    /// Forget an interrupted run's checkpoint.
    pub restart: bool,
    /// Keep catching up, a round every `interval`, until interrupted.
    pub follow: bool,
    pub interval: Duration,
    /// Unresolved rows make the run fail (exit 1).
    pub strict: bool,
    /// A pinned batch size instead of the adaptive one.
    pub batch_size: Option<i64>,
    pub target_batch_ms: u64,
    pub pause_ms: u64,
    pub lock_timeout: Duration,
    pub max_retries: u32,
    /// How long to wait for another backfill (or migrate, for the partial indexes).
    pub wait: Duration,
    /// When to hold between batches.
    pub throttle: ThrottleSettings,
    /// Share the run with other workers (this process's and other processes'), through
    /// ranges of keys; `None`: one worker, alone.
    pub cooperation: Option<Cooperation>,
}

#[derive(Debug, Error)]
pub enum BackfillError {
    #[error(
        "step {step}: a batch failed {attempts} times in a row ({reason}); sessions holding a lock on {table}: \
         {holders}. Stopped at a checkpoint, run paytool backfill payments again to resume"
    )]
    RetriesExhausted {
        step: &'static str,
        attempts: u32,
        reason: String,
        table: &'static str,
        holders: String,
    },
    #[error(
        "{what} failed {attempts} times in a row, the last time: {reason}. The checkpoint is kept: \
         run paytool backfill payments again to resume once the database answers"
    )]
    GaveUp {
        what: String,
        attempts: u32,
        reason: String,
    },
    #[error(transparent)]
    BadThrottleQuery(#[from] throttle::BadThrottleQuery),
}

impl BackfillError {
    pub fn exit_code(&self) -> u8 {
        match self {
            BackfillError::RetriesExhausted { .. } | BackfillError::GaveUp { .. } => {
                exit::RUNTIME_FAILURE
            }
            BackfillError::BadThrottleQuery(_) => exit::USAGE,
        }
    }
}

pub async fn run(
    args: &BackfillRequest,
    url: &DatabaseUrl,
    progress: Progress,
) -> anyhow::Result<BackfillReport> {
    let mut conn = db::connect(url).await?;
    // Even --dry-run: it creates paytool's own tables.
    db::require_primary(&mut conn, url, "backfill payments").await?;
    let migrated = migrate::require_migrated(&mut conn).await?;
    let steps: Vec<&StepDef> = STEPS
        .iter()
        .filter(|s| args.step.is_none_or(|only| only == s.step))
        .collect();
    let mut report = BackfillReport::new(url.redacted().to_owned(), args.dry_run, args.strict);
    if args.dry_run {
        report.steps = dry_run::dry_run(&mut conn, &steps).await?;
        return Ok(report);
    }
    match args.cooperation {
        None => BACKFILL_LOCK.acquire(&mut conn, args.wait).await?,
        // Every cooperative process holds it shared: they run together, a lone run waits.
        Some(_) => BACKFILL_LOCK.acquire_shared(&mut conn, args.wait).await?,
    };
    set_up_tables(&mut conn, args.cooperation.is_some()).await?;
    let run_started: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut conn)
        .await?;
    let throttle = Throttle::new(args.throttle.clone(), "backfill");
    throttle
        .check_query(&mut conn)
        .await
        .map_err(BackfillError::from)?;
    let runner = Runner {
        url,
        batch: BatchPolicy {
            fixed: args.batch_size,
            target: Duration::from_millis(args.target_batch_ms),
            initial: 1_000,
            min: 50,
            max: 50_000,
        },
        pause: Duration::from_millis(args.pause_ms),
        lock_timeout: args.lock_timeout,
        count_waiting: args.throttle.enabled,
        max_retries: args.max_retries,
        wait: args.wait,
        cooperative: args.cooperation.is_some(),
        item_ids: IdType::of(&mut conn, "order_items", "id").await?,
        order_ids: migrated.orders_id,
        progress,
        stop: Arc::new(AtomicBool::new(false)),
        throttle: tokio::sync::Mutex::new(throttle),
        worker: control::worker_name(),
        last_control: std::sync::Mutex::new(control::ControlSettings::default()),
        pause_clock: between::PauseClock::default(),
    };
    // Ctrl-C or SIGTERM: the batch under way commits, then the run stops at its checkpoint.
    listen_for_stop(runner.stop.clone());
    runner.throttle.lock().await.stop = Some(runner.stop.clone());
    report.rounds = 0;
    loop {
        let round_started = Instant::now();
        let mut round = Vec::new();
        // One failed build (a migrate holding its lock past --wait) is enough for a round.
        let mut builds_failed = false;
        for step in &steps {
            if runner.stopped() {
                break;
            }
            let restart = args.restart || report.rounds > 0;
            let walk = Walk {
                restart,
                cooperation: args.cooperation,
                run_started,
            };
            let step_report = run_round_step(&runner, &mut conn, step, walk).await?;
            round.push(step_report);
            if !runner.stopped() && !builds_failed {
                // Right after its pass, not at the end of the round: autovacuum has not had the
                // time to start on the table the pass rewrote, and an index build queued behind
                // it has it cancelled after deadlock_timeout (measured at 1M orders: the build
                // of the items' index at the end of the round waited 1 s and cancelled the
                // vacuum of order_items; right after the items step, nothing held it).
                let built =
                    build_pending_indexes(&mut conn, &[step.step], args.wait, &runner.progress)
                        .await;
                match built {
                    Ok(built) => report.indexes_built.extend(built),
                    Err(err) => {
                        let reason = crate::exit::message(&err);
                        tracing::warn!(
                            "the partial indexes of the pending rows were not built ({reason}); the next run tries again"
                        );
                        report.indexes_not_built = Some(reason);
                        builds_failed = true;
                    }
                }
            }
        }
        report::count_payments_of_the_round(&mut round);
        report.rounds += 1;
        let line = report::round_line(
            report.rounds,
            &round,
            round_started.elapsed(),
            args.interval,
        );
        report::merge_round(&mut report.steps, round);
        if !args.follow {
            break;
        }
        runner.progress.note(&line);
        if !sleep_unless_stopped(&runner.stop, args.interval).await {
            break;
        }
    }
    report.held = std::mem::take(&mut runner.throttle.lock().await.held);
    let (paused, pauses) = runner.pause_clock.total();
    if pauses > 0 {
        let held = report.held.entry("paused").or_default();
        held.ms += paused.as_millis() as u64;
        held.times += pauses;
    }
    control::leave(&mut conn, &runner.worker).await;
    report.interrupted = !args.follow && runner.stopped();
    if report.interrupted {
        tracing::warn!(
            "interrupted: the batch under way was committed; run paytool backfill payments again to resume"
        );
    }
    Ok(report)
}

/// How a round walks its steps.
#[derive(Debug, Clone, Copy)]
struct Walk {
    restart: bool,
    cooperation: Option<Cooperation>,
    run_started: chrono::DateTime<chrono::Utc>,
}

/// One step of a round, alone or shared with cooperative workers. Until its first pass has
/// completed once, the orders step walks the orders at 0 themselves, then its queue (what the
/// application wrote meanwhile); both walks make one report.
async fn run_round_step(
    runner: &Runner<'_>,
    conn: &mut PgConnection,
    step: &StepDef,
    walk: Walk,
) -> anyhow::Result<report::StepReport> {
    let main = runner::Session::Main;
    let first_pass_due = step.step == BackfillStep::Orders
        && !runner
            .retrying(
                conn,
                main,
                "reading the orders step's first pass",
                async |c| checkpoint::first_pass_done(c).await,
            )
            .await?;
    if !first_pass_due {
        return run_walk(runner, conn, step, walk).await;
    }
    let mut report = run_walk(runner, conn, &ORDERS_FIRST_PASS, walk).await?;
    report.step = step.name;
    if runner.stopped() {
        return Ok(report);
    }
    runner
        .retrying(
            conn,
            main,
            "finishing the orders step's first pass",
            async |c| checkpoint::finish_first_pass(c).await,
        )
        .await?;
    report.absorb(run_walk(runner, conn, step, walk).await?);
    Ok(report)
}

async fn run_walk(
    runner: &Runner<'_>,
    conn: &mut PgConnection,
    step: &StepDef,
    walk: Walk,
) -> anyhow::Result<report::StepReport> {
    match walk.cooperation {
        None => runner.run_step(conn, step, walk.restart).await,
        Some(cooperation) => {
            runner
                .run_step_cooperative(conn, step, cooperation, walk.run_started)
                .await
        }
    }
}

/// paytool's backfill tables, once. Cooperative processes start together: one creates them,
/// the others wait.
async fn set_up_tables(conn: &mut PgConnection, cooperative: bool) -> anyhow::Result<()> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SETUP_LOCK)
        .execute(&mut *tx)
        .await?;
    checkpoint::ensure_table(&mut tx).await?;
    control::ensure_tables(&mut tx).await?;
    if cooperative {
        workers::ensure_tables(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The partial indexes of the passes that just completed, if not built yet: before the first
/// complete pass they would make its updates ineligible for HOT (their predicates name the
/// columns it writes), after it they let every later run read only the pending rows. A failure
/// is the caller's to report (the pass itself is done; the next run builds them).
async fn build_pending_indexes(
    conn: &mut PgConnection,
    passes: &[BackfillStep],
    wait: Duration,
    progress: &Progress,
) -> anyhow::Result<Vec<&'static str>> {
    if passes.is_empty() {
        return Ok(Vec::new());
    }
    let runs = migrate::apply_after_backfill(conn, passes, wait, progress).await?;
    let built: Vec<&'static str> = runs
        .iter()
        .filter_map(|r| match r.kind {
            StepKind::ConcurrentIndex { index } => Some(index),
            _ => None,
        })
        .collect();
    // The report says so; a log line for --follow, whose rounds print no report.
    for index in &built {
        tracing::info!("built {index}: later runs read only the pending rows");
    }
    Ok(built)
}

/// Ctrl-C or SIGTERM sets `stop`; the run finishes its batch, reports and exits 0.
fn listen_for_stop(stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        stop.store(true, Ordering::Relaxed);
        tracing::warn!(
            "stopping after the batch under way (Ctrl-C again to quit at once: the last committed batch is the checkpoint)"
        );
        // A second Ctrl-C quits at once, as a person expects; like kill -9, it loses nothing.
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(i32::from(exit::RUNTIME_FAILURE));
        }
    });
}

/// Waits `interval`, or less if told to stop; false when told to stop.
async fn sleep_unless_stopped(stop: &AtomicBool, interval: Duration) -> bool {
    let deadline = Instant::now() + interval;
    while Instant::now() < deadline {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100).min(interval)).await;
    }
    !stop.load(Ordering::Relaxed)
}
