//! `paytool demo`: the whole flow, offline, on a throwaway PostgreSQL and the Stripe simulator.
//! Every stage runs the real `paytool` command (this very binary) and shows its real output on
//! the narration (stdout for people, stderr when the report is JSON); the demo returns a
//! report of its stages, which the app prints like any other.

pub mod cluster;
mod stripe;

use std::io::Write;
use std::process::Stdio;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use thiserror::Error;

use crate::stripe_sim::StripeSim;
use cluster::TempCluster;

const FIX_DIRTY_STOCK_SQL: &str = include_str!("../../sql/demo/fix_dirty_stock.sql");

#[derive(Debug, Error)]
pub enum DemoError {
    #[error("stage '{stage}' ended with exit code {got}, expected {expected}")]
    UnexpectedExit {
        stage: &'static str,
        expected: i32,
        got: i32,
    },
    #[error("interrupted; the demo cluster was removed")]
    Interrupted,
}

impl DemoError {
    /// A stage that went otherwise than the demo expects is a failure of the demo (3), as is
    /// an interruption: neither is a finding about the user's data.
    pub fn exit_code(&self) -> u8 {
        match self {
            DemoError::UnexpectedExit { .. } | DemoError::Interrupted => {
                crate::exit::RUNTIME_FAILURE
            }
        }
    }
}

/// One stage: a header, the command, the exit code that means it went as the demo expects.
struct Stage {
    title: &'static str,
    args: Vec<String>,
    expected: i32,
}

fn stage(title: &'static str, args: &[&str], expected: i32) -> Stage {
    Stage {
        title,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        expected,
    }
}

/// What `paytool demo` is asked to do.
#[derive(Debug, Clone)]
pub struct DemoRequest {
    /// Orders in the demo shop.
    pub orders: i64,
    /// Leave the database and the simulator running.
    pub keep: bool,
    /// The stages' output goes to stderr (the report on stdout is for a machine).
    pub narrate_on_stderr: bool,
}

/// One stage as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct StageRun {
    pub title: &'static str,
    /// What ran: `paytool …`, or what the demo did itself.
    pub command: String,
    pub expected_exit: i32,
    pub exit: i32,
    pub duration_ms: u64,
}

/// What `paytool demo` reports once every stage did what it should.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub cluster_dir: String,
    pub stripe_base_url: String,
    /// `--keep`: the database was left running.
    pub kept: bool,
    /// The discrepancies planted in the simulator, one line each.
    pub planted: Vec<String>,
    pub stages: Vec<StageRun>,
    pub duration_ms: u64,
}

pub async fn run(args: &DemoRequest) -> anyhow::Result<DemoReport> {
    let started = Instant::now();
    let mut out: Box<dyn Write> = if args.narrate_on_stderr {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let out = &mut out;
    writeln!(
        out,
        "paytool demo: a throwaway PostgreSQL with a dirty legacy shop, then every paytool command in order."
    )?;
    let mut cluster = TempCluster::start("paytool-demo-", &["max_connections=50"])
        .context("cannot start the demo's PostgreSQL")?;
    writeln!(
        out,
        "PostgreSQL {} in {}",
        cluster.bin().display(),
        cluster.dir().display()
    )?;
    let sim = StripeSim::start(stripe::DEMO_KEY).context("cannot start the Stripe simulator")?;
    let mut walked = Walk {
        out: &mut *out,
        stages: Vec::new(),
        planted: Vec::new(),
        narrate_on_stderr: args.narrate_on_stderr,
    };
    let result = tokio::select! {
        result = walked.walk(&cluster, &sim, args) => result,
        _ = tokio::signal::ctrl_c() => Err(DemoError::Interrupted.into()),
    };
    let (stages, planted) = (walked.stages, walked.planted);
    let report = |kept: bool| DemoReport {
        cluster_dir: cluster.dir().display().to_string(),
        stripe_base_url: sim.base_url(),
        kept,
        planted: planted.clone(),
        stages: stages.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
    };
    match (&result, args.keep) {
        (Ok(()), true) => {
            let kept = report(true);
            keep(&mut cluster, &sim, out).await?;
            Ok(kept)
        }
        _ => {
            let finished = report(false);
            cluster.stop();
            drop(sim);
            writeln!(
                out,
                "\nRemoved the demo cluster ({}) and stopped the Stripe simulator.",
                cluster.dir().display()
            )?;
            result.map(|()| finished)
        }
    }
}

/// The walk's narration and what it ran.
struct Walk<'o> {
    out: &'o mut Box<dyn Write>,
    stages: Vec<StageRun>,
    planted: Vec<String>,
    narrate_on_stderr: bool,
}

