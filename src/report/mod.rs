//! Report rendering: every command's report is one serde value, printed as a table or JSON.

mod backfill;
mod migrate;
mod prisma;
mod reconcile;
mod seed;
mod verify;

use std::io::{self, Write};

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use crate::cli::OutputFormat;

/// A report that can be printed for people.
pub trait Render: Serialize {
    fn render_table(&self, out: &mut dyn Write) -> io::Result<()>;

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

pub fn render<R: Render>(report: &R, format: OutputFormat, out: &mut dyn Write) -> io::Result<()> {
    match format {
        OutputFormat::Table => report.render_table(out),
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)
        }
        OutputFormat::Junit => report.render_junit(out),
        OutputFormat::Csv => report.render_csv(out),
    }
}

/// A table with paytool's look: UTF-8 borders, wrapped to the terminal when there is one.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        table.set_width(140);
    }
    table.set_header(header.to_vec());
    table
}

pub(crate) fn millis(ms: u64) -> String {
    if ms >= 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}
