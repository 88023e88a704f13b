use std::io::{self, Write};

use super::{Grid, Render, Screen};
use crate::demo::DemoReport;

impl Render for DemoReport {
    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        writeln!(out, "\nStages:")?;
        let mut grid = Grid::new(&["#", "stage", "exit", "time"]).prose(&["stage"]);
        for (n, stage) in self.stages.iter().enumerate() {
            grid.add_row(vec![
                (n + 1).to_string(),
                stage.title.to_owned(),
                stage.exit.to_string(),
                crate::human::duration(std::time::Duration::from_millis(stage.duration_ms)),
            ]);
        }
        writeln!(out, "{}", grid.render(screen).with_hint())?;
        writeln!(out, "Demo finished: every stage did what it should.")?;
        writeln!(
            out,
            "({} stages in {})",
            self.stages.len(),
            crate::human::duration(std::time::Duration::from_millis(self.duration_ms))
        )
    }
}