impl Walk<'_> {
    async fn walk(
        &mut self,
        cluster: &TempCluster,
        sim: &StripeSim,
        args: &DemoRequest,
    ) -> anyhow::Result<()> {
        let admin_url = cluster.url("postgres", None, "postgres");
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::raw_sql("CREATE DATABASE shop")
            .execute(&mut admin)
            .await?;
        let url = cluster.url("postgres", None, "shop");
        let orders = args.orders.to_string();
        let runner = Runner { url: &url };

        for s in [
            stage(
                "Seed a legacy shop database with realistic dirty data",
                &["seed", "--orders", &orders],
                0,
            ),
            stage(
                "See every migration step before it happens",
                &["migrate", "plan", "--no-sql"],
                0,
            ),
            stage(
                "Migrate: the preflight refuses the dirty data and changes nothing",
                &["migrate"],
                1,
            ),
        ] {
            self.header(s.title)?;
            let run = runner.run(&s, self).await?;
            self.stages.push(run);
        }

        let title = "Fix the rows the preflight named";
        self.header(title)?;
        let command = "psql -c \"UPDATE stocks SET quantity = 0 WHERE quantity < 0; DELETE duplicate slots …\"";
        writeln!(self.out, "$ {command}")?;
        let fixed = Instant::now();
        let mut shop = PgConnection::connect(&url).await?;
        sqlx::raw_sql(FIX_DIRTY_STOCK_SQL)
            .execute(&mut shop)
            .await?;
        writeln!(
            self.out,
            "Set negative stock quantities to 0 and kept one stocks row per machine slot."
        )?;
        self.stages.push(StageRun {
            title,
            command: command.to_owned(),
            expected_exit: 0,
            exit: 0,
            duration_ms: fixed.elapsed().as_millis() as u64,
        });

        for s in [
            stage("Migrate online", &["migrate"], 0),
            stage(
                "Backfill snapshots, totals and payment rows",
                &["backfill", "payments"],
                0,
            ),
            stage(
                "Verify the schema and data invariants",
                &["verify", "constraints"],
                0,
            ),
        ] {
            self.header(s.title)?;
            let run = runner.run(&s, self).await?;
            self.stages.push(run);
        }

        let title = "Stripe: a simulator mirroring the last 30 days, with planted discrepancies";
        self.header(title)?;
        let prepared = Instant::now();
        let planted = stripe::prepare(&mut shop, sim).await?;
        writeln!(
            self.out,
            "{} PaymentIntents, {} refunds and {} events at {}; planted:",
            planted.payment_intents,
            planted.refunds,
            planted.events,
            sim.base_url()
        )?;
        for line in &planted.lines {
            writeln!(self.out, "  • {line}")?;
        }
        self.planted.clone_from(&planted.lines);
        self.stages.push(StageRun {
            title,
            command: "fill the Stripe simulator (sql/demo/stripe_history.sql)".to_owned(),
            expected_exit: 0,
            exit: 0,
            duration_ms: prepared.elapsed().as_millis() as u64,
        });

        let base = sim.base_url();
        let baseline = cluster.dir().join("reconcile-baseline.json");
        let baseline = baseline.display().to_string();
        for s in [
            stage(
                "Backfill Stripe's events into payment_events (the audit trail's first 30 days)",
                &["backfill", "events", "--stripe-base-url", &base],
                0,
            ),
            stage(
                "Reconcile: every discrepancy is found",
                &["reconcile", "--stripe-base-url", &base],
                1,
            ),
            stage(
                "Reconcile --apply: the safe repairs, audited (amounts and double charges stay for a person)",
                &["reconcile", "--apply", "--stripe-base-url", &base],
                1,
            ),
            stage(
                "Accept what is left for a person into a baseline (who and why are kept)",
                &[
                    "reconcile",
                    "--stripe-base-url",
                    &base,
                    "--write-baseline",
                    &baseline,
                    "--reason",
                    "demo: handed to the payments team",
                    "--accepted-by",
                    "demo",
                ],
                0,
            ),
            stage(
                "The nightly run against the baseline: nothing new, exit 0",
                &[
                    "reconcile",
                    "--stripe-base-url",
                    &base,
                    "--baseline",
                    &baseline,
                ],
                0,
            ),
            stage(
                "Close the month: every payout explained to the cent, order by order",
                &["reconcile", "payouts", "--stripe-base-url", &base],
                1,
            ),
            stage("Verify again", &["verify", "constraints"], 0),
        ] {
            self.header(s.title)?;
            let run = runner.run(&s, self).await?;
            self.stages.push(run);
        }
        Ok(())
    }

    /// `━━ [3/14] Migrate: …`
    fn header(&mut self, title: &str) -> std::io::Result<()> {
        writeln!(
            self.out,
            "\n━━ [{}/{STAGES}] {title}",
            self.stages.len() + 1
        )
    }
}

