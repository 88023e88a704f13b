//! The runner: walks a step's pending keys in batches, each committing with its checkpoint, and
//! keeps every connection it holds alive under one retry policy. Its state is one value,
//! [`Runner`]; where a walk writes its checkpoint and what it counts is its [`Lane`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use super::between::PauseClock;
use super::catalogue::{KeyedBy, StepDef};
use super::counters::StepCounters;
use super::report::{SlowBatch, StepReport, Tally, Unresolved};
use super::workers::RangeRef;
use super::{BACKFILL_LOCK, BackfillError, BatchPolicy, checkpoint, control};
use crate::db::{self, DatabaseUrl, IdType, Key};
use crate::progress::Progress;
use crate::retry::Backoff;
use crate::throttle::{self, Throttle};

pub(super) const SAMPLE_SIZE: i64 = 10;
const PAYMENTS: &str = "payments";
const BATCH_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a run needs besides its connections, resolved once.
pub(super) struct Runner<'a> {
    pub url: &'a DatabaseUrl,
    pub batch: BatchPolicy,
    pub pause: Duration,
    pub lock_timeout: Duration,
    /// Each batch counts the sessions waiting for its locks (throttling on).
    pub count_waiting: bool,
    pub max_retries: u32,
    /// How long to wait for the backfill lock, when a lost main connection takes it again.
    pub wait: Duration,
    /// Shared with other processes (`--workers`): the main connection holds the backfill
    /// lock shared, not alone.
    pub cooperative: bool,
    /// The type of order_items.id and of orders.id.
    pub item_ids: IdType,
    pub order_ids: IdType,
    pub progress: Progress,
    /// Set by Ctrl-C or SIGTERM: the run stops after the batch under way.
    pub stop: Arc<AtomicBool>,
    pub throttle: tokio::sync::Mutex<Throttle>,
    /// This process's name in paytool.backfill_workers.
    pub worker: String,
    /// The operators' settings as last read: kept when a reading fails, so that a lost
    /// connection does not undo a pause for a batch.
    pub last_control: std::sync::Mutex<control::ControlSettings>,
    pub pause_clock: PauseClock,
}

/// Which connection a statement runs on, and so what making it again takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Session {
    /// The process's main connection: it holds the backfill lock (shared when cooperative).
    Main,
    /// A cooperative worker's own connection: it holds no lock.
    Worker,
}

/// Who walks a key range, where its checkpoint is, and what it counts.
pub(super) struct Lane<'w> {
    /// Its name in paytool.backfill_workers.
    pub worker: &'w str,
    /// The cooperative range it walks; `None`: the step's own checkpoint (one worker, on the
    /// main connection).
    pub range: Option<RangeRef>,
    pub counters: &'w StepCounters,
}

impl Lane<'_> {
    pub(super) fn session(&self) -> Session {
        match self.range {
            None => Session::Main,
            Some(_) => Session::Worker,
        }
    }

    /// The last key the server has committed for this lane ("" before the first batch).
    async fn committed(&self, conn: &mut PgConnection, step: &str) -> Result<String, sqlx::Error> {
        match &self.range {
            None => checkpoint::last_id(conn, step).await,
            Some(range) => range.last_id(conn).await,
        }
    }
}

/// The delays left after failures in a row; a success starts a new budget.
pub(super) struct RetryBudget {
    delays: std::iter::Peekable<Box<dyn Iterator<Item = Duration> + Send>>,
    failures: u32,
}

impl RetryBudget {
    pub fn new(max_retries: u32) -> Self {
        let delays: Box<dyn Iterator<Item = Duration> + Send> =
            Box::new(Backoff::DATABASE.delays(max_retries));
        RetryBudget {
            delays: delays.peekable(),
            failures: 0,
        }
    }

    fn spent(&mut self) -> bool {
        self.delays.peek().is_none()
    }

    /// One more failure: the delay to wait before the next attempt, or the error that says
    /// the run gives up.
    pub fn failed(
        &mut self,
        what: &str,
        reason: &dyn std::fmt::Display,
    ) -> Result<Duration, BackfillError> {
        self.failures += 1;
        let attempts = self.failures;
        self.delays.next().ok_or_else(|| BackfillError::GaveUp {
            what: what.to_owned(),
            attempts,
            reason: reason.to_string(),
        })
    }
}

