//! Report rendering: every command's report is one serde value, printed as a table or JSON.

mod backfill;
pub mod ci;
mod control;
mod demo;
mod events;
mod grid;
pub mod metrics;
mod migrate;
mod payouts;
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
    /// Markdown for a pull-request comment or a job summary.
    Markdown,
    /// GitHub Actions workflow commands (annotations).
    Github,
    /// GitLab Code Quality JSON.
    Gitlab,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Junit => "junit",
            Format::Csv => "csv",
            Format::Markdown => "markdown",
            Format::Github => "github",
            Format::Gitlab => "gitlab",
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

    /// The report in markdown, line by line, for the reports that have it: a pull-request
    /// comment or a job summary ([`ci::fit_markdown`] sizes it).
    fn markdown_lines(&self) -> Option<Vec<String>> {
        None
    }

    /// What a CI system shows on its own (annotations, Code Quality): the failing and warning
    /// checks or findings, for the reports that have them.
    fn ci_items(&self) -> Option<Vec<ci::CiItem>> {
        None
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
        Format::Markdown => match report.markdown_lines() {
            Some(lines) => ci::write_lines(out, &ci::fit_markdown(lines, ci::PR_COMMENT_LIMIT)),
            None => Err(unsupported("markdown")),
        },
        Format::Github => match report.ci_items() {
            Some(items) => ci::write_lines(out, &ci::github_commands(items)),
            None => Err(unsupported("github")),
        },
        Format::Gitlab => match report.ci_items() {
            Some(items) => ci::write_code_quality(out, &items),
            None => Err(unsupported("gitlab")),
        },
    }
}

fn unsupported(format: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("this report has no {format} form"),
    )
}
#[cfg(test)]
mod tests;
