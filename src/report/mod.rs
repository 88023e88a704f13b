//! Report rendering: every command's report is one serde value, printed as a table or JSON.

mod backfill;
mod control;
mod demo;
mod events;
mod grid;
mod migrate;
mod prisma;
mod reconcile;
mod seed;
mod verify;

use std::io::{self, Write};

use serde::Serialize;

pub use crate::human::millis;
pub use grid::{Grid, Screen, hanging, paragraph, wrap};

/// The forms a report is printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Tables and sentences for people.
    Table,
    /// One JSON document with stable field names.
    Json,
    /// JUnit XML (verify).
    Junit,
    /// One row per finding (reconcile).
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Junit => "junit",
            Format::Csv => "csv",
        }
    }
}

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
pub fn render<R: Render>(report: &R, format: Format, out: &mut dyn Write) -> io::Result<()> {
    render_on(report, format, Screen::detect(), out)
}

pub fn render_on<R: Render>(
    report: &R,
    format: Format,
    screen: Screen,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Table => report.render_table(out, screen),
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)
        }
        Format::Junit => report.render_junit(out),
        Format::Csv => report.render_csv(out),
    }
}
#[cfg(test)]
mod tests;
