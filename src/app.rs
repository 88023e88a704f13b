//! The app layer: the parsed command line becomes a plain request for one command, the
//! database URL is resolved once, the command runs, its report is rendered, and an error
//! becomes its exit code. The only module that knows both clap and the commands.

use std::io::Write;

use anyhow::Context;

use crate::backfill::{self, BackfillRequest, BackfillStep};
use crate::cli::{self, Cli, Command};
use crate::db;
use crate::demo::{self, DemoRequest};
use crate::events::{self, EventsRequest};
use crate::exit;
use crate::migrate::{self, LockPolicy, MigrateRequest};
use crate::progress::{self, Progress};
use crate::reconcile::{self, ReconcileRequest};
use crate::report::{self, Format};
use crate::stripe::StripeAccess;
use crate::verify::{self, Category, VerifyRequest};
use crate::{prisma, seed};

/// A `--format` the command cannot produce, caught before anything runs.
#[derive(Debug, thiserror::Error)]
#[error("--format {format} is not available for {command} (it has: {available})")]
pub struct UnsupportedFormat {
    pub format: &'static str,
    pub command: &'static str,
    pub available: String,
}

/// Sets up logging, runs one command and returns its exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    crate::logging::init(cli.global.quiet, cli.global.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_command(cli))
}

fn format_of(arg: cli::OutputFormat) -> Format {
    match arg {
        cli::OutputFormat::Table => Format::Table,
        cli::OutputFormat::Json => Format::Json,
        cli::OutputFormat::Junit => Format::Junit,
        cli::OutputFormat::Csv => Format::Csv,
        cli::OutputFormat::Markdown => Format::Markdown,
        cli::OutputFormat::Github => Format::Github,
        cli::OutputFormat::Gitlab => Format::Gitlab,
    }
}

async fn run_command(cli: Cli) -> anyhow::Result<u8> {
    let format = format_of(cli.global.format);
    let for_people = format == Format::Table;
    let progress = Progress::new(progress::bars_enabled_here(cli.global.quiet, for_people))
        .with_notes(!cli.global.quiet);
    check_format(&cli.command, format)?;
    let mut stdout = std::io::stdout().lock();
    // The commands that need no database.
    match &cli.command {
        Command::Demo(args) => {
            let request = DemoRequest {
                orders: args.orders,
                keep: args.keep,
                narrate_on_stderr: format != Format::Table,
            };
            let report = demo::run(&request).await?;
            return shown(&report, exit::OK, format, &mut stdout);
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "paytool", &mut script);
            write_out(&script, &mut stdout)?;
            return Ok(exit::OK);
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("cannot render the man page")?;
            write_out(&page, &mut stdout)?;
            return Ok(exit::OK);
        }
        _ => {}
    }
    // Every other command needs one: resolved once, handed down as a value.
    let url = cli
        .global
        .migrate_url
        .as_ref()
        .or(cli.global.database_url.as_ref())
        .map(db::DatabaseUrlArg::parse)
        .transpose()?
        .ok_or(db::DbError::NoUrl)?;
    let url = &url;
    let out = &mut stdout;
    match &cli.command {
        Command::Migrate(args) => {
            let output = migrate::run(&migrate_request(args), url, &progress).await?;
            shown(&output, output.exit_code(), format, out)
        }
        Command::Backfill(cli::BackfillCommand::Payments(args)) => {
            let started = std::time::Instant::now();
            let outcome = backfill::run(&backfill_request(args), url, progress).await;
            let metrics = args.metrics_file.as_deref();
            let report = metered(metrics, "backfill", started, outcome, |r| r.exit_code())?;
            shown(&report, report.exit_code(), format, out)
        }
        Command::Backfill(cli::BackfillCommand::Events(args)) => {
            let report = events::run(&events_request(args), url, progress).await?;
            shown(&report, report.exit_code(), format, out)
        }
        Command::Backfill(command) => {
            // Who, as the operator's login says; without one (a container, a job), the
            // database role, which the database then records.
            let by = std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok()
                .filter(|name| !name.is_empty());
            let report =
                backfill::control::run(url, &control_request(command), by.as_deref()).await?;
            shown(&report, exit::OK, format, out)
        }
        Command::Verify(cli::VerifyCommand::Constraints(args)) => {
            let started = std::time::Instant::now();
            let outcome = verify::run(&verify_request(args), url, progress).await;
            let metrics = args.metrics_file.as_deref();
            let report = metered(metrics, "verify", started, outcome, |r| r.exit_code())?;
            shown(&report, report.exit_code(), format, out)
        }
        Command::Reconcile(cli::ReconcileArgs {
            action: Some(cli::ReconcileAction::Payouts(args)),
            ..
        }) => {
            let started = std::time::Instant::now();
            let outcome = reconcile::payouts::run(&payouts_request(args), url, progress).await;
            let metrics = args.metrics_file.as_deref();
            let report = metered(metrics, "reconcile_payouts", started, outcome, |r| {
                r.exit_code()
            })?;
            shown(&report, report.exit_code(), format, out)
        }
        Command::Reconcile(args) => {
            let started = std::time::Instant::now();
            let outcome = reconcile::run(&reconcile_request(args), url, progress).await;
            let metrics = args.metrics_file.as_deref();
            let report = metered(metrics, "reconcile", started, outcome, |r| r.exit_code())?;
            shown(&report, report.exit_code(), format, out)
        }
        Command::Prisma(cli::PrismaCommand::Schema(args)) => {
            let report = prisma::schema(url, args.partial_indexes).await?;
            shown(&report, exit::OK, format, out)
        }
        Command::Prisma(cli::PrismaCommand::Baseline(args)) => {
            let request = prisma::BaselineRequest {
                migrations_dir: args.migrations_dir.clone(),
                name: args.name.clone(),
            };
            let report = prisma::baseline(url, &request).await?;
            shown(&report, exit::OK, format, out)
        }
        Command::Seed(args) => {
            let options = seed::SeedOptions {
                orders: args.orders,
                stock_anomalies: !args.no_stock_anomalies,
            };
            let report = seed::run(url, options).await?;
            shown(&report, exit::OK, format, out)
        }
        Command::Demo(_) | Command::Completions { .. } | Command::Man => Ok(exit::OK),
    }
}

