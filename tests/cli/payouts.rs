//! `paytool reconcile payouts` against the Stripe simulator: each finding once, a payout in
//! another currency than its orders, a payout whose balance transactions span pages, 429s
//! during the walk, and only GET requests.

use paytool::stripe_sim::{
    Faults, SimBalanceTransaction, SimPaymentIntent, SimPayout, SimRefund, StripeSim, TxnSource,
};

use crate::harness::{TestDb, json, seeded_and_migrated};

const KEY: &str = "sk_test_payouts";
/// 2026-01-10 00:00 UTC.
const DAY0: i64 = 1_768_003_200;
const DAY: i64 = 86_400;

fn intent(id: &str, order: &str, amount: i64, currency: &str) -> SimPaymentIntent {
    SimPaymentIntent {
        id: id.into(),
        amount,
        currency: currency.into(),
        status: "succeeded".into(),
        created: DAY0 - 3 * DAY,
        order_id: Some(order.into()),
        charge: Some((format!("ch_{id}"), DAY0 - 3 * DAY)),
        last_error: None,
    }
}

fn txn(
    id: &str,
    category: &str,
    amount: i64,
    fee: i64,
    source: TxnSource,
    payout: Option<&str>,
) -> SimBalanceTransaction {
    SimBalanceTransaction {
        id: id.into(),
        type_: match category {
            "dispute" => "adjustment".into(),
            other => other.into(),
        },
        reporting_category: category.into(),
        amount,
        fee,
        currency: "eur".into(),
        exchange_rate: None,
        created: DAY0 - 3 * DAY,
        available_on: DAY0 - DAY,
        source,
        payout: payout.map(Into::into),
    }
}

fn payout(id: &str, amount: i64, currency: &str, arrival_day: i64, status: &str) -> SimPayout {
    SimPayout {
        id: id.into(),
        amount,
        currency: currency.into(),
        created: DAY0 + (arrival_day - 2) * DAY,
        arrival_date: DAY0 + arrival_day * DAY,
        status: status.into(),
        failure_code: (status == "failed").then(|| "account_closed".into()),
        reconciliation_status: if status == "failed" {
            "not_applicable".into()
        } else {
            "completed".into()
        },
    }
}

/// The payout's own balance transaction: the money leaving the balance for the bank.
fn own(p: &SimPayout) -> SimBalanceTransaction {
    SimBalanceTransaction {
        currency: p.currency.clone(),
        type_: "payout".into(),
        ..txn(
            &format!("txn_{}", p.id),
            "payout",
            -p.amount,
            0,
            TxnSource::Payout(p.id.clone()),
            None,
        )
    }
}

