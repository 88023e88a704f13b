//! paytool: move a live PostgreSQL payments database onto a robust Stripe payment model.

pub mod backfill;
pub mod cli;
pub mod db;
pub mod demo;
pub mod exit;
pub mod human;
pub mod logging;
pub mod migrate;
pub mod prisma;
pub mod progress;
pub mod reconcile;
pub mod report;
pub mod seed;
pub mod stripe;
pub mod stripe_sim;
pub mod verify;

use std::io::Write;

use anyhow::Context;

use cli::{Cli, Command};
use progress::Progress;

/// Runs one command and returns its exit code; errors carry their own (see [`exit::code_for`]).
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_command(cli))
}

async fn run_command(cli: Cli) -> anyhow::Result<u8> {
    let progress =
        Progress::new(progress::bars_enabled_for(&cli.global)).with_notes(!cli.global.quiet);
    let url = cli
        .global
        .database_url
        .as_ref()
        .map(db::DatabaseUrlArg::parse)
        .transpose()?;
    let url = url.as_ref();
    let format = cli.global.format;
    check_format(&cli.command, format)?;
    let mut stdout = std::io::stdout().lock();
    match &cli.command {
        Command::Migrate(args) => {
            let output = migrate::run(args, url, &progress).await?;
            print(&output, format, &mut stdout)?;
            Ok(output.exit_code())
        }
        Command::Backfill(cli::BackfillCommand::Payments(args)) => {
            let report = backfill::run(args, url, progress).await?;
            print(&report, format, &mut stdout)?;
            Ok(report.exit_code())
        }
        Command::Verify(cli::VerifyCommand::Constraints(args)) => {
            let report = verify::run(args, url, progress).await?;
            print(&report, format, &mut stdout)?;
            Ok(report.exit_code())
        }
        Command::Reconcile(args) => {
            let report = reconcile::run(args, url, progress).await?;
            print(&report, format, &mut stdout)?;
            Ok(report.exit_code())
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "paytool", &mut script);
            write_out(&script, &mut stdout)?;
            Ok(exit::OK)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("cannot render the man page")?;
            write_out(&page, &mut stdout)?;
            Ok(exit::OK)
        }
        Command::Prisma(cli::PrismaCommand::Schema) => {
            let mut conn = db::connect(url).await?;
            let report = prisma::schema(&mut conn).await?;
            print(&report, format, &mut stdout)?;
            Ok(exit::OK)
        }
        Command::Prisma(cli::PrismaCommand::Baseline(args)) => {
            let mut conn = db::connect(url).await?;
            let request = prisma::BaselineRequest {
                migrations_dir: args.migrations_dir.clone(),
                name: args.name.clone(),
            };
            let report = prisma::baseline(&mut conn, &request).await?;
            print(&report, format, &mut stdout)?;
            Ok(exit::OK)
        }
        Command::Seed(args) => {
            let mut conn = db::connect(url).await?;
            let options = seed::SeedOptions {
                orders: args.orders,
                stock_anomalies: !args.no_stock_anomalies,
            };
            let database = url.map(|u| u.redacted().to_owned()).unwrap_or_default();
            let report = seed::seed(&mut conn, database, options).await?;
            print(&report, format, &mut stdout)?;
            Ok(exit::OK)
        }
    }
}

/// Refuses a `--format` the command cannot produce, before it does anything.
fn check_format(
    command: &Command,
    format: cli::OutputFormat,
) -> Result<(), cli::UnsupportedFormat> {
    let (name, available) = match command {
        Command::Verify(_) if format != cli::OutputFormat::Csv => return Ok(()),
        Command::Verify(_) => ("verify constraints", "table, json, junit"),
        Command::Reconcile(_) if format != cli::OutputFormat::Junit => return Ok(()),
        Command::Reconcile(_) => ("reconcile", "table, json, csv"),
        Command::Migrate(_) => ("migrate", "table, json"),
        Command::Backfill(_) => ("backfill payments", "table, json"),
        Command::Seed(_) => ("seed", "table, json"),
        Command::Prisma(_) => ("prisma", "table, json"),
        Command::Demo(_) | Command::Completions { .. } | Command::Man => return Ok(()),
    };
    match format {
        cli::OutputFormat::Table | cli::OutputFormat::Json => Ok(()),
        other => Err(cli::UnsupportedFormat {
            format: other.name(),
            command: name,
            available,
        }),
    }
}

/// Prints the report; a reader that went away (`| head`) is not an error.
fn print<R: report::Render>(
    report: &R,
    format: cli::OutputFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let written = report::render(report, format, out).and_then(|()| out.flush());
    reader_gone_is_fine(written).context("cannot write the report to stdout")
}

/// Writes generated text (man page, completions) the same way.
fn write_out(bytes: &[u8], out: &mut dyn Write) -> anyhow::Result<()> {
    let written = out.write_all(bytes).and_then(|()| out.flush());
    reader_gone_is_fine(written).context("cannot write to stdout")
}

fn reader_gone_is_fine(written: std::io::Result<()>) -> std::io::Result<()> {
    match written {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
