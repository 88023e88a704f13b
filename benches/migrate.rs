//! Benchmark of `paytool migrate` on a large legacy database while an application keeps
//! writing, against the naive single-transaction migration on a copy of the same database.
//! Prints numbers; asserts nothing. `BENCH_ORDERS` (default 1,000,000) sets the size.
//!
//!     cargo bench --bench migrate            # or ./scripts/bench.sh

#[path = "../tests/cli/harness.rs"]
#[allow(dead_code)]
mod harness;

mod common;

use std::time::Instant;

use sqlx::{Connection, PgConnection};

use common::{PACE, WRITERS, bench_orders, print_runs, with_application};

const NAIVE_SQL: &str = include_str!("naive_migration.sql");

#[tokio::main]
async fn main() {
    let orders = bench_orders();
    let cluster = harness::cluster();
    let online_db = cluster.fresh_db().await;
    eprintln!("seeding {orders} orders…");
    let seeded = Instant::now();
    online_db.seed(orders, false).await;
    eprintln!("seeded in {:.1} s", seeded.elapsed().as_secs_f64());
    let naive_url = cluster.copy_of(&online_db, "naive").await.url;
    let items: i64 = sqlx::query_scalar("SELECT count(*) FROM order_items")
        .fetch_one(&mut online_db.conn().await)
        .await
        .unwrap();

    let mut paytool_report = serde_json::Value::Null;
    let online = with_application("paytool migrate (online)", &online_db.url, orders, async {
        let out = online_db
            .paytool_std()
            .args(["migrate", "--format", "json"])
            .output()
            .expect("paytool");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        paytool_report = serde_json::from_slice(&out.stdout).expect("report");
    })
    .await;
    let naive = with_application("naive single transaction", &naive_url, orders, async {
        let mut conn = PgConnection::connect(&naive_url).await.unwrap();
        sqlx::raw_sql(NAIVE_SQL)
            .execute(&mut conn)
            .await
            .expect("naive migration");
    })
    .await;

    println!(
        "\nmigrate benchmark: {orders} orders, {items} order items, {WRITERS} application connections"
    );
    println!(
        "(each doing ~{} ops/s: insert an order, pay an order, read a user's orders)\n",
        1000 / PACE.as_millis()
    );
    print_runs(vec![online, naive]);
    println!("\npaytool steps slower than 100 ms:");
    for step in paytool_report["steps"].as_array().into_iter().flatten() {
        let ms = step["duration_ms"].as_u64().unwrap_or(0);
        if ms >= 100 {
            println!(
                "  {:<45} {:>8} ms  (lock retries {})",
                step["name"].as_str().unwrap_or("?"),
                ms,
                step["retries"]
            );
        }
    }
}
