//! Command-line definition (clap derive). Options shared by every command are in [`GlobalArgs`].
//!
//! Long on purpose: every flag of every command with its help text and examples, in one place
//! that `--help`, the man page and the completions are generated from.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::db::DatabaseUrlArg;

#[derive(Debug, Parser)]
#[command(
    name = "paytool",
    version,
    about = "Move a live PostgreSQL payments database onto a robust Stripe payment model, and keep it honest.",
    after_help = crate::exit::HELP_TEXT,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// PostgreSQL URL (postgres://user:password@host:port/db). The password is never printed.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<DatabaseUrlArg>,
    /// A direct or session-pooled URL that paytool connects to instead of --database-url, for
    /// when DATABASE_URL goes through a transaction pooler such as PgBouncer in transaction mode
    /// (Prisma's directUrl). paytool refuses a transaction pooler: it needs one server session
    /// per run.
    #[arg(
        long,
        env = "PAYTOOL_MIGRATE_URL",
        global = true,
        hide_env_values = true
    )]
    pub migrate_url: Option<DatabaseUrlArg>,
    /// Output format of the report on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub format: OutputFormat,
    /// More log output on stderr: -v info, -vv debug, -vvv debug of the libraries too. Without
    /// it, only warnings and errors.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr, no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable tables.
    Table,
    /// One JSON document with stable field names.
    Json,
    /// JUnit XML, one testcase per check (verify constraints only).
    Junit,
    /// CSV, one row per finding (reconcile only).
    Csv,
    /// Markdown sized for one pull-request comment (migrate plan, verify, reconcile).
    Markdown,
    /// GitHub Actions workflow commands: an annotation per failing check or finding (verify,
    /// migrate status, reconcile). Under GITHUB_ACTIONS=true they are written to stderr with
    /// any format, and the markdown report is added to $GITHUB_STEP_SUMMARY.
    Github,
    /// GitLab Code Quality JSON (verify, reconcile).
    Gitlab,
}

impl OutputFormat {
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Table => "table",
            OutputFormat::Json => "json",
            OutputFormat::Junit => "junit",
            OutputFormat::Csv => "csv",
            OutputFormat::Markdown => "markdown",
            OutputFormat::Github => "github",
            OutputFormat::Gitlab => "gitlab",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the payment-system schema migration online (plan, status, apply, down).
    #[command(after_help = MIGRATE_EXAMPLES)]
    Migrate(MigrateArgs),
    /// Backfill data into the payment model (snapshots, totals, payment rows).
    #[command(
        subcommand,
        after_help = "Examples:\n  paytool backfill payments --dry-run\n  paytool backfill payments"
    )]
    Backfill(BackfillCommand),
    /// Check the schema and data invariants of the payment model (a CI gate).
    #[command(
        subcommand,
        after_help = "Examples:\n  paytool verify constraints\n  paytool verify constraints --format junit > verify.xml"
    )]
    Verify(VerifyCommand),
    /// Compare orders and payments with Stripe PaymentIntents and refunds; --apply repairs
    /// what Stripe proves, on the database side only.
    #[command(after_help = RECONCILE_EXAMPLES)]
    Reconcile(ReconcileArgs),
    /// The whole flow offline: throwaway PostgreSQL + Stripe simulator, every command in order.
    #[command(after_help = DEMO_EXAMPLES)]
    Demo(DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  paytool completions bash > /etc/bash_completion.d/paytool\n  paytool completions zsh > \"${fpath[1]}/_paytool\""
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(
        after_help = "Examples:\n  paytool man > /usr/local/share/man/man1/paytool.1 && man paytool"
    )]
    Man,
    /// Create the legacy schema (SPEC §2) with realistic dirty data in an EMPTY database.
    #[command(after_help = SEED_EXAMPLES)]
    Seed(SeedArgs),
    /// What a Prisma application needs after the migration: its upgraded models, and a Prisma
    /// Migrate baseline recorded as applied.
    #[command(
        subcommand,
        after_help = "Examples:\n  paytool prisma schema > payment-models.prisma\n  paytool prisma baseline --migrations-dir prisma/migrations"
    )]
    Prisma(PrismaCommand),
}

