//! Benchmark of cooperative workers: `paytool backfill payments` on copies of one migrated
//! database, alone (the reference), alone without throttling (what the health checks cost),
//! then with `--workers 1`, `2` and `4`, then alone again (how much the machine drifted
//! meanwhile). Prints numbers; asserts nothing. `BENCH_ORDERS`
//! (default 1,000,000) sets the size.
//!
//!     cargo bench --bench workers           # or ./scripts/bench.sh

#[path = "../tests/cli/harness.rs"]
#[allow(dead_code)]
mod harness;

#[allow(dead_code)]
mod common;

use std::time::Instant;

use common::bench_orders;

#[tokio::main]
async fn main() {
    let orders = bench_orders();
    let cluster = harness::cluster();
    let template = common::seeded_and_migrated(cluster, orders).await;
    // What throttling itself costs (one health reading between batches, one count of the
    // sessions waiting inside each) is the --no-throttle row.
    let runs: [(&str, &[&str]); 6] = [
        ("alone (reference)", &[]),
        ("alone, --no-throttle", &["--no-throttle"]),
        ("--workers 1", &["--workers", "1"]),
        ("--workers 2", &["--workers", "2"]),
        ("--workers 4", &["--workers", "4"]),
        ("alone again (drift)", &[]),
    ];
    println!(
        "## cooperative workers, {orders} orders, {} cores",
        num_cores()
    );
    println!();
    println!(
        "| run | total s | items s | orders s | payments s | ratio to the reference | batch p95 ms (items) | held ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut reference = None;
    for (n, (label, extra)) in runs.iter().enumerate() {
        let db = cluster.copy_of(&template, &format!("w{n}")).await;
        let mut args = vec![
            "backfill",
            "payments",
            "--format",
            "json",
            "--ignore-autovacuum",
        ];
        args.extend(*extra);
        let started = Instant::now();
        let out = db
            .paytool_std()
            .args(&args)
            .output()
            .expect("paytool backfill");
        let total = started.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let step_s = |i: usize| report["steps"][i]["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0;
        let reference_s = *reference.get_or_insert(total);
        let held_ms: u64 = report["held"]
            .as_object()
            .map(|held| held.values().filter_map(|h| h["ms"].as_u64()).sum())
            .unwrap_or(0);
        println!(
            "| {label} | {total:.1} | {:.1} | {:.1} | {:.1} | {:.2}× | {} | {held_ms} |",
            step_s(0),
            step_s(1),
            step_s(2),
            total / reference_s,
            report["steps"][0]["p95_batch_ms"]
        );
    }
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