/// Writes the run's metrics file, if one was asked for, whatever the outcome: a failed run is
/// what alerting most needs to hear about. A file that cannot be written fails a run that
/// succeeded; a failed run keeps its own error.
fn metered<R: report::metrics::Metrics>(
    path: Option<&std::path::Path>,
    command: &str,
    started: std::time::Instant,
    outcome: anyhow::Result<R>,
    code_of: impl Fn(&R) -> u8,
) -> anyhow::Result<R> {
    let Some(path) = path else {
        return outcome;
    };
    let run = report::metrics::RunOutcome {
        command,
        exit_code: match &outcome {
            Ok(report) => code_of(report),
            Err(err) => exit_code(err),
        },
        finished_at: chrono::Utc::now(),
        duration: started.elapsed(),
    };
    let report = outcome
        .as_ref()
        .ok()
        .map(|r| r as &dyn report::metrics::Metrics);
    let text = report::metrics::openmetrics(&run, report);
    match (report::metrics::write_atomically(path, &text), &outcome) {
        (Err(err), Ok(_)) => Err(anyhow::Error::new(err)
            .context(format!("cannot write the metrics file {}", path.display()))),
        (Err(err), Err(_)) => {
            tracing::warn!("cannot write the metrics file {} ({err})", path.display());
            outcome
        }
        (Ok(()), _) => outcome,
    }
}

/// Prints a command's report on stdout (and, under GitHub Actions, its annotations on stderr
/// and its summary in the job's); the command's exit code.
fn shown<R: report::Render>(
    report: &R,
    code: u8,
    format: Format,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    print(report, format, out)?;
    let summary = std::env::var_os("GITHUB_STEP_SUMMARY").map(std::path::PathBuf::from);
    // Extras for the CI's display: a summary file that cannot be written is said, and never
    // changes the command's own outcome (a gate's exit 0 or 1).
    if let Err(err) = report::ci::github_actions_extras(
        report,
        std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true"),
        summary.as_deref(),
        format != Format::Github,
    ) {
        tracing::warn!("cannot write GitHub's annotations or step summary ({err})");
    }
    Ok(code)
}

fn lock_policy(args: &cli::LockArgs) -> LockPolicy {
    LockPolicy {
        lock_timeout: args.lock_timeout,
        lock_retries: args.lock_retries,
        statement_timeout: args.statement_timeout,
        wait: args.wait,
        max_wait: args.max_wait,
        observer: None,
        throttle: backfill::ThrottleSettings::default(),
    }
}

