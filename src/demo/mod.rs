//! `paytool demo`: the whole flow, offline, on a throwaway PostgreSQL and the Stripe simulator.
//! Every stage runs the real `paytool` command (this very binary) and shows its real output.

pub mod cluster;
mod stripe;

use std::io::Write;
use std::process::Stdio;

use anyhow::Context;
use sqlx::{Connection, PgConnection};
use thiserror::Error;

use crate::exit;
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
}

pub async fn run(args: &DemoRequest) -> anyhow::Result<u8> {
    let mut out = std::io::stdout();
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
    let result = tokio::select! {
        result = walk(&cluster, &sim, args) => result,
        _ = tokio::signal::ctrl_c() => Err(DemoError::Interrupted.into()),
    };
    match (&result, args.keep) {
        (Ok(()), true) => {
            keep(&mut cluster, &sim).await?;
            Ok(exit::OK)
        }
        _ => {
            cluster.stop();
            drop(sim);
            writeln!(
                out,
                "\nRemoved the demo cluster ({}) and stopped the Stripe simulator.",
                cluster.dir().display()
            )?;
            result.map(|()| exit::OK)
        }
    }
}

async fn walk(cluster: &TempCluster, sim: &StripeSim, args: &DemoRequest) -> anyhow::Result<()> {
    let admin_url = cluster.url("postgres", None, "postgres");
    let mut admin = PgConnection::connect(&admin_url).await?;
    sqlx::raw_sql("CREATE DATABASE shop")
        .execute(&mut admin)
        .await?;
    let url = cluster.url("postgres", None, "shop");
    let orders = args.orders.to_string();
    let total = 14;
    let mut n = 0;
    let mut next = |title: &str| {
        n += 1;
        println!("\n━━ [{n}/{total}] {title}");
    };
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
        next(s.title);
        runner.run(&s).await?;
    }

    next("Fix the rows the preflight named");
    println!(
        "$ psql -c \"UPDATE stocks SET quantity = 0 WHERE quantity < 0; DELETE duplicate slots …\""
    );
    let mut shop = PgConnection::connect(&url).await?;
    sqlx::raw_sql(FIX_DIRTY_STOCK_SQL)
        .execute(&mut shop)
        .await?;
    println!("Set negative stock quantities to 0 and kept one stocks row per machine slot.");

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
        next(s.title);
        runner.run(&s).await?;
    }

    next("Stripe: a simulator mirroring the last 30 days, with planted discrepancies");
    let planted = stripe::prepare(&mut shop, sim).await?;
    println!(
        "{} PaymentIntents, {} refunds and {} events at {}; planted:",
        planted.payment_intents,
        planted.refunds,
        planted.events,
        sim.base_url()
    );
    for line in &planted.lines {
        println!("  • {line}");
    }

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
        stage("Verify again", &["verify", "constraints"], 0),
    ] {
        next(s.title);
        runner.run(&s).await?;
    }
    println!("\nDemo finished: every stage did what it should.");
    Ok(())
}

struct Runner<'a> {
    url: &'a str,
}

impl Runner<'_> {
    /// Runs `paytool ARGS` with the demo's database and key, its output going straight through.
    async fn run(&self, stage: &Stage) -> anyhow::Result<()> {
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
        println!("$ paytool {}", shown.join(" "));
        let _ = std::io::stdout().flush();
        let exe = std::env::current_exe().context("cannot find the paytool binary")?;
        let status = tokio::process::Command::new(exe)
            .args(&stage.args)
            .env("DATABASE_URL", self.url)
            .env("STRIPE_SECRET_KEY", stripe::DEMO_KEY)
            .stdin(Stdio::null())
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
            println!("(exit code {got}, as expected)");
        }
        Ok(())
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
async fn keep(cluster: &mut TempCluster, sim: &StripeSim) -> anyhow::Result<()> {
    cluster.keep();
    println!("\nThe demo database and the Stripe simulator are still running. Try:");
    println!(
        "  export DATABASE_URL={}",
        cluster.url("postgres", None, "shop")
    );
    println!(
        "  export STRIPE_SECRET_KEY={} STRIPE_BASE_URL={}",
        stripe::DEMO_KEY,
        sim.base_url()
    );
    let paytool = paytool_command();
    println!("  {paytool} verify constraints; {paytool} reconcile");
    if paytool != "paytool" {
        println!("  (paytool is not on PATH: `cargo install --path .` puts it in ~/.cargo/bin)");
    }
    println!("Press Ctrl-C to stop the simulator. The database keeps running; stop it with:");
    println!("  {}", cluster.stop_command());
    let _ = std::io::stdout().flush();
    tokio::signal::ctrl_c().await?;
    Ok(())
}
