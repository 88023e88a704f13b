//! `paytool backfill events` against a real PostgreSQL and the Stripe simulator: events stored
//! once, linked to their payments, a re-run adding nothing, a killed run resumed.

use paytool::stripe_sim::{
    EventObject, Faults, SimDispute, SimEvent, SimPaymentIntent, SimRefund, StripeSim,
};
use predicates::prelude::*;
use sqlx::PgConnection;

use crate::harness::{TestDb, json_run, wait_for};

const KEY: &str = "sk_test_paytool_events";

/// Within Stripe's 30 days: events of the last day.
/// A fixed evidence deadline: computed from the clock twice, it differed by a second in CI.
const DUE_BY: i64 = 1_900_000_000;

fn recent(offset: i64) -> i64 {
    chrono::Utc::now().timestamp() - 86_400 + offset
}

async fn events_db() -> TestDb {
    let db = crate::harness::seeded_and_migrated(20).await;
    db.paytool()
        .args(["backfill", "payments", "-q"])
        .assert()
        .success();
    db
}

/// An order with its payment, linked to `pi`.
async fn paid_order(conn: &mut PgConnection, id: &str, pi: &str) {
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, amount_total_cents, currency, stripe_payment_intent_id, paid_at)
         SELECT $1, min(id), 'PAID', 1000, 'EUR', $2, now() FROM users",
    )
    .bind(id)
    .bind(pi)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO payments (order_id, stripe_payment_intent_id, amount_cents, currency, status, succeeded_at)
         VALUES ($1, $2, 1000, 'EUR', 'succeeded', now())",
    )
    .bind(id)
    .bind(pi)
    .execute(&mut *conn)
    .await
    .unwrap();
}

fn intent(id: &str, order: &str, status: &str) -> SimPaymentIntent {
    SimPaymentIntent {
        id: id.into(),
        amount: 1000,
        currency: "eur".into(),
        status: status.into(),
        created: recent(0),
        order_id: Some(order.into()),
        charge: (status == "succeeded").then(|| (format!("ch_{id}"), recent(30))),
        last_error: None,
    }
}

fn event(id: &str, type_: &str, offset: i64, object: EventObject) -> SimEvent {
    SimEvent {
        id: id.into(),
        type_: type_.into(),
        created: recent(offset),
        object,
        delivery_success: true,
    }
}

fn backfill_events(db: &TestDb, sim: &StripeSim, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = db
        .paytool()
        .env("STRIPE_SECRET_KEY", KEY)
        .args(["backfill", "events", "--format", "json"])
        .args(["--stripe-base-url", &sim.base_url()])
        .args(extra)
        .output()
        .unwrap();
    json_run(out)
}

fn pattern<'a>(report: &'a serde_json::Value, type_pattern: &str) -> &'a serde_json::Value {
    report["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type_pattern"] == type_pattern)
        .unwrap()
}

/// A shop's last day: one paid order with its events (PaymentIntent, charge, refund,
/// dispute), a PaymentIntent no payment row knows, an event of another kind, and 250 more
/// `payment_intent.created` so that the listing takes three pages.
fn a_day_of_events(sim: &StripeSim) {
    sim.add_payment_intent(intent("pi_paid", "o-paid", "succeeded"));
    sim.add_payment_intent(intent("pi_stranger", "o-elsewhere", "succeeded"));
    sim.add_refund(SimRefund {
        id: "re_1".into(),
        payment_intent: "pi_paid".into(),
        amount: 300,
        currency: "eur".into(),
        status: "succeeded".into(),
        reason: Some("requested_by_customer".into()),
        created: recent(600),
    });
    sim.add_dispute(SimDispute {
        id: "dp_1".into(),
        payment_intent: "pi_paid".into(),
        amount: 700,
        currency: "eur".into(),
        status: "needs_response".into(),
        reason: "fraudulent".into(),
        created: recent(900),
        due_by: Some(DUE_BY),
    });
    let pi = |id: &str| EventObject::PaymentIntent(id.into());
    sim.add_event(event(
        "evt_created",
        "payment_intent.created",
        1,
        pi("pi_paid"),
    ));
    sim.add_event(event(
        "evt_succeeded",
        "payment_intent.succeeded",
        30,
        pi("pi_paid"),
    ));
    sim.add_event(event(
        "evt_charge",
        "charge.succeeded",
        31,
        EventObject::Charge("pi_paid".into()),
    ));
    sim.add_event(event(
        "evt_refund",
        "refund.created",
        600,
        EventObject::Refund("re_1".into()),
    ));
    sim.add_event(event(
        "evt_dispute",
        "charge.dispute.created",
        900,
        EventObject::Dispute("dp_1".into()),
    ));
    sim.add_event(event(
        "evt_stranger",
        "payment_intent.succeeded",
        40,
        pi("pi_stranger"),
    ));
    sim.add_event(event("evt_customer", "customer.created", 2, pi("pi_paid")));
    for n in 0..250 {
        sim.add_event(event(
            &format!("evt_bulk_{n:03}"),
            "payment_intent.created",
            100 + n,
            pi("pi_stranger"),
        ));
    }
}

