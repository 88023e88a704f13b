//! What the benchmarks share: the application that keeps using the database while paytool
//! works, and the table its latencies are printed in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

pub const WRITERS: usize = 2;
pub const PACE: Duration = Duration::from_millis(5);

#[derive(Default)]
pub struct WriterStats {
    pub operations: usize,
    pub latencies_ms: Vec<f64>,
    pub errors: usize,
}

impl WriterStats {
    fn merge(mut self, other: WriterStats) -> WriterStats {
        self.operations += other.operations;
        self.errors += other.errors;
        self.latencies_ms.extend(other.latencies_ms);
        self
    }

    pub fn percentile(&mut self, p: f64) -> f64 {
        self.latencies_ms.sort_by(|a, b| a.total_cmp(b));
        if self.latencies_ms.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies_ms.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_ms[index]
    }
}

/// The application: inserts new orders, pays existing ones, reads a user's recent orders.
async fn writer(url: String, seed: usize, orders: i64, stop: Arc<AtomicBool>) -> WriterStats {
    let mut conn = PgConnection::connect(&url)
        .await
        .expect("writer connection");
    let mut stats = WriterStats::default();
    let mut n = seed * 1_000_000;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let started = Instant::now();
        let result = match n % 3 {
            0 => sqlx::query(
                "INSERT INTO orders (id, user_id, status) VALUES ($1, md5('user-1')::uuid::text, 'PENDING')",
            )
            .bind(format!("bench-{n}"))
            .execute(&mut conn)
            .await
            .map(|_| ()),
            1 => sqlx::query("UPDATE orders SET status = 'PAID', updated_at = now() WHERE id = md5('order-' || $1)::uuid::text")
                .bind(((n * 7919) as i64 % orders + 1).to_string())
                .execute(&mut conn)
                .await
                .map(|_| ()),
            _ => sqlx::query("SELECT id, status::text FROM orders WHERE user_id = md5('user-' || $1)::uuid::text ORDER BY created_at DESC LIMIT 10")
                .bind(((n * 31) as i64 % (orders / 10).max(10) + 1).to_string())
                .fetch_all(&mut conn)
                .await
                .map(|_| ()),
        };
        stats
            .latencies_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        stats.operations += 1;
        if result.is_err() {
            stats.errors += 1;
        }
        tokio::time::sleep(PACE).await;
    }
    stats
}

pub struct RunResult {
    pub name: &'static str,
    pub total: Duration,
    pub app: WriterStats,
}

pub async fn with_application<F: std::future::Future<Output = ()>>(
    name: &'static str,
    url: &str,
    orders: i64,
    job: F,
) -> RunResult {
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| tokio::spawn(writer(url.to_owned(), i + 1, orders, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    job.await;
    let total = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut app = WriterStats::default();
    for w in writers {
        app = app.merge(w.await.expect("writer task"));
    }
    RunResult { name, total, app }
}

/// A new database of `orders` seeded orders, migrated by paytool: where backfills start.
#[allow(dead_code)] // the migrate bench starts before the migration
pub async fn seeded_and_migrated(
    cluster: &crate::harness::Cluster,
    orders: i64,
) -> crate::harness::TestDb {
    let db = cluster.fresh_db().await;
    eprintln!("seeding and migrating {orders} orders…");
    let prepared = Instant::now();
    db.seed(orders, false).await;
    let migrate = db
        .paytool_std()
        .args(["migrate", "-q"])
        .output()
        .expect("paytool migrate");
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    eprintln!("ready in {:.1} s", prepared.elapsed().as_secs_f64());
    db
}

pub fn bench_orders() -> i64 {
    std::env::var("BENCH_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// One markdown table row per run: its total time and what the application saw meanwhile.
pub fn print_runs(runs: Vec<RunResult>) {
    println!(
        "| run | total time | app ops | app errors | app p50 | app p99 | app max wait | app ops > 1 s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for mut run in runs {
        let over_1s = run
            .app
            .latencies_ms
            .iter()
            .filter(|&&ms| ms > 1000.0)
            .count();
        let (p50, p99, max) = (
            run.app.percentile(0.5),
            run.app.percentile(0.99),
            run.app.percentile(1.0),
        );
        println!(
            "| {} | {:.1} s | {} | {} | {:.1} ms | {:.1} ms | {:.0} ms | {} |",
            run.name,
            run.total.as_secs_f64(),
            run.app.operations,
            run.app.errors,
            p50,
            p99,
            max,
            over_1s
        );
    }
}
#[allow(dead_code)]
pub mod shapes;
