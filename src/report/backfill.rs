use std::io::{self, Write};

use super::{Grid, Render, Screen, millis, paragraph};
use crate::backfill::BackfillReport;
use crate::human::{count, grouped};

/// Ids shown per reason in the table; JSON carries the whole sample.
const TABLE_SAMPLE: usize = 3;

impl Render for BackfillReport {
    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        if self.dry_run {
            writeln!(out, "Dry run on {}: nothing was changed.", self.database)?;
        }
        writeln!(out, "{}", self.steps_grid().render(screen).with_hint())?;
        for step in &self.steps {
            if step.cooperative {
                writeln!(
                    out,
                    "{}: {} range(s) done by {} worker(s) of this process{}",
                    step.step,
                    count(step.ranges as i64),
                    step.workers,
                    match step.ranges_reclaimed {
                        0 => String::new(),
                        n => format!(
                            ", {} taken over after their lease ran out (a dead or hung worker)",
                            count(n as i64)
                        ),
                    }
                )?;
                if let Some(generation) = &step.resumed_after {
                    writeln!(
                        out,
                        "{}: finished the ranges of {generation} that an earlier run left unfinished",
                        step.step
                    )?;
                }
            } else if let Some(key) = &step.resumed_after {
                writeln!(
                    out,
                    "{}: resumed after {key} (an earlier run stopped there)",
                    step.step
                )?;
            }
            // The payments row's count is mostly the orders step's: say so, not 0 scanned.
            if step.step == "orders" && step.payments_written > 0 && !self.dry_run {
                paragraph(
                    out,
                    screen,
                    &format!(
                        "orders: {} payment(s) written with their order's total (counted in the payments row)",
                        count(step.payments_written)
                    ),
                )?;
            }
            for unresolved in &step.unresolved_by_reason {
                let shown: Vec<&str> = unresolved
                    .sample
                    .iter()
                    .take(TABLE_SAMPLE)
                    .map(String::as_str)
                    .collect();
                let more = if unresolved.rows > shown.len() as i64 {
                    format!(
                        ", … (--format json lists {})",
                        if unresolved.rows > unresolved.sample.len() as i64 {
                            format!("the first {}", unresolved.sample.len())
                        } else {
                            "them all".to_owned()
                        }
                    )
                } else {
                    String::new()
                };
                paragraph(
                    out,
                    screen,
                    &format!(
                        "{}: {} row(s) {}, {}: {}{more}",
                        step.step,
                        count(unresolved.rows),
                        if self.dry_run {
                            "would be left untouched"
                        } else {
                            "left untouched"
                        },
                        unresolved.reason.replace('_', " "),
                        shown.join(", "),
                    ),
                )?;
            }
        }
        if !self.indexes_built.is_empty() {
            paragraph(
                out,
                screen,
                &format!(
                    "Built the partial indexes of the pending rows: {} (later runs read only what is pending).",
                    self.indexes_built.join(", ")
                ),
            )?;
        }
        if self.interrupted {
            paragraph(
                out,
                screen,
                "Interrupted (Ctrl-C or SIGTERM): the batch under way was committed and the checkpoint kept; run paytool backfill payments again to resume.",
            )?;
        }
        if let Some(held) = crate::throttle::held_summary(&self.held) {
            paragraph(
                out,
                screen,
                &format!(
                    "Held for the database's health: {held} (a hold counts for every signal over its limit during it)."
                ),
            )?;
        }
        if let Some(reason) = &self.indexes_not_built {
            paragraph(
                out,
                screen,
                &format!(
                    "The partial indexes of the pending rows were not built ({reason}): the backfill is \
                     complete, and the next run builds them."
                ),
            )?;
        }
        if self.strict && self.steps.iter().any(|s| s.unresolved > 0) {
            writeln!(
                out,
                "--strict: unresolved rows make this run fail (exit 1)."
            )?;
        }
        Ok(())
    }
}

impl BackfillReport {
    /// One row per step; a dry run has no rates, batches or retries to show.
    fn steps_grid(&self) -> Grid {
        let header: &[&str] = if self.dry_run {
            &[
                "step",
                "scanned",
                "would change",
                "skipped",
                "unresolved",
                "took",
            ]
        } else {
            &[
                "step",
                "scanned",
                "changed",
                "skipped",
                "unresolved",
                "took",
                "rows/s",
                "batches",
                "batch p50/p95/max",
                "retries",
            ]
        };
        // Nothing optional: on a narrow screen the three steps turn into three columns.
        let mut grid = Grid::new(header);
        for step in &self.steps {
            let mut row = vec![
                step.step.to_owned(),
                count(step.scanned),
                count(step.changed),
                count(step.skipped),
                count(step.unresolved),
                millis(step.duration_ms),
            ];
            if !self.dry_run {
                row.extend([
                    grouped(step.rows_per_second),
                    grouped(step.batches),
                    format!(
                        "{}/{}/{} ms",
                        grouped(step.p50_batch_ms),
                        grouped(step.p95_batch_ms),
                        grouped(step.longest_batch_ms)
                    ),
                    step.retries.to_string(),
                ]);
            }
            grid.add_row(row);
        }
        grid
    }
}
