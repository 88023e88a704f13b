//! Benchmark of `paytool backfill payments` on a large migrated database while an application
//! keeps writing, against the same end state computed by three set-based statements on a copy
//! of the same database; then `paytool verify constraints` on the backfilled database (it
//! needs exactly this database, which takes minutes to build). Prints numbers; asserts nothing. `BENCH_ORDERS` (default 1,000,000)
//! sets the size.
//!
//!     cargo bench --bench backfill           # or ./scripts/bench.sh

#[path = "../tests/cli/harness.rs"]
#[allow(dead_code)]
mod harness;

mod common;

use std::time::Instant;

use sqlx::{Connection, PgConnection};

use common::{WRITERS, bench_orders, print_runs, with_application};

const SET_BASED_SQL: &str = include_str!("set_based_backfill.sql");

#[tokio::main]
async fn main() {
    let orders = bench_orders();
    let cluster = harness::cluster();
    let batched_db = common::seeded_and_migrated(cluster, orders).await;
    let set_based_url = cluster.copy_of(&batched_db, "set").await.url;
    let items: i64 = sqlx::query_scalar("SELECT count(*) FROM order_items")
        .fetch_one(&mut batched_db.conn().await)
        .await
        .unwrap();

    let mut report = serde_json::Value::Null;
    let batched = with_application(
        "paytool backfill payments",
        &batched_db.url,
        orders,
        async {
            let out = batched_db
                .paytool_std()
                .args([
                    "backfill",
                    "payments",
                    "--format",
                    "json",
                    "--ignore-autovacuum",
                ])
                .env("PAYTOOL_LOG", "warn,paytool=debug")
                .output()
                .expect("paytool");
            for line in String::from_utf8_lossy(&out.stderr).lines() {
                if line.contains("a batch of") {
                    println!("slow batch: {line}");
                }
            }
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            report = serde_json::from_slice(&out.stdout).expect("report");
        },
    )
    .await;
    let mut statement_ms = Vec::new();
    let set_based = with_application("set-based statements", &set_based_url, orders, async {
        let mut conn = PgConnection::connect(&set_based_url).await.unwrap();
        for statement in SET_BASED_SQL
            .split(";\n")
            .filter(|s| s.contains("ORDER") || s.contains("order"))
        {
            let started = Instant::now();
            sqlx::raw_sql(statement)
                .execute(&mut conn)
                .await
                .expect("set-based backfill");
            statement_ms.push(started.elapsed().as_millis());
        }
    })
    .await;

    println!(
        "\nbackfill benchmark: {orders} orders, {items} order items, {WRITERS} application connections\n"
    );
    let ratio = batched.total.as_secs_f64() / set_based.total.as_secs_f64();
    print_runs(vec![batched, set_based]);
    println!("\nbatched / set-based time: {ratio:.2}×");
    println!(
        "set-based statements (items, orders, payments): {statement_ms:?} ms, each one transaction"
    );
    println!(
        "\n| step | scanned | changed | unresolved | time | rows/s | batches | p95 batch | longest batch | last batch size | retries |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for step in report["steps"].as_array().into_iter().flatten() {
        println!(
            "| {} | {} | {} | {} | {:.1} s | {} | {} | {} ms | {} ms | {} | {} |",
            step["step"].as_str().unwrap_or("?"),
            step["scanned"],
            step["changed"],
            step["unresolved"],
            step["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            step["rows_per_second"],
            step["batches"],
            step["p95_batch_ms"],
            step["longest_batch_ms"],
            step["last_batch_size"],
            step["retries"],
        );
    }
    print_verify(&batched_db, orders);
}

/// verify on the backfilled database, three runs: total and slowest check of each.
fn print_verify(db: &harness::TestDb, orders: i64) {
    println!("\nverify constraints on the backfilled database ({orders} orders), 3 runs:\n");
    println!("| run | total | slowest check | its time | failed | warnings |");
    println!("|---|---|---|---|---|---|");
    for run in 1..=3 {
        let out = db
            .paytool_std()
            .args(["verify", "constraints", "--format", "json"])
            .output()
            .expect("paytool verify");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("verify report");
        let slowest = report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .max_by_key(|c| c["duration_ms"].as_u64().unwrap_or(0))
            .cloned()
            .unwrap_or_default();
        println!(
            "| {run} | {} ms | {} | {} ms | {} | {} |",
            report["duration_ms"],
            slowest["id"].as_str().unwrap_or("?"),
            slowest["duration_ms"],
            report["summary"]["failed"],
            report["summary"]["warnings"],
        );
        if run == 3 {
            println!("\n| check | time (run 3) |\n|---|---|");
            for check in report["checks"].as_array().into_iter().flatten() {
                println!(
                    "| {} | {} ms |",
                    check["id"].as_str().unwrap_or("?"),
                    check["duration_ms"]
                );
            }
        }
    }
}
