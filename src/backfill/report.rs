//! What a backfill run reports, and the tally its batches keep to make it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::BackfillStep;
use crate::exit;
use crate::throttle;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Unresolved {
    pub reason: String,
    pub rows: i64,
    pub sample: Vec<String>,
}

/// One of a step's longest batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlowBatch {
    /// When its transaction began, in UTC, by paytool's clock (not the server's).
    pub started_at: DateTime<Utc>,
    pub ms: u64,
    /// The batch size it was run with (rows of the step's table).
    pub size: i64,
    /// The key it started after (`""` for a step's first batch).
    pub after: String,
}

/// How many of a step's longest batches its report keeps.
const SLOWEST_KEPT: usize = 3;

/// `batch` added to `slowest`, which stays the longest `SLOWEST_KEPT`, longest first.
fn keep_slowest(slowest: &mut Vec<SlowBatch>, batch: SlowBatch) {
    if slowest.len() == SLOWEST_KEPT && slowest.last().is_some_and(|s| s.ms >= batch.ms) {
        return;
    }
    let at = slowest.partition_point(|s| s.ms >= batch.ms);
    slowest.insert(at, batch);
    slowest.truncate(SLOWEST_KEPT);
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StepReport {
    pub step: &'static str,
    /// Rows of the step's table read by this run.
    pub scanned: i64,
    /// Rows written (items snapshotted, orders totalled, payments inserted); with --dry-run,
    /// rows that would be. The payments step counts every payment the run wrote: most are
    /// written by the orders step's batches, with their order's total (`payments_written`).
    pub changed: i64,
    /// Payments rows this step's own batches wrote: the orders step writes the payment of each
    /// order it settles, in the same transaction; the payments step, those an earlier paytool
    /// left to it (its queue).
    pub payments_written: i64,
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
    /// The step's longest batches, longest first (at most three): when each started, to line
    /// it up with what the server logged then (a checkpoint, an autovacuum, a lock wait).
    pub slowest_batches: Vec<SlowBatch>,
    pub last_batch_size: i64,
    /// Batches retried after a lock timeout, deadlock, serialization failure or lost
    /// connection, and statements between batches retried after a lost connection.
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
    /// done (migrate's after-backfill steps).
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
    pub(super) fn new(database: String, dry_run: bool, strict: bool) -> Self {
        BackfillReport {
            database,
            dry_run,
            strict,
            rounds: 1,
            steps: Vec::new(),
            indexes_built: Vec::new(),
            indexes_not_built: None,
            held: BTreeMap::new(),
            interrupted: false,
        }
    }

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

/// The payments step's `changed` counts every payment the round wrote: the orders step writes
/// the payment of each order it settles, the payments step those of its queue.
pub(super) fn count_payments_of_the_round(round: &mut [StepReport]) {
    let with_orders: i64 = round
        .iter()
        .filter(|s| s.step == BackfillStep::Orders.name())
        .map(|s| s.payments_written)
        .sum();
    if let Some(payments) = round
        .iter_mut()
        .find(|s| s.step == BackfillStep::Payments.name())
    {
        payments.changed += with_orders;
    }
}

/// Adds one round's step reports to the totals: counts add up, the worst batch stays, the
/// unresolved rows are those of the last round.
pub(super) fn merge_round(totals: &mut Vec<StepReport>, round: Vec<StepReport>) {
    for step in round {
        match totals.iter_mut().find(|t| t.step == step.step) {
            None => totals.push(step),
            Some(total) => total.absorb(step),
        }
    }
}

impl StepReport {
    /// A later walk of the same step (the next round, or the orders step's queue after its
    /// first pass) added to this one: counts add up, the worst batch stays, the unresolved rows
    /// are the later walk's.
    pub(super) fn absorb(&mut self, later: StepReport) {
        let duration_ms = self.duration_ms + later.duration_ms;
        let scanned = self.scanned + later.scanned;
        if later.batches > self.batches {
            self.p50_batch_ms = later.p50_batch_ms;
        }
        self.p95_batch_ms = self.p95_batch_ms.max(later.p95_batch_ms);
        self.longest_batch_ms = self.longest_batch_ms.max(later.longest_batch_ms);
        for batch in later.slowest_batches {
            keep_slowest(&mut self.slowest_batches, batch);
        }
        self.scanned = scanned;
        self.changed += later.changed;
        self.payments_written += later.payments_written;
        self.skipped += later.skipped;
        self.batches += later.batches;
        self.retries += later.retries;
        self.last_batch_size = later.last_batch_size;
        self.ranges += later.ranges;
        self.ranges_reclaimed += later.ranges_reclaimed;
        self.duration_ms = duration_ms;
        self.rows_per_second = rate(scanned, Duration::from_millis(duration_ms));
        self.unresolved = later.unresolved;
        self.unresolved_by_reason = later.unresolved_by_reason;
    }
}

/// `round 3 in 38 ms: items +12, orders +4, payments +4; 14 unresolved; next round in 5s`
pub(super) fn round_line(
    round: u64,
    steps: &[StepReport],
    took: Duration,
    interval: Duration,
) -> String {
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

/// What a step's batches did, as they go; one per worker, absorbed into the step's at its end.
pub(super) struct Tally {
    pub scanned: i64,
    pub changed: i64,
    pub payments_written: i64,
    pub retries: u32,
    pub last_batch_size: i64,
    /// The size of this worker's next batch: it carries from one range to the next, so a
    /// cooperative worker does not start over from the initial size at every range.
    pub next_size: i64,
    batch_ms: Vec<u64>,
    slowest: Vec<SlowBatch>,
}

impl Tally {
    pub fn new(first_size: i64) -> Self {
        Tally {
            scanned: 0,
            changed: 0,
            payments_written: 0,
            retries: 0,
            last_batch_size: first_size,
            next_size: first_size,
            batch_ms: Vec::new(),
            slowest: Vec::new(),
        }
    }

    /// Another worker's tally of the same step.
    pub fn absorb(&mut self, other: Tally) {
        self.scanned += other.scanned;
        self.changed += other.changed;
        self.payments_written += other.payments_written;
        self.retries += other.retries;
        self.last_batch_size = other.last_batch_size;
        self.batch_ms.extend(other.batch_ms);
        for batch in other.slowest {
            keep_slowest(&mut self.slowest, batch);
        }
    }

    /// One batch: rows read, (rows changed, payments written), and what it was (when it
    /// started, after which key, its size and time).
    pub fn batch(&mut self, scanned: i64, written: (i64, i64), batch: SlowBatch) {
        let (changed, payments) = written;
        self.scanned += scanned;
        self.changed += changed;
        self.payments_written += payments;
        self.last_batch_size = batch.size;
        self.batch_ms.push(batch.ms);
        keep_slowest(&mut self.slowest, batch);
    }

    pub fn into_report(
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
            payments_written: self.payments_written,
            skipped: (self.scanned - self.changed - unresolved).max(0),
            unresolved,
            unresolved_by_reason,
            duration_ms: started.elapsed().as_millis() as u64,
            rows_per_second: rate(self.scanned, started.elapsed()),
            batches: self.batch_ms.len() as u64,
            longest_batch_ms: self.batch_ms.iter().copied().max().unwrap_or(0),
            p50_batch_ms: percentile(&mut self.batch_ms, 0.50),
            p95_batch_ms: percentile(&mut self.batch_ms, 0.95),
            slowest_batches: self.slowest,
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

pub(super) fn rate(rows: i64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        (rows as f64 / secs) as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ms: u64) -> SlowBatch {
        SlowBatch {
            started_at: DateTime::<Utc>::UNIX_EPOCH,
            ms,
            size: 1_000,
            after: format!("o-{ms}"),
        }
    }

    fn kept(slowest: &[SlowBatch]) -> Vec<u64> {
        slowest.iter().map(|b| b.ms).collect()
    }

    #[test]
    fn a_tally_keeps_its_three_longest_batches_longest_first() {
        let mut tally = Tally::new(1_000);
        for ms in [90, 310, 80, 120, 95, 275] {
            tally.batch(1_000, (1_000, 0), batch(ms));
        }
        let report = tally.into_report("orders", None, Vec::new(), Instant::now());
        assert_eq!(kept(&report.slowest_batches), [310, 275, 120]);
        assert_eq!(report.longest_batch_ms, 310);
        assert_eq!(report.slowest_batches[0].after, "o-310");
    }

    #[test]
    fn the_longest_batches_of_workers_and_rounds_are_merged() {
        let mut first = Tally::new(1_000);
        let mut other = Tally::new(1_000);
        for ms in [100, 200] {
            first.batch(1_000, (1_000, 0), batch(ms));
        }
        for ms in [150, 400, 50] {
            other.batch(1_000, (1_000, 0), batch(ms));
        }
        first.absorb(other);
        let mut round = first.into_report("items", None, Vec::new(), Instant::now());
        assert_eq!(kept(&round.slowest_batches), [400, 200, 150]);

        let mut later = Tally::new(1_000);
        later.batch(10, (10, 0), batch(300));
        round.absorb(later.into_report("items", None, Vec::new(), Instant::now()));
        assert_eq!(kept(&round.slowest_batches), [400, 300, 200]);
    }
}