/// Stages of the walk, for the headers' count.
const STAGES: usize = 15;

struct Runner<'a> {
    url: &'a str,
}

impl Runner<'_> {
    /// Runs `paytool ARGS` with the demo's database and key, its output going straight to the
    /// narration.
    async fn run(&self, stage: &Stage, walk: &mut Walk<'_>) -> anyhow::Result<StageRun> {
        let shown: Vec<String> = stage
            .args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("\"{a}\"")
                } else {
                    a.clone()
                }
            })
            .collect();
        let command = format!("paytool {}", shown.join(" "));
        writeln!(walk.out, "$ {command}")?;
        walk.out.flush()?;
        let exe = std::env::current_exe().context("cannot find the paytool binary")?;
        let started = Instant::now();
        let stdout = if walk.narrate_on_stderr {
            Stdio::from(std::io::stderr())
        } else {
            Stdio::inherit()
        };
        let status = tokio::process::Command::new(exe)
            .args(&stage.args)
            .env("DATABASE_URL", self.url)
            .env("STRIPE_SECRET_KEY", stripe::DEMO_KEY)
            .stdin(Stdio::null())
            .stdout(stdout)
            .kill_on_drop(true)
            .status()
            .await?;
        let got = status.code().unwrap_or(-1);
        if got != stage.expected {
            return Err(DemoError::UnexpectedExit {
                stage: stage.title,
                expected: stage.expected,
                got,
            }
            .into());
        }
        if got != 0 {
            writeln!(walk.out, "(exit code {got}, as expected)")?;
        }
        Ok(StageRun {
            title: stage.title,
            command,
            expected_exit: stage.expected,
            exit: got,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// How the user can run this very binary: `paytool` when that is what PATH finds, else its path
/// (`./target/release/paytool` after `scripts/demo.sh`).
fn paytool_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "paytool".to_owned();
    };
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("paytool"))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::fs::canonicalize(found).ok());
    if on_path.as_deref() == Some(me.as_path()) {
        return "paytool".to_owned();
    }
    match std::env::current_dir()
        .ok()
        .and_then(|cwd| me.strip_prefix(cwd).ok().map(|p| p.to_owned()))
    {
        Some(relative) => format!("./{}", relative.display()),
        None => me.display().to_string(),
    }
}

/// `--keep`: the cluster stays; the simulator lives as long as this process, so wait.
async fn keep(
    cluster: &mut TempCluster,
    sim: &StripeSim,
    out: &mut Box<dyn Write>,
) -> anyhow::Result<()> {
    cluster.keep();
    writeln!(
        out,
        "\nThe demo database and the Stripe simulator are still running. Try:"
    )?;
    writeln!(
        out,
        "  export DATABASE_URL={}",
        cluster.url("postgres", None, "shop")
    )?;
    writeln!(
        out,
        "  export STRIPE_SECRET_KEY={} STRIPE_BASE_URL={}",
        stripe::DEMO_KEY,
        sim.base_url()
    )?;
    let paytool = paytool_command();
    writeln!(out, "  {paytool} verify constraints; {paytool} reconcile")?;
    if paytool != "paytool" {
        writeln!(
            out,
            "  (paytool is not on PATH: `cargo install --path .` puts it in ~/.cargo/bin)"
        )?;
    }
    writeln!(
        out,
        "Press Ctrl-C to stop the simulator. The database keeps running; stop it with:"
    )?;
    writeln!(out, "  {}", cluster.stop_command())?;
    out.flush()?;
    tokio::signal::ctrl_c().await?;
    Ok(())
}