/// The shop's orders behind the PaymentIntents, PAID.
async fn orders(db: &TestDb, orders: &[(&str, &str, i64)]) {
    let mut conn = db.conn().await;
    for (order, pi, amount) in orders {
        sqlx::query(
            "INSERT INTO orders (id, user_id, status, amount_total_cents, currency, stripe_payment_intent_id, created_at, paid_at)
             SELECT $1, min(id), 'PAID', $3, 'EUR', $2, '2026-01-07', '2026-01-07' FROM users",
        )
        .bind(order)
        .bind(pi)
        .bind(amount)
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

fn payouts_run(db: &TestDb, sim: &StripeSim, format: &str, extra: &[&str]) -> std::process::Output {
    db.paytool()
        .env("STRIPE_SECRET_KEY", KEY)
        .args(["reconcile", "payouts", "--format", format])
        .args(["--since", "2026-01-01", "--until", "2026-01-31"])
        .args(["--stripe-base-url", &sim.base_url()])
        .args(extra)
        .output()
        .unwrap()
}

/// A month with one payout of every situation.
async fn a_month_of_payouts() -> (TestDb, StripeSim) {
    let db = seeded_and_migrated(300).await;
    orders(
        &db,
        &[
            ("o-p1", "pi_p1", 1_000),
            ("o-p2", "pi_p2", 5_000),
            ("o-p3", "pi_p3", 2_000),
            ("o-p4", "pi_p4", 1_000),
            ("o-late", "pi_late", 3_000),
        ],
    )
    .await;
    let sim = StripeSim::start(KEY).unwrap();
    for (pi, order, amount, currency) in [
        ("pi_p1", "o-p1", 1_000, "eur"),
        ("pi_p2", "o-p2", 5_000, "eur"),
        ("pi_p3", "o-p3", 2_000, "eur"),
        ("pi_p4", "o-p4", 1_000, "eur"),
        ("pi_late", "o-late", 3_000, "eur"),
        ("pi_stranger", "o-nobody", 1_000, "eur"),
    ] {
        sim.add_payment_intent(intent(pi, order, amount, currency));
    }
    sim.add_refund(SimRefund {
        id: "re_p2".into(),
        payment_intent: "pi_p2".into(),
        amount: 300,
        currency: "eur".into(),
        status: "succeeded".into(),
        reason: None,
        created: DAY0 - 2 * DAY,
    });
    // po_ok: charges, a refund, a dispute and its fee: 941 + 4,825 − 300 + 1,912 − 3,500.
    let ok = payout("po_ok", 941 + 4_825 - 300 + 1_912 - 3_500, "eur", 2, "paid");
    for t in [
        txn(
            "txn_p1",
            "charge",
            1_000,
            59,
            TxnSource::Charge("pi_p1".into()),
            Some("po_ok"),
        ),
        txn(
            "txn_p2",
            "charge",
            5_000,
            175,
            TxnSource::Charge("pi_p2".into()),
            Some("po_ok"),
        ),
        txn(
            "txn_re_p2",
            "refund",
            -300,
            0,
            TxnSource::Refund("re_p2".into()),
            Some("po_ok"),
        ),
        txn(
            "txn_p3",
            "charge",
            2_000,
            88,
            TxnSource::Charge("pi_p3".into()),
            Some("po_ok"),
        ),
        SimBalanceTransaction {
            available_on: DAY0 - DAY,
            ..txn(
                "txn_dp_p3",
                "dispute",
                -2_000,
                1_500,
                TxnSource::Charge("pi_p3".into()),
                Some("po_ok"),
            )
        },
        own(&ok),
    ] {
        sim.add_balance_transaction(t);
    }
    sim.add_payout(ok);
    // po_short: a stranger's charge and a type paytool does not know; 9 cents missing.
    let short = payout("po_short", 900, "eur", 4, "paid");
    for t in [
        txn(
            "txn_stranger",
            "charge",
            1_000,
            59,
            TxnSource::Charge("pi_stranger".into()),
            Some("po_short"),
        ),
        SimBalanceTransaction {
            type_: "climate_order_purchase".into(),
            ..txn(
                "txn_climate",
                "climate_order_purchase",
                -50,
                0,
                TxnSource::Nothing,
                Some("po_short"),
            )
        },
        own(&short),
    ] {
        sim.add_balance_transaction(t);
    }
    sim.add_payout(short);
    // po_failed: the bank refused it.
    sim.add_payout(payout("po_failed", 5_000, "eur", 6, "failed"));
    // po_usd: an order in EUR, settled in USD.
    let usd = payout("po_usd", 1_080 - 61, "usd", 8, "paid");
    sim.add_balance_transaction(SimBalanceTransaction {
        currency: "usd".into(),
        exchange_rate: Some(1.08),
        ..txn(
            "txn_p4",
            "charge",
            1_080,
            61,
            TxnSource::Charge("pi_p4".into()),
            Some("po_usd"),
        )
    });
    sim.add_balance_transaction(own(&usd));
    sim.add_payout(usd);
    // o-late: its charge has been available for weeks and is in no payout.
    sim.add_balance_transaction(SimBalanceTransaction {
        created: DAY0 - 5 * DAY,
        available_on: DAY0 - 3 * DAY,
        ..txn(
            "txn_late",
            "charge",
            3_000,
            117,
            TxnSource::Charge("pi_late".into()),
            None,
        )
    });
    (db, sim)
}

fn payout_line<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["payouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {report:#}"))
}

