use std::io::{self, Write};

use super::{Render, Screen, hanging, paragraph};
use crate::prisma::{BaselineReport, PrismaSchemaReport};

impl Render for PrismaSchemaReport {
    /// The models alone on stdout, so that `> file` gives a valid schema fragment; the columns
    /// paytool does not model are comments inside it.
    fn render_table(&self, out: &mut dyn Write, _screen: Screen) -> io::Result<()> {
        out.write_all(self.schema.as_bytes())
    }
}

impl Render for BaselineReport {
    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        let wrote = if self.written {
            "Wrote"
        } else {
            "Kept the identical"
        };
        writeln!(out, "{wrote} {}", self.path.display())?;
        if self.includes_legacy_schema {
            hanging(
                out,
                screen,
                "  ",
                "The migrations folder had no earlier migration: this one also creates the legacy tables, \
                 so it builds the whole schema on an empty database.",
            )?;
        }
        let recorded = if self.recorded {
            "Recorded it as applied"
        } else {
            "It was already recorded as applied"
        };
        paragraph(
            out,
            screen,
            &format!(
                "{recorded} in _prisma_migrations (checksum {}), as `prisma migrate resolve --applied {}` would.",
                &self.checksum[..12],
                self.migration_name
            ),
        )?;
        paragraph(
            out,
            screen,
            "`prisma migrate status` now reports the database up to date; commit the folder with your schema.",
        )
    }
}