#[derive(Debug, Subcommand)]
pub enum PrismaCommand {
    /// Print the upgraded schema.prisma models of the migrated database (status String, payments,
    /// payment_events, refunds, snapshot and total fields), native types read from the database.
    #[command(
        after_help = "Examples:\n  # then merge into schema.prisma\n  paytool prisma schema > prisma/payment-models.prisma\n  paytool prisma schema --format json | jq -r .schema\n  # a schema with previewFeatures = [\"partialIndexes\"]\n  paytool prisma schema --partial-indexes\n\nKeep your generator and datasource blocks; columns of your own are listed as\ncomments.\n\nExit codes: 0 printed, 2 database not migrated or usage error, 3 runtime\nfailure."
    )]
    Schema(SchemaArgs),
    /// Write the payment system as a Prisma migration (DIR/<timestamp>_payment_system/migration.sql)
    /// and record it as applied in _prisma_migrations, as `prisma migrate resolve --applied` does.
    #[command(
        after_help = "Examples:\n  paytool prisma baseline --migrations-dir prisma/migrations\n  # then: Database schema is up to date!\n  npx prisma migrate status\n\nRe-running it is safe: an identical migration already written and recorded\nis left as it is.\n\nExit codes: 0 written and recorded, 2 database not migrated or usage error,\n3 runtime failure."
    )]
    Baseline(BaselineArgs),
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Print paytool's partial indexes as @@index attributes, for a schema with
    /// previewFeatures = ["partialIndexes"] (Prisma 7's db pull turns it on; without them
    /// there, prisma migrate dev drops them). By default they are comments saying so.
    #[arg(long)]
    pub partial_indexes: bool,
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// The application's Prisma migrations folder (created if missing).
    #[arg(long, value_name = "DIR")]
    pub migrations_dir: std::path::PathBuf,
    /// The migration's name after its timestamp.
    #[arg(long, default_value = "payment_system")]
    pub name: String,
}

const MIGRATE_EXAMPLES: &str = "Examples:
  # every step, its SQL, lock, rows and hazards
  paytool migrate plan
  # preflight, then apply the pending steps online
  paytool migrate
  # give up a lock attempt sooner (then retry)
  paytool migrate --lock-timeout 300ms
  # applied and pending steps, checksums, drift
  paytool migrate status --format json
  paytool migrate down --i-understand-this-destroys-payment-data

migrate needs a direct session connection (not PgBouncer transaction pooling):
it holds a session-level advisory lock for the whole run.

Exit codes: 0 success, 1 problems found (dirty data, drift), 2 usage or
configuration error, 3 runtime failure.";

const SEED_EXAMPLES: &str = "Examples:
  createdb shop_test
  paytool seed --database-url postgres://localhost/shop_test --orders 5000
  # clean enough for migrate to pass
  paytool seed --orders 1000000 --no-stock-anomalies

Exit codes: 0 success, 2 the database already has tables of the legacy schema,
3 runtime failure.";

const RECONCILE_EXAMPLES: &str =
    "Reads Stripe only (GET requests; a restricted key with read access to
PaymentIntents, Charges, Refunds, Disputes and Events is enough), all of it
before writing anything.

Examples:
  # the last 30 days
  paytool reconcile
  # the 1st to the 15th of November (a plain --until date: the whole day)
  paytool reconcile --since 2026-11-01 --until 2026-11-15 --format csv
  # one order
  paytool reconcile --order 8f0e2c1a-...
  # link, sync statuses, mark PAID, record refunds (each audited)
  paytool reconcile --apply
  # another server, e.g. stripe-mock
  paytool reconcile --stripe-base-url http://localhost:12111/ --max-rps 50
  # nightly, for an alert rule (node_exporter's textfile collector)
  paytool reconcile -q --metrics-file /var/lib/node_exporter/paytool.prom

  # nightly: alert only on findings nobody has accepted yet
  paytool reconcile --write-baseline accepted.json --reason \"known, INC-42\"
  paytool reconcile --baseline accepted.json

Findings: missing_in_stripe, status_mismatch, amount_mismatch,
currency_mismatch, unlinked_payment_intent, orphan_payment_intent,
duplicate_payment_intents, refund_mismatch, payment_row_mismatch,
disputed_payment, stale_payment_intent, failed_webhook_delivery
(docs/reconcile.md says what causes each and what to do). Amounts are shown
as money (26.66 EUR, 1,500 JPY); JSON and CSV carry integer minor units.

Exit codes: 0 nothing found (or only findings the baseline holds), 1 findings,
2 usage or configuration error, 3 could not complete (Stripe or the database
unreachable; nothing written).";