#[tokio::test]
async fn every_payout_is_explained_and_each_finding_is_found_once() {
    let (db, sim) = a_month_of_payouts().await;
    let out = payouts_run(&db, &sim, "json", &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out.stdout);
    for kind in [
        "payout_total_mismatch",
        "payout_failed",
        "unmatched_balance_transaction",
        "paid_order_not_paid_out",
        "unknown_balance_transaction_type",
    ] {
        assert_eq!(report["summary"][kind], 1, "{kind}: {report:#}");
    }
    let ok = payout_line(&report, "po_ok");
    assert_eq!(ok["balanced"], true, "{ok:#}");
    assert_eq!(ok["gross_charges"], 8_000);
    assert_eq!(ok["fees"], -(59 + 175 + 88));
    assert_eq!(ok["refunds"], -300);
    assert_eq!(ok["disputes"], -2_000);
    assert_eq!(ok["dispute_fees"], -1_500);
    assert_eq!(ok["net"], ok["amount"]);
    assert_eq!(ok["orders"], 3);
    let usd = payout_line(&report, "po_usd");
    assert_eq!(
        (usd["currency"].as_str(), usd["balanced"].as_bool()),
        (Some("USD"), Some(true))
    );
    assert_eq!(payout_line(&report, "po_short")["balanced"], false);
    let failed = payout_line(&report, "po_failed");
    assert_eq!(
        (failed["itemized"].as_bool(), &failed["balanced"]),
        (Some(false), &serde_json::Value::Null)
    );
    let finding = |kind: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == kind)
            .unwrap()
            .clone()
    };
    assert_eq!(
        finding("unmatched_balance_transaction")["balance_transaction_id"],
        "txn_stranger"
    );
    assert_eq!(
        finding("unmatched_balance_transaction")["payment_intent_id"],
        "pi_stranger"
    );
    assert_eq!(finding("paid_order_not_paid_out")["order_id"], "o-late");
    assert_eq!(
        finding("unknown_balance_transaction_type")["balance_transaction_id"],
        "txn_climate"
    );
    assert!(
        finding("payout_failed")["detail"]
            .as_str()
            .unwrap()
            .contains("account_closed")
    );
    // The budget: one page of payouts, one per itemized payout; for the one PAID order no
    // payout paid out, a page of the window's charges (five paid orders: cheaper than two
    // lookups); and the stranger's PaymentIntent, looked up for its metadata.order_id.
    assert_eq!(report["request_budget"], 1 + 3 + 1 + 1);
    assert_eq!(report["stripe_requests"], report["request_budget"]);
    assert_eq!(sim.mutations(), 0, "GET requests only");
}

