//! `paytool backfill payments` on legacy data shapes nobody tuned it for (benches/common/shapes.rs),
//! each against the three set-based statements of set_based_backfill.sql on a copy of the same
//! migrated database, without and with an unthrottled application writer; then the catch-up:
//! a second run after the application added 100 orders. Each job runs `BENCH_REPEATS` times (2 by
//! default) on fresh copies, paytool and the set-based statements alternating; the ratio is the
//! best time's against the best time's. Prints one markdown row per shape and writer mode;
//! asserts nothing. Below the table, every batch over the 250 ms goal, with what the machine and
//! the server were doing during it (benches/common/why_slow.rs).
//!
//!     BENCH_ORDERS=200000 BENCH_SHAPES=sequential-text,skewed-items cargo bench --bench shapes

#[path = "../tests/cli/harness.rs"]
#[allow(dead_code)]
mod harness;

#[allow(dead_code)]
mod common;

#[path = "common/why_slow.rs"]
mod why_slow;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use common::shapes::{SHAPES, Shape, shape};
use why_slow::{Sampler, Samples};

const SET_BASED_SQL: &str = include_str!("set_based_backfill.sql");

/// Issue 21's goal for the longest batch: each batch over it is explained below the table
/// (`BENCH_SLOW_MS` sets another threshold).
fn slow_batch_ms() -> u64 {
    std::env::var("BENCH_SLOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250)
}

#[tokio::main]
async fn main() {
    let orders: i64 = std::env::var("BENCH_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let shapes: Vec<&Shape> = match std::env::var("BENCH_SHAPES") {
        Ok(list) => list
            .split(',')
            .map(|name| shape(name).unwrap_or_else(|| panic!("no shape {name}")))
            .collect(),
        Err(_) => SHAPES.iter().collect(),
    };
    println!(
        "| shape | orders | writer | paytool (each run) | set-based (each run) | ratio (best / best) | items p50/p95/max | orders p50/p95/max | payments p50/p95/max | writer max wait (paytool / set-based) | writer's orders (paytool / set-based) | orders totalled by paytool | catch-up of 100 orders |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut admin = harness::cluster().admin().await;
    for setting in why_slow::LOG_SETTINGS {
        sqlx::raw_sql(*setting).execute(&mut admin).await.unwrap();
    }
    let mut slow = Vec::new();
    for shape in shapes {
        slow.extend(bench_shape(shape, orders).await);
    }
    println!("\nBatches over {} ms: {}", slow_batch_ms(), slow.len());
    for line in slow {
        println!("- {line}");
    }
}

/// Prints the shape's rows; returns its batches over `slow_batch_ms()`, explained.
async fn bench_shape(shape: &Shape, orders: i64) -> Vec<String> {
    let cluster = harness::cluster();
    let base = cluster.fresh_db().await;
    eprintln!("{}: loading {orders} orders…", shape.name);
    let loaded = Instant::now();
    {
        let mut conn = base.conn().await;
        sqlx::raw_sql(paytool::seed::LEGACY_SCHEMA_SQL)
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(shape.load_sql(orders)))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let migrate = base.paytool_std().args(["migrate", "-q"]).output().unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    eprintln!(
        "{}: loaded and migrated in {:.1} s",
        shape.name,
        loaded.elapsed().as_secs_f64()
    );
    let mut slow = Vec::new();
    for writer in [false, true] {
        let mut runs = Vec::new();
        for round in 0..repeats() {
            // A fresh copy for every job; paytool and the set-based statements alternate.
            let mode = if writer { "w" } else { "n" };
            let batched_db = cluster.copy_of(&base, &format!("b{mode}{round}")).await;
            let set_db = cluster.copy_of(&base, &format!("s{mode}{round}")).await;
            let run = run_both(&batched_db, &set_db, shape, orders, writer).await;
            let label = format!("{} {orders} {mode}{round}", shape.name);
            slow.extend(run.slow_batches(&label, &cluster.socket_dir.join("log")));
            runs.push(run);
            if !writer && round == 0 {
                let (ms, read) = catch_up(&batched_db, shape, orders).await;
                runs[0].catch_up = format!("{ms:.0} ms, {read} orders read");
            }
            drop_db(cluster, batched_db).await;
            drop_db(cluster, set_db).await;
        }
        print_row(shape, orders, writer, &runs);
    }
    slow
}

/// One run of paytool and one of the set-based statements, each on its own copy.
struct Run {
    batched: Duration,
    set_based: Duration,
    report: serde_json::Value,
    batched_writer: Option<Writer>,
    set_writer: Option<Writer>,
    catch_up: String,
    /// What the machine and the server did during paytool's run.
    batched_samples: Samples,
}

impl Run {
    /// Each batch of paytool's report over `slow_batch_ms()`, with what overlapped it; read
    /// after both jobs so that the autovacuums it overlapped have ended and been logged.
    fn slow_batches(&self, label: &str, server_log: &std::path::Path) -> Vec<String> {
        let events = why_slow::server_events(server_log);
        eprintln!(
            "{label}: paytool {:.1} s; {}",
            self.batched.as_secs_f64(),
            self.batched_samples.whole_run_with(&events)
        );
        let mut lines = Vec::new();
        for step in self.report["steps"].as_array().unwrap() {
            let slow = step["slowest_batches"].as_array().into_iter().flatten();
            for batch in slow.filter(|b| b["ms"].as_u64().unwrap_or(0) > slow_batch_ms()) {
                let line = format!(
                    "{label} {}: {} [whole run: {}]",
                    step["step"].as_str().unwrap_or("?"),
                    why_slow::explain(batch, &self.batched_samples, &events),
                    self.batched_samples.whole_run()
                );
                eprintln!("slow batch: {line}");
                lines.push(line);
            }
        }
        lines
    }
}

/// How many times each job runs (`BENCH_REPEATS`, 2 by default): on this shared machine one
/// run of a shape moves by up to ±0.3×, so the row gives each run and the ratio of the best.
fn repeats() -> usize {
    std::env::var("BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .max(1)
}

async fn run_both(
    batched_db: &harness::TestDb,
    set_db: &harness::TestDb,
    shape: &Shape,
    orders: i64,
    writer: bool,
) -> Run {
    let mut backfill = batched_db.paytool_std();
    backfill.args([
        "backfill",
        "payments",
        "--format",
        "json",
        "--ignore-autovacuum",
    ]);
    let (batched, report, batched_writer, batched_samples) =
        timed(batched_db, shape, orders, writer, move || {
            let out = backfill.output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(harness::json(&out.stdout))
        })
        .await;
    let set_url = set_db.url.clone();
    let (set_based, _, set_writer, _) = timed(set_db, shape, orders, writer, move || {
        let status = std::process::Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", &set_url, "-c", SET_BASED_SQL])
            .status()
            .expect("psql");
        assert!(status.success());
        None
    })
    .await;
    Run {
        batched,
        set_based,
        report: report.unwrap(),
        batched_writer,
        set_writer,
        catch_up: String::new(),
        batched_samples,
    }
}

async fn drop_db(cluster: &harness::Cluster, db: harness::TestDb) {
    let mut admin = cluster.admin().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {}", db.name)))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// The shape's row: every run's times, the ratio of the best of each, the longest batches and
/// waits over the runs, the first run's writer counts and catch-up.
fn print_row(shape: &Shape, orders: i64, writer: bool, runs: &[Run]) {
    let secs = |pick: fn(&Run) -> Duration| -> (f64, String) {
        let all: Vec<f64> = runs.iter().map(|r| pick(r).as_secs_f64()).collect();
        let best = all.iter().copied().fold(f64::INFINITY, f64::min);
        let list: Vec<String> = all.iter().map(|t| format!("{t:.1}")).collect();
        (best, format!("{} s", list.join(", ")))
    };
    let (batched, batched_all) = secs(|r| r.batched);
    let (set_based, set_all) = secs(|r| r.set_based);
    let step = |name: &str| {
        let of_run = |r: &Run| {
            r.report["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["step"] == name)
                .unwrap()
                .clone()
        };
        let first = of_run(&runs[0]);
        let longest = runs
            .iter()
            .map(|r| of_run(r)["longest_batch_ms"].as_i64().unwrap_or(0))
            .max()
            .unwrap_or(0);
        format!(
            "{} / {} / {longest} ms",
            first["p50_batch_ms"], first["p95_batch_ms"]
        )
    };
    let longest_wait =
        |pick: fn(&Run) -> Option<Writer>| runs.iter().filter_map(pick).map(|w| w.longest).max();
    let first = &runs[0];
    println!(
        "| {} | {orders} | {} | {batched_all} | {set_all} | {:.2}× | {} | {} | {} | {} / {} | {} / {} | {} | {} |",
        shape.name,
        if writer { "unthrottled" } else { "none" },
        batched / set_based,
        step("items"),
        step("orders"),
        step("payments"),
        wait_text(longest_wait(|r| r.batched_writer)),
        wait_text(longest_wait(|r| r.set_writer)),
        writes_text(first.batched_writer),
        writes_text(first.set_writer),
        first.report["steps"][1]["changed"],
        first.catch_up,
    );
}

fn wait_text(wait: Option<Duration>) -> String {
    wait.map_or_else(|| "–".to_owned(), |w| format!("{} ms", w.as_millis()))
}

fn writes_text(writer: Option<Writer>) -> String {
    writer.map_or_else(|| "–".to_owned(), |w| w.orders.to_string())
}

/// What the application writer did while a job ran.
#[derive(Debug, Clone, Copy)]
struct Writer {
    /// Its longest transaction.
    longest: Duration,
    /// The orders it wrote (each with its item).
    orders: i64,
}

/// Runs `job` (a blocking command) and times it, with the application writing meanwhile when
/// `writer`, sampled by `why_slow`; returns the time, the job's report, what the writer did and
/// the samples.
async fn timed<F>(
    db: &harness::TestDb,
    shape: &Shape,
    orders: i64,
    writer: bool,
    job: F,
) -> (Duration, Option<serde_json::Value>, Option<Writer>, Samples)
where
    F: FnOnce() -> Option<serde_json::Value> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let app = writer.then(|| {
        tokio::spawn(application(
            db.url.clone(),
            shape.writer_sqls(),
            orders,
            stop.clone(),
        ))
    });
    let admin_url = harness::cluster().url("postgres", None, "postgres");
    let sampler = Sampler::start(&admin_url, &db.name).await;
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(job).await.unwrap();
    let took = started.elapsed();
    let samples = sampler.finish().await;
    stop.store(true, Ordering::Relaxed);
    let writer = match app {
        Some(app) => Some(app.await.unwrap()),
        None => None,
    };
    (took, report, writer, samples)
}

/// The unthrottled writer: one transaction after the other, until told to stop.
async fn application(url: String, sqls: Vec<String>, orders: i64, stop: Arc<AtomicBool>) -> Writer {
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let mut longest = Duration::ZERO;
    let mut n: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        for sql in &sqls {
            let started = Instant::now();
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind((n * 7919) % orders + 1)
                .bind(orders * 10 + n)
                .execute(&mut conn)
                .await
                .expect("the application's write");
            longest = longest.max(started.elapsed());
        }
    }
    Writer { longest, orders: n }
}

/// A second run after the application added 100 orders with items, right after the first
/// pass (autovacuum may be busy with it: the run holds as it would in production): the whole
/// command's time, and how many orders its orders step read.
async fn catch_up(db: &harness::TestDb, shape: &Shape, orders: i64) -> (f64, i64) {
    let mut conn = db.conn().await;
    for n in 0..100 {
        for sql in shape.writer_sqls() {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(n + 1)
                .bind(orders * 20 + n)
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
    let started = Instant::now();
    let out = db
        .paytool_std()
        .args(["backfill", "payments", "--format", "json"])
        .output()
        .unwrap();
    let took = started.elapsed().as_secs_f64() * 1000.0;
    let report = harness::json(&out.stdout);
    let inserted = report["steps"][2]["changed"].as_i64().unwrap_or(-1);
    assert_eq!(inserted, 100, "the catch-up found the new orders: {report}");
    (took, report["steps"][1]["scanned"].as_i64().unwrap_or(-1))
}
