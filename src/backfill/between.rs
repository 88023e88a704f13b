//! Between two batches: say where the worker is, follow what the operators want (holding while
//! they paused the backfill), hold while the database is unhealthy.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sqlx::PgConnection;

use super::catalogue::StepDef;
use super::control::{self, ControlSettings};
use super::runner::{Lane, Runner};
use crate::db::Key;

/// How often a paused worker looks whether the backfill was resumed.
const LOOK_AGAIN_WHILE_PAUSED: Duration = Duration::from_millis(500);

/// The time this process was paused, counted once however many of its workers waited: the
/// clock runs from the first worker that stops for the pause to the last that goes on.
#[derive(Default)]
pub(super) struct PauseClock {
    state: Mutex<PauseState>,
}

#[derive(Default)]
struct PauseState {
    waiting: usize,
    since: Option<Instant>,
    total: Duration,
    times: u64,
}

impl PauseClock {
    fn enter(&self) {
        if let Ok(mut s) = self.state.lock() {
            if s.waiting == 0 {
                s.since = Some(Instant::now());
                s.times += 1;
            }
            s.waiting += 1;
        }
    }

    fn leave(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.waiting = s.waiting.saturating_sub(1);
            if s.waiting == 0
                && let Some(since) = s.since.take()
            {
                s.total += since.elapsed();
            }
        }
    }

    /// Total paused time and how many pauses, for the report.
    pub fn total(&self) -> (Duration, u64) {
        self.state
            .lock()
            .map(|s| (s.total, s.times))
            .unwrap_or_default()
    }
}

impl Runner<'_> {
    /// Between two batches: say where this worker is, read what the operators want (holding
    /// while they paused the backfill), then hold while the database is unhealthy.
    pub(super) async fn between_batches(
        &self,
        conn: &mut PgConnection,
        step: &StepDef,
        last_id: &Key,
        lane: &Lane<'_>,
    ) -> ControlSettings {
        let counters = lane.counters;
        let beat = |held: Option<String>| control::Beat {
            worker: lane.worker,
            step: step.name,
            position: (!last_id.is_start()).then(|| last_id.text()),
            rows_done: counters.done(),
            rows_total: counters.total(),
            rows_per_second: counters.own_rate(),
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
            settings = self.wait_while_paused(conn, settings, lane, &beat).await;
        }
        if let Ok(mut kept) = self.last_control.lock() {
            kept.clone_from(&settings);
        }
        self.hold_while_unhealthy(conn, step, lane).await;
        settings
    }

    async fn wait_while_paused<'b>(
        &self,
        conn: &mut PgConnection,
        mut settings: ControlSettings,
        lane: &Lane<'_>,
        beat: &impl Fn(Option<String>) -> control::Beat<'b>,
    ) -> ControlSettings {
        let by = format!(
            "paused by {} at {}",
            settings.changed_by.as_deref().unwrap_or("?"),
            settings.changed_at.as_deref().unwrap_or("?")
        );
        tracing::warn!(
            "{}: backfill {by}: no batch commits until paytool backfill resume",
            lane.worker
        );
        let bar = lane.counters.bar();
        let label = bar.message();
        bar.set_message(format!("{label}: {by}"));
        let started = Instant::now();
        self.pause_clock.enter();
        while settings.paused && !self.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(LOOK_AGAIN_WHILE_PAUSED).await;
            match control::tick(conn, &beat(Some(by.clone()))).await {
                Ok(read) => settings = read,
                // A connection lost during a pause (a restart, a terminated backend) is made
                // again here: otherwise the worker would never read the resume.
                Err(err) if crate::db::is_connection_lost(&err) => {
                    match self.connect(lane.session()).await {
                        Ok(fresh) => *conn = fresh,
                        Err(again) => tracing::warn!(
                            "{}: paused, and cannot reconnect yet ({again:#}); trying again",
                            lane.worker
                        ),
                    }
                }
                Err(_) => {}
            }
        }
        self.pause_clock.leave();
        bar.set_message(label);
        tracing::warn!(
            "{}: backfill resumed after {}",
            lane.worker,
            crate::human::duration(started.elapsed())
        );
        settings
    }

    /// Throttling between batches. A health reading that fails (a lost connection) is not a
    /// reason to stop: the batch after it has its own retries.
    async fn hold_while_unhealthy(&self, conn: &mut PgConnection, step: &StepDef, lane: &Lane<'_>) {
        let mut throttle = self.throttle.lock().await;
        if let Err(err) = throttle
            .wait_until_healthy(conn, step.writes, Some(lane.worker), lane.counters.bar())
            .await
        {
            tracing::warn!(
                "step {}: could not read the database's health ({err})",
                step.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_workers_paused_together_count_one_pause() {
        let clock = PauseClock::default();
        clock.enter();
        clock.enter();
        clock.enter();
        std::thread::sleep(Duration::from_millis(30));
        clock.leave();
        clock.leave();
        clock.leave();
        let (total, times) = clock.total();
        assert_eq!(times, 1);
        assert!(
            total >= Duration::from_millis(30) && total < Duration::from_millis(90),
            "{total:?}: once, not three times"
        );
    }
}
