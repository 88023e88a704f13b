use std::io::{self, Write};

use super::{Grid, Render, Screen, millis, paragraph};
use crate::events::EventsReport;
use crate::human::grouped;

impl Render for EventsReport {
    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        paragraph(
            out,
            screen,
            &format!(
                "Stored the payment events of {} created {} – {} into {} in {} ({} Stripe requests, {} retried).",
                self.stripe,
                self.since.format("%Y-%m-%d %H:%M"),
                self.until.format("%Y-%m-%d %H:%M"),
                self.database,
                millis(self.duration_ms),
                self.stripe_requests,
                self.stripe_retries,
            ),
        )?;
        if self.since_clamped {
            paragraph(
                out,
                screen,
                "--since was earlier than Stripe keeps events (30 days): the window starts there.",
            )?;
        }
        let mut grid = Grid::new(&[
            "events",
            "fetched",
            "inserted",
            "already present",
            "linked now",
            "unlinked",
            "pages",
        ])
        .optional(&["linked now", "pages"]);
        for t in &self.types {
            grid.add_row(vec![
                t.type_pattern.clone(),
                grouped(t.fetched),
                grouped(t.inserted),
                grouped(t.already_present),
                grouped(t.linked_now),
                grouped(t.unlinked),
                grouped(t.pages),
            ]);
        }
        grid.add_row(vec![
            "total".into(),
            grouped(self.fetched),
            grouped(self.inserted),
            grouped(self.already_present),
            grouped(self.linked_now),
            grouped(self.unlinked),
            grouped(self.types.iter().map(|t| t.pages).sum()),
        ]);
        writeln!(out, "{}", grid.render(screen).with_hint())?;
        for t in &self.types {
            if let Some(after) = &t.resumed_after {
                writeln!(
                    out,
                    "{}: resumed after {after} (an earlier run stopped there)",
                    t.type_pattern
                )?;
            }
        }
        if self.unlinked > 0 {
            paragraph(
                out,
                screen,
                &format!(
                    "{} event(s) are stored without a payment: their PaymentIntent has no payments row here (yet). A later run links them once it has.",
                    grouped(self.unlinked)
                ),
            )?;
        }
        Ok(())
    }
}
