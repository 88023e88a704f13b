//! `paytool backfill payments`: item snapshots, order totals and payment rows for existing
//! data, in keyset batches that each commit with their checkpoint.

mod batch;
mod checkpoint;
pub mod control;
mod workers;

pub use crate::throttle::ThrottleSettings;
use crate::throttle::{self, Throttle};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::{Connection, PgConnection};
use thiserror::Error;

pub use batch::BatchPolicy;
pub use workers::Cooperation;

use crate::db::{self, DatabaseUrl, IdType, Key};
use crate::exit;
use crate::migrate::{self, steps::StepKind};
use crate::progress::Progress;
use crate::retry::Backoff;

pub use crate::db::BACKFILL_LOCK;

/// Serializes the creation of paytool's backfill tables, for one transaction.
const SETUP_LOCK: i64 = 0x7061_7974_6f6f_6c06;

/// How many unresolved ids a report names per reason.
/// The three steps, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillStep {
    Items,
    Orders,
    Payments,
}

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

const SAMPLE_SIZE: i64 = 10;
const BATCH_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
const DRY_RUN_SQL: &str = include_str!("../../sql/backfill/dry_run.sql");

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
    #[error(transparent)]
    BadThrottleQuery(#[from] throttle::BadThrottleQuery),
}

impl BackfillError {
    pub fn exit_code(&self) -> u8 {
        match self {
            BackfillError::RetriesExhausted { .. } => exit::RUNTIME_FAILURE,
            BackfillError::BadThrottleQuery(_) => exit::USAGE,
        }
    }
}

/// One step and its SQL.
struct StepDef {
    step: BackfillStep,
    name: &'static str,
    /// The table the step writes, analyzed once it changed rows: the next step reads it.
    writes: &'static str,
    /// The (table, column) the step walks by key.
    key: (&'static str, &'static str),
    /// The migrate step that builds the partial index of the step's pending rows, after its
    /// first complete pass.
    pending_index: Option<i32>,
    /// Pending row count and largest pending key, when the step starts.
    extent_sql: &'static str,
    /// The next batch: (last key, rows) of the next $2 keys after $1, up to $3.
    range_sql: &'static str,
    batch_sql: &'static str,
    unresolved_sql: &'static str,
    /// Every $1-th pending key and the last one, in order, as text, each with the number of
    /// pending keys: where cooperative workers' ranges end.
    boundaries_sql: &'static str,
}

// The next batch of pending keys: each step walks only what it still has to do, through a
// partial index (migrate steps 027 and 028) or the payment queue, so a run costs the pending
// rows and a catch-up on a backfilled database reads almost nothing. $1 (NULL for the first
// batch) and $3 are bound with the key column's type, text or uuid; the last key comes back as
// text, taken with ORDER BY because uuid has no max().
const ITEMS_RANGE_SQL: &str = "WITH batch AS (
    SELECT id FROM order_items WHERE label IS NULL AND ($1 IS NULL OR id > $1) AND id <= $3
    ORDER BY id LIMIT $2)
SELECT (SELECT id::TEXT FROM batch ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM batch)";
const ORDERS_RANGE_SQL: &str = "WITH batch AS (
    SELECT order_id FROM paytool.backfill_order_queue
    WHERE state = 'pending' AND ($1 IS NULL OR order_id > $1) AND order_id <= $3
    ORDER BY order_id LIMIT $2)
SELECT (SELECT order_id::TEXT FROM batch ORDER BY order_id DESC LIMIT 1), (SELECT count(*) FROM batch)";
const PAYMENTS_RANGE_SQL: &str = "WITH batch AS (
    SELECT order_id FROM paytool.backfill_payment_queue
    WHERE ($1 IS NULL OR order_id > $1) AND order_id <= $3
    ORDER BY order_id LIMIT $2)
SELECT (SELECT order_id::TEXT FROM batch ORDER BY order_id DESC LIMIT 1), (SELECT count(*) FROM batch)";

