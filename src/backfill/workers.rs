//! Cooperative workers (`backfill payments --workers N`): the workers of this process and of
//! any other paytool process started with `--workers` share one run. Each step's pending keys
//! are cut once into ranges (a generation, in paytool.backfill_ranges); a worker claims one
//! range at a time with `FOR UPDATE SKIP LOCKED`, walks it in the usual batches, each
//! committing with the range's checkpoint, and claims the next. A claim is a lease that the
//! claiming process renews while it lives: the range of a killed process is claimed again
//! once its lease has run out, and resumed after its last committed key. A worker moves to
//! the next step only when every range of this one is done, by whichever worker: the orders
//! step reads what the items step wrote, so no step may start before the one before it ends.
//!
//! A batch only ever touches pending rows, so a range walked twice (a lease that ran out
//! under a slow, living worker) costs time, never a row.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};

use super::catalogue::StepDef;
use super::control;
use super::counters::StepCounters;
use super::report::{StepReport, Tally};
use super::runner::{self, Lane, RetryBudget, Runner, Session};
use crate::db::{self, Key};

const RANGES_SQL: &str = include_str!("../../sql/internal/backfill_ranges.sql");
const CLAIM_SQL: &str = include_str!("../../sql/backfill/range_claim.sql");

/// Serializes the cut of a step into ranges between processes, for one transaction.
const CUT_LOCK: i64 = 0x7061_7974_6f6f_6c05;

/// Ranges per generation at most: enough for a few workers to end together (the last range
/// is the only time a worker may be alone), few enough that claims cost nothing.
const MAX_RANGES: i64 = 64;
/// Rows per range at least: below that, a claim and a lease per range are most of the work.
const MIN_RANGE_ROWS: i64 = 5_000;
/// How often a waiting worker looks for a range again.
const LOOK_AGAIN: Duration = Duration::from_millis(250);

const OPEN_GENERATION_SQL: &str = "
SELECT generation, total_rows, created_at >= $2 AS current
FROM paytool.backfill_generations WHERE step = $1 AND finished_at IS NULL
ORDER BY generation DESC LIMIT 1";

const NEW_GENERATION_SQL: &str = "
WITH gone AS (DELETE FROM paytool.backfill_generations WHERE step = $1 AND finished_at IS NOT NULL)
INSERT INTO paytool.backfill_generations (step, generation, ranges, total_rows, created_by)
SELECT $1, coalesce((SELECT max(generation) FROM paytool.backfill_generations WHERE step = $1), 0) + 1,
       $2, $3, $4
RETURNING generation";

const NEW_RANGES_SQL: &str = "
INSERT INTO paytool.backfill_ranges (step, generation, range_no, lo, hi, rows_estimate)
SELECT $1, $2, r.n::INTEGER, r.lo, r.hi, r.rows
FROM unnest($3::TEXT[], $4::TEXT[], $5::BIGINT[]) WITH ORDINALITY AS r (lo, hi, rows, n)";

const ADVANCE_SQL: &str = "
UPDATE paytool.backfill_ranges
SET last_id = $4, scanned = scanned + $5, changed = changed + $6, batches = batches + 1
WHERE step = $1 AND generation = $2 AND range_no = $3";

const DONE_SQL: &str = "
UPDATE paytool.backfill_ranges SET done_at = now(), lease_until = NULL
WHERE step = $1 AND generation = $2 AND range_no = $3";

const LEFT_SQL: &str = "
SELECT count(*) FILTER (WHERE done_at IS NULL), coalesce(sum(scanned), 0)::BIGINT
FROM paytool.backfill_ranges WHERE step = $1 AND generation = $2";

const RENEW_SQL: &str = "
UPDATE paytool.backfill_ranges SET lease_until = now() + make_interval(secs => $2 / 1000.0)
WHERE process = $1 AND done_at IS NULL";

const GIVE_BACK_SQL: &str = "
UPDATE paytool.backfill_ranges SET process = NULL, worker = NULL, lease_until = NULL
WHERE process = $1 AND done_at IS NULL";

const FINISH_SQL: &str = "
UPDATE paytool.backfill_generations AS g SET finished_at = now()
WHERE g.step = $1 AND g.generation = $2 AND g.finished_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM paytool.backfill_ranges AS r
                  WHERE r.step = g.step AND r.generation = g.generation AND r.done_at IS NULL)";

/// How this process takes part in a cooperative run.
#[derive(Debug, Clone, Copy)]
pub struct Cooperation {
    /// Workers in this process, each with its own connection.
    pub workers: u32,
    /// How long a claim lasts unless renewed; renewed four times per lease while the process
    /// lives, so another worker takes over a dead process's range after at most this long.
    pub lease: Duration,
}

