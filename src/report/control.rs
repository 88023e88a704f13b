use std::io::{self, Write};

use super::{Grid, Render, Screen, paragraph};
use crate::backfill::control::ControlReport;
use crate::human::grouped;

impl Render for ControlReport {
    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        let s = &self.settings;
        let overrides: Vec<String> = [
            s.batch_size.map(|n| format!("batch size {n}")),
            s.pause_ms.map(|n| format!("pause {n} ms")),
            s.target_batch_ms.map(|n| format!("target {n} ms")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let state = if s.paused { "paused" } else { "running" };
        let changed = match (&s.changed_by, &s.changed_at) {
            (Some(by), Some(at)) => format!(" (last changed by {by} at {at})"),
            _ => String::new(),
        };
        paragraph(
            out,
            screen,
            &format!(
                "Backfills on {}: {state}; {}{changed}.",
                self.database,
                if overrides.is_empty() {
                    "each run uses its own flags".to_owned()
                } else {
                    format!("every run uses {}", overrides.join(", "))
                }
            ),
        )?;
        if self.workers.is_empty() {
            return writeln!(
                out,
                "No backfill is running (none heard from in the last ten minutes)."
            );
        }
        let mut grid = Grid::new(&[
            "worker", "state", "step", "done", "rows/s", "ETA", "held", "position",
        ])
        .prose(&["held"])
        .optional(&["position"]);
        for w in &self.workers {
            grid.add_row(vec![
                w.worker.clone(),
                w.state.as_str().to_owned(),
                w.step.clone(),
                format!(
                    "{}/{}",
                    grouped(w.rows_done as u64),
                    grouped(w.rows_total as u64)
                ),
                w.rate().map_or("-".into(), |r| grouped(r as u64)),
                w.eta_seconds.map_or("-".into(), |s| {
                    humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
                }),
                w.held.clone().unwrap_or_else(|| "-".into()),
                w.position.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        writeln!(out, "{}", grid.render(screen).with_hint())
    }
}