/// How paytool reaches Stripe: read-only, rate-limited, retried. Shared by every command that
/// reads Stripe.
#[derive(Debug, Args)]
pub struct StripeArgs {
    /// Stripe secret or restricted key. Never printed.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_key: Option<String>,
    /// Stripe API root (tests, proxies, the demo's simulator).
    #[arg(
        long,
        env = "STRIPE_BASE_URL",
        hide_env_values = true,
        default_value = "https://api.stripe.com/",
        value_parser = stripe_base_url
    )]
    pub stripe_base_url: String,
    /// Client-side rate limit, requests per second (Stripe allows 25/s in test mode).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_rps: u32,
    /// Stripe requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: u64,
    /// Timeout of one Stripe request.
    #[arg(long, default_value = "20s", value_parser = request_timeout)]
    pub request_timeout: Duration,
    /// Retries of one Stripe request after 429, 5xx, timeouts or network errors.
    #[arg(long, default_value_t = 6)]
    pub max_retries: u32,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReconcileArgs {
    #[command(subcommand)]
    pub action: Option<ReconcileAction>,
    #[command(flatten)]
    pub stripe: StripeArgs,
    /// Write the run's metrics there (OpenMetrics text, for node_exporter's textfile collector),
    /// atomically: a killed run leaves the previous file whole. Written on failure too.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,
    /// Start of the window (orders created at or after): RFC 3339 or YYYY-MM-DD. Default: 30 days before --until.
    #[arg(long, value_parser = parse_instant, conflicts_with = "order")]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// End of the window (orders created at or before): RFC 3339, or YYYY-MM-DD for the whole of
    /// that day (UTC). Default: now.
    #[arg(long, value_parser = parse_until, conflicts_with = "order")]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Reconcile this one order only.
    #[arg(long)]
    pub order: Option<String>,
    /// Make the safe database-side repairs, each audited in paytool.reconcile_audit.
    #[arg(long)]
    pub apply: bool,
    /// A requires_capture PaymentIntent older than this is stale_payment_intent (Stripe lets an
    /// uncaptured authorization expire after about 7 days).
    #[arg(long, default_value = "5d", value_parser = stale_after)]
    pub stale_capture_after: Duration,
    /// A processing PaymentIntent older than this is stale_payment_intent.
    #[arg(long, default_value = "7d", value_parser = stale_after)]
    pub stale_processing_after: Duration,
    #[command(flatten)]
    pub accept: AcceptArgs,
}

/// Accepted findings, for `reconcile` and `reconcile payouts` alike.
#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// Accepted findings (a file --write-baseline made): they are reported as known and only
    /// the others make the run exit 1.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<std::path::PathBuf>,
    /// Accept every finding of this run into FILE (created, or added to: entries already there
    /// keep who accepted them and why). Needs --reason.
    #[arg(long, value_name = "FILE", requires = "reason")]
    pub write_baseline: Option<std::path::PathBuf>,
    /// Why the findings --write-baseline accepts are accepted (kept in the file).
    #[arg(long, requires = "write_baseline")]
    pub reason: Option<String>,
    /// Who accepts them (kept in the file). Default: $USER.
    #[arg(long, env = "USER", hide_env_values = true, default_value = "unknown")]
    pub accepted_by: String,
}

#[derive(Debug, Subcommand)]
pub enum ReconcileAction {
    /// Every payout of a window explained to the cent, order by order: its balance
    /// transactions, their orders, and what does not add up.
    #[command(after_help = PAYOUTS_EXAMPLES)]
    Payouts(Box<PayoutsArgs>),
}

const PAYOUTS_EXAMPLES: &str =
    "Reads Stripe only (GET requests; a restricted key with read access to
Payouts, Balance transactions, Charges, Refunds and Disputes is enough).

Examples:
  # the payouts that arrived in the last 30 days
  paytool reconcile payouts
  # November's, as CSV for the accountant (one line per balance transaction)
  paytool reconcile payouts --since 2026-11-01 --until 2026-11-30 --format csv
  # one payout
  paytool reconcile payouts --payout po_1Pgc79B7WZ01zgkWu1KToYf4

Findings: payout_total_mismatch, payout_failed, unmatched_balance_transaction,
paid_order_not_paid_out, unknown_balance_transaction_type (docs/payouts.md).
Exit codes: 0 every payout explained, 1 findings, 2 usage, 3 Stripe or the
database could not be read.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    /// The report above 50,000 paid orders in the window, else the API.
    Auto,
    /// GET /v1/balance_transactions?payout=…, a page per hundred.
    Api,
    /// Stripe's payout reconciliation report run (POST /v1/reporting/report_runs).
    Reports,
}

