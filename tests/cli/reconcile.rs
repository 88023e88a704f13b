//! `paytool reconcile` against a real PostgreSQL and the Stripe simulator (an HTTP server with
//! Stripe's object shapes, list semantics and errors), through paytool's real Stripe client.

use paytool::stripe_sim::{
    EventObject, Faults, SimDispute, SimEvent, SimPaymentIntent, SimRefund, StripeSim,
};
use predicates::prelude::*;
use sqlx::PgConnection;

use crate::harness::{TestDb, cluster, json_run};

const KEY: &str = "sk_test_paytool_sim";
/// The window every scenario uses: scenario orders are created inside it, seeded ones before.
const SINCE: &str = "2026-01-01T00:00:00Z";
const UNTIL: &str = "2026-01-31T00:00:00Z";
const IN_WINDOW: i64 = 1_768_000_000; // 2026-01-09

/// A migrated, backfilled database whose seeded orders are all older than the window.
async fn reconcile_db() -> TestDb {
    let db = crate::harness::seeded_and_migrated(40).await;
    db.paytool()
        .args(["backfill", "payments", "-q"])
        .assert()
        .success();
    let mut conn = db.conn().await;
    sqlx::raw_sql("UPDATE orders SET created_at = '2025-06-01'")
        .execute(&mut conn)
        .await
        .unwrap();
    db
}

/// An order in the window, with a payment row unless `payment` is None.
async fn order(
    conn: &mut PgConnection,
    id: &str,
    status: &str,
    amount: i32,
    pi: Option<&str>,
    payment: Option<&str>,
) {
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, amount_total_cents, currency, stripe_payment_intent_id, created_at, paid_at)
         SELECT $1, min(id), $2, $3, 'EUR', $4, '2026-01-09 10:00', CASE WHEN $2 = 'PAID' THEN '2026-01-09 10:01'::timestamp END FROM users",
    )
    .bind(id)
    .bind(status)
    .bind(amount)
    .bind(pi)
    .execute(&mut *conn)
    .await
    .unwrap();
    if let Some(payment_status) = payment {
        sqlx::query(
            "INSERT INTO payments (id, order_id, stripe_payment_intent_id, amount_cents, currency, status, succeeded_at)
             VALUES ('pay-' || $1, $1, $2, $3, 'EUR', $4, CASE WHEN $4 = 'succeeded' THEN '2026-01-09 10:01'::timestamp END)",
        )
        .bind(id)
        .bind(pi)
        .bind(amount)
        .bind(payment_status)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
}

/// An order still PENDING here whose PaymentIntent succeeded: the webhook never arrived.
async fn missed_webhook(conn: &mut PgConnection, sim: &StripeSim) {
    order(
        conn,
        "o-webhook",
        "PENDING",
        1000,
        Some("pi_webhook"),
        Some("requires_payment_method"),
    )
    .await;
    sim.add_payment_intent(intent("pi_webhook", Some("o-webhook"), 1000, "succeeded"));
}

fn intent(id: &str, order: Option<&str>, amount: i64, status: &str) -> SimPaymentIntent {
    SimPaymentIntent {
        id: id.into(),
        amount,
        currency: "eur".into(),
        status: status.into(),
        created: IN_WINDOW,
        order_id: order.map(Into::into),
        charge: (status == "succeeded").then(|| (format!("ch_{id}"), IN_WINDOW + 60)),
        last_error: None,
    }
}

fn reconcile(db: &TestDb, sim: &StripeSim, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = db
        .paytool()
        .env("STRIPE_SECRET_KEY", KEY)
        .args([
            "reconcile",
            "--format",
            "json",
            "--since",
            SINCE,
            "--until",
            UNTIL,
        ])
        .args(["--stripe-base-url", &sim.base_url()])
        .args(extra)
        .output()
        .unwrap();
    json_run(out)
}

/// `paytool reconcile` against `base` with the simulator's key.
fn reconcile_cmd(db: &TestDb, base: &str) -> assert_cmd::Command {
    let mut cmd = db.paytool();
    cmd.env("STRIPE_SECRET_KEY", KEY)
        .args(["reconcile", "--stripe-base-url", base]);
    cmd
}