impl Runner<'_> {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn key_type(&self, step: &StepDef) -> IdType {
        match step.keyed_by {
            KeyedBy::ItemIds => self.item_ids,
            KeyedBy::OrderIds => self.order_ids,
        }
    }

    /// A connection for `session`: the main one takes the backfill lock again (it died with
    /// the session it was held by).
    pub async fn connect(&self, session: Session) -> anyhow::Result<PgConnection> {
        let mut conn = db::connect(self.url).await?;
        if session == Session::Main {
            if self.cooperative {
                BACKFILL_LOCK.acquire_shared(&mut conn, self.wait).await?;
            } else {
                BACKFILL_LOCK.acquire(&mut conn, self.wait).await?;
            }
        }
        Ok(conn)
    }

    /// Runs `op` until it succeeds, retrying what may pass by itself (a lost connection, a
    /// lock timeout, a deadlock) under the run's retry policy; the connection is made again
    /// when it was lost. For the statements between batches: claims, checkpoints, step ends.
    pub async fn retrying<T>(
        &self,
        conn: &mut PgConnection,
        session: Session,
        what: &str,
        mut op: impl AsyncFnMut(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> anyhow::Result<T> {
        let mut budget = RetryBudget::new(self.max_retries);
        loop {
            match op(conn).await {
                Ok(value) => return Ok(value),
                Err(err) if db::is_transient(&err) || db::is_connection_lost(&err) => {
                    self.recover(conn, session, &mut budget, what, &err).await?;
                }
                Err(err) => {
                    return Err(anyhow::Error::new(err).context(format!(
                        "{what} failed; the checkpoint is kept, run paytool backfill payments again to resume"
                    )));
                }
            }
        }
    }

    /// After a failure that may pass by itself: waits the budget's next delay, then, if the
    /// connection was lost, makes it again; a server restarting refuses connections for a
    /// moment, so each refused attempt takes the next delay of the same budget. Returns the
    /// failed attempts it counted.
    async fn recover(
        &self,
        conn: &mut PgConnection,
        session: Session,
        budget: &mut RetryBudget,
        what: &str,
        err: &sqlx::Error,
    ) -> Result<u32, BackfillError> {
        let before = budget.failures;
        let delay = budget.failed(what, err)?;
        tracing::warn!(
            "{what} failed ({err}); retry {} in {}",
            budget.failures,
            crate::human::duration(delay)
        );
        tokio::time::sleep(delay).await;
        if !db::is_connection_lost(err) {
            return Ok(budget.failures - before);
        }
        loop {
            match self.connect(session).await {
                Ok(fresh) => {
                    *conn = fresh;
                    return Ok(budget.failures - before);
                }
                Err(again) if is_unreachable(&again) => {
                    let delay = budget.failed(what, &format_args!("{again:#}"))?;
                    tracing::warn!(
                        "{what}: cannot reconnect yet ({again:#}); retry {} in {}",
                        budget.failures,
                        crate::human::duration(delay)
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(other) => {
                    return Err(BackfillError::GaveUp {
                        what: what.to_owned(),
                        attempts: budget.failures,
                        reason: format!("{other:#}"),
                    });
                }
            }
        }
    }

    /// One step alone: walk its pending rows in batches up to the largest key that exists
    /// now, then report what it did and what is left unresolved.
    pub async fn run_step(
        &self,
        conn: &mut PgConnection,
        step: &StepDef,
        restart: bool,
    ) -> anyhow::Result<StepReport> {
        let started = Instant::now();
        let main = Session::Main;
        let resumed_after = self
            .retrying(conn, main, "starting the step's checkpoint", async |c| {
                take_checkpoint(c, step, restart).await
            })
            .await?;
        let key_type = self.key_type(step);
        let (total, end_key) = self
            .retrying(conn, main, "counting the pending rows", async |c| {
                extent(c, step).await
            })
            .await?;
        self.throttle.lock().await.step_writes(total);
        let end_key = end_key.map(|k| Key::parse(key_type, &k)).transpose()?;
        let counters = StepCounters::start(&self.progress, step.name, total, 0);
        let mut tally = Tally::new(self.batch.first_size());
        if let Some(end_key) = &end_key {
            let lane = Lane {
                worker: &self.worker,
                range: None,
                counters: &counters,
            };
            let from = Key::start(key_type);
            self.walk(conn, step, (&from, end_key), &mut tally, &lane)
                .await?;
        }
        counters.finish();
        // Stopped midway: the checkpoint stays unfinished (the next run says where it resumes).
        if !self.stopped() {
            self.retrying(conn, main, "finishing the step's checkpoint", async |c| {
                checkpoint::finish(c, step.name).await
            })
            .await?;
        }
        self.after_step(conn, main, step, tally, resumed_after, started)
            .await
    }

    /// Once a step's walk is over: statistics refreshed after a big rewrite, the unresolved
    /// rows counted, the report. A stopped step leaves those scans to the run that finishes it.
    pub async fn after_step(
        &self,
        conn: &mut PgConnection,
        session: Session,
        step: &StepDef,
        tally: Tally,
        resumed_after: Option<String>,
        started: Instant,
    ) -> anyhow::Result<StepReport> {
        let stopped = self.stopped();
        // The orders step writes payments too (each settled order's).
        let payments_elsewhere = if step.writes == PAYMENTS {
            0
        } else {
            tally.payments_written
        };
        for (table, changed) in [(step.writes, tally.changed), (PAYMENTS, payments_elsewhere)] {
            let rewrote = !stopped
                && self
                    .retrying(conn, session, "reading the table's size", async |c| {
                        rewrote_a_good_part(c, table, changed).await
                    })
                    .await?;
            if rewrote {
                db::analyze_after_rewrite(conn, table).await;
            }
        }
        let unresolved_by_reason = if stopped {
            Vec::new()
        } else {
            self.retrying(conn, session, "counting the unresolved rows", async |c| {
                unresolved(c, step).await
            })
            .await?
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

    /// The batch loop: a batch after the last key, its size adapted to its time; a failure
    /// that may pass by itself retried after a backoff from the checkpoint the server really
    /// has. `keys`: from after the first key (the start: from the first key) up to and
    /// including the second.
    pub async fn walk(
        &self,
        conn: &mut PgConnection,
        step: &StepDef,
        keys: (&Key, &Key),
        tally: &mut Tally,
        lane: &Lane<'_>,
    ) -> anyhow::Result<()> {
        let (from, end_key) = keys;
        let mut last_id = from.clone();
        let mut budget = RetryBudget::new(self.max_retries);
        while !self.stopped() {
            let control = self.between_batches(conn, step, &last_id, lane).await;
            // What an operator set with `paytool backfill set` wins over this run's flags.
            let policy = BatchPolicy {
                fixed: control.batch_size.or(self.batch.fixed),
                target: control
                    .target_batch_ms
                    .map_or(self.batch.target, |ms| Duration::from_millis(ms as u64)),
                ..self.batch
            };
            if let Some(pinned) = control.batch_size {
                tally.next_size = pinned;
            }
            let size = tally.next_size;
            let pause = control
                .pause_ms
                .map_or(self.pause, |ms| Duration::from_millis(ms as u64));
            let batch_started = Instant::now();
            let started_at = chrono::Utc::now();
            let limits = BatchLimits {
                size,
                lock_timeout: self.lock_timeout,
                count_waiting: self.count_waiting,
            };
            match run_batch(conn, step, (&last_id, end_key), limits, lane.range.as_ref()).await {
                Ok(BatchOutcome { last: None, .. }) => break,
                Ok(BatchOutcome {
                    last: Some(key),
                    scanned,
                    changed,
                    payments,
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
                    let batch = SlowBatch {
                        started_at,
                        ms: elapsed.as_millis() as u64,
                        size,
                        after: last_id.text(),
                    };
                    tally.batch(scanned, (changed, payments), batch);
                    lane.counters.add(scanned);
                    last_id = key;
                    tally.next_size = policy.next_size(size, elapsed);
                    budget = RetryBudget::new(self.max_retries);
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                Err(err) if db::is_transient(&err) || db::is_connection_lost(&err) => {
                    if !db::is_connection_lost(&err) && budget.spent() {
                        return Err(BackfillError::RetriesExhausted {
                            step: step.name,
                            attempts: budget.failures + 1,
                            reason: err.to_string(),
                            table: step.writes,
                            holders: db::lock_holders(conn, step.writes).await,
                        }
                        .into());
                    }
                    let what = format!("step {}: a batch", step.name);
                    tally.retries += self
                        .recover(conn, lane.session(), &mut budget, &what, &err)
                        .await?;
                    // The last COMMIT may or may not have reached the server: ask it.
                    let committed = self
                        .retrying(conn, lane.session(), "reading the checkpoint", async |c| {
                            lane.committed(c, step.name).await
                        })
                        .await?;
                    last_id = if committed.is_empty() {
                        from.clone()
                    } else {
                        Key::parse(from.key_type(), &committed)?
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
}

/// A connection that failed for a reason that may pass by itself (the server restarting).
pub(super) fn is_unreachable(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<db::DbError>(),
        Some(db::DbError::Unreachable { .. })
    )
}

/// Starts the step's checkpoint; returns where an interrupted earlier run had stopped. Every
/// run walks the pending rows from the start anyway: what a stopped run finished is no longer
/// pending, and what the application wrote below its checkpoint meanwhile is.
async fn take_checkpoint(
    conn: &mut PgConnection,
    step: &StepDef,
    restart: bool,
) -> Result<Option<String>, sqlx::Error> {
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

/// The step's row count and its largest key now: the run stops there, so rows the application
/// keeps adding cannot make it chase the end of the table forever; they are left whole for the
/// next run.
pub(super) async fn extent(
    conn: &mut PgConnection,
    step: &StepDef,
) -> Result<(i64, Option<String>), sqlx::Error> {
    let mut tx = conn.begin().await?;
    set_read_planner(&mut tx, step).await?;
    let extent = sqlx::query_as(step.extent_sql).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(extent)
}

/// Outcome of one batch; no `last` key when the range is done.
struct BatchOutcome {
    last: Option<Key>,
    scanned: i64,
    changed: i64,
    /// Payments rows written (the orders batches write each final order's payment).
    payments: i64,
    /// Sessions waiting for the batch's locks just before it committed (0 unthrottled).
    waiting: i64,
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
    range: Option<&RangeRef>,
) -> Result<BatchOutcome, sqlx::Error> {
    let (after, end_key) = keys;
    let mut tx = conn.begin().await?;
    db::set_batch_planner(&mut tx, true).await?;
    db::set_timeouts(
        &mut tx,
        db::Scope::Transaction,
        limits.lock_timeout,
        BATCH_STATEMENT_TIMEOUT,
    )
    .await?;
    // The range first, then the batch with both bounds as values: with the upper bound hidden
    // in a subquery the planner guessed a wide range and chose a plan 100× slower.
    // Unnamed, so planned for these keys (db::set_batch_planner says why).
    let (last_id, scanned): (Option<String>, i64) = sqlx::query_as(step.range_sql)
        .persistent(false)
        .bind(after)
        .bind(limits.size)
        .bind(end_key)
        .fetch_one(&mut *tx)
        .await?;
    let Some(last_id) = last_id else {
        return Ok(BatchOutcome {
            last: None,
            scanned: 0,
            changed: 0,
            payments: 0,
            waiting: 0,
        });
    };
    // The database printed it from a key of this type: it parses.
    let last_key =
        Key::parse(after.key_type(), &last_id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let (changed, payments): (i64, i64) = sqlx::query_as(step.batch_sql)
        .persistent(false)
        .bind(after)
        .bind(&last_key)
        .bind(step.first_pass)
        .fetch_one(&mut *tx)
        .await?;
    match range {
        None => checkpoint::advance(&mut tx, step.name, &last_id, scanned, changed).await?,
        Some(range) => range.advance(&mut tx, &last_id, scanned, changed).await?,
    }
    let waiting = if limits.count_waiting {
        throttle::count_waiting_or_zero(&mut tx).await
    } else {
        0
    };
    tx.commit().await?;
    Ok(BatchOutcome {
        last: Some(last_key),
        scanned,
        changed,
        payments,
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

/// The planner of a step's extent and unresolved reads, for the transaction. Through the
/// partial index of the pending rows, whatever the statistics say, like the batches; but
/// before the first complete pass builds it, every row is pending and the batch planner
/// (sequential scans and hash joins priced out) would read the whole table by primary key
/// and each item's product by its own: 1.5 s more at 1M orders than a sequential scan.
/// Unlike a batch, a read may count many rows of an index whose pages autovacuum has not marked
/// all-visible yet (the items that can never be snapshotted, right after a first pass): a
/// bitmap scan reads their rows in page order, 2× faster than one by one in key order at 1M
/// orders. And no parallel workers: the items' two partial indexes are estimated alike (the
/// planner takes label and product_id for independent), and a parallel scan of the larger one
/// was priced below a plain scan of the smaller.
async fn set_read_planner(conn: &mut PgConnection, step: &StepDef) -> Result<(), sqlx::Error> {
    let indexed = match step.pending_index {
        None => true,
        Some(index) => db::index_state(&mut *conn, index).await? == db::IndexState::Valid,
    };
    if indexed {
        db::set_batch_planner(&mut *conn, true).await?;
        sqlx::query(
            "SELECT set_config('enable_bitmapscan', 'on', true),
                    set_config('max_parallel_workers_per_gather', '0', true)",
        )
        .execute(conn)
        .await?;
        Ok(())
    } else {
        // A whole-table scan would be compiled by JIT for more than it saves.
        sqlx::query("SET LOCAL jit = off").execute(conn).await?;
        Ok(())
    }
}

/// The unresolved rows of a step, found through the same partial indexes as its batches.
pub(super) async fn unresolved(
    conn: &mut PgConnection,
    step: &StepDef,
) -> Result<Vec<Unresolved>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    set_read_planner(&mut tx, step).await?;
    let rows: Vec<Unresolved> = sqlx::query_as(step.unresolved_sql)
        .persistent(false)
        .bind(SAMPLE_SIZE)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows)
}
