//! Report rendering: every command's report is one serde value, printed as a table or JSON.

mod backfill;
mod grid;
mod migrate;
mod prisma;
mod reconcile;
mod seed;
mod verify;

use std::io::{self, Write};

use serde::Serialize;

use crate::cli::OutputFormat;
pub use crate::human::millis;
pub use grid::{Grid, Screen, hanging, paragraph, wrap};

/// A report that can be printed for people.
pub trait Render: Serialize {
    /// Tables and text for people, laid out for `screen` (see [`Grid`]).
    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()>;

    /// CSV, for the reports that have it (checked before the command runs).
    fn render_csv(&self, _out: &mut dyn Write) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this report has no CSV form",
        ))
    }

    /// JUnit XML, for the reports that have it (checked before the command runs).
    fn render_junit(&self, _out: &mut dyn Write) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this report has no JUnit form",
        ))
    }
}

/// Prints `report` in `format`, tables laid out for the screen stdout is on.
pub fn render<R: Render>(report: &R, format: OutputFormat, out: &mut dyn Write) -> io::Result<()> {
    render_on(report, format, Screen::detect(), out)
}

pub fn render_on<R: Render>(
    report: &R,
    format: OutputFormat,
    screen: Screen,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        OutputFormat::Table => report.render_table(out, screen),
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)
        }
        OutputFormat::Junit => report.render_junit(out),
        OutputFormat::Csv => report.render_csv(out),
    }
}
#[cfg(test)]
mod tests;
