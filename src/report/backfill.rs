use std::io::{self, Write};

use super::{Render, millis, table};
use crate::backfill::BackfillReport;

/// Ids shown per reason in the table; JSON carries the whole sample.
const TABLE_SAMPLE: usize = 3;

impl Render for BackfillReport {
    fn render_table(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.dry_run {
            writeln!(out, "Dry run on {}: nothing was changed.", self.database)?;
        }
        let changed = if self.dry_run {
            "would change"
        } else {
            "changed"
        };
        let mut t = table(&[
            "step",
            "scanned",
            changed,
            "skipped",
            "unresolved",
            "took",
            "rows/s",
            "batches",
            "batch p50 / p95 / max",
            "retries",
        ]);
        for step in &self.steps {
            t.add_row(vec![
                step.step.to_owned(),
                step.scanned.to_string(),
                step.changed.to_string(),
                step.skipped.to_string(),
                step.unresolved.to_string(),
                millis(step.duration_ms),
                step.rows_per_second.to_string(),
                step.batches.to_string(),
                format!(
                    "{} / {} / {}",
                    millis(step.p50_batch_ms),
                    millis(step.p95_batch_ms),
                    millis(step.longest_batch_ms)
                ),
                step.retries.to_string(),
            ]);
        }
        writeln!(out, "{t}")?;
        for step in &self.steps {
            if let Some(key) = &step.resumed_after {
                writeln!(
                    out,
                    "{}: resumed after {key} (an earlier run stopped there)",
                    step.step
                )?;
            }
            for unresolved in &step.unresolved_by_reason {
                writeln!(
                    out,
                    "{}: {} row(s) left untouched, {}: {}{}",
                    step.step,
                    unresolved.rows,
                    unresolved.reason.replace('_', " "),
                    unresolved
                        .sample
                        .iter()
                        .take(TABLE_SAMPLE)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    if unresolved.rows > TABLE_SAMPLE as i64 {
                        ", … (all ids: --format json, up to 10)"
                    } else {
                        ""
                    }
                )?;
            }
        }
        if !self.indexes_built.is_empty() {
            writeln!(
                out,
                "Built the partial indexes of the pending rows: {} (later runs read only what is pending).",
                self.indexes_built.join(", ")
            )?;
        }
        if let Some(reason) = &self.indexes_not_built {
            writeln!(
                out,
                "The partial indexes of the pending rows were not built ({reason}): the backfill is \
                 complete, and the next run builds them."
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
