//! The batch optimizer: how big the next batch is, a pure function of the last one.

use std::time::Duration;

const MAX_GROWTH: f64 = 1.5;

#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// A pinned size (`--batch-size`): never adapted.
    pub fixed: Option<i64>,
    pub target: Duration,
    pub initial: i64,
    pub min: i64,
    pub max: i64,
}

impl BatchPolicy {
    pub fn first_size(&self) -> i64 {
        self.fixed.unwrap_or(self.initial)
    }

    /// Scales the size toward the target duration, by at most ×1.5 or ÷2 per batch, within
    /// [min, max]: growth is cautious because batch times are noisy (a checkpoint, autovacuum)
    /// and an overshoot holds row locks longer, while shrinking after a slow batch is urgent.
    pub fn next_size(&self, current: i64, elapsed: Duration) -> i64 {
        if let Some(fixed) = self.fixed {
            return fixed;
        }
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let ratio = if elapsed_ms <= 0.0 {
            MAX_GROWTH
        } else {
            (self.target.as_secs_f64() * 1000.0 / elapsed_ms).clamp(0.5, MAX_GROWTH)
        };
        ((current as f64 * ratio).round() as i64).clamp(self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adaptive() -> BatchPolicy {
        BatchPolicy {
            fixed: None,
            target: Duration::from_millis(200),
            initial: 1_000,
            min: 100,
            max: 50_000,
        }
    }

    #[test]
    fn grows_when_batches_are_fast_and_shrinks_when_slow() {
        let p = adaptive();
        assert_eq!(p.next_size(1_000, Duration::from_millis(160)), 1_250);
        assert_eq!(
            p.next_size(1_000, Duration::from_millis(10)),
            1_500,
            "grows by at most half"
        );
        assert_eq!(p.next_size(1_000, Duration::from_millis(400)), 500);
        assert_eq!(
            p.next_size(1_000, Duration::from_secs(5)),
            500,
            "at most halves"
        );
        assert_eq!(p.next_size(1_000, Duration::from_millis(200)), 1_000);
    }

    #[test]
    fn stays_within_bounds() {
        let p = adaptive();
        assert_eq!(p.next_size(40_000, Duration::from_millis(1)), 50_000);
        assert_eq!(p.next_size(150, Duration::from_secs(10)), 100);
        assert_eq!(p.next_size(1_000, Duration::ZERO), 1_500);
    }

    #[test]
    fn a_pinned_size_never_changes() {
        let p = BatchPolicy {
            fixed: Some(250),
            ..adaptive()
        };
        assert_eq!(p.first_size(), 250);
        assert_eq!(p.next_size(250, Duration::from_secs(10)), 250);
    }
}
