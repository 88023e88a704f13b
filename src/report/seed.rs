use std::io::{self, Write};

use super::{Render, millis, table};
use crate::seed::SeedReport;

impl Render for SeedReport {
    fn render_table(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut t = table(&["table", "rows"]);
        for (name, rows) in &self.rows {
            t.add_row(vec![name.clone(), rows.to_string()]);
        }
        writeln!(out, "{t}")?;
        writeln!(
            out,
            "Seeded the legacy schema into {} in {}{}.",
            self.database,
            millis(self.duration_ms),
            if self.stock_anomalies {
                ", with negative stock and duplicate machine slots"
            } else {
                ""
            }
        )
    }
}