fn migrate_request(args: &cli::MigrateArgs) -> MigrateRequest {
    let policy = LockPolicy {
        throttle: throttle_settings(&args.apply.throttle),
        ..lock_policy(&args.apply.lock)
    };
    let batch_size = args.apply.batch_size;
    match &args.action {
        Some(cli::MigrateAction::Plan(plan)) => MigrateRequest::Plan {
            policy,
            batch_size,
            show_sql: !plan.no_sql,
        },
        None if args.apply.dry_run => MigrateRequest::Plan {
            policy,
            batch_size,
            show_sql: true,
        },
        None => MigrateRequest::Apply { policy, batch_size },
        Some(cli::MigrateAction::Status) => MigrateRequest::Status,
        Some(cli::MigrateAction::Down(down)) => MigrateRequest::Down {
            policy: lock_policy(&down.lock),
            confirmed: down.i_understand_this_destroys_payment_data,
        },
        Some(cli::MigrateAction::Cleanup(cleanup)) => MigrateRequest::Cleanup {
            policy: lock_policy(&cleanup.lock),
            batch_size,
            watch: cleanup.watch,
        },
    }
}

fn backfill_request(args: &cli::BackfillArgs) -> BackfillRequest {
    BackfillRequest {
        step: args.step.map(|step| match step {
            cli::StepArg::Items => BackfillStep::Items,
            cli::StepArg::Orders => BackfillStep::Orders,
            cli::StepArg::Payments => BackfillStep::Payments,
        }),
        dry_run: args.dry_run,
        restart: args.restart,
        follow: args.follow,
        interval: args.interval,
        strict: args.strict,
        batch_size: args.batch_size,
        target_batch_ms: args.target_batch_ms,
        pause_ms: args.pause_ms,
        lock_timeout: args.lock_timeout,
        max_retries: args.max_retries,
        wait: args.wait,
        throttle: throttle_settings(&args.throttle),
        cooperation: args.workers.map(|workers| backfill::Cooperation {
            workers,
            lease: args.lease,
        }),
    }
}

fn control_request(command: &cli::BackfillCommand) -> backfill::control::ControlRequest {
    use backfill::control::{ControlRequest, SetRequest};
    match command {
        cli::BackfillCommand::Pause => ControlRequest::Pause,
        cli::BackfillCommand::Resume => ControlRequest::Resume,
        cli::BackfillCommand::Set(set) => ControlRequest::Set(SetRequest {
            batch_size: set.batch_size,
            pause_ms: set.pause_ms,
            target_batch_ms: set.target_batch_ms,
            clear: set.clear,
        }),
        _ => ControlRequest::Status,
    }
}

fn throttle_settings(args: &cli::ThrottleArgs) -> backfill::ThrottleSettings {
    backfill::ThrottleSettings {
        enabled: !args.no_throttle,
        max_replica_lag: args.max_replica_lag,
        max_replica_lag_bytes: args.max_replica_lag_bytes,
        max_archive_backlog: args.max_archive_backlog,
        autovacuum: !args.ignore_autovacuum,
        autovacuum_min_rows: args.autovacuum_min_rows,
        max_lock_waiters: args.max_lock_waiters,
        throttle_query: args.throttle_query.clone(),
        min_hold: args.throttle_min_hold,
    }
}

fn verify_request(args: &cli::VerifyArgs) -> VerifyRequest {
    VerifyRequest {
        only: args.only.map(|only| match only {
            cli::CategoryArg::Schema => Category::Schema,
            cli::CategoryArg::Data => Category::Data,
        }),
        sample: args.sample,
    }
}

fn stripe_access(args: &cli::StripeArgs) -> StripeAccess {
    StripeAccess {
        key: args.stripe_key.clone(),
        base_url: args.stripe_base_url.clone(),
        max_rps: args.max_rps,
        concurrency: args.concurrency as usize,
        request_timeout: args.request_timeout,
        max_retries: args.max_retries,
    }
}