#[tokio::test]
async fn the_accountants_csv_has_one_line_per_balance_transaction_in_minor_units() {
    let (db, sim) = a_month_of_payouts().await;
    let out = payouts_run(&db, &sim, "csv", &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "payout_id,arrival_date,balance_transaction_id,type,reporting_category,order_id,payment_intent_id,source_id,currency,gross_minor_units,fee_minor_units,net_minor_units,exchange_rate,created,available_on"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(
        rows.len(),
        6 + 3 + 2,
        "every transaction of the itemized payouts: {text}"
    );
    assert!(
        rows.iter().any(|r| r.starts_with(
            "po_ok,2026-01-12,txn_p1,charge,charge,o-p1,pi_p1,ch_pi_p1,EUR,1000,59,941,,"
        )),
        "{text}"
    );
    assert!(
        rows.iter().any(|r| r.contains(",txn_p4,charge,charge,o-p4,pi_p4,ch_pi_p4,USD,1080,61,1019,1.08,")),
        "{text}"
    );
}

#[tokio::test]
async fn a_payout_of_several_pages_adds_up_through_429s() {
    let db = seeded_and_migrated(300).await;
    let sim = StripeSim::start(KEY).unwrap();
    let n = 250;
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, amount_total_cents, currency, stripe_payment_intent_id, created_at, paid_at)
         SELECT 'o-bulk-' || g, (SELECT min(id) FROM users), 'PAID', 1000, 'EUR', 'pi_bulk_' || g, '2026-01-07', '2026-01-07'
         FROM generate_series(1, $1) AS g",
    )
    .bind(n)
    .execute(&mut db.conn().await)
    .await
    .unwrap();
    let mut total = 0;
    for i in 1..=n {
        let pi = format!("pi_bulk_{i}");
        sim.add_payment_intent(intent(&pi, &format!("o-bulk-{i}"), 1_000, "eur"));
        sim.add_balance_transaction(txn(
            &format!("txn_bulk_{i}"),
            "charge",
            1_000,
            29 + i % 7,
            TxnSource::Charge(pi),
            Some("po_big"),
        ));
        total += 1_000 - (29 + i % 7);
    }
    let big = payout("po_big", total, "eur", 3, "paid");
    sim.add_balance_transaction(own(&big));
    sim.add_payout(big);
    // One PAID order whose money never left the balance: among 251 paid orders, two lookups
    // cost less than three pages of the month's charges.
    orders(&db, &[("o-lost", "pi_lost", 1_000)]).await;
    sim.add_payment_intent(intent("pi_lost", "o-lost", 1_000, "eur"));
    sim.add_balance_transaction(txn(
        "txn_lost",
        "charge",
        1_000,
        29,
        TxnSource::Charge("pi_lost".into()),
        None,
    ));
    sim.set_faults(Faults {
        rate_limit_every: Some(3),
        ..Faults::default()
    });
    let out = payouts_run(&db, &sim, "json", &["--max-retries", "8"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report = json(&out.stdout);
    let line = payout_line(&report, "po_big");
    assert_eq!(line["balanced"], true, "{line:#}");
    assert_eq!(line["balance_transactions"], n as u64);
    assert_eq!(line["orders"], n as u64);
    assert_eq!(
        report["summary"]["paid_order_not_paid_out"], 1,
        "{report:#}"
    );
    assert_eq!(report["findings"][0]["order_id"], "o-lost");
    // 1 page of payouts; 251 transactions with its own: 3 pages; o-lost looked up: 2.
    assert_eq!(report["request_budget"], 1 + 3 + 2);
    assert!(
        report["stripe_retries"].as_u64().unwrap() >= 1,
        "429s were met: {report:#}"
    );
    assert_eq!(
        report["stripe_requests"].as_u64().unwrap(),
        report["request_budget"].as_u64().unwrap() + report["stripe_retries"].as_u64().unwrap()
    );
    assert_eq!(sim.mutations(), 0);
}

#[tokio::test]
async fn one_payout_by_id() {
    let (db, sim) = a_month_of_payouts().await;
    let out = db
        .paytool()
        .env("STRIPE_SECRET_KEY", KEY)
        .args([
            "reconcile",
            "payouts",
            "--payout",
            "po_ok",
            "--format",
            "json",
        ])
        .args(["--stripe-base-url", &sim.base_url()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out.stdout);
    assert_eq!(report["payouts"].as_array().unwrap().len(), 1);
    assert_eq!(payout_line(&report, "po_ok")["balanced"], true);
    let table = db
        .paytool()
        .env("STRIPE_SECRET_KEY", KEY)
        .args(["reconcile", "payouts", "--payout", "po_nope"])
        .args(["--stripe-base-url", &sim.base_url()])
        .output()
        .unwrap();
    assert_eq!(
        table.status.code(),
        Some(3),
        "an unknown payout is Stripe's 404"
    );
    assert!(String::from_utf8_lossy(&table.stderr).contains("No such payout"));
    // Reconcile's own flags are not payouts': the subcommand takes its own.
    db.paytool()
        .args(["reconcile", "--apply", "payouts"])
        .assert()
        .code(2);
}

#[tokio::test]
async fn a_baseline_accepts_what_a_person_looked_at_and_only_new_findings_fail() {
    let (db, sim) = a_month_of_payouts().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payouts-baseline.json");
    let file_text = file.display().to_string();
    let out = payouts_run(
        &db,
        &sim,
        "json",
        &[
            "--write-baseline",
            &file_text,
            "--reason",
            "booked by hand, INC-7",
            "--accepted-by",
            "accounting",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = json(&out.stdout);
    assert_eq!(written["baseline"]["written"], 5);
    let out = payouts_run(&db, &sim, "json", &["--baseline", &file_text]);
    assert_eq!(out.status.code(), Some(0));
    let report = json(&out.stdout);
    assert_eq!(report["findings"].as_array().unwrap().len(), 0);
    assert_eq!(report["known_findings"].as_array().unwrap().len(), 5);
    // A new one: another failed payout.
    sim.add_payout(payout("po_failed_again", 3_000, "eur", 9, "failed"));
    let out = payouts_run(&db, &sim, "json", &["--baseline", &file_text]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out.stdout);
    assert_eq!(
        report["findings"][0]["payout_id"], "po_failed_again",
        "{report:#}"
    );
    assert_eq!(
        report["summary"]["payout_failed"], 1,
        "only the new one counts"
    );
}

fn digest(report: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "payouts": report["payouts"],
        "summary": report["summary"],
        "findings": report["findings"],
    })
}

#[tokio::test]
async fn a_report_run_gives_the_same_books_with_one_post_and_no_page_of_transactions() {
    let (db, sim) = a_month_of_payouts().await;
    let api = json(&payouts_run(&db, &sim, "json", &[]).stdout);
    sim.reset_counters();
    let base = sim.base_url();
    let out = payouts_run(
        &db,
        &sim,
        "json",
        &["--source", "reports", "--stripe-files-base-url", &base],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let reports = json(&out.stdout);
    assert_eq!(
        digest(&reports),
        digest(&api),
        "the same books, to the cent"
    );
    assert_eq!(reports["source"], "reports");
    assert!(reports["report_interval"].is_array(), "{reports:#}");
    assert!(reports.get("topped_up_from_api").is_none(), "{reports:#}");
    assert_eq!(sim.mutations(), 1, "one POST: the report run");
    assert_eq!(sim.report_runs(), 1);
    assert_eq!(
        sim.requests_to("GET /v1/balance_transactions"),
        1,
        "no payout's transactions paged: only the window's charges, for the order not paid out"
    );
    // Report type, run, file: three requests instead of one page per payout.
    assert_eq!(reports["request_budget"], 1 + 3 + 1 + 1);
    // The CSV is the same too.
    let csv =
        |extra: &[&str]| String::from_utf8(payouts_run(&db, &sim, "csv", extra).stdout).unwrap();
    let mut from_api: Vec<String> = csv(&[]).lines().map(str::to_owned).collect();
    let mut from_report: Vec<String> =
        csv(&["--source", "reports", "--stripe-files-base-url", &base])
            .lines()
            .map(|l| l.to_owned())
            .collect();
    from_api.sort();
    from_report.sort();
    // The report has categories, not types, and no exchange rate: compare the money.
    let money = |line: &String| -> String {
        let f: Vec<&str> = line.split(',').collect();
        [f[0], f[2], f[5], f[6], f[8], f[9], f[10], f[11]].join(",")
    };
    assert_eq!(
        from_api.iter().map(money).collect::<Vec<_>>(),
        from_report.iter().map(money).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn where_the_reports_data_ends_the_api_tops_it_up() {
    let (db, sim) = a_month_of_payouts().await;
    let api = json(&payouts_run(&db, &sim, "json", &[]).stdout);
    // The report's data stops before po_usd arrives (day 8).
    sim.set_report_data_available(0, DAY0 + 5 * DAY);
    let base = sim.base_url();
    let out = payouts_run(
        &db,
        &sim,
        "json",
        &["--source", "reports", "--stripe-files-base-url", &base],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = json(&out.stdout);
    assert_eq!(digest(&reports), digest(&api));
    assert_eq!(reports["topped_up_from_api"], serde_json::json!(["po_usd"]));
    assert_eq!(
        reports["report_interval"][1].as_str().unwrap(),
        "2026-01-15T00:00:00Z",
        "clamped to data_available_end: {reports:#}"
    );
}

#[tokio::test]
async fn auto_takes_the_report_only_for_a_big_window() {
    let (db, sim) = a_month_of_payouts().await;
    let out = payouts_run(&db, &sim, "json", &[]);
    let report = json(&out.stdout);
    assert_eq!(report["source"], "api", "five paid orders: a few pages");
    assert_eq!(sim.mutations(), 0, "no report run, no POST");
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, amount_total_cents, currency, created_at, paid_at)
         SELECT 'o-many-' || g, (SELECT min(id) FROM users), 'PAID', 1000, 'EUR', '2026-01-07', '2026-01-07'
         FROM generate_series(1, $1) AS g",
    )
    // The threshold --help and docs/payouts.md state: 50,000 paid orders in the window.
    .bind(50_000)
    .execute(&mut db.conn().await)
    .await
    .unwrap();
    let base = sim.base_url();
    let out = payouts_run(&db, &sim, "json", &["--stripe-files-base-url", &base]);
    let report = json(&out.stdout);
    assert_eq!(report["source"], "reports", "{report:#}");
    assert_eq!(sim.report_runs(), 1);
}

#[tokio::test]
async fn money_whose_order_lost_its_link_is_found_through_the_payment_intents_metadata() {
    let db = seeded_and_migrated(300).await;
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, amount_total_cents, currency, created_at, paid_at)
         SELECT 'o-meta', min(id), 'PAID', 1000, 'EUR', '2026-01-07', '2026-01-07' FROM users",
    )
    .execute(&mut db.conn().await)
    .await
    .unwrap();
    let sim = StripeSim::start(KEY).unwrap();
    sim.add_payment_intent(intent("pi_meta", "o-meta", 1_000, "eur"));
    let p = payout("po_meta", 941, "eur", 2, "paid");
    sim.add_balance_transaction(txn(
        "txn_meta",
        "charge",
        1_000,
        59,
        TxnSource::Charge("pi_meta".into()),
        Some("po_meta"),
    ));
    sim.add_balance_transaction(own(&p));
    sim.add_payout(p);
    let out = payouts_run(&db, &sim, "json", &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out.stdout);
    assert_eq!(payout_line(&report, "po_meta")["orders"], 1, "{report:#}");
    assert_eq!(sim.requests_to("GET /v1/payment_intents/{id}"), 1);
}