fn kinds(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// One scenario, one finding: exactly `kind`, once, on this order and PaymentIntent.
fn assert_only(report: &serde_json::Value, kind: &str, order: Option<&str>, pi: Option<&str>) {
    assert_eq!(kinds(report), [kind], "{report:#}");
    let f = &report["findings"][0];
    assert_eq!(f["order_id"].as_str(), order);
    assert_eq!(f["payment_intent_id"].as_str(), pi);
    assert_eq!(report["summary"][kind], 1);
}

#[tokio::test]
async fn agreeing_orders_and_stripe_exit_0() {
    let db = reconcile_db().await;
    let mut conn = db.conn().await;
    let sim = StripeSim::start(KEY).unwrap();
    order(
        &mut conn,
        "o-paid",
        "PAID",
        1250,
        Some("pi_paid"),
        Some("succeeded"),
    )
    .await;
    order(
        &mut conn,
        "o-pending",
        "PENDING",
        800,
        Some("pi_pending"),
        Some("requires_payment_method"),
    )
    .await;
    sim.add_payment_intent(intent("pi_paid", Some("o-paid"), 1250, "succeeded"));
    sim.add_payment_intent(intent(
        "pi_pending",
        Some("o-pending"),
        800,
        "requires_payment_method",
    ));
    let (code, report) = reconcile(&db, &sim, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["orders_checked"], 2);
    assert_eq!(report["payment_intents_listed"], 2);
    assert!(kinds(&report).is_empty());
    assert_eq!(sim.mutations(), 0);
    // The table says so too.
    reconcile_cmd(&db, &sim.base_url())
        .args(["--since", SINCE, "--until", UNTIL])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("the database and Stripe agree"));
}

