//! The one place that decides whether progress bars are shown, and makes them.

use std::fmt;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Bars only for a person watching a terminal: never in CI, with --quiet, or when the
/// report is for a machine (JSON, JUnit, CSV).
pub fn bars_enabled(
    stderr_is_terminal: bool,
    in_ci: bool,
    quiet: bool,
    report_for_people: bool,
) -> bool {
    stderr_is_terminal && !in_ci && !quiet && report_for_people
}

/// [`bars_enabled`] for this process's stderr and environment.
pub fn bars_enabled_here(quiet: bool, report_for_people: bool) -> bool {
    bars_enabled(
        std::io::stderr().is_terminal(),
        std::env::var_os("CI").is_some(),
        quiet,
        report_for_people,
    )
}

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
    /// Status lines of long-running modes (`backfill --follow`): shown unless --quiet, also
    /// where bars are not (CI logs, a service's journal).
    notes: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            notes: true,
        }
    }

    pub fn hidden() -> Self {
        Progress {
            enabled: false,
            notes: false,
        }
    }

    pub fn with_notes(self, notes: bool) -> Self {
        Progress { notes, ..self }
    }

    /// One status line on stderr.
    pub fn note(&self, line: &str) {
        if self.notes {
            eprintln!("{line}");
        }
    }

    fn bar(&self, len: u64, template: &str) -> ProgressBar {
        if !self.enabled {
            // Never read back: what a run counts lives in its own state (backfill's counters).
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            // indicatif's own {per_sec} prints "2,246.8951/s".
            let style = style.with_key("rate", |state: &ProgressState, w: &mut dyn fmt::Write| {
                let _ = w.write_str(&crate::human::rate(state.per_sec(), "rows"));
            });
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// Steps of a multi-step command: "[3/23] 003_order_items_snapshot_columns".
    pub fn steps(&self, total: u64) -> ProgressBar {
        self.bar(total, "{spinner} [{pos}/{len}] {wide_msg} {elapsed}")
    }

    /// Stages of a command, with a live `counter` beside the stage (e.g. requests made so far).
    pub fn stages_with_counter<F>(&self, total: u64, counter: F) -> ProgressBar
    where
        F: Fn() -> String + Send + Sync + Clone + 'static,
    {
        let bar = self.bar(total, "{spinner} [{pos}/{len}] {msg} ({counter}) {elapsed}");
        if !self.enabled {
            return bar;
        }
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg} ({counter}) {elapsed}")
        {
            bar.set_style(style.with_key(
                "counter",
                move |_: &ProgressState, w: &mut dyn fmt::Write| {
                    let _ = w.write_str(&counter());
                },
            ));
        }
        bar
    }

    /// Rows of one long step, with rate and ETA.
    pub fn rows(&self, label: &str, total: u64) -> ProgressBar {
        let bar = self.bar(
            total,
            "{msg} [{bar:30}] {human_pos}/{human_len} rows {rate} ETA {eta}",
        );
        bar.set_message(label.to_owned());
        bar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_for_a_person_at_a_terminal() {
        assert!(bars_enabled(true, false, false, true));
        assert!(!bars_enabled(false, false, false, true));
        assert!(!bars_enabled(true, true, false, true));
        assert!(!bars_enabled(true, false, true, true));
        assert!(!bars_enabled(true, false, false, false));
    }
}
