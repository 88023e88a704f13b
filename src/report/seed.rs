use std::io::{self, Write};

use super::{Grid, Render, Screen, millis, paragraph};
use crate::seed::SeedReport;

impl Render for SeedReport {
    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        let mut t = Grid::new(&["table", "rows"]);
        for (name, rows) in &self.rows {
            t.add_row(vec![name.clone(), crate::human::count(*rows)]);
        }
        writeln!(out, "{}", t.render(screen).with_hint())?;
        paragraph(
            out,
            screen,
            &format!(
                "Seeded the legacy schema into {} in {}{}.",
                self.database,
                millis(self.duration_ms),
                if self.stock_anomalies {
                    ", with negative stock and duplicate machine slots"
                } else {
                    ""
                }
            ),
        )
    }
}
