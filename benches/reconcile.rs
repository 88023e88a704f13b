//! Benchmark of `paytool reconcile` against the local Stripe simulator: orders reconciled per
//! second and Stripe requests per 1,000 orders, against the naive approach (one PaymentIntent
//! retrieve per order) in the same run. Prints numbers; asserts nothing.
//! `BENCH_RECONCILE_ORDERS` (default 100,000) sets the size. Then `paytool backfill events` on
//! one event per order (`BENCH_EVENTS`, default the same), against storing the same pages one
//! event per transaction, as a webhook handler does.
//!
//!     cargo bench --bench reconcile          # or ./scripts/bench.sh

#[path = "../tests/cli/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};
use paytool::stripe::{EventQuery, StripeHttp, StripeSettings, StripeSource};
use paytool::stripe_sim::{EventObject, SimEvent, SimPaymentIntent, StripeSim};

const KEY: &str = "sk_test_bench";
const JAN_9: i64 = 1_768_000_000;

#[tokio::main]
async fn main() {
    let orders: i64 = std::env::var("BENCH_RECONCILE_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
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
                '2026-01-02'::timestamp + g * interval '1 second', '2026-01-02'
         FROM generate_series(1, $1) AS g",
    )
    .bind(orders)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql(
        "UPDATE orders SET created_at = '2025-01-01' WHERE id NOT LIKE 'bench-%';
         INSERT INTO payments (order_id, stripe_payment_intent_id, amount_cents, currency, status, succeeded_at)
         SELECT id, stripe_payment_intent_id, amount_total_cents, 'EUR', 'succeeded', '2026-01-02'
         FROM orders WHERE id LIKE 'bench-%'; ANALYZE",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let sim = StripeSim::start(KEY).unwrap();
    for g in 1..=orders {
        sim.add_payment_intent(SimPaymentIntent {
            id: format!("pi_bench_{g}"),
            amount: 1000 + g % 5000,
            currency: "eur".into(),
            status: "succeeded".into(),
            created: JAN_9 - 7 * 86_400 + g,
            order_id: Some(format!("bench-{g}")),
            charge: Some((format!("ch_bench_{g}"), JAN_9)),
            last_error: None,
        });
    }

    println!(
        "\nreconcile benchmark: {orders} orders, each with a succeeded PaymentIntent, against the local simulator\n"
    );
    println!("| approach | time | orders/s | Stripe requests | requests per 1,000 orders |");
    println!("|---|---|---|---|---|");
    for max_rps in ["1000", "20"] {
        sim.reset_counters();
        let started = Instant::now();
        let out = db
            .paytool_std()
            .env("STRIPE_SECRET_KEY", KEY)
            .args([
                "reconcile",
                "--format",
                "json",
                "--since",
                "2026-01-01",
                "--until",
                "2026-02-01",
            ])
            .args(["--stripe-base-url", &sim.base_url(), "--max-rps", max_rps])
            .output()
            .expect("reconcile");
        let elapsed = started.elapsed();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
        assert_eq!(
            report["orders_checked"],
            orders,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        row(
            &format!("paytool reconcile (lists, --max-rps {max_rps})"),
            elapsed,
            orders,
            sim.requests(),
        );
    }

    // The naive way: one retrieve per order, 4 in flight, no rate limit to speak of.
    sim.reset_counters();
    let client = StripeHttp::new(StripeSettings {
        key: KEY.into(),
        base_url: sim.base_url(),
        max_rps: 100_000,
        concurrency: 4,
        timeout: std::time::Duration::from_secs(20),
        max_retries: 3,
    })
    .unwrap();
    let started = Instant::now();
    let found: Vec<bool> = futures_util::stream::iter(1..=orders)
        .map(|g| {
            let client = client.clone();
            async move {
                client
                    .payment_intent(&format!("pi_bench_{g}"))
                    .await
                    .map(|pi| pi.is_some())
            }
        })
        .buffer_unordered(4)
        .try_collect()
        .await
        .expect("naive retrieves");
    assert!(found.iter().all(|f| *f));
    row(
        "naive: one retrieve per order (no rate limit)",
        started.elapsed(),
        orders,
        sim.requests(),
    );
    println!(
        "\nAt Stripe's 25 requests/s (test mode), the naive way would take {:.0} min for {orders} orders; the lists take {:.0} s.",
        orders as f64 / 25.0 / 60.0,
        (orders as f64 / 100.0).ceil() / 25.0
    );
    events(&db, &sim, &client, orders).await;
}

/// `backfill events` against one INSERT per event in its own transaction, over the same pages.
async fn events(db: &harness::TestDb, sim: &StripeSim, client: &StripeHttp, orders: i64) {
    let count: i64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(orders)
        .min(orders);
    let now = chrono::Utc::now();
    for g in 1..=count {
        sim.add_event(SimEvent {
            id: format!("evt_bench_{g:07}"),
            type_: "payment_intent.succeeded".into(),
            created: now.timestamp() - 86_400 + g % 80_000,
            object: EventObject::PaymentIntent(format!("pi_bench_{g}")),
            delivery_success: true,
        });
    }
    let mut conn = db.conn().await;
    println!(
        "
backfill events benchmark: {count} payment_intent.succeeded events, each linked to a payment
"
    );
    println!("| approach | time | events/s | Stripe requests |");
    println!("|---|---|---|---|");

    // Reference: the same pages, stored one event per transaction.
    sim.reset_counters();
    let started = Instant::now();
    let mut after: Option<String> = None;
    loop {
        let page = client
            .events_page(&EventQuery {
                type_pattern: "payment_intent.*",
                since: now - chrono::Duration::days(30),
                until: now,
                failed_only: false,
                starting_after: after.as_deref(),
            })
            .await
            .expect("events page");
        for e in &page.events {
            sqlx::query(
                "INSERT INTO payment_events (stripe_event_id, type, payload, stripe_created_at, payment_id)
                 VALUES ($1, $2, $3::jsonb, $4, (SELECT id FROM payments WHERE stripe_payment_intent_id = $5))
                 ON CONFLICT (stripe_event_id) DO NOTHING",
            )
            .bind(&e.id)
            .bind(&e.type_)
            .bind(e.payload.to_string())
            .bind(e.created.naive_utc())
            .bind(&e.payment_intent_id)
            .execute(&mut conn)
            .await
            .expect("insert");
        }
        after = page.events.last().map(|e| e.id.clone());
        if !page.has_more || after.is_none() {
            break;
        }
    }
    events_row(
        "one INSERT per event (a webhook handler's way)",
        started.elapsed(),
        count,
        sim.requests(),
    );
    sqlx::raw_sql("TRUNCATE payment_events")
        .execute(&mut conn)
        .await
        .unwrap();

    for run in ["first run", "second run (all present)"] {
        sim.reset_counters();
        let started = Instant::now();
        let out = db
            .paytool_std()
            .env("STRIPE_SECRET_KEY", KEY)
            .args([
                "backfill",
                "events",
                "--format",
                "json",
                "--max-rps",
                "1000",
            ])
            .args(["--stripe-base-url", &sim.base_url()])
            .output()
            .expect("backfill events");
        let elapsed = started.elapsed();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
        assert_eq!(
            report["fetched"],
            count,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(report["unlinked"], 0);
        events_row(
            &format!("paytool backfill events, {run}"),
            elapsed,
            count,
            sim.requests(),
        );
    }
}

fn events_row(name: &str, elapsed: std::time::Duration, events: i64, requests: u64) {
    println!(
        "| {name} | {:.1} s | {:.0} | {requests} |",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
    );
}

fn row(name: &str, elapsed: std::time::Duration, orders: i64, requests: u64) {
    println!(
        "| {name} | {:.1} s | {:.0} | {requests} | {:.1} |",
        elapsed.as_secs_f64(),
        orders as f64 / elapsed.as_secs_f64(),
        requests as f64 * 1000.0 / orders as f64
    );
}