#[tokio::test]
async fn events_are_stored_once_linked_and_a_rerun_adds_nothing() {
    let db = events_db().await;
    let mut conn = db.conn().await;
    paid_order(&mut conn, "o-paid", "pi_paid").await;
    let sim = StripeSim::start(KEY).unwrap();
    a_day_of_events(&sim);

    let (code, report) = backfill_events(&db, &sim, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["fetched"], 256, "{report:#}");
    assert_eq!(report["inserted"], 256);
    assert_eq!(report["already_present"], 0);
    // pi_stranger has no payment here: its 251 events are stored unlinked.
    assert_eq!(report["unlinked"], 251);
    assert_eq!(pattern(&report, "payment_intent.*")["pages"], 3);
    assert_eq!(pattern(&report, "charge.*")["fetched"], 2);
    assert_eq!(pattern(&report, "refund.*")["fetched"], 1);
    // 3 pages + 1 + 1: one request per 100 events.
    assert_eq!(sim.requests_to("GET /v1/events"), 5);
    assert_eq!(sim.mutations(), 0);

    let linked: Vec<(String, String)> = sqlx::query_as(
        "SELECT e.stripe_event_id, e.type FROM payment_events e
         JOIN payments p ON p.id = e.payment_id JOIN orders o ON o.id = p.order_id
         WHERE o.id = 'o-paid' ORDER BY e.stripe_created_at",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let linked: Vec<&str> = linked.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        linked,
        [
            "evt_created",
            "evt_succeeded",
            "evt_charge",
            "evt_refund",
            "evt_dispute"
        ]
    );
    let (object, amount, created_matches): (String, i64, bool) = sqlx::query_as(
        "SELECT payload #>> '{data,object,object}', (payload #>> '{data,object,amount}')::bigint,
                stripe_created_at = to_timestamp((payload->>'created')::bigint) AT TIME ZONE 'UTC'
         FROM payment_events WHERE stripe_event_id = 'evt_dispute'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (object.as_str(), amount, created_matches),
        ("dispute", 700, true)
    );
    let customer: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payment_events WHERE type = 'customer.created'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(customer, 0, "not a payment event");

    // Again: nothing added. Then pi_stranger's payment arrives: its events get linked.
    let (_, again) = backfill_events(&db, &sim, &[]);
    assert_eq!(
        (&again["inserted"], &again["already_present"]),
        (&serde_json::json!(0), &serde_json::json!(256))
    );
    paid_order(&mut conn, "o-elsewhere", "pi_stranger").await;
    let (_, relinked) = backfill_events(&db, &sim, &[]);
    assert_eq!(relinked["inserted"], 0);
    assert_eq!(relinked["linked_now"], 251);
    assert_eq!(relinked["unlinked"], 0);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 256);
}