#[derive(Debug, Args)]
pub struct PayoutsArgs {
    #[command(flatten)]
    pub stripe: StripeArgs,
    /// Payouts arriving on or after this day: RFC 3339 or YYYY-MM-DD. Default: 30 days before --until.
    #[arg(long, value_parser = parse_instant, conflicts_with = "payout")]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Payouts arriving on or before this (YYYY-MM-DD: the whole day, UTC). Default: now.
    #[arg(long, value_parser = parse_until, conflicts_with = "payout")]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// One payout (po_…) instead of a window.
    #[arg(long)]
    pub payout: Option<String>,
    /// Where the balance transactions come from: the API (a page per hundred), one of
    /// Stripe's report runs for the whole window (a few requests for millions of rows; the
    /// only request paytool sends that is not a GET: it starts the run), or auto: the report
    /// above 50,000 paid orders in the window.
    #[arg(long, value_enum, default_value_t = SourceArg::Auto)]
    pub source: SourceArg,
    /// Stripe's files host, where a report run's file is read (tests, proxies).
    #[arg(
        long,
        env = "STRIPE_FILES_BASE_URL",
        hide_env_values = true,
        default_value = "https://files.stripe.com/",
        value_parser = stripe_base_url
    )]
    pub stripe_files_base_url: String,
    /// A PAID order's charge available longer than this and in no payout of the window is
    /// paid_order_not_paid_out.
    #[arg(long, default_value = "7d", value_parser = stale_after)]
    pub not_paid_out_after: Duration,
    /// Write the run's metrics there (OpenMetrics text), atomically, on failure too.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub accept: AcceptArgs,
}

/// `--until 2026-11-15` takes in the 15th: the last microsecond of that day (timestamps in the
/// database have microseconds), not its first.
fn parse_until(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let end = day
            .and_hms_micro_opt(23, 59, 59, 999_999)
            .ok_or_else(|| format!("'{text}' is not a day"))?;
        return Ok(end.and_utc());
    }
    parse_instant(text)
}

fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        .map_err(|_| {
            format!("'{text}' is neither RFC 3339 (2026-11-01T00:00:00Z) nor a date (2026-11-01)")
        })
}

