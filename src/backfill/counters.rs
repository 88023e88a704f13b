//! A step's progress as this process counts it: what each heartbeat tells `paytool backfill
//! status`, and what the progress bar draws when there is one. The counters are the run's
//! state; the bar only displays them (a hidden bar has no length to read back).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use indicatif::ProgressBar;

use crate::progress::Progress;

pub(super) struct StepCounters {
    /// Rows of the step (or of the cooperative generation) when it started.
    total: i64,
    /// Rows done, by every worker: for a process joining a cooperative run under way, what the
    /// others had done before it joined, plus its own.
    done: AtomicI64,
    /// Rows this process's own workers did: the only rows its rate counts.
    own: AtomicI64,
    started: Instant,
    bar: ProgressBar,
}

impl StepCounters {
    pub fn start(progress: &Progress, label: &str, total: i64, done_before: i64) -> Self {
        let bar = progress.rows(label, total.max(0) as u64);
        bar.set_position(done_before.max(0) as u64);
        // The bar's own rate must not count the rows done before this process joined.
        bar.reset_eta();
        StepCounters {
            total,
            done: AtomicI64::new(done_before.max(0)),
            own: AtomicI64::new(0),
            started: Instant::now(),
            bar,
        }
    }

    /// Rows one of this process's workers just committed.
    pub fn add(&self, rows: i64) {
        self.done.fetch_add(rows, Ordering::Relaxed);
        self.own.fetch_add(rows, Ordering::Relaxed);
        self.bar.inc(rows.max(0) as u64);
    }

    pub fn total(&self) -> i64 {
        self.total
    }

    pub fn done(&self) -> i64 {
        self.done.load(Ordering::Relaxed)
    }

    /// This process's rows per second since the step started.
    pub fn own_rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.own.load(Ordering::Relaxed) as f64 / secs
        } else {
            0.0
        }
    }

    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_without_a_terminal_and_rates_only_its_own_rows() {
        let counters = StepCounters::start(&Progress::hidden(), "orders", 1_000, 600);
        counters.add(100);
        assert_eq!(counters.total(), 1_000);
        assert_eq!(counters.done(), 700);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let rate = counters.own_rate();
        // 100 rows in ≥ 20 ms: at most 5,000 rows/s; the 600 done before never count.
        assert!(rate > 0.0 && rate <= 5_000.0, "{rate}");
    }
}