/// A duration from the command line as chrono's; clap's parser bounds it far below overflow.
fn days_of(duration: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

fn reconcile_request(args: &cli::ReconcileArgs) -> ReconcileRequest {
    ReconcileRequest {
        stripe: stripe_access(&args.stripe),
        since: args.since,
        until: args.until,
        order: args.order.clone(),
        apply: args.apply,
        stale_after: reconcile::StaleAfter {
            capture: days_of(args.stale_capture_after),
            processing: days_of(args.stale_processing_after),
        },
        baseline: args.accept.baseline.clone(),
        write_baseline: acceptance(&args.accept),
    }
}

/// Who accepts the findings `--write-baseline` writes, and why.
fn acceptance(args: &cli::AcceptArgs) -> Option<reconcile::Acceptance> {
    args.write_baseline
        .as_ref()
        .map(|path| reconcile::Acceptance {
            path: path.clone(),
            by: args.accepted_by.clone(),
            reason: args.reason.clone().unwrap_or_default(),
        })
}

fn payouts_request(args: &cli::PayoutsArgs) -> reconcile::payouts::PayoutsRequest {
    reconcile::payouts::PayoutsRequest {
        stripe: stripe_access(&args.stripe),
        since: args.since,
        until: args.until,
        payout: args.payout.clone(),
        not_paid_out_after: args.not_paid_out_after,
        baseline: args.accept.baseline.clone(),
        write_baseline: acceptance(&args.accept),
        source: match args.source {
            cli::SourceArg::Auto => reconcile::payouts::Source::Auto,
            cli::SourceArg::Api => reconcile::payouts::Source::Api,
            cli::SourceArg::Reports => reconcile::payouts::Source::Reports,
        },
        files_base_url: args.stripe_files_base_url.clone(),
    }
}

fn events_request(args: &cli::EventsArgs) -> EventsRequest {
    EventsRequest {
        stripe: stripe_access(&args.stripe),
        since: args.since,
        until: args.until,
        restart: args.restart,
    }
}

/// Refuses a `--format` the command cannot produce, before it does anything.
fn check_format(command: &Command, format: Format) -> Result<(), UnsupportedFormat> {
    use Format::*;
    let (name, available): (&'static str, &[Format]) = match command {
        Command::Verify(_) => (
            "verify constraints",
            &[Table, Json, Junit, Markdown, Github, Gitlab],
        ),
        Command::Reconcile(cli::ReconcileArgs {
            action: Some(cli::ReconcileAction::Payouts(_)),
            ..
        }) => ("reconcile payouts", &[Table, Json, Csv]),
        Command::Reconcile(_) => ("reconcile", &[Table, Json, Csv, Markdown, Github, Gitlab]),
        Command::Migrate(args) => match &args.action {
            Some(cli::MigrateAction::Plan(_)) => ("migrate plan", &[Table, Json, Markdown]),
            None if args.apply.dry_run => ("migrate plan", &[Table, Json, Markdown]),
            Some(cli::MigrateAction::Status) => {
                ("migrate status", &[Table, Json, Markdown, Github])
            }
            _ => ("migrate", &[Table, Json]),
        },
        Command::Backfill(cli::BackfillCommand::Payments(_)) => {
            ("backfill payments", &[Table, Json])
        }
        Command::Backfill(cli::BackfillCommand::Events(_)) => ("backfill events", &[Table, Json]),
        Command::Backfill(_) => ("backfill status/pause/resume/set", &[Table, Json]),
        Command::Seed(_) => ("seed", &[Table, Json]),
        Command::Prisma(_) => ("prisma", &[Table, Json]),
        Command::Demo(_) => ("demo", &[Table, Json]),
        Command::Completions { .. } | Command::Man => return Ok(()),
    };
    if available.contains(&format) {
        return Ok(());
    }
    let names: Vec<&str> = available.iter().map(|f| f.name()).collect();
    Err(UnsupportedFormat {
        format: format.name(),
        command: name,
        available: names.join(", "),
    })
}

/// Prints the report; a reader that went away (`| head`) is not an error.
fn print<R: report::Render>(report: &R, format: Format, out: &mut dyn Write) -> anyhow::Result<()> {
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

/// Every error paytool expects, by its owner: the one place an error becomes an exit code
/// (nextest's `ExpectedError` is the model). Commands raise their own typed errors inside
/// `anyhow` chains; the first one in the chain is the one that counts.
pub enum Expected<'a> {
    Database(&'a db::DbError),
    Key(&'a db::KeyError),
    Migrate(&'a migrate::MigrateError),
    Backfill(&'a backfill::BackfillError),
    Reconcile(&'a reconcile::ReconcileError),
    Baseline(&'a reconcile::BaselineError),
    Events(&'a events::EventsError),
    Verify(&'a verify::VerifyError),
    Prisma(&'a prisma::PrismaError),
    Seed(&'a seed::SeedError),
    Cluster(&'a demo::cluster::ClusterError),
    Demo(&'a demo::DemoError),
    Format(&'a UnsupportedFormat),
}

impl<'a> Expected<'a> {
    /// The first expected error of the chain, if any.
    pub fn of(err: &'a anyhow::Error) -> Option<Expected<'a>> {
        err.chain().find_map(Expected::from_cause)
    }

    fn from_cause(cause: &'a (dyn std::error::Error + 'static)) -> Option<Expected<'a>> {
        if let Some(e) = cause.downcast_ref() {
            return Some(Expected::Database(e));
        }
        if let Some(e) = cause.downcast_ref() {
            return Some(Expected::Key(e));
        }
        if let Some(e) = cause.downcast_ref() {
            return Some(Expected::Migrate(e));
        }
        if let Some(e) = cause.downcast_ref() {
            return Some(Expected::Backfill(e));
        }
        if let Some(e) = cause.downcast_ref() {
            return Some(Expected::Reconcile(e));
        }
        if let Some(e) = cause.downcast_ref() {
            return Some(Expected::Baseline(e));
        }
        if let Some(e) = cause.downcast_ref() {
            return Some(Expected::Events(e));
        }
        if let Some(e) = cause.downcast_ref() {
            return Some(Expected::Verify(e));
        }
        if let Some(e) = cause.downcast_ref() {
            return Some(Expected::Prisma(e));
        }
        if let Some(e) = cause.downcast_ref() {
            return Some(Expected::Seed(e));
        }
        if let Some(e) = cause.downcast_ref() {
            return Some(Expected::Cluster(e));
        }
        if let Some(e) = cause.downcast_ref() {
            return Some(Expected::Demo(e));
        }
        cause.downcast_ref().map(Expected::Format)
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Expected::Database(e) => e.exit_code(),
            Expected::Key(e) => e.exit_code(),
            Expected::Migrate(e) => e.exit_code(),
            Expected::Backfill(e) => e.exit_code(),
            Expected::Reconcile(e) => e.exit_code(),
            Expected::Baseline(e) => e.exit_code(),
            Expected::Events(e) => e.exit_code(),
            Expected::Verify(e) => e.exit_code(),
            Expected::Prisma(e) => e.exit_code(),
            Expected::Seed(e) => e.exit_code(),
            Expected::Cluster(e) => e.exit_code(),
            Expected::Demo(e) => e.exit_code(),
            Expected::Format(_) => exit::USAGE,
        }
    }
}

/// The exit code for an error: its first expected error's, else a runtime failure.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    Expected::of(err).map_or(exit::RUNTIME_FAILURE, |e| e.exit_code())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_deepest_typed_error_is_not_needed_the_first_decides() {
        let err = anyhow::Error::new(verify::VerifyError::NotMigrated {
            missing: "schema.tables".into(),
        })
        .context("verify constraints");
        assert_eq!(exit_code(&err), exit::USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), exit::RUNTIME_FAILURE);
    }

    #[test]
    fn a_failed_demo_exits_3_on_purpose() {
        let err = anyhow::Error::new(demo::DemoError::UnexpectedExit {
            stage: "Migrate online",
            expected: 0,
            got: 1,
        });
        assert!(matches!(Expected::of(&err), Some(Expected::Demo(_))));
        assert_eq!(exit_code(&err), exit::RUNTIME_FAILURE);
    }

    #[test]
    fn lock_retries_of_the_default_flags_are_the_policys_defaults() {
        let cli = <Cli as clap::Parser>::parse_from(["paytool", "migrate"]);
        let Command::Migrate(args) = &cli.command else {
            panic!("migrate parses as migrate");
        };
        let MigrateRequest::Apply { policy, .. } = migrate_request(args) else {
            panic!("plain migrate applies");
        };
        let default = LockPolicy::default();
        assert_eq!(policy.lock_timeout, default.lock_timeout);
        assert_eq!(policy.lock_retries, default.lock_retries);
        assert_eq!(policy.wait, Duration::from_secs(600));
    }
}