const DEMO_EXAMPLES: &str = "Needs PostgreSQL installed (initdb on PATH, in PG_BIN or under
/usr/lib/postgresql/*/bin; as root the server runs as the postgres user).
Nothing to configure, no network.

Examples:
  # a few thousand orders, everything removed at the end
  paytool demo
  # quicker
  paytool demo --orders 500
  # leave the database and the Stripe simulator up to try commands
  paytool demo --keep

Exit codes: 0 every stage went as expected, 2 PostgreSQL not found (or PG_BIN
wrong, or a TMPDIR the postgres user cannot enter), 3 a stage did not go as
expected (the cluster is removed).";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Orders in the demo shop.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(i64).range(300..=1_000_000))]
    pub orders: i64,
    /// Leave the database and the Stripe simulator running and print how to reach them.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Schema (pg_catalog) and data invariants; exit 1 when an error-severity check fails.
    #[command(after_help = VERIFY_EXAMPLES)]
    Constraints(VerifyArgs),
}

const VERIFY_EXAMPLES: &str =
    "Every check has a severity: error (fails the run) or warning (reported
only). Read-only: one REPEATABLE READ READ ONLY transaction, so a role with
SELECT on the tables is enough.

Examples:
  # every check, as a table
  paytool verify constraints
  # pg_catalog checks only (fast)
  paytool verify constraints --only schema
  # for CI test reports, GitLab Code Quality, a pull-request comment
  paytool verify constraints --format junit > verify.xml
  paytool verify constraints --format gitlab > gl-code-quality-report.json
  paytool verify constraints --format markdown > verify.md
  # under GitHub Actions: annotations and the job summary come by themselves
  paytool verify constraints --format json --sample 50 \\
    | jq '.checks[] | select(.count > 0)'

Exit codes: 0 no error-severity check failed, 1 one did, 2 usage or
configuration error, 3 the checks could not run (database unreachable).";

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Run only the schema checks or only the data checks.
    #[arg(long, value_enum)]
    pub only: Option<CategoryArg>,
    /// How many offending ids each check lists.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(0..=10_000))]
    pub sample: i64,
    /// Write the run's metrics there (OpenMetrics text, for node_exporter's textfile collector),
    /// atomically: a killed run leaves the previous file whole. Written on failure too.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CategoryArg {
    /// Tables, columns, constraints, indexes and the trigger, from pg_catalog.
    Schema,
    /// Invariants of the rows, one set-based query each.
    Data,
}

#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// Fill item snapshots, order totals and payment rows: batched, idempotent, resumable.
    #[command(after_help = BACKFILL_EXAMPLES)]
    Payments(BackfillArgs),
    /// Fill payment_events from Stripe's events (the last 30 days at most): idempotent, resumable.
    #[command(after_help = EVENTS_EXAMPLES)]
    Events(EventsArgs),
    /// Running backfills: where each is, how fast, what is left, held and why.
    #[command(after_help = CONTROL_EXAMPLES)]
    Status,
    /// Pause every running backfill after the batch under way (from any machine).
    #[command(after_help = CONTROL_EXAMPLES)]
    Pause,
    /// Resume paused backfills.
    #[command(after_help = CONTROL_EXAMPLES)]
    Resume,
    /// Change the batch size, pause or batch target of running backfills, within one batch.
    #[command(after_help = CONTROL_EXAMPLES)]
    Set(SetArgs),
}

const CONTROL_EXAMPLES: &str =
    "Through the database (paytool.backfill_control): any machine with the
database URL steers the backfills running anywhere; each reads the settings
between two batches, so a change takes effect within one batch.

Examples:
  paytool backfill status
  paytool backfill pause      # e.g. during a traffic peak
  paytool backfill resume
  paytool backfill set --batch-size 500 --pause-ms 200
  paytool backfill set --clear   # back to each run's own flags

Exit codes: 0 done, 2 usage or configuration error, 3 database unreachable.";

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Rows per batch, pinned (instead of each run's adaptive size).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub batch_size: Option<i64>,
    /// Pause between batches, in milliseconds.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..=3_600_000))]
    pub pause_ms: Option<i64>,
    /// The batch duration the adaptive size aims at, in milliseconds.
    #[arg(long, value_parser = clap::value_parser!(i64).range(10..=10_000))]
    pub target_batch_ms: Option<i64>,
    /// Drop every override: each run goes back to its own flags.
    #[arg(long, conflicts_with_all = ["batch_size", "pause_ms", "target_batch_ms"])]
    pub clear: bool,
}

const EVENTS_EXAMPLES: &str =
    "Reads GET /v1/events (payment_intent.*, charge.* with refunds and disputes,
refund.*), 100 per page, through reconcile's read-only client. Each page is
stored in one transaction with the checkpoint: a killed run resumes at the
next page. An event already stored is left as it is; each is linked to its
payments row through the PaymentIntent id.

Examples:
  # everything Stripe still keeps (30 days)
  paytool backfill events
  paytool backfill events --since 2026-11-20 --format json
  # start over instead of resuming an interrupted run
  paytool backfill events --restart

Exit codes: 0 done, 2 usage or configuration error (schema not migrated,
window beyond Stripe's 30 days), 3 runtime failure (re-run to resume).";

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub stripe: StripeArgs,
    /// Events created at or after: RFC 3339 or YYYY-MM-DD. Default and limit: 30 days ago
    /// (Stripe keeps events 30 days).
    #[arg(long, value_parser = parse_instant)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Events created at or before: RFC 3339, or YYYY-MM-DD for the whole day. Default: now.
    #[arg(long, value_parser = parse_until)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Forget an interrupted run's checkpoint and start from the newest event.
    #[arg(long)]
    pub restart: bool,
}

const BACKFILL_EXAMPLES: &str =
    "Steps, in order: items (price snapshot of each order item), orders (total =
sum of subtotals), payments (one payments row per order). Each step reads only
what is still pending (partial indexes its first complete pass builds, and a
queue of orders awaiting their payment), in batches that are each their own
short transaction: a killed run loses nothing, the next one takes what is
left, and a catch-up costs the new rows, not the tables.

Examples:
  # what each step would change, changing nothing
  paytool backfill payments --dry-run
  # all three steps, batch size adapting to ~100 ms
  paytool backfill payments
  paytool backfill payments --step items --target-batch-ms 100 --pause-ms 50
  # keep catching up until Ctrl-C (until the new app ships)
  paytool backfill payments --follow --interval 5s
  # exit 1 if any row cannot be resolved
  paytool backfill payments --strict --format json
  # four workers here, and more from another machine: they share one run
  paytool backfill payments --workers 4
  paytool backfill payments --workers 2   # on a second machine, same database

Ctrl-C or SIGTERM: the batch under way commits, the run stops at its checkpoint
(exit 3; in --follow, the end of the run: exit 0). The next run resumes.

Exit codes: 0 done, 1 unresolved rows with --strict, 2 usage or configuration
error (schema not migrated), 3 runtime failure or interrupted (re-run to
resume).";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StepArg {
    Items,
    Orders,
    Payments,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Write the run's metrics there (OpenMetrics text, for node_exporter's textfile collector),
    /// atomically: a killed run leaves the previous file whole. Written on failure too.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,
    /// Run only this step (default: all three, in order). The orders step also writes the
    /// payment of each order it settles; the payments step, those an earlier paytool left it.
    #[arg(long, value_enum)]
    pub step: Option<StepArg>,
    /// Count what each step would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Forget the checkpoint of an interrupted run (every run already takes all that is pending
    /// from the start; this only drops the "resumed after" note).
    #[arg(long)]
    pub restart: bool,
    /// Keep catching up until interrupted (Ctrl-C, SIGTERM): a round every --interval, one status
    /// line per round on stderr. For the window between migrate and the application release
    /// that writes snapshots, totals and payments itself.
    #[arg(long, conflicts_with = "dry_run")]
    pub follow: bool,
    /// Time between two rounds of --follow.
    #[arg(long, default_value = "5s", value_parser = follow_interval, requires = "follow")]
    pub interval: Duration,
    /// Exit 1 when rows cannot be resolved (deleted product, amount overflowing INTEGER).
    #[arg(long)]
    pub strict: bool,
    /// Pin the batch size (rows per transaction) instead of adapting it.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub batch_size: Option<i64>,
    /// The batch duration the adaptive batch size aims at.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub target_batch_ms: u64,
    /// Pause between batches, to leave the database breathing room.
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
    /// lock_timeout of each batch; a batch that times out is retried.
    #[arg(long, default_value = "500ms", value_parser = lock_timeout)]
    pub lock_timeout: Duration,
    /// How many times in a row a failing batch (lock timeout, deadlock, lost connection) is retried.
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
    /// How long to wait for another paytool backfill on the same database to finish (and, for
    /// the partial indexes a first complete pass builds, for a running paytool migrate).
    #[arg(long, default_value = "1m", value_parser = wait_time)]
    pub wait: Duration,
    /// Cooperative workers in this process, each with its own connection. Any other paytool
    /// started with --workers on the same database joins the same run: each step's pending
    /// keys are cut into ranges that workers claim one at a time (docs/backfill.md, "Workers").
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64), conflicts_with_all = ["restart", "dry_run"])]
    pub workers: Option<u32>,
    /// With --workers: how long a claimed range stays a worker's without a sign of life from
    /// its process; then another worker takes it over after its last committed batch.
    #[arg(long, default_value = "30s", value_parser = lease_time, requires = "workers")]
    pub lease: Duration,
    #[command(flatten)]
    pub throttle: ThrottleArgs,
}

/// When the backfill holds between batches (docs/backfill.md, "Throttling").
#[derive(Debug, Args)]
pub struct ThrottleArgs {
    /// Never hold for the database's health.
    #[arg(long)]
    pub no_throttle: bool,
    /// Hold while a standby's replay lags more than this (pg_stat_replication.replay_lag).
    #[arg(long, default_value = "10s", value_parser = lag_time)]
    pub max_replica_lag: Duration,
    /// Hold while a standby has more than this much WAL left to replay (e.g. 256MB, 64kB).
    #[arg(long, default_value = "256MB", value_parser = byte_size)]
    pub max_replica_lag_bytes: i64,
    /// Hold while more WAL segments than this wait for the archiver (needs pg_monitor).
    #[arg(long, default_value_t = 42, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    pub max_archive_backlog: i64,
    /// Hold after a batch that more sessions than this were queued behind (waiting for its
    /// locks, directly or behind another waiter).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i64).range(0..=100_000))]
    pub max_lock_waiters: i64,
    /// Do not hold while autovacuum works on the table a step writes.
    #[arg(long)]
    pub ignore_autovacuum: bool,
    /// Hold for autovacuum only in steps with at least this many rows to write: a catch-up of a
    /// few hundred rows cannot slow a vacuum down, and a hold would make it last many times its
    /// work.
    #[arg(long, value_name = "ROWS", default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(0..))]
    pub autovacuum_min_rows: i64,
    /// Your own signal: a query returning one boolean, true to hold (run read-only).
    #[arg(long, value_name = "SQL")]
    pub throttle_query: Option<String>,
    /// The shortest hold: once held, the work resumes after at least this long, when every
    /// signal is below half of its limit.
    #[arg(long, default_value = "5s", value_parser = wait_time)]
    pub throttle_min_hold: Duration,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub action: Option<MigrateAction>,
    #[command(flatten)]
    pub apply: ApplyArgs,
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Show every pending step: SQL, lock and table, estimated rows, hazards; change nothing.
    #[command(
        after_help = "Examples:\n  # with the SQL of each step\n  paytool migrate plan\n  paytool migrate plan --no-sql --format json\n\nExit codes: 0 plan shown (the preflight result is part of it), 2 usage or\nconfiguration error, 3 runtime failure."
    )]
    Plan(PlanArgs),
    /// Show applied and pending steps with checksums; drift from the embedded SQL is an error.
    #[command(
        after_help = "Examples:\n  paytool migrate status\n  paytool migrate status --format json \\\n    | jq '.steps[] | select(.state != \"applied\")'\n  # gate a deploy on it\n  paytool migrate status -q && deploy-the-upgraded-app\n\nExit codes: 0 every migrate step applied and no drift (cleanup steps may be\npending), 1 steps pending, interrupted or drifted, 2 usage or configuration\nerror, 3 runtime failure."
    )]
    Status,
    /// Roll the payment system back to the legacy schema. DESTROYS payment data.
    #[command(
        after_help = "Examples:\n  pg_dump -Fc shop > before-down.dump\n  paytool migrate down --i-understand-this-destroys-payment-data\n\nExit codes: 0 rolled back, 2 without the confirmation flag, 3 runtime failure\n(nothing changed)."
    )]
    Down(DownArgs),
    /// After the upgraded application is deployed: drop what only the legacy one needed (the
    /// enum type order_status and its comparison operators). Refuses while anything uses it.
    #[command(
        after_help = "Examples:\n  # lists the cleanup steps and their checks\n  paytool migrate plan --no-sql\n  paytool migrate cleanup\n\nRun it only once every instance of the legacy application (status as an\nenum) is stopped: its enum filters fail from then on. paytool refuses while a\nsession still uses the type.\n\nExit codes: 0 cleaned up (or nothing to do), 1 refused (the type is still in\nuse), 2 migrate not finished or usage error, 3 runtime failure."
    )]
    Cleanup(CleanupArgs),
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// How long to watch the database's sessions for a query that still uses the enum type
    /// (the legacy application) before dropping it.
    #[arg(long, default_value = "5s", value_parser = watch_time)]
    pub watch: Duration,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Leave the SQL of each step out of the table output.
    #[arg(long)]
    pub no_sql: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// How long one attempt may wait for a table lock before giving up and retrying later;
    /// the application's queries queue behind our attempt for at most this long.
    #[arg(long, default_value = "500ms", value_parser = lock_timeout)]
    pub lock_timeout: Duration,
    /// How many times a lock timeout is retried (exponential backoff with jitter) before failing.
    #[arg(long, default_value_t = 30)]
    pub lock_retries: u32,
    /// statement_timeout for steps that hold a blocking lock (they are catalog-only and fast;
    /// this is the safety net). Concurrent index builds and validations have none.
    #[arg(long, default_value = "15s", value_parser = statement_timeout)]
    pub statement_timeout: Duration,
    /// How long to wait for another paytool migrate on the same database to finish (and, for
    /// `migrate down`, a running backfill, whose tables it drops).
    #[arg(long, default_value = "10m", value_parser = wait_time)]
    pub wait: Duration,
    /// How long a concurrent index build may wait for transactions other sessions keep open
    /// (it must wait for them; paytool names them every 10 s), then is cancelled, resumably.
    #[arg(long, default_value = "1h", value_parser = max_wait)]
    pub max_wait: Duration,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Show the plan instead of applying it (same as `migrate plan`).
    #[arg(long)]
    pub dry_run: bool,
    /// Rows per transaction when copying orders.status into its VARCHAR shadow column.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    pub batch_size: i64,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Between two batches of the copy of orders.status, the same health checks as the
    /// backfill's (docs/backfill.md, "Throttling").
    #[command(flatten)]
    pub throttle: ThrottleArgs,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Required: states that payments, payment_events, refunds, snapshots and totals will be
    /// destroyed.
    #[arg(long)]
    pub i_understand_this_destroys_payment_data: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Number of orders to generate (about two items each).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(i64).range(1..=50_000_000))]
    pub orders: i64,
    /// Leave out the negative stock quantities and duplicate machine slots that the migrate
    /// preflight refuses (other dirt stays: deleted products, empty orders, overflowing
    /// quantities, Unicode names).
    #[arg(long)]
    pub no_stock_anomalies: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 500ms, 2s, 5m)"))
}

/// A duration in `[min, max]`, refused when parsed rather than when applied: a 0 lock timeout
/// would turn off the safety it exists for, and a huge one overflows PostgreSQL's setting.
fn duration_between(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let value = parse_duration(text)?;
    if value < min || value > max {
        return Err(format!(
            "must be between {} and {}",
            bound_text(min),
            bound_text(max)
        ));
    }
    Ok(value)
}

/// A bound as the flags take it: `10m`, `7d`, `1ms` (humantime would say "11months 30days…").
fn bound_text(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

const MS: Duration = Duration::from_millis(1);
const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

fn lock_timeout(text: &str) -> Result<Duration, String> {
    duration_between(text, MS, 10 * MINUTE)
}

fn statement_timeout(text: &str) -> Result<Duration, String> {
    duration_between(text, MS, DAY)
}

fn wait_time(text: &str) -> Result<Duration, String> {
    duration_between(text, Duration::ZERO, 7 * DAY)
}

fn lease_time(text: &str) -> Result<Duration, String> {
    duration_between(text, Duration::from_secs(2), DAY)
}

fn max_wait(text: &str) -> Result<Duration, String> {
    duration_between(text, Duration::from_secs(1), 7 * DAY)
}

fn lag_time(text: &str) -> Result<Duration, String> {
    duration_between(text, MS, DAY)
}

/// `256MB`, `64kB`, `1GB` or plain bytes, in powers of 1024 as PostgreSQL counts them.
fn byte_size(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (examples: 64kB, 256MB, 1GB)"))?;
    let factor: i64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1 << 10,
        "mb" | "m" => 1 << 20,
        "gb" | "g" => 1 << 30,
        "tb" | "t" => 1 << 40,
        _ => {
            return Err(format!(
                "'{text}' is not a size (examples: 64kB, 256MB, 1GB)"
            ));
        }
    };
    n.checked_mul(factor)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("'{text}' must be above 0 and below 8 EB"))
}

fn watch_time(text: &str) -> Result<Duration, String> {
    duration_between(text, Duration::ZERO, 60 * MINUTE)
}

fn follow_interval(text: &str) -> Result<Duration, String> {
    duration_between(text, 100 * MS, DAY)
}

fn request_timeout(text: &str) -> Result<Duration, String> {
    duration_between(text, 100 * MS, 10 * MINUTE)
}

fn stale_after(text: &str) -> Result<Duration, String> {
    duration_between(text, 60 * MINUTE, 3650 * DAY)
}

/// Stripe's API root or a stand-in for it: an http(s) URL, checked before anything runs.
fn stripe_base_url(text: &str) -> Result<String, String> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
            Ok(text.to_owned())
        }
        _ => Err("not an http(s) URL (e.g. https://api.stripe.com/)".to_owned()),
    }
}

/// What `paytool reconcile --help` says after its options (examples, the finding kinds).
pub fn reconcile_help() -> &'static str {
    RECONCILE_EXAMPLES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_postgresql_writes_them() {
        assert_eq!(byte_size("256MB"), Ok(256 << 20));
        assert_eq!(byte_size("64kB"), Ok(64 << 10));
        assert_eq!(byte_size("1000"), Ok(1000));
        assert!(byte_size("0").is_err());
        assert!(byte_size("12 parsecs").is_err());
    }

    #[test]
    fn limits_are_checked_when_parsed() {
        assert_eq!(
            lock_timeout("0"),
            Err("must be between 1ms and 10m".to_owned())
        );
        assert!(lock_timeout("1000000000h").is_err());
        assert_eq!(lock_timeout("200ms"), Ok(Duration::from_millis(200)));
        assert!(request_timeout("0s").is_err());
        assert!(wait_time("0s").is_ok());
        assert!(stripe_base_url("not-a-url").is_err());
        assert!(stripe_base_url("ftp://x/").is_err());
        assert!(stripe_base_url("http://127.0.0.1:12111/").is_ok());
    }

    #[test]
    fn a_plain_date_as_until_takes_in_the_whole_day() {
        let end = parse_until("2026-11-15").unwrap();
        assert_eq!(end.to_rfc3339(), "2026-11-15T23:59:59.999999+00:00");
        let exact = parse_until("2026-11-15T12:00:00Z").unwrap();
        assert_eq!(exact.to_rfc3339(), "2026-11-15T12:00:00+00:00");
        assert_eq!(
            parse_instant("2026-11-01").unwrap().to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert!(parse_until("15/11/2026").is_err());
    }
}