const STEPS: [StepDef; 3] = [
    StepDef {
        step: BackfillStep::Items,
        name: "items",
        writes: "order_items",
        key: ("order_items", "id"),
        pending_index: Some(27),
        extent_sql: "SELECT (SELECT count(*) FROM order_items WHERE label IS NULL),
            (SELECT id::TEXT FROM order_items WHERE label IS NULL ORDER BY id DESC LIMIT 1)",
        range_sql: ITEMS_RANGE_SQL,
        batch_sql: include_str!("../../sql/backfill/items_batch.sql"),
        unresolved_sql: include_str!("../../sql/backfill/items_unresolved.sql"),
        boundaries_sql: "SELECT key::TEXT, total FROM (SELECT id AS key, row_number() OVER (ORDER BY id) AS n, count(*) OVER () AS total
            FROM order_items WHERE label IS NULL) AS pending WHERE n % $1 = 0 OR n = total ORDER BY key",
    },
    StepDef {
        step: BackfillStep::Orders,
        name: "orders",
        writes: "orders",
        // The order queue: what the application inserted or changed since the last run (step
        // 029's triggers), and once every order not totalled yet, never the orders settled.
        key: ("paytool.backfill_order_queue", "order_id"),
        pending_index: Some(28),
        extent_sql: "SELECT (SELECT count(*) FROM paytool.backfill_order_queue WHERE state = 'pending'),
            (SELECT order_id::TEXT FROM paytool.backfill_order_queue WHERE state = 'pending' ORDER BY order_id DESC LIMIT 1)",
        range_sql: ORDERS_RANGE_SQL,
        batch_sql: include_str!("../../sql/backfill/orders_batch.sql"),
        unresolved_sql: include_str!("../../sql/backfill/orders_unresolved.sql"),
        boundaries_sql: "SELECT key::TEXT, total FROM (SELECT order_id AS key, row_number() OVER (ORDER BY order_id) AS n,
            count(*) OVER () AS total FROM paytool.backfill_order_queue WHERE state = 'pending') AS pending
            WHERE n % $1 = 0 OR n = total ORDER BY key",
    },
    StepDef {
        step: BackfillStep::Payments,
        name: "payments",
        writes: "payments",
        key: ("paytool.backfill_payment_queue", "order_id"),
        pending_index: None,
        extent_sql: "SELECT (SELECT count(*) FROM paytool.backfill_payment_queue),
            (SELECT order_id::TEXT FROM paytool.backfill_payment_queue ORDER BY order_id DESC LIMIT 1)",
        range_sql: PAYMENTS_RANGE_SQL,
        batch_sql: include_str!("../../sql/backfill/payments_batch.sql"),
        unresolved_sql: include_str!("../../sql/backfill/payments_unresolved.sql"),
        boundaries_sql: "SELECT key::TEXT, total FROM (SELECT order_id AS key, row_number() OVER (ORDER BY order_id) AS n,
            count(*) OVER () AS total FROM paytool.backfill_payment_queue) AS pending WHERE n % $1 = 0 OR n = total ORDER BY key",
    },
];

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Unresolved {
    pub reason: String,
    pub rows: i64,
    pub sample: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StepReport {
    pub step: &'static str,
    /// Rows of the step's table read by this run.
    pub scanned: i64,
    /// Rows written (items snapshotted, orders totalled, payments inserted); with --dry-run,
    /// rows that would be.
    pub changed: i64,
    /// Scanned rows that needed nothing (already done) and are not unresolved.
    pub skipped: i64,
    /// Rows that cannot be resolved, in the whole table, after this run.
    pub unresolved: i64,
    pub unresolved_by_reason: Vec<Unresolved>,
    pub duration_ms: u64,
    pub rows_per_second: u64,
    pub batches: u64,
    pub longest_batch_ms: u64,
    /// Median batch duration.
    pub p50_batch_ms: u64,
    /// 95th percentile of the batch durations: the usual worst, where `longest_batch_ms` may
    /// be one outlier (a checkpoint, a cold page).
    pub p95_batch_ms: u64,
    pub last_batch_size: i64,
    /// Batches retried after a lock timeout, deadlock, serialization failure or lost connection.
    pub retries: u32,
    /// The key this run resumed after, when an earlier run had stopped part-way (with
    /// --workers: the generation of ranges it finished).
    pub resumed_after: Option<String>,
    /// Run with --workers: shared with other workers through ranges of keys.
    pub cooperative: bool,
    /// Workers of this process (--workers; 1 without it).
    pub workers: u32,
    /// Ranges this process's workers finished (--workers only).
    pub ranges: u64,
    /// Of those, ranges another worker had claimed and not finished (a dead or stopped one).
    pub ranges_reclaimed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackfillReport {
    pub database: String,
    pub dry_run: bool,
    pub strict: bool,
    /// Rounds run: 1, or with --follow as many as ran until interrupted.
    pub rounds: u64,
    pub steps: Vec<StepReport>,
    /// Partial indexes of the pending rows this run built once its first complete pass was
    /// done (migrate steps 027 and 028).
    pub indexes_built: Vec<&'static str>,
    /// Why those indexes could not be built this time (the migrate lock held by a long
    /// migration, a lock never obtained): the backfill itself is done, the next run tries again.
    pub indexes_not_built: Option<String>,
    /// Time held per health signal (throttling), every signal that held at least once.
    pub held: BTreeMap<&'static str, throttle::Held>,
    /// Stopped by Ctrl-C or SIGTERM before the end (not in --follow, where that is the end).
    pub interrupted: bool,
}

impl BackfillReport {
    pub fn exit_code(&self) -> u8 {
        let unresolved = self.steps.iter().any(|s| s.unresolved > 0);
        if self.interrupted {
            exit::RUNTIME_FAILURE
        } else if self.strict && unresolved {
            exit::PROBLEMS_FOUND
        } else {
            exit::OK
        }
    }
}

/// Everything a run needs besides the connection.
pub struct Backfill<'a> {
    pub url: &'a DatabaseUrl,
    pub batch: BatchPolicy,
    pub pause: Duration,
    pub lock_timeout: Duration,
    /// Each batch counts the sessions waiting for its locks (throttling on).
    pub count_waiting: bool,
    pub max_retries: u32,
    pub progress: Progress,
    /// Set by Ctrl-C or SIGTERM in --follow mode: the run stops after the batch under way.
    pub stop: Arc<AtomicBool>,
    pub throttle: tokio::sync::Mutex<Throttle>,
    /// This process's name in paytool.backfill_workers.
    pub worker: String,
    /// The operators' settings as last read: kept when a reading fails, so that a lost
    /// connection does not undo a pause for a batch.
    pub last_control: std::sync::Mutex<control::ControlSettings>,
}

pub async fn run(
    args: &BackfillRequest,
    url: Option<&DatabaseUrl>,
    progress: Progress,
) -> anyhow::Result<BackfillReport> {
    let mut conn = db::connect(url).await?;
    // Even --dry-run: it creates paytool's own tables.
    db::require_primary(&mut conn, url, "backfill payments").await?;
    let url = url.ok_or(db::DbError::NoUrl)?;
    db::require_legacy_schema(&mut conn).await?;
    migrate::require_migrated(&mut conn).await?;
    let steps: Vec<&StepDef> = STEPS
        .iter()
        .filter(|s| args.step.is_none_or(|only| only == s.step))
        .collect();
    let mut report = BackfillReport {
        database: url.redacted().to_owned(),
        dry_run: args.dry_run,
        strict: args.strict,
        rounds: 1,
        steps: Vec::new(),
        indexes_built: Vec::new(),
        indexes_not_built: None,
        held: BTreeMap::new(),
        interrupted: false,
    };
    if args.dry_run {
        report.steps = dry_run(&mut conn, &steps).await?;
        return Ok(report);
    }
    match args.cooperation {
        None => BACKFILL_LOCK.acquire(&mut conn, args.wait).await?,
        // Every cooperative process holds it shared: they run together, a lone run waits.
        Some(_) => BACKFILL_LOCK.acquire_shared(&mut conn, args.wait).await?,
    };
    {
        // Cooperative processes start together: one creates paytool's tables, the others wait.
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SETUP_LOCK)
            .execute(&mut *tx)
            .await?;
        checkpoint::ensure_table(&mut tx).await?;
        control::ensure_tables(&mut tx).await?;
        if args.cooperation.is_some() {
            workers::ensure_tables(&mut tx).await?;
        }
        tx.commit().await?;
    }
    let run_started: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut conn)
        .await?;
    let throttle = Throttle::new(args.throttle.clone(), "backfill");
    throttle
        .check_query(&mut conn)
        .await
        .map_err(BackfillError::from)?;
    let backfill = Backfill {
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
        progress,
        stop: Arc::new(AtomicBool::new(false)),
        throttle: tokio::sync::Mutex::new(throttle),
        worker: control::worker_name(),
        last_control: std::sync::Mutex::new(control::ControlSettings::default()),
    };
    // Ctrl-C or SIGTERM: the batch under way commits, then the run stops at its checkpoint.
    listen_for_stop(backfill.stop.clone());
    backfill.throttle.lock().await.stop = Some(backfill.stop.clone());
    report.rounds = 0;
    loop {
        let round_started = Instant::now();
        let mut round = Vec::new();
        let mut complete_passes = Vec::new();
        for step in &steps {
            if backfill.stop.load(Ordering::Relaxed) {
                break;
            }
            let restart = args.restart || report.rounds > 0;
            let step_report = match args.cooperation {
                None => {
                    backfill
                        .run_step(&mut conn, step, restart, args.wait)
                        .await?
                }
                Some(cooperation) => {
                    backfill
                        .run_step_cooperative(&mut conn, step, cooperation, run_started, args.wait)
                        .await?
                }
            };
            round.push(step_report);
            if !backfill.stop.load(Ordering::Relaxed) {
                complete_passes.extend(step.pending_index);
            }
        }
        match build_pending_indexes(&mut conn, &complete_passes, args.wait, &backfill.progress)
            .await
        {
            Ok(built) => report.indexes_built.extend(built),
            Err(err) => {
                let reason = crate::exit::message(&err);
                tracing::warn!(
                    "the partial indexes of the pending rows were not built ({reason}); the next run tries again"
                );
                report.indexes_not_built = Some(reason);
            }
        }
        report.rounds += 1;
        let line = round_line(
            report.rounds,
            &round,
            round_started.elapsed(),
            args.interval,
        );
        merge_round(&mut report.steps, round);
        if !args.follow {
            break;
        }
        backfill.progress.note(&line);
        if !backfill.sleep_unless_stopped(args.interval).await {
            break;
        }
    }
    report.held = std::mem::take(&mut backfill.throttle.lock().await.held);
    control::leave(&mut conn, &backfill.worker).await;
    report.interrupted = !args.follow && backfill.stop.load(Ordering::Relaxed);
    if report.interrupted {
        tracing::warn!(
            "interrupted: the batch under way was committed; run paytool backfill payments again to resume"
        );
    }
    Ok(report)
}

