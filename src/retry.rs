//! The one retry policy: how long to wait between attempts after a transient failure (a lock
//! timeout, a deadlock, a lost connection, a 429 or 5xx from Stripe). Exponential, with jitter
//! so that several clients do not retry in step, and never above its cap: jitter is taken
//! from below the cap, not added on top of it.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Where the delays start and the most they reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The database: 200 ms doubling to 10 s.
    pub const DATABASE: Backoff = Backoff {
        first: Duration::from_millis(200),
        cap: Duration::from_secs(10),
    };
    /// Stripe asks clients to back off more than a database would: 400 ms doubling to 20 s.
    pub const STRIPE: Backoff = Backoff {
        first: Duration::from_millis(400),
        cap: Duration::from_secs(20),
    };

    /// `retries` delays: each between half and all of `first × 2ⁿ`, at most `cap`.
    pub fn delays(self, retries: u32) -> impl Iterator<Item = Duration> {
        // backon's jitter adds up to the delay itself: halve both ends so the result stays
        // within [nominal / 2, nominal] and below the cap.
        ExponentialBuilder::default()
            .with_min_delay(self.first / 2)
            .with_max_delay(self.cap / 2)
            .with_max_times(retries as usize)
            .with_jitter()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_under_the_cap_and_stop() {
        let delays: Vec<Duration> = Backoff::DATABASE.delays(30).collect();
        assert_eq!(delays.len(), 30);
        assert!(delays[0] >= Duration::from_millis(100) && delays[0] < Duration::from_millis(200));
        assert!(
            delays.iter().all(|d| *d <= Backoff::DATABASE.cap),
            "{delays:?}"
        );
        assert!(delays[10] >= Duration::from_secs(5), "{delays:?}");
        let total: Duration = delays.iter().sum();
        assert!(
            total <= Duration::from_secs(300),
            "30 retries take {total:?}"
        );
        assert!(Backoff::STRIPE.delays(6).all(|d| d <= Backoff::STRIPE.cap));
    }
}