pub async fn ensure_tables(conn: &mut PgConnection) -> anyhow::Result<()> {
    let mut tx = conn.begin().await?;
    // Two processes starting together would both create the tables otherwise.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CUT_LOCK)
        .execute(&mut *tx)
        .await?;
    crate::db::bookkeeping::ensure(
        &mut tx,
        RANGES_SQL,
        &["paytool.backfill_generations", "paytool.backfill_ranges"],
    )
    .await?;
    Ok(tx.commit().await?)
}

/// One range of one generation: where a cooperative batch writes its checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct RangeRef {
    step: &'static str,
    generation: i64,
    range_no: i32,
}

impl RangeRef {
    /// In the batch's transaction: the range's checkpoint commits with the batch.
    pub async fn advance(
        &self,
        conn: &mut PgConnection,
        last_id: &str,
        scanned: i64,
        changed: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(ADVANCE_SQL)
            .bind(self.step)
            .bind(self.generation)
            .bind(self.range_no)
            .bind(last_id)
            .bind(scanned)
            .bind(changed)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The last committed key of the range ("" before its first batch).
    pub async fn last_id(&self, conn: &mut PgConnection) -> Result<String, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT last_id FROM paytool.backfill_ranges WHERE step = $1 AND generation = $2 AND range_no = $3",
        )
        .bind(self.step)
        .bind(self.generation)
        .bind(self.range_no)
        .fetch_one(conn)
        .await
    }

    async fn done(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query(DONE_SQL)
            .bind(self.step)
            .bind(self.generation)
            .bind(self.range_no)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// A cut of one step into ranges.
#[derive(Debug, Clone, Copy)]
struct Generation {
    generation: i64,
    total_rows: i64,
    /// Cut during this run (by this process or a peer); else left unfinished by an earlier one.
    current: bool,
}

#[derive(sqlx::FromRow)]
struct Claimed {
    range_no: i32,
    lo: String,
    hi: String,
    last_id: String,
    reclaimed: bool,
}

/// What one worker did in a generation.
struct WorkerOutcome {
    tally: Tally,
    ranges: u64,
    reclaimed: u64,
}

/// The open generation of the step, or a new cut of its pending keys; `None` when nothing is
/// pending.
async fn join_or_cut(
    conn: &mut PgConnection,
    step: &StepDef,
    process: &str,
    run_started: DateTime<Utc>,
) -> Result<Option<Generation>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CUT_LOCK)
        .execute(&mut *tx)
        .await?;
    let open: Option<(i64, i64, bool)> = sqlx::query_as(OPEN_GENERATION_SQL)
        .bind(step.name)
        .bind(run_started)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some((generation, total_rows, current)) = open {
        tx.commit().await?;
        return Ok(Some(Generation {
            generation,
            total_rows,
            current,
        }));
    }
    db::set_batch_planner(&mut tx, true).await?;
    let (pending, _): (i64, Option<String>) =
        sqlx::query_as(step.extent_sql).fetch_one(&mut *tx).await?;
    if pending == 0 {
        tx.commit().await?;
        return Ok(None);
    }
    let per_range = ((pending + MAX_RANGES - 1) / MAX_RANGES).max(MIN_RANGE_ROWS);
    // One statement: the last key (n = total) and the cuts come from one snapshot.
    let cuts: Vec<(String, i64)> = sqlx::query_as(step.boundaries_sql)
        .persistent(false)
        .bind(per_range)
        .fetch_all(&mut *tx)
        .await?;
    let Some(total) = cuts.last().map(|(_, total)| *total) else {
        tx.commit().await?;
        return Ok(None);
    };
    let his: Vec<String> = cuts.into_iter().map(|(key, _)| key).collect();
    let los: Vec<String> = std::iter::once(String::new())
        .chain(his[..his.len() - 1].iter().cloned())
        .collect();
    let rows: Vec<i64> = (0..his.len() as i64)
        .map(|i| per_range.min(total - i * per_range))
        .collect();
    let generation: i64 = sqlx::query_scalar(NEW_GENERATION_SQL)
        .bind(step.name)
        .bind(his.len() as i32)
        .bind(total)
        .bind(process)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(NEW_RANGES_SQL)
        .bind(step.name)
        .bind(generation)
        .bind(&los)
        .bind(&his)
        .bind(&rows)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(
        "step {}: {total} pending rows cut into {} ranges (generation {generation})",
        step.name,
        his.len()
    );
    Ok(Some(Generation {
        generation,
        total_rows: total,
        current: true,
    }))
}