/// The partial indexes of the steps that just completed a pass, if not built yet: before the
/// first complete pass they would make its updates ineligible for HOT (their predicates name
/// the columns it writes), after it they let every later run read only the pending rows.
async fn build_pending_indexes(
    conn: &mut PgConnection,
    versions: &[i32],
    wait: Duration,
    progress: &Progress,
) -> anyhow::Result<Vec<&'static str>> {
    if versions.is_empty() {
        return Ok(Vec::new());
    }
    let runs = migrate::apply_after_backfill(conn, versions, wait, progress).await?;
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

/// Adds one round's step reports to the totals: counts add up, the worst batch stays, the
/// unresolved rows are those of the last round.
fn merge_round(totals: &mut Vec<StepReport>, round: Vec<StepReport>) {
    for step in round {
        match totals.iter_mut().find(|t| t.step == step.step) {
            None => totals.push(step),
            Some(total) => {
                let duration_ms = total.duration_ms + step.duration_ms;
                let scanned = total.scanned + step.scanned;
                if step.batches > total.batches {
                    total.p50_batch_ms = step.p50_batch_ms;
                }
                total.p95_batch_ms = total.p95_batch_ms.max(step.p95_batch_ms);
                total.longest_batch_ms = total.longest_batch_ms.max(step.longest_batch_ms);
                total.scanned = scanned;
                total.changed += step.changed;
                total.skipped += step.skipped;
                total.batches += step.batches;
                total.retries += step.retries;
                total.last_batch_size = step.last_batch_size;
                total.ranges += step.ranges;
                total.ranges_reclaimed += step.ranges_reclaimed;
                total.duration_ms = duration_ms;
                total.rows_per_second = rate(scanned, Duration::from_millis(duration_ms));
                total.unresolved = step.unresolved;
                total.unresolved_by_reason = step.unresolved_by_reason;
            }
        }
    }
}