#[tokio::test]
async fn each_finding_kind_is_found_exactly_once() {
    let db = reconcile_db().await;
    let mut conn = db.conn().await;

    // missing_in_stripe: the order names a PaymentIntent Stripe does not know.
    let sim = StripeSim::start(KEY).unwrap();
    order(
        &mut conn,
        "o-missing",
        "PAID",
        1000,
        Some("pi_ghost"),
        Some("succeeded"),
    )
    .await;
    let (code, report) = reconcile(&db, &sim, &[]);
    assert_eq!(code, 1);
    assert_only(
        &report,
        "missing_in_stripe",
        Some("o-missing"),
        Some("pi_ghost"),
    );
    assert_eq!(report["payment_intents_retrieved"], 0);
    assert_eq!(sim.requests_to("GET /v1/payment_intents/{id}"), 1);
    sqlx::raw_sql(
        "DELETE FROM payments WHERE order_id LIKE 'o-%'; DELETE FROM orders WHERE id LIKE 'o-%'",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        ("status_mismatch", "o-webhook", Some("pi_webhook")),
        ("amount_mismatch", "o-amount", Some("pi_amount")),
        ("currency_mismatch", "o-currency", Some("pi_currency")),
        ("unlinked_payment_intent", "o-unlinked", Some("pi_unlinked")),
        ("orphan_payment_intent", "", Some("pi_orphan")),
        ("duplicate_payment_intents", "o-double", Some("pi_double_1")),
        ("refund_mismatch", "o-refund", Some("pi_refund")),
        ("payment_row_mismatch", "o-row", Some("pi_row")),
    ];
    for (kind, order_id, pi) in cases {
        let sim = StripeSim::start(KEY).unwrap();
        match kind {
            "status_mismatch" => {
                // A missed webhook: paid in Stripe, still PENDING here (the payment row was synced).
                order(&mut conn, order_id, "PENDING", 1000, pi, Some("succeeded")).await;
                sim.add_payment_intent(intent("pi_webhook", Some(order_id), 1000, "succeeded"));
            }
            "amount_mismatch" => {
                order(&mut conn, order_id, "PAID", 1000, pi, Some("succeeded")).await;
                sim.add_payment_intent(intent("pi_amount", Some(order_id), 1200, "succeeded"));
            }
            "currency_mismatch" => {
                order(&mut conn, order_id, "PAID", 1000, pi, Some("succeeded")).await;
                let mut p = intent("pi_currency", Some(order_id), 1000, "succeeded");
                p.currency = "usd".into();
                sim.add_payment_intent(p);
            }
            "unlinked_payment_intent" => {
                order(&mut conn, order_id, "PENDING", 1000, None, None).await;
                sim.add_payment_intent(intent(
                    "pi_unlinked",
                    Some(order_id),
                    1000,
                    "requires_payment_method",
                ));
            }
            "orphan_payment_intent" => {
                sim.add_payment_intent(intent(
                    "pi_orphan",
                    Some("no-such-order"),
                    500,
                    "succeeded",
                ));
            }
            "duplicate_payment_intents" => {
                order(&mut conn, order_id, "PAID", 1000, pi, Some("succeeded")).await;
                sim.add_payment_intent(intent("pi_double_1", Some(order_id), 1000, "succeeded"));
                let mut second = intent("pi_double_2", Some(order_id), 1000, "succeeded");
                second.created += 30;
                sim.add_payment_intent(second);
            }
            "refund_mismatch" => {
                order(&mut conn, order_id, "PAID", 1000, pi, Some("succeeded")).await;
                sim.add_payment_intent(intent("pi_refund", Some(order_id), 1000, "succeeded"));
                sim.add_refund(SimRefund {
                    id: "re_dashboard".into(),
                    payment_intent: "pi_refund".into(),
                    amount: 400,
                    currency: "eur".into(),
                    status: "succeeded".into(),
                    reason: Some("requested_by_customer".into()),
                    created: IN_WINDOW + 3600,
                });
            }
            "payment_row_mismatch" => {
                order(
                    &mut conn,
                    order_id,
                    "PAID",
                    1000,
                    pi,
                    Some("requires_payment_method"),
                )
                .await;
                sim.add_payment_intent(intent("pi_row", Some(order_id), 1000, "succeeded"));
            }
            _ => unreachable!(),
        }
        let (code, report) = reconcile(&db, &sim, &[]);
        assert_eq!(code, 1, "{kind}: {report:#}");
        let order_id = (!order_id.is_empty()).then_some(order_id);
        assert_only(&report, kind, order_id, pi);
        let f = &report["findings"][0];
        match kind {
            "amount_mismatch" => {
                // People read money; machines get the minor units and the currency.
                assert_eq!(f["ours"], "10.00 EUR");
                assert_eq!(f["stripe"], "12.00 EUR");
                assert_eq!(
                    f["database_amount"],
                    serde_json::json!({"minor_units": 1000, "currency": "EUR"})
                );
                assert_eq!(
                    f["stripe_amount"],
                    serde_json::json!({"minor_units": 1200, "currency": "EUR"})
                );
            }
            "currency_mismatch" => {
                assert_eq!(f["ours"], "EUR");
                assert_eq!(f["stripe"], "USD");
            }
            "status_mismatch" => {
                assert_eq!(f["ours"], "PENDING");
                assert_eq!(f["stripe"], "succeeded");
            }
            "duplicate_payment_intents" => {
                assert!(f["stripe"].as_str().unwrap().contains("pi_double_2"));
            }
            "refund_mismatch" => {
                assert_eq!(f["stripe"], "4.00 EUR refunded (1 refund)");
                assert_eq!(f["stripe_amount"]["minor_units"], 400);
            }
            _ => {}
        }
        sqlx::raw_sql("DELETE FROM payments WHERE order_id LIKE 'o-%'; DELETE FROM orders WHERE id LIKE 'o-%'")
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn apply_repairs_audits_keeps_amounts_and_a_second_run_finds_nothing() {
    let db = reconcile_db().await;
    let mut conn = db.conn().await;
    let sim = StripeSim::start(KEY).unwrap();
    missed_webhook(&mut conn, &sim).await;
    order(
        &mut conn,
        "o-unlinked",
        "PENDING",
        700,
        None,
        Some("requires_payment_method"),
    )
    .await;
    sim.add_payment_intent(intent("pi_unlinked", Some("o-unlinked"), 700, "succeeded"));
    order(
        &mut conn,
        "o-refund",
        "PAID",
        900,
        Some("pi_refund"),
        Some("succeeded"),
    )
    .await;
    sim.add_payment_intent(intent("pi_refund", Some("o-refund"), 900, "succeeded"));
    sim.add_refund(SimRefund {
        id: "re_dash".into(),
        payment_intent: "pi_refund".into(),
        amount: 900,
        currency: "eur".into(),
        status: "succeeded".into(),
        reason: None,
        created: IN_WINDOW + 100,
    });
    order(
        &mut conn,
        "o-amount",
        "PAID",
        1000,
        Some("pi_amount"),
        Some("succeeded"),
    )
    .await;
    sim.add_payment_intent(intent("pi_amount", Some("o-amount"), 1100, "succeeded"));
    let amounts = "SELECT string_agg(id || ':' || amount_total_cents, ',' ORDER BY id) FROM orders WHERE id LIKE 'o-%'";
    let before: String = sqlx::query_scalar(amounts)
        .fetch_one(&mut conn)
        .await
        .unwrap();

    let (code, report) = reconcile(&db, &sim, &["--apply"]);
    assert_eq!(code, 1);
    let applied = report["applied"].as_array().unwrap();
    assert!(
        applied.iter().all(|a| a["outcome"] == "applied"),
        "{report:#}"
    );
    let actions: Vec<&str> = applied
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "link").count(), 1);
    assert_eq!(actions.iter().filter(|a| **a == "mark_paid").count(), 2);
    assert_eq!(actions.iter().filter(|a| **a == "record_refund").count(), 1);

    let audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM paytool.reconcile_audit WHERE run_id = $1")
            .bind(report["run_id"].as_str().unwrap())
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(audit as usize, applied.len());
    let (status, paid_at): (String, Option<chrono::NaiveDateTime>) =
        sqlx::query_as("SELECT status::text, paid_at FROM orders WHERE id = 'o-webhook'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(status, "PAID");
    assert_eq!(
        paid_at.unwrap().and_utc().timestamp(),
        IN_WINDOW + 60,
        "paid_at comes from the charge"
    );
    let linked: Option<String> =
        sqlx::query_scalar("SELECT stripe_payment_intent_id FROM orders WHERE id = 'o-unlinked'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(linked.as_deref(), Some("pi_unlinked"));
    let refund: (i32, String) = sqlx::query_as(
        "SELECT amount_cents, status FROM refunds WHERE stripe_refund_id = 're_dash'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(refund, (900, "succeeded".to_owned()));
    let after: String = sqlx::query_scalar(amounts)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(after, before, "--apply changed an amount");

    let (code, again) = reconcile(&db, &sim, &["--apply"]);
    assert_eq!(code, 1, "the amount mismatch stays: it needs a person");
    assert_eq!(kinds(&again), ["amount_mismatch"]);
    assert_eq!(again["repairs_pending"], 0);
    assert!(again["applied"].as_array().unwrap().is_empty());
    assert_eq!(
        sim.mutations(),
        0,
        "paytool sent a mutating request to Stripe"
    );
}

#[tokio::test]
async fn a_thousand_orders_take_a_dozen_requests_even_with_429s() {
    let db = reconcile_db().await;
    let mut conn = db.conn().await;
    let sim = StripeSim::start(KEY).unwrap();
    sqlx::raw_sql(
        "INSERT INTO orders (id, user_id, status, amount_total_cents, currency, stripe_payment_intent_id, created_at, paid_at)
         SELECT 'bulk-' || g, (SELECT min(id) FROM users), 'PAID', 1000 + g, 'EUR', 'pi_bulk_' || g,
                '2026-01-09 10:00'::timestamp + g * interval '1 second', '2026-01-09 11:00'
         FROM generate_series(1, 1000) AS g;
         INSERT INTO payments (order_id, stripe_payment_intent_id, amount_cents, currency, status, succeeded_at)
         SELECT id, stripe_payment_intent_id, amount_total_cents, 'EUR', 'succeeded', '2026-01-09 11:00'
         FROM orders WHERE id LIKE 'bulk-%';",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for g in 1..=1000 {
        let mut pi = intent(
            &format!("pi_bulk_{g}"),
            Some(&format!("bulk-{g}")),
            1000 + g,
            "succeeded",
        );
        pi.created = IN_WINDOW + g;
        sim.add_payment_intent(pi);
    }
    // A refund missing here, so the run has exactly one finding to agree on.
    sim.add_refund(SimRefund {
        id: "re_bulk".into(),
        payment_intent: "pi_bulk_7".into(),
        amount: 100,
        currency: "eur".into(),
        status: "succeeded".into(),
        reason: None,
        created: IN_WINDOW + 5000,
    });
    let (_, report) = reconcile(&db, &sim, &[]);
    assert_eq!(report["orders_checked"], 1000);
    assert_eq!(kinds(&report), ["refund_mismatch"]);
    // 10 pages of PaymentIntents + 1 page of refunds + 1 of disputes + 1 of failed deliveries
    // per event type pattern (3).
    assert_eq!(sim.requests(), 15, "{report:#}");
    assert_eq!(report["stripe_requests"], 15);

    sim.reset_counters();
    sim.set_faults(Faults {
        rate_limit_every: Some(5),
        ..Faults::default()
    });
    let (_, throttled) = reconcile(&db, &sim, &[]);
    assert_eq!(throttled["findings"], report["findings"]);
    assert!(
        throttled["stripe_retries"].as_u64().unwrap() >= 2,
        "{throttled:#}"
    );
    assert_eq!(
        sim.requests(),
        15 + throttled["stripe_retries"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn a_bad_key_or_an_outage_exits_3_and_writes_nothing() {
    let db = reconcile_db().await;
    let mut conn = db.conn().await;
    let sim = StripeSim::start(KEY).unwrap();
    missed_webhook(&mut conn, &sim).await;
    let untouched = || async {
        let mut conn = db.conn().await;
        let status: String =
            sqlx::query_scalar("SELECT status::text FROM orders WHERE id = 'o-webhook'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        let audit: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('paytool.reconcile_audit')::text")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        status == "PENDING" && audit.is_none()
    };

    let rejected = db
        .paytool()
        .env("STRIPE_SECRET_KEY", "sk_test_wrong")
        .args(["reconcile", "--apply", "--stripe-base-url", &sim.base_url()])
        .output()
        .unwrap();
    assert_eq!(rejected.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(!stderr.contains("sk_test_wrong"), "{stderr}");
    // Said once, not once per layer of the error chain.
    assert_eq!(
        stderr.matches("Stripe rejected the API key").count(),
        1,
        "{stderr}"
    );
    assert!(untouched().await);

    sim.set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    reconcile_cmd(&db, &sim.base_url())
        .args(["--apply", "--max-retries", "2"])
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("nothing was written")
                .and(predicate::str::contains("HTTP 500")),
        );
    assert!(untouched().await);
    assert_eq!(
        sim.requests(),
        1 + 3,
        "one 401 (never retried), then 1 + 2 retries of a 500"
    );

    reconcile_cmd(&db, "http://127.0.0.1:9/")
        .args(["--apply", "--max-retries", "1"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("could not be reached"));
    assert!(untouched().await);
}

#[tokio::test]
async fn a_slow_stripe_times_out_per_request() {
    let db = reconcile_db().await;
    let sim = StripeSim::start(KEY).unwrap();
    sim.set_faults(Faults {
        delay: Some(std::time::Duration::from_millis(800)),
        ..Faults::default()
    });
    reconcile_cmd(&db, &sim.base_url())
        .args(["--request-timeout", "200ms", "--max-retries", "1"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("did not answer within 200 ms"));
}

#[tokio::test]
async fn usage_errors() {
    let db = reconcile_db().await;
    db.paytool()
        .env_remove("STRIPE_SECRET_KEY")
        .args(["reconcile"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("STRIPE_SECRET_KEY"));
    db.paytool()
        .env("STRIPE_SECRET_KEY", KEY)
        .args(["reconcile", "--since", "yesterday"])
        .assert()
        .code(2);
    db.paytool()
        .env("STRIPE_SECRET_KEY", KEY)
        .args([
            "reconcile",
            "--since",
            "2026-02-01",
            "--until",
            "2026-01-01",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is after"));
    reconcile_cmd(&db, "http://127.0.0.1:9/")
        .args(["--order", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("order nope does not exist"));
}

#[test]
fn templates_have_the_shape_of_stripes_published_fixtures() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/stripe/fixtures3.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipped: {} is absent", path.display());
        return;
    };
    let fixtures: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (resource, template) in paytool::stripe_sim::TEMPLATES {
        let ours: serde_json::Value = serde_json::from_str(template).unwrap();
        let theirs = &fixtures["resources"][resource];
        let mut our_keys: Vec<&String> = ours.as_object().unwrap().keys().collect();
        let mut their_keys: Vec<&String> = theirs.as_object().unwrap().keys().collect();
        our_keys.sort();
        their_keys.sort();
        let missing: Vec<&&String> = their_keys
            .iter()
            .filter(|k| !our_keys.contains(k))
            .collect();
        let extra: Vec<&&String> = our_keys
            .iter()
            .filter(|k| !their_keys.contains(k))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{resource}: missing {missing:?}, extra {extra:?}"
        );
        for key in our_keys {
            let (a, b) = (&ours[key], &theirs[key]);
            if !a.is_null() && !b.is_null() {
                assert_eq!(kind(a), kind(b), "{resource}.{key}");
            }
        }
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[tokio::test]
async fn a_link_that_another_order_holds_is_a_conflict_and_nothing_is_written() {
    let db = reconcile_db().await;
    let mut conn = db.conn().await;
    let sim = StripeSim::start(KEY).unwrap();
    // o-holder links pi_shared; o-claimer has no link, and pi_shared's metadata names it.
    order(
        &mut conn,
        "o-holder",
        "PENDING",
        1000,
        Some("pi_shared"),
        None,
    )
    .await;
    order(&mut conn, "o-claimer", "PENDING", 1000, None, None).await;
    sim.add_payment_intent(intent(
        "pi_shared",
        Some("o-claimer"),
        1000,
        "requires_payment_method",
    ));
    let (code, report) = reconcile(&db, &sim, &["--apply"]);
    assert_eq!(code, 1, "{report:#}");
    let outcomes: Vec<(&str, &str)> = report["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes, [("link", "conflict")]);
    let claimer: Option<String> =
        sqlx::query_scalar("SELECT stripe_payment_intent_id FROM orders WHERE id = 'o-claimer'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(claimer, None);
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM paytool.reconcile_audit")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(audit, 0);
}

#[tokio::test]
async fn a_checkout_just_after_the_window_still_links_its_order_and_is_no_orphan() {
    let db = reconcile_db().await;
    let mut conn = db.conn().await;
    let sim = StripeSim::start(KEY).unwrap();
    // The order is created one minute before the window ends, its PaymentIntent two after.
    sqlx::raw_sql(
        "INSERT INTO orders (id, user_id, status, amount_total_cents, currency, created_at)
         SELECT 'o-late', min(id), 'PENDING', 900, 'EUR', '2026-01-30 23:59' FROM users;
         INSERT INTO orders (id, user_id, status, amount_total_cents, currency, created_at)
         SELECT 'o-next', min(id), 'PENDING', 500, 'EUR', '2026-01-31 00:30' FROM users;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let window_end = 1_769_817_600; // 2026-01-31T00:00:00Z
    let mut late = intent("pi_late", Some("o-late"), 900, "requires_payment_method");
    late.created = window_end + 120;
    sim.add_payment_intent(late);
    // The next order's checkout, past the window: not ours to judge, and no orphan.
    let mut next = intent("pi_next", Some("o-next"), 500, "requires_payment_method");
    next.created = window_end + 1900;
    sim.add_payment_intent(next);
    let mut stranger = intent("pi_stranger", None, 700, "succeeded");
    stranger.created = window_end + 3600;
    sim.add_payment_intent(stranger);
    let (_, report) = reconcile(&db, &sim, &[]);
    assert_only(
        &report,
        "unlinked_payment_intent",
        Some("o-late"),
        Some("pi_late"),
    );
}

#[tokio::test]
async fn one_order_and_csv_output() {
    let db = reconcile_db().await;
    let mut conn = db.conn().await;
    let sim = StripeSim::start(KEY).unwrap();
    order(
        &mut conn,
        "o-fine",
        "PAID",
        1250,
        Some("pi_fine"),
        Some("succeeded"),
    )
    .await;
    sim.add_payment_intent(intent("pi_fine", Some("o-fine"), 1250, "succeeded"));
    missed_webhook(&mut conn, &sim).await;

    let run = |extra: &[&str]| {
        reconcile_cmd(&db, &sim.base_url())
            .args(extra)
            .output()
            .unwrap()
    };
    let (code, fine) = json_run(run(&["--order", "o-fine", "--format", "json"]));
    assert_eq!(code, 0, "{fine:#}");
    assert_eq!(fine["orders_checked"], 1);
    assert_eq!(fine["window"]["order"], "o-fine");

    let csv = run(&["--order", "o-webhook", "--format", "csv"]);
    assert_eq!(csv.status.code(), Some(1));
    let text = String::from_utf8(csv.stdout).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        headers,
        [
            "kind",
            "order_id",
            "payment_intent_id",
            "database",
            "stripe",
            "repair",
            "database_minor_units",
            "database_currency",
            "stripe_minor_units",
            "stripe_currency",
            "stripe_object_id",
            "effect_missing",
            "known"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(kinds, ["status_mismatch", "payment_row_mismatch"], "{text}");
    assert_eq!(&rows[0][1], "o-webhook");
    assert_eq!(&rows[0][5], "mark PAID");
}

#[tokio::test]
async fn uuid_order_ids_are_reconciled_and_repaired() {
    let db = cluster().fresh_db().await;
    db.seed(40, false).await;
    let mut conn = db.conn().await;
    sqlx::raw_sql(crate::variants::UUID_IDS)
        .execute(&mut conn)
        .await
        .unwrap();
    db.paytool().args(["migrate", "-q"]).assert().success();
    db.paytool()
        .args(["backfill", "payments", "-q"])
        .assert()
        .success();
    sqlx::raw_sql("UPDATE orders SET created_at = '2025-06-01'")
        .execute(&mut conn)
        .await
        .unwrap();
    // A missed webhook on a uuid order, and a PaymentIntent whose metadata names no uuid.
    let webhook = "7d3c7f8e-3a55-4a0e-9c55-2d8f1c2b9a01";
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, amount_total_cents, currency, stripe_payment_intent_id, created_at)
         SELECT $1::uuid, id, 'PENDING', 1000, 'EUR', 'pi_webhook', '2026-01-09 10:00' FROM users LIMIT 1;",
    )
    .bind(webhook)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO payments (id, order_id, stripe_payment_intent_id, amount_cents, currency, status)
         VALUES ('pay-webhook', $1::uuid, 'pi_webhook', 1000, 'EUR', 'requires_payment_method')",
    )
    .bind(webhook)
    .execute(&mut conn)
    .await
    .unwrap();
    let sim = StripeSim::start(KEY).unwrap();
    sim.add_payment_intent(intent("pi_webhook", Some(webhook), 1000, "succeeded"));
    sim.add_payment_intent(intent("pi_stranger", Some("o-1"), 500, "succeeded"));

    let (code, report) = reconcile(&db, &sim, &["--apply"]);
    assert_eq!(code, 1, "{report:#}");
    let mut found = kinds(&report);
    found.sort();
    assert_eq!(
        found,
        [
            "orphan_payment_intent",
            "payment_row_mismatch",
            "status_mismatch"
        ],
        "{report:#}"
    );
    let status: String = sqlx::query_scalar("SELECT status::TEXT FROM orders WHERE id = $1::uuid")
        .bind(webhook)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(status, "PAID");
    let (code, one) = json_run(
        reconcile_cmd(&db, &sim.base_url())
            .args(["--order", webhook, "--format", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        (code, one["orders_checked"].as_i64()),
        (0, Some(1)),
        "{one:#}"
    );
    reconcile_cmd(&db, &sim.base_url())
        .args(["--order", "o-1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("order o-1 does not exist"));
}

/// After the migration orders.status is VARCHAR: the upgraded application may write a status of
/// its own. Reconcile reads it as it is, compares, and repairs nothing it does not know.
#[tokio::test]
async fn a_status_outside_the_five_is_reconciled_not_refused() {
    let db = reconcile_db().await;
    let sim = StripeSim::start(KEY).unwrap();
    let mut conn = db.conn().await;
    order(
        &mut conn,
        "o-shipped",
        "SHIPPED",
        1000,
        Some("pi_shipped"),
        Some("succeeded"),
    )
    .await;
    sim.add_payment_intent(intent("pi_shipped", Some("o-shipped"), 1000, "succeeded"));
    let (code, report) = reconcile(&db, &sim, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(kinds(&report), ["status_mismatch"]);
    let finding = &report["findings"][0];
    assert_eq!(finding["ours"], "SHIPPED");
    assert_eq!(finding["stripe"], "succeeded");
    assert_eq!(
        finding["repairs"],
        serde_json::json!([]),
        "no repair of an unknown status"
    );
}

fn dispute(id: &str, pi: &str, amount: i64, status: &str) -> SimDispute {
    SimDispute {
        id: id.into(),
        payment_intent: pi.into(),
        amount,
        currency: "eur".into(),
        status: status.into(),
        reason: "fraudulent".into(),
        created: IN_WINDOW + 3_600,
        due_by: Some(IN_WINDOW + 8 * 86_400),
    }
}

/// A paid order whose charge the customer disputes (dispute dp_1, in this status).
async fn disputed_order(conn: &mut PgConnection, sim: &StripeSim, status: &str) {
    order(
        conn,
        "o-disputed",
        "PAID",
        1000,
        Some("pi_disputed"),
        Some("succeeded"),
    )
    .await;
    sim.add_payment_intent(intent("pi_disputed", Some("o-disputed"), 1000, "succeeded"));
    sim.add_dispute(dispute("dp_1", "pi_disputed", 1000, status));
}

fn failed_event(id: &str, type_: &str, object: EventObject) -> SimEvent {
    SimEvent {
        id: id.into(),
        type_: type_.into(),
        created: IN_WINDOW + 120,
        object,
        delivery_success: false,
    }
}

#[tokio::test]
async fn a_dispute_is_disputed_payment_once_and_apply_changes_nothing_for_it() {
    let db = reconcile_db().await;
    let mut conn = db.conn().await;
    let sim = StripeSim::start(KEY).unwrap();
    disputed_order(&mut conn, &sim, "needs_response").await;
    let (code, report) = reconcile(&db, &sim, &["--apply"]);
    assert_eq!(code, 1, "{report:#}");
    assert_only(
        &report,
        "disputed_payment",
        Some("o-disputed"),
        Some("pi_disputed"),
    );
    let f = &report["findings"][0];
    assert_eq!(f["stripe_object_id"], "dp_1");
    assert_eq!(f["stripe_amount"]["minor_units"], 1000);
    assert!(
        f["stripe"]
            .as_str()
            .unwrap()
            .contains("evidence due 2026-01-17"),
        "{f:#}"
    );
    assert_eq!(report["applied"], serde_json::json!([]));
    assert_eq!(report["disputes_listed"], 1);
    assert_eq!(sim.requests_to("GET /v1/disputes"), 1);
    assert_eq!(sim.mutations(), 0);
}

#[tokio::test]
async fn an_old_authorization_never_captured_is_stale_once() {
    let db = reconcile_db().await;
    let mut conn = db.conn().await;
    let sim = StripeSim::start(KEY).unwrap();
    order(
        &mut conn,
        "o-authorised",
        "PENDING",
        1000,
        Some("pi_authorised"),
        Some("requires_capture"),
    )
    .await;
    // Created in the January window: months before now, far past the 5 days.
    sim.add_payment_intent(intent(
        "pi_authorised",
        Some("o-authorised"),
        1000,
        "requires_capture",
    ));
    let (code, report) = reconcile(&db, &sim, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_only(
        &report,
        "stale_payment_intent",
        Some("o-authorised"),
        Some("pi_authorised"),
    );
    assert!(
        report["findings"][0]["stripe"]
            .as_str()
            .unwrap()
            .starts_with("requires_capture 10.00 EUR for ")
    );
    // A threshold longer than its age: nothing to report.
    let (code, report) = reconcile(&db, &sim, &["--stale-capture-after", "3650d"]);
    assert_eq!((code, kinds(&report)), (0, vec![]), "{report:#}");
}

#[tokio::test]
async fn a_failed_webhook_delivery_says_whether_its_effect_is_missing() {
    let db = reconcile_db().await;
    let mut conn = db.conn().await;
    let sim = StripeSim::start(KEY).unwrap();
    // Its webhook failed and the order is still PENDING: the effect is missing.
    missed_webhook(&mut conn, &sim).await;
    sim.add_event(failed_event(
        "evt_missed",
        "payment_intent.succeeded",
        EventObject::PaymentIntent("pi_webhook".into()),
    ));
    // Its webhook failed too, but the order was marked PAID another way.
    order(
        &mut conn,
        "o-fine",
        "PAID",
        2000,
        Some("pi_fine"),
        Some("succeeded"),
    )
    .await;
    sim.add_payment_intent(intent("pi_fine", Some("o-fine"), 2000, "succeeded"));
    sim.add_event(failed_event(
        "evt_fine",
        "charge.succeeded",
        EventObject::Charge("pi_fine".into()),
    ));
    // Delivered: not a finding.
    sim.add_event(SimEvent {
        delivery_success: true,
        ..failed_event(
            "evt_delivered",
            "payment_intent.created",
            EventObject::PaymentIntent("pi_fine".into()),
        )
    });
    let (code, report) = reconcile(&db, &sim, &[]);
    assert_eq!(code, 1, "{report:#}");
    let failed: Vec<(&str, &str, bool)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "failed_webhook_delivery")
        .map(|f| {
            (
                f["order_id"].as_str().unwrap(),
                f["stripe_object_id"].as_str().unwrap(),
                f["effect_missing"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        [
            ("o-fine", "evt_fine", false),
            ("o-webhook", "evt_missed", true)
        ]
    );
    assert_eq!(report["summary"]["failed_webhook_delivery"], 2);
    assert_eq!(report["failed_deliveries_listed"], 2);
    // One page per event type pattern, delivery_success=false.
    assert_eq!(sim.requests_to("GET /v1/events"), 3);

    // --apply stores both events in payment_events (and repairs the missed webhook's effect);
    // then nothing is left to repair and the effect is no longer missing.
    let (_, applied) = reconcile(&db, &sim, &["--apply"]);
    let stored: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT e.stripe_event_id, p.order_id::text FROM payment_events e
         LEFT JOIN payments p ON p.id = e.payment_id ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        stored,
        [
            ("evt_fine".to_owned(), Some("o-fine".to_owned())),
            ("evt_missed".to_owned(), Some("o-webhook".to_owned()))
        ],
        "{applied:#}"
    );
    let (_, after) = reconcile(&db, &sim, &[]);
    assert_eq!(after["repairs_pending"], 0, "{after:#}");
    assert!(
        after["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["effect_missing"] != true),
        "{after:#}"
    );
    assert_eq!(sim.mutations(), 0);
}

#[tokio::test]
async fn a_baseline_silences_known_findings_and_not_new_ones() {
    let db = reconcile_db().await;
    let mut conn = db.conn().await;
    let sim = StripeSim::start(KEY).unwrap();
    disputed_order(&mut conn, &sim, "under_review").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("accepted.json");
    let file = file.to_str().unwrap();

    reconcile_cmd(&db, &sim.base_url())
        .args(["--baseline", file])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--write-baseline"));
    let (code, written) = reconcile(
        &db,
        &sim,
        &[
            "--write-baseline",
            file,
            "--reason",
            "evidence sent, INC-42",
            "--accepted-by",
            "ops@example.com",
        ],
    );
    assert_eq!(code, 0, "{written:#}");
    assert_eq!(written["baseline"]["written"], 1);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let entry = &saved["accepted"][0];
    assert_eq!(entry["kind"], "disputed_payment");
    assert_eq!(entry["reason"], "evidence sent, INC-42");
    assert_eq!(entry["accepted_by"], "ops@example.com");

    let (code, report) = reconcile(&db, &sim, &["--baseline", file]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(kinds(&report), Vec::<String>::new());
    assert_eq!(report["baseline"]["known"], 1);
    assert_eq!(report["known_findings"][0]["kind"], "disputed_payment");

    // Something new: exit 1 for it alone, the known one still skipped.
    missed_webhook(&mut conn, &sim).await;
    let (code, report) = reconcile(&db, &sim, &["--baseline", file]);
    assert_eq!(code, 1, "{report:#}");
    assert!(kinds(&report).contains(&"status_mismatch".to_owned()));
    assert!(!kinds(&report).contains(&"disputed_payment".to_owned()));
    assert_eq!(report["baseline"]["known"], 1);
    let table = reconcile_cmd(&db, &sim.base_url())
        .args(["--since", SINCE, "--until", UNTIL, "--baseline", file])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("1 known finding(s) skipped"), "{text}");

    // A second dispute on the same payment is new (a dispute's new status too: unit-tested).
    sim.add_dispute(dispute("dp_2", "pi_disputed", 1000, "lost"));
    let (_, report) = reconcile(&db, &sim, &["--baseline", file]);
    assert!(
        kinds(&report).contains(&"disputed_payment".to_owned()),
        "{report:#}"
    );

    std::fs::write(file, "{not json").unwrap();
    reconcile_cmd(&db, &sim.base_url())
        .args(["--baseline", file])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a paytool baseline"));
    reconcile_cmd(&db, &sim.base_url())
        .args(["--write-baseline", file])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--reason"));
}