#[tokio::test]
async fn a_killed_backfill_events_resumes_at_the_next_page() {
    let db = events_db().await;
    let mut conn = db.conn().await;
    let sim = StripeSim::start(KEY).unwrap();
    for n in 0..600 {
        sim.add_event(event(
            &format!("evt_{n:04}"),
            "payment_intent.created",
            n,
            EventObject::PaymentIntent("pi_none".into()),
        ));
    }
    sim.set_faults(Faults {
        delay: Some(std::time::Duration::from_millis(300)),
        ..Faults::default()
    });
    let mut child = db
        .paytool_std()
        .env("STRIPE_SECRET_KEY", KEY)
        .args(["backfill", "events", "--stripe-base-url", &sim.base_url()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        &mut conn,
        "SELECT pages >= 2 FROM paytool.event_backfill WHERE type_pattern = $1",
        "payment_intent.*",
        "two pages stored",
        std::time::Duration::from_secs(60),
    )
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!((200..600).contains(&stored), "killed midway: {stored}");

    sim.set_faults(Faults::default());
    sim.reset_counters();
    let (code, report) = backfill_events(&db, &sim, &[]);
    assert_eq!(code, 0, "{report:#}");
    let listing = pattern(&report, "payment_intent.*");
    assert!(listing["resumed_after"].is_string(), "{report:#}");
    assert_eq!(listing["inserted"].as_i64().unwrap(), 600 - stored);
    assert_eq!(
        listing["already_present"], 0,
        "the resumed run starts after the checkpoint"
    );
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT stripe_event_id) FROM payment_events")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (600, 600));
}

#[tokio::test]
async fn a_stripe_outage_midway_exits_3_and_the_next_run_finishes() {
    let db = events_db().await;
    let mut conn = db.conn().await;
    let sim = StripeSim::start(KEY).unwrap();
    for n in 0..250 {
        sim.add_event(event(
            &format!("evt_{n:04}"),
            "charge.succeeded",
            n,
            EventObject::Charge("pi_none".into()),
        ));
    }
    // payment_intent.* (1 page), then charge.* page 1, then Stripe is down.
    sim.set_faults(Faults {
        outage_after: Some(2),
        ..Faults::default()
    });
    db.paytool()
        .env("STRIPE_SECRET_KEY", KEY)
        .args(["backfill", "events", "--max-retries", "1"])
        .args(["--stripe-base-url", &sim.base_url()])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("run again to resume"));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, 100);
    sim.set_faults(Faults::default());
    let (code, report) = backfill_events(&db, &sim, &[]);
    assert_eq!(code, 0);
    assert_eq!(pattern(&report, "charge.*")["inserted"], 150);
    assert!(pattern(&report, "charge.*")["resumed_after"].is_string());
}

#[tokio::test]
async fn usage_errors_exit_2_before_stripe_is_asked() {
    let db = crate::harness::cluster().fresh_db().await;
    let sim = StripeSim::start(KEY).unwrap();
    db.paytool()
        .env_remove("STRIPE_SECRET_KEY")
        .args(["backfill", "events", "--stripe-base-url", &sim.base_url()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("STRIPE_SECRET_KEY"));
    db.paytool()
        .env("STRIPE_SECRET_KEY", KEY)
        .args(["backfill", "events", "--stripe-base-url", &sim.base_url()])
        .assert()
        .code(2);
    db.paytool()
        .env("STRIPE_SECRET_KEY", KEY)
        .args([
            "backfill",
            "events",
            "--since",
            "2026-12-01",
            "--until",
            "2026-11-25",
        ])
        .assert()
        .code(2);
    assert_eq!(sim.requests(), 0);
}

/// The simulator's events and disputes decode with async-stripe's own types (which reject an
/// object missing a required field), not only with paytool's serde reading.
#[tokio::test]
async fn simulated_events_and_disputes_decode_as_async_stripe_types() {
    let sim = StripeSim::start(KEY).unwrap();
    a_day_of_events(&sim);
    let client = paytool::stripe::StripeAccess {
        key: Some(KEY.into()),
        base_url: sim.base_url(),
        max_rps: 100,
        concurrency: 1,
        request_timeout: std::time::Duration::from_secs(10),
        max_retries: 0,
    }
    .client(KEY.into())
    .unwrap();
    let events = stripe_core::event::ListEvent::new()
        .limit(100)
        .send(&client)
        .await
        .expect("events decode as stripe_shared::Event");
    assert_eq!(events.data.len(), 100);
    let types: std::collections::BTreeSet<String> = stripe_core::event::ListEvent::new()
        .type_("charge.*")
        .send(&client)
        .await
        .unwrap()
        .data
        .iter()
        .map(|e| e.type_.to_string())
        .collect();
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        ["charge.dispute.created", "charge.succeeded"]
    );
    let disputes = stripe_core::dispute::ListDispute::new()
        .send(&client)
        .await
        .expect("disputes decode as stripe_shared::Dispute");
    assert_eq!(disputes.data[0].id.as_str(), "dp_1");
    assert_eq!(disputes.data[0].evidence_details.due_by, Some(DUE_BY));
}