/// `round 3 in 38 ms: items +12, orders +4, payments +4; 14 unresolved; next round in 5s`
fn round_line(round: u64, steps: &[StepReport], took: Duration, interval: Duration) -> String {
    let changed: Vec<String> = steps
        .iter()
        .map(|s| format!("{} +{}", s.step, s.changed))
        .collect();
    let unresolved: i64 = steps.iter().map(|s| s.unresolved).sum();
    format!(
        "round {round} in {} ms: {}; {unresolved} unresolved; next round in {} (Ctrl-C stops)",
        took.as_millis(),
        changed.join(", "),
        humantime::format_duration(interval)
    )
}

impl Backfill<'_> {
    /// Waits `interval`, or less if told to stop; false when told to stop.
    async fn sleep_unless_stopped(&self, interval: Duration) -> bool {
        let deadline = Instant::now() + interval;
        while Instant::now() < deadline {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100).min(interval)).await;
        }
        !self.stop.load(Ordering::Relaxed)
    }
}

/// Outcome of one batch; no `last` key when the range is done.
struct BatchOutcome {
    last: Option<Key>,
    scanned: i64,
    changed: i64,
    /// Sessions waiting for the batch's locks just before it committed (0 unthrottled).
    waiting: i64,
}

impl Backfill<'_> {
    /// One step: walk its pending rows in batches up to the largest key that exists now, then
    /// report what it did and what is left unresolved.
    async fn run_step(
        &self,
        conn: &mut PgConnection,
        step: &StepDef,
        restart: bool,
        wait: Duration,
    ) -> anyhow::Result<StepReport> {
        let started = Instant::now();
        let resumed_after = self.take_checkpoint(conn, step, restart).await?;
        let key_type = IdType::of(conn, step.key.0, step.key.1).await?;
        let (total, end_key) = extent(conn, step).await?;
        self.throttle.lock().await.step_writes(total);
        let end_key = end_key.map(|k| Key::parse(key_type, &k)).transpose()?;
        let bar = self.progress.rows(step.name, total as u64);
        let mut tally = Tally::new(self.batch.first_size());
        if let Some(end_key) = &end_key {
            let lane = Lane {
                worker: &self.worker,
                range: None,
            };
            let from = Key::start(key_type);
            self.walk(conn, step, (&from, end_key), wait, &mut tally, &bar, &lane)
                .await?;
        }
        bar.finish_and_clear();
        // Stopped midway: the checkpoint stays unfinished (the next run says where it resumes).
        if !self.stop.load(Ordering::Relaxed) {
            checkpoint::finish(conn, step.name).await?;
        }
        self.after_step(conn, step, tally, resumed_after, started)
            .await
    }

    /// Once a step's walk is over: statistics refreshed after a big rewrite, the unresolved
    /// rows counted, the report. A stopped step leaves those scans to the run that finishes it.
    async fn after_step(
        &self,
        conn: &mut PgConnection,
        step: &StepDef,
        tally: Tally,
        resumed_after: Option<String>,
        started: Instant,
    ) -> anyhow::Result<StepReport> {
        let stopped = self.stop.load(Ordering::Relaxed);
        if !stopped && rewrote_a_good_part(conn, step.writes, tally.changed).await? {
            db::analyze_after_rewrite(conn, step.writes).await;
        }
        let unresolved_by_reason = if stopped {
            Vec::new()
        } else {
            unresolved(conn, step).await?
        };
        let report = tally.into_report(step.name, resumed_after, unresolved_by_reason, started);
        tracing::info!(
            "step {}: {} scanned, {} changed, {} unresolved in {} ms",
            step.name,
            report.scanned,
            report.changed,
            report.unresolved,
            report.duration_ms
        );
        Ok(report)
    }

    /// Starts the step's checkpoint; returns where an interrupted earlier run had stopped.
    /// Every run walks the pending rows from the start anyway: what a stopped run finished is
    /// no longer pending, and what the application wrote below its checkpoint meanwhile is.
    async fn take_checkpoint(
        &self,
        conn: &mut PgConnection,
        step: &StepDef,
        restart: bool,
    ) -> anyhow::Result<Option<String>> {
        let resumed_after = if restart {
            None
        } else {
            checkpoint::unfinished(conn, step.name).await?
        };
        if let Some(key) = &resumed_after {
            tracing::info!(
                "step {}: an earlier run stopped after {key}; taking what is still pending",
                step.name
            );
        }
        checkpoint::start(conn, step.name).await?;
        Ok(resumed_after)
    }

    /// The batch loop: a batch after the last key, its size adapted to its time; a transient
    /// failure retried after a backoff from the checkpoint the server really has.
    /// `keys`: the walk goes from after the first key (the start: from the first key) up to
    /// and including the second.
    #[allow(clippy::too_many_arguments)]
    async fn walk(
        &self,
        conn: &mut PgConnection,
        step: &StepDef,
        keys: (&Key, &Key),
        wait: Duration,
        tally: &mut Tally,
        bar: &indicatif::ProgressBar,
        lane: &Lane<'_>,
    ) -> anyhow::Result<()> {
        let (from, end_key) = keys;
        let key_type = from.key_type();
        let mut last_id = from.clone();
        let mut size = self.batch.first_size();
        let mut delays = Backoff::DATABASE.delays(self.max_retries);
        let mut failures_in_a_row = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let control = self.between_batches(conn, step, &last_id, bar, lane).await;
            // What an operator set with `paytool backfill set` wins over this run's flags.
            let policy = BatchPolicy {
                fixed: control.batch_size.or(self.batch.fixed),
                target: control
                    .target_batch_ms
                    .map_or(self.batch.target, |ms| Duration::from_millis(ms as u64)),
                ..self.batch
            };
            if let Some(pinned) = control.batch_size {
                size = pinned;
            }
            let pause = control
                .pause_ms
                .map_or(self.pause, |ms| Duration::from_millis(ms as u64));
            let batch_started = Instant::now();
            let limits = BatchLimits {
                size,
                lock_timeout: self.lock_timeout,
                count_waiting: self.count_waiting,
            };
            match run_batch(conn, step, (&last_id, end_key), limits, lane).await {
                Ok(BatchOutcome { last: None, .. }) => break,
                Ok(BatchOutcome {
                    last: Some(key),
                    scanned,
                    changed,
                    waiting,
                }) => {
                    let elapsed = batch_started.elapsed();
                    if waiting > 0 {
                        self.throttle.lock().await.batch_was_waited_for(waiting);
                    }
                    if elapsed > self.batch.target * 2 {
                        tracing::debug!(
                            "step {}: a batch of {size} rows after {last_id} took {}",
                            step.name,
                            crate::human::duration(elapsed)
                        );
                    }
                    tally.batch(scanned, changed, size, elapsed);
                    bar.inc(scanned as u64);
                    last_id = key;
                    size = policy.next_size(size, elapsed);
                    failures_in_a_row = 0;
                    delays = Backoff::DATABASE.delays(self.max_retries);
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                Err(err) if db::is_transient(&err) || db::is_connection_lost(&err) => {
                    failures_in_a_row += 1;
                    let Some(delay) = delays.next() else {
                        return Err(BackfillError::RetriesExhausted {
                            step: step.name,
                            attempts: failures_in_a_row,
                            reason: err.to_string(),
                            table: step.writes,
                            holders: db::lock_holders(conn, step.writes).await,
                        }
                        .into());
                    };
                    tally.retries += 1;
                    tracing::warn!(
                        "step {}: batch failed ({err}); retry {failures_in_a_row} in {}",
                        step.name,
                        crate::human::duration(delay)
                    );
                    tokio::time::sleep(delay).await;
                    if db::is_connection_lost(&err) {
                        // A server restarting refuses connections for a moment: each failed
                        // reconnection takes the next delay of the same retry budget.
                        *conn = loop {
                            match self.reconnect(wait, lane).await {
                                Ok(conn) => break conn,
                                Err(again) if is_unreachable(&again) => {
                                    failures_in_a_row += 1;
                                    let Some(delay) = delays.next() else {
                                        return Err(again.context(format!(
                                            "step {}: the connection was lost and could not be made again after {failures_in_a_row} attempts; \
                                             the checkpoint is kept, run paytool backfill payments again to resume",
                                            step.name
                                        )));
                                    };
                                    tally.retries += 1;
                                    tracing::warn!(
                                        "step {}: cannot reconnect yet ({again:#}); retry {failures_in_a_row} in {}",
                                        step.name,
                                        crate::human::duration(delay)
                                    );
                                    tokio::time::sleep(delay).await;
                                }
                                Err(other) => return Err(other),
                            }
                        };
                    }
                    // The last COMMIT may or may not have reached the server: ask it.
                    let committed = match &lane.range {
                        None => checkpoint::last_id(conn, step.name).await?,
                        Some(range) => range.last_id(conn).await?,
                    };
                    last_id = if committed.is_empty() {
                        from.clone()
                    } else {
                        Key::parse(key_type, &committed)?
                    };
                }
                Err(err) => {
                    return Err(anyhow::Error::new(err).context(format!(
                        "step {} failed at a batch after key {:?}; the checkpoint is kept, run again to resume",
                        step.name,
                        last_id.text()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Between two batches: say where this worker is, read what the operators want (holding
    /// while they paused the backfill), then hold while the database is unhealthy.
    async fn between_batches(
        &self,
        conn: &mut PgConnection,
        step: &StepDef,
        last_id: &Key,
        bar: &indicatif::ProgressBar,
        lane: &Lane<'_>,
    ) -> control::ControlSettings {
        let beat = |held: Option<String>| control::Beat {
            worker: lane.worker,
            step: step.name,
            position: (!last_id.is_start()).then(|| last_id.text()),
            rows_done: bar.position() as i64,
            rows_total: bar.length().unwrap_or(0) as i64,
            rows_per_second: bar.per_sec(),
            held,
        };
        let mut settings = match control::tick(conn, &beat(None)).await {
            Ok(read) => read,
            Err(err) => {
                tracing::warn!(
                    "could not read the operators' settings ({err}); keeping the last ones"
                );
                self.last_control
                    .lock()
                    .map(|c| c.clone())
                    .unwrap_or_default()
            }
        };
        if settings.paused {
            let by = format!(
                "paused by {} at {}",
                settings.changed_by.as_deref().unwrap_or("?"),
                settings.changed_at.as_deref().unwrap_or("?")
            );
            tracing::warn!("backfill {by}: no batch commits until paytool backfill resume");
            let label = bar.message();
            bar.set_message(format!("{label}: {by}"));
            let started = Instant::now();
            while settings.paused && !self.stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                settings = control::tick(conn, &beat(Some(by.clone())))
                    .await
                    .unwrap_or(settings);
            }
            bar.set_message(label);
            tracing::warn!(
                "backfill resumed after {}",
                crate::human::duration(started.elapsed())
            );
            let mut throttle = self.throttle.lock().await;
            let held = throttle.held.entry("paused").or_default();
            held.ms += started.elapsed().as_millis() as u64;
            held.times += 1;
        }
        if let Ok(mut kept) = self.last_control.lock() {
            kept.clone_from(&settings);
        }
        self.hold_while_unhealthy(conn, step, bar, lane.worker)
            .await;
        settings
    }

    /// Throttling between batches. A health reading that fails (a lost connection) is not a
    /// reason to stop: the batch after it has its own retries.
    async fn hold_while_unhealthy(
        &self,
        conn: &mut PgConnection,
        step: &StepDef,
        bar: &indicatif::ProgressBar,
        worker: &str,
    ) {
        let mut throttle = self.throttle.lock().await;
        if let Err(err) = throttle
            .wait_until_healthy(conn, step.writes, Some(worker), bar)
            .await
        {
            tracing::warn!(
                "step {}: could not read the database's health ({err})",
                step.name
            );
        }
    }

    async fn reconnect(&self, wait: Duration, lane: &Lane<'_>) -> anyhow::Result<PgConnection> {
        let mut conn = db::connect(Some(self.url)).await?;
        // The lock died with the old session. A cooperative worker's connection holds none:
        // its process's main session holds the shared one.
        if lane.range.is_none() {
            BACKFILL_LOCK.acquire(&mut conn, wait).await?;
        }
        Ok(conn)
    }
}

/// A connection that failed for a reason that may pass by itself (the server restarting).
fn is_unreachable(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<db::DbError>(),
        Some(db::DbError::Unreachable { .. })
    )
}

/// Who walks a key range, and where its checkpoint is.
struct Lane<'w> {
    /// Its name in paytool.backfill_workers.
    worker: &'w str,
    /// The cooperative range it walks; `None`: the step's own checkpoint (one worker).
    range: Option<workers::RangeRef>,
}

/// The step's row count (for the progress bar) and its largest key now: the run stops there, so
/// rows the application keeps adding cannot make it chase the end of the table forever; they
/// are left whole for the next run.
async fn extent(
    conn: &mut PgConnection,
    step: &StepDef,
) -> Result<(i64, Option<String>), sqlx::Error> {
    // Through the partial indexes, whatever the statistics say, like the batches.
    let mut tx = conn.begin().await?;
    db::set_batch_planner(&mut tx, true).await?;
    let extent = sqlx::query_as(step.extent_sql).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(extent)
}

/// What a step's batches did, as they go.
struct Tally {
    scanned: i64,
    changed: i64,
    retries: u32,
    last_batch_size: i64,
    batch_ms: Vec<u64>,
}

impl Tally {
    fn new(first_size: i64) -> Self {
        Tally {
            scanned: 0,
            changed: 0,
            retries: 0,
            last_batch_size: first_size,
            batch_ms: Vec::new(),
        }
    }

    /// Another worker's tally of the same step.
    fn absorb(&mut self, other: Tally) {
        self.scanned += other.scanned;
        self.changed += other.changed;
        self.retries += other.retries;
        self.last_batch_size = other.last_batch_size;
        self.batch_ms.extend(other.batch_ms);
    }

    fn batch(&mut self, scanned: i64, changed: i64, size: i64, elapsed: Duration) {
        self.scanned += scanned;
        self.changed += changed;
        self.last_batch_size = size;
        self.batch_ms.push(elapsed.as_millis() as u64);
    }

    fn into_report(
        mut self,
        step: &'static str,
        resumed_after: Option<String>,
        unresolved_by_reason: Vec<Unresolved>,
        started: Instant,
    ) -> StepReport {
        let unresolved: i64 = unresolved_by_reason.iter().map(|u| u.rows).sum();
        StepReport {
            step,
            scanned: self.scanned,
            changed: self.changed,
            skipped: (self.scanned - self.changed - unresolved).max(0),
            unresolved,
            unresolved_by_reason,
            duration_ms: started.elapsed().as_millis() as u64,
            rows_per_second: rate(self.scanned, started.elapsed()),
            batches: self.batch_ms.len() as u64,
            longest_batch_ms: self.batch_ms.iter().copied().max().unwrap_or(0),
            p50_batch_ms: percentile(&mut self.batch_ms, 0.50),
            p95_batch_ms: percentile(&mut self.batch_ms, 0.95),
            last_batch_size: self.last_batch_size,
            retries: self.retries,
            resumed_after,
            cooperative: false,
            workers: 1,
            ranges: 0,
            ranges_reclaimed: 0,
        }
    }
}

fn percentile(values: &mut [u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let index = ((values.len() - 1) as f64 * p).round() as usize;
    values[index]
}

fn rate(rows: i64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        (rows as f64 / secs) as u64
    } else {
        0
    }
}

/// How one batch runs.
#[derive(Debug, Clone, Copy)]
struct BatchLimits {
    size: i64,
    lock_timeout: Duration,
    /// Count the sessions waiting for the batch's locks before it commits (the throttle's
    /// lock_waiters signal).
    count_waiting: bool,
}

/// One batch and its checkpoint, in one short transaction.
async fn run_batch(
    conn: &mut PgConnection,
    step: &StepDef,
    keys: (&Key, &Key),
    limits: BatchLimits,
    lane: &Lane<'_>,
) -> Result<BatchOutcome, sqlx::Error> {
    let BatchLimits {
        size,
        lock_timeout,
        count_waiting,
    } = limits;
    let (after, end_key) = keys;
    let mut tx = conn.begin().await?;
    db::set_batch_planner(&mut tx, true).await?;
    db::set_timeouts(
        &mut tx,
        db::Scope::Transaction,
        lock_timeout,
        BATCH_STATEMENT_TIMEOUT,
    )
    .await?;
    // The range first, then the batch with both bounds as values: with the upper bound hidden
    // in a subquery the planner guessed a wide range and chose a plan 100× slower.
    let (last_id, scanned): (Option<String>, i64) = sqlx::query_as(step.range_sql)
        .bind(after)
        .bind(size)
        .bind(end_key)
        .fetch_one(&mut *tx)
        .await?;
    let Some(last_id) = last_id else {
        return Ok(BatchOutcome {
            last: None,
            scanned: 0,
            changed: 0,
            waiting: 0,
        });
    };
    // The database printed it from a key of this type: it parses.
    let last_key =
        Key::parse(after.key_type(), &last_id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let changed: i64 = sqlx::query_scalar(step.batch_sql)
        .bind(after)
        .bind(&last_key)
        .fetch_one(&mut *tx)
        .await?;
    match &lane.range {
        None => {
            sqlx::query(checkpoint::ADVANCE_SQL)
                .bind(step.name)
                .bind(&last_id)
                .bind(scanned)
                .bind(changed)
                .execute(&mut *tx)
                .await?;
        }
        Some(range) => range.advance(&mut tx, &last_id, scanned, changed).await?,
    }
    let waiting = if count_waiting {
        throttle::count_waiting_or_zero(&mut tx).await
    } else {
        0
    };
    tx.commit().await?;
    Ok(BatchOutcome {
        last: Some(last_key),
        scanned,
        changed,
        waiting,
    })
}

/// Whether a step changed a tenth of its table or more (as autovacuum's default analyze
/// threshold): then the statistics are refreshed now, not whenever autovacuum gets to it. A
/// catch-up of a few rows does not pay for an ANALYZE.
async fn rewrote_a_good_part(
    conn: &mut PgConnection,
    table: &str,
    changed: i64,
) -> Result<bool, sqlx::Error> {
    if changed == 0 {
        return Ok(false);
    }
    let estimated: f64 = sqlx::query_scalar(
        "SELECT greatest(reltuples, 0)::FLOAT8 FROM pg_class WHERE oid = to_regclass($1)",
    )
    .bind(table)
    .fetch_optional(conn)
    .await?
    .unwrap_or(0.0);
    Ok(changed as f64 * 10.0 >= estimated)
}

/// The unresolved rows of a step, found through the same partial indexes as its batches.
async fn unresolved(
    conn: &mut PgConnection,
    step: &StepDef,
) -> Result<Vec<Unresolved>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    db::set_batch_planner(&mut tx, true).await?;
    let rows: Vec<Unresolved> = sqlx::query_as(step.unresolved_sql)
        .bind(SAMPLE_SIZE)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows)
}

/// One row of sql/backfill/dry_run.sql: a step, what would happen to some of its rows (changed,
/// or left unresolved for a reason), how many, and the first ids.
#[derive(sqlx::FromRow)]
struct DryRunOutcome {
    step: String,
    outcome: String,
    rows: i64,
    sample: Vec<String>,
}

/// The outcome of dry_run.sql's rows that a run would write.
const WOULD_CHANGE: &str = "would_change";

async fn dry_run(conn: &mut PgConnection, steps: &[&StepDef]) -> anyhow::Result<Vec<StepReport>> {
    let started = Instant::now();
    let outcomes: Vec<DryRunOutcome> = sqlx::query_as(DRY_RUN_SQL)
        .bind(SAMPLE_SIZE)
        .fetch_all(&mut *conn)
        .await?;
    let mut reports = Vec::new();
    for step in steps {
        let of_step = || outcomes.iter().filter(|o| o.step == step.name);
        let would_change: i64 = of_step()
            .filter(|o| o.outcome == WOULD_CHANGE)
            .map(|o| o.rows)
            .sum();
        // Items are unresolved for a reason of their own (a deleted product...); orders and
        // payments only because of their items or their total, as a real run would find.
        let unresolved_by_reason = if step.step == BackfillStep::Items {
            self::unresolved(conn, step).await?
        } else {
            of_step()
                .filter(|o| o.outcome != WOULD_CHANGE)
                .map(|o| Unresolved {
                    reason: o.outcome.clone(),
                    rows: o.rows,
                    sample: o.sample.clone(),
                })
                .collect()
        };
        let unresolved: i64 = unresolved_by_reason.iter().map(|u| u.rows).sum();
        // The payment queue does not exist before a first real run: what the payments step
        // would read is what it would write or leave unresolved.
        let scanned = if step.step == BackfillStep::Payments {
            would_change + unresolved
        } else {
            extent(conn, step).await?.0
        };
        reports.push(StepReport {
            step: step.name,
            scanned,
            changed: would_change,
            skipped: (scanned - would_change - unresolved).max(0),
            unresolved,
            unresolved_by_reason,
            duration_ms: started.elapsed().as_millis() as u64,
            ..StepReport::default()
        });
    }
    Ok(reports)
}