impl Runner<'_> {
    /// One step shared with every cooperative worker of every process: generations until one
    /// cut during this run is done (an earlier run's unfinished one is finished first).
    pub(super) async fn run_step_cooperative(
        &self,
        conn: &mut PgConnection,
        step: &StepDef,
        cooperation: Cooperation,
        run_started: DateTime<Utc>,
    ) -> anyhow::Result<StepReport> {
        let started = Instant::now();
        let main = Session::Main;
        let mut tally = Tally::new(self.batch.first_size());
        let (mut ranges, mut reclaimed) = (0, 0);
        let mut resumed_after = None;
        while !self.stopped() {
            let generation = self
                .retrying(conn, main, "cutting the step into ranges", async |c| {
                    join_or_cut(c, step, &self.worker, run_started).await
                })
                .await?;
            let Some(generation) = generation else {
                break;
            };
            if !generation.current && resumed_after.is_none() {
                tracing::info!(
                    "step {}: finishing generation {} that an earlier run left unfinished",
                    step.name,
                    generation.generation
                );
                resumed_after = Some(format!("generation {}", generation.generation));
            }
            let outcomes = self
                .share_generation(conn, step, generation, cooperation)
                .await?;
            for outcome in outcomes {
                // The batch size carries over from one generation to the next too.
                let next_size = outcome.tally.next_size;
                tally.absorb(outcome.tally);
                tally.next_size = next_size;
                ranges += outcome.ranges;
                reclaimed += outcome.reclaimed;
            }
            if self.stopped() {
                break;
            }
            self.retrying(conn, main, "closing the generation", async |c| {
                sqlx::query(FINISH_SQL)
                    .bind(step.name)
                    .bind(generation.generation)
                    .execute(c)
                    .await
            })
            .await?;
            if generation.current {
                break;
            }
        }
        let mut report = self
            .after_step(conn, main, step, tally, resumed_after, started)
            .await?;
        report.cooperative = true;
        report.workers = cooperation.workers;
        report.ranges = ranges;
        report.ranges_reclaimed = reclaimed;
        Ok(report)
    }

    /// This process's workers on one generation, while the main connection renews their
    /// leases.
    async fn share_generation(
        &self,
        conn: &mut PgConnection,
        step: &StepDef,
        generation: Generation,
        cooperation: Cooperation,
    ) -> anyhow::Result<Vec<WorkerOutcome>> {
        self.throttle
            .lock()
            .await
            .step_writes(generation.total_rows);
        let (_, scanned_before) = self
            .retrying(conn, Session::Main, "reading the ranges left", async |c| {
                ranges_left(c, step, generation).await
            })
            .await?;
        let counters = StepCounters::start(
            &self.progress,
            step.name,
            generation.total_rows,
            scanned_before,
        );
        let finished = AtomicBool::new(false);
        let workers = async {
            let each = (1..=cooperation.workers).map(|k| {
                let worker = format!("{}/{k}", self.worker);
                let counters = &counters;
                async move {
                    let outcome = self
                        .cooperate(step, generation, &worker, cooperation, counters)
                        .await;
                    if outcome.is_err() {
                        // The others stop after their batch: the run fails as a whole.
                        self.stop.store(true, Ordering::Relaxed);
                    }
                    outcome
                }
            });
            let outcomes = futures_util::future::join_all(each).await;
            finished.store(true, Ordering::Relaxed);
            outcomes
        };
        let renew = self.renew_leases(&mut *conn, cooperation.lease, &finished);
        let (outcomes, ()) = tokio::join!(workers, renew);
        counters.finish();
        if self.stopped() {
            // Given back at once, for the next run not to wait for the leases to run out.
            let _ = sqlx::query(GIVE_BACK_SQL)
                .bind(&self.worker)
                .execute(&mut *conn)
                .await;
        }
        outcomes.into_iter().collect()
    }

    /// One worker: claim a range, walk it, mark it done, again; then wait until the ranges
    /// other workers hold are done too. Every statement lives under the run's retry policy:
    /// a restarted server or a terminated backend costs a pause, not the run.
    async fn cooperate(
        &self,
        step: &StepDef,
        generation: Generation,
        worker: &str,
        cooperation: Cooperation,
        counters: &StepCounters,
    ) -> anyhow::Result<WorkerOutcome> {
        let session = Session::Worker;
        let mut conn = self.first_connection(session, worker).await?;
        let key_type = self.key_type(step);
        let mut outcome = WorkerOutcome {
            tally: Tally::new(self.batch.first_size()),
            ranges: 0,
            reclaimed: 0,
        };
        let mut said_waiting = false;
        while !self.stopped() {
            let claimed: Option<Claimed> = self
                .retrying(&mut conn, session, "claiming a range", async |c| {
                    sqlx::query_as(CLAIM_SQL)
                        .bind(step.name)
                        .bind(generation.generation)
                        .bind(&self.worker)
                        .bind(worker)
                        .bind(cooperation.lease.as_millis() as i64)
                        .fetch_optional(c)
                        .await
                })
                .await?;
            let Some(claimed) = claimed else {
                let (left, _) = self
                    .retrying(&mut conn, session, "reading the ranges left", async |c| {
                        ranges_left(c, step, generation).await
                    })
                    .await?;
                if left == 0 {
                    break;
                }
                if !said_waiting {
                    tracing::info!(
                        "{worker}: step {}: {left} range(s) still held by other workers; waiting for them",
                        step.name
                    );
                    said_waiting = true;
                }
                let beat = control::Beat {
                    worker,
                    step: step.name,
                    position: None,
                    rows_done: counters.done(),
                    rows_total: counters.total(),
                    rows_per_second: 0.0,
                    held: Some(format!("waiting for {left} range(s) of other workers")),
                };
                let _ = control::tick(&mut conn, &beat).await;
                tokio::time::sleep(LOOK_AGAIN).await;
                continue;
            };
            if claimed.reclaimed {
                tracing::warn!(
                    "{worker}: step {}: range {} was claimed before and its lease ran out (a dead or stuck worker); resuming it after {:?}",
                    step.name,
                    claimed.range_no,
                    claimed.last_id
                );
                outcome.reclaimed += 1;
            }
            let range = RangeRef {
                step: step.name,
                generation: generation.generation,
                range_no: claimed.range_no,
            };
            let resume_at = if claimed.last_id.is_empty() {
                &claimed.lo
            } else {
                &claimed.last_id
            };
            let from = if resume_at.is_empty() {
                Key::start(key_type)
            } else {
                Key::parse(key_type, resume_at)?
            };
            let to = Key::parse(key_type, &claimed.hi)?;
            let lane = Lane {
                worker,
                range: Some(range),
                counters,
            };
            self.walk(&mut conn, step, (&from, &to), &mut outcome.tally, &lane)
                .await?;
            if self.stopped() {
                break;
            }
            self.retrying(&mut conn, session, "marking a range done", async |c| {
                range.done(c).await
            })
            .await?;
            outcome.ranges += 1;
        }
        control::leave(&mut conn, worker).await;
        Ok(outcome)
    }

    /// A worker's first connection, under the same retry policy as the ones after it: the
    /// server may be restarting just as the worker starts.
    async fn first_connection(
        &self,
        session: Session,
        worker: &str,
    ) -> anyhow::Result<PgConnection> {
        let mut budget = RetryBudget::new(self.max_retries);
        loop {
            match self.connect(session).await {
                Ok(conn) => return Ok(conn),
                Err(err) if runner::is_unreachable(&err) => {
                    let delay = budget
                        .failed(&format!("{worker}: connecting"), &format_args!("{err:#}"))?;
                    tracing::warn!(
                        "{worker}: cannot connect yet ({err:#}); retry in {}",
                        crate::human::duration(delay)
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Renews this process's leases four times per lease until `finished`. A failed renewal
    /// is said and tried again, on a connection made again if it was lost: the leases last
    /// long enough for a few.
    async fn renew_leases(&self, conn: &mut PgConnection, lease: Duration, finished: &AtomicBool) {
        let every = lease / 4;
        let mut last = Instant::now();
        while !finished.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if last.elapsed() < every {
                continue;
            }
            last = Instant::now();
            let renewed = sqlx::query(RENEW_SQL)
                .bind(&self.worker)
                .bind(lease.as_millis() as i64)
                .execute(&mut *conn)
                .await;
            let Err(err) = renewed else {
                continue;
            };
            tracing::warn!("could not renew the workers' leases ({err}); trying again");
            if db::is_connection_lost(&err) {
                match self.connect(Session::Main).await {
                    Ok(fresh) => *conn = fresh,
                    Err(again) => tracing::warn!("cannot reconnect yet ({again:#})"),
                }
            }
        }
    }
}

async fn ranges_left(
    conn: &mut PgConnection,
    step: &StepDef,
    generation: Generation,
) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(LEFT_SQL)
        .bind(step.name)
        .bind(generation.generation)
        .fetch_one(conn)
        .await
}
