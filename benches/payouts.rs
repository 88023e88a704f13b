//! Benchmark of `paytool reconcile payouts`: six months of daily automatic payouts over
//! `BENCH_PAYOUT_ORDERS` paid orders (default 1,000,000), closed through Stripe's report run
//! (`--source reports`) against the simulator: Stripe requests, seconds end to end, and whether
//! every payout adds up to the cent. The API path (a page per hundred transactions) is run in
//! the same process on `BENCH_PAYOUT_API_ORDERS` (default 100,000) for the ratio per page.
//! Prints numbers; asserts nothing.
//!
//!     cargo bench --bench payouts          # or ./scripts/bench.sh

#[path = "../tests/cli/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::time::Instant;

use paytool::stripe_sim::{
    SimBalanceTransaction, SimPaymentIntent, SimPayout, StripeSim, TxnSource,
};

const KEY: &str = "sk_test_bench_payouts";
/// 2026-01-01 00:00 UTC.
const START: i64 = 1_767_225_600;
const DAY: i64 = 86_400;
const DAYS: i64 = 182;

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A shop of `orders` PAID orders over six months and its Stripe: a charge per order, a
/// payout per day of everything that became available that day.
async fn shop(orders: i64) -> (harness::TestDb, StripeSim) {
    let db = harness::cluster().fresh_db().await;
    db.seed(100, false).await;
    let migrate = db
        .paytool_std()
        .args(["migrate", "-q"])
        .output()
        .expect("migrate");
    assert!(migrate.status.success());
    let mut conn = db.conn().await;
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, amount_total_cents, currency, stripe_payment_intent_id, created_at, paid_at)
         SELECT 'bench-' || g, (SELECT min(id) FROM users), 'PAID', 1000 + g % 5000, 'EUR', 'pi_bench_' || g,
                to_timestamp($2 + (g * $3 / $1)) AT TIME ZONE 'UTC', to_timestamp($2 + (g * $3 / $1)) AT TIME ZONE 'UTC'
         FROM generate_series(1, $1) AS g",
    )
    .bind(orders)
    .bind(START)
    .bind(DAYS * DAY)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql("ANALYZE orders")
        .execute(&mut conn)
        .await
        .unwrap();
    let sim = StripeSim::start(KEY).unwrap();
    let mut per_day: Vec<i64> = vec![0; DAYS as usize + 3];
    for g in 1..=orders {
        let paid = START + g * DAYS * DAY / orders;
        let amount = 1000 + g % 5000;
        let fee = amount * 29 / 1000 + 25;
        let day = ((paid - START) / DAY + 2) as usize;
        let pi = format!("pi_bench_{g}");
        sim.add_payment_intent(SimPaymentIntent {
            id: pi.clone(),
            amount,
            currency: "eur".into(),
            status: "succeeded".into(),
            created: paid,
            order_id: Some(format!("bench-{g}")),
            charge: Some((format!("ch_bench_{g}"), paid)),
            last_error: None,
        });
        sim.add_balance_transaction(SimBalanceTransaction {
            id: format!("txn_bench_{g}"),
            type_: "charge".into(),
            reporting_category: "charge".into(),
            amount,
            fee,
            currency: "eur".into(),
            exchange_rate: None,
            created: paid,
            available_on: START + day as i64 * DAY,
            source: TxnSource::Charge(pi),
            payout: Some(format!("po_bench_{day}")),
        });
        per_day[day] += amount - fee;
    }
    for (day, net) in per_day.iter().enumerate().filter(|(_, net)| **net != 0) {
        let id = format!("po_bench_{day}");
        let available = START + day as i64 * DAY;
        sim.add_balance_transaction(SimBalanceTransaction {
            id: format!("txn_{id}"),
            type_: "payout".into(),
            reporting_category: "payout".into(),
            amount: -net,
            fee: 0,
            currency: "eur".into(),
            exchange_rate: None,
            created: available,
            available_on: available,
            source: TxnSource::Payout(id.clone()),
            payout: None,
        });
        sim.add_payout(SimPayout {
            id,
            amount: *net,
            currency: "eur".into(),
            created: available + 3_600,
            arrival_date: available + 2 * DAY,
            status: "paid".into(),
            failure_code: None,
            reconciliation_status: "completed".into(),
        });
    }
    (db, sim)
}

fn close(db: &harness::TestDb, sim: &StripeSim, source: &str) -> (f64, serde_json::Value) {
    let base = sim.base_url();
    let started = Instant::now();
    let out = db
        .paytool_std()
        .env("STRIPE_SECRET_KEY", KEY)
        .args([
            "reconcile",
            "payouts",
            "--format",
            "json",
            "--source",
            source,
        ])
        .args([
            "--since",
            "2026-01-01",
            "--until",
            "2026-07-05",
            "--max-rps",
            "1000",
        ])
        .args(["--stripe-base-url", &base, "--stripe-files-base-url", &base])
        .output()
        .expect("paytool");
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (secs, serde_json::from_slice(&out.stdout).expect("json"))
}

fn summary(label: &str, orders: i64, secs: f64, report: &serde_json::Value) {
    let payouts = report["payouts"].as_array().map_or(0, Vec::len);
    let balanced = report["payouts"]
        .as_array()
        .map_or(0, |p| p.iter().filter(|p| p["balanced"] == true).count());
    println!(
        "{label}: {orders} orders, {payouts} payouts ({balanced} add up to the cent), {} balance transactions, {} Stripe requests (budget {}), {secs:.1} s",
        report["balance_transactions"], report["stripe_requests"], report["request_budget"],
    );
}

#[tokio::main]
async fn main() {
    let orders = env("BENCH_PAYOUT_ORDERS", 1_000_000);
    let (db, sim) = shop(orders).await;
    let (secs, report) = close(&db, &sim, "reports");
    summary("reports", orders, secs, &report);
    let api_orders = env("BENCH_PAYOUT_API_ORDERS", 100_000);
    let (db, sim) = shop(api_orders).await;
    let (secs, report) = close(&db, &sim, "api");
    summary("api", api_orders, secs, &report);
    let (secs, report) = close(&db, &sim, "reports");
    summary("reports, same shop", api_orders, secs, &report);
}
