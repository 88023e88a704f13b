//! The human output of every report, pinned at 80 and 200 columns (insta snapshots in
//! `src/report/snapshots/`). Reports are built by hand with fixed ids, times and durations, so
//! nothing needs filtering; `cargo insta review` shows a change.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use unicode_width::UnicodeWidthStr;

use super::{Render, Screen};
use crate::backfill::{BackfillReport, StepReport, Unresolved};
use crate::db::IdType;
use crate::human::Money;
use crate::migrate::history::compare;
use crate::migrate::plan::plan_step;
use crate::migrate::steps::{Phase, STEPS, StepKind};
use crate::migrate::{LockPolicy, MigratePlan, PreflightReport, StatusReport};
use crate::reconcile::finding::{Finding, Kind, Repair, summarize};
use crate::reconcile::{ReconcileReport, Window};
use crate::seed::SeedReport;
use crate::verify::{CHECKS, Category, CheckResult, Status, Summary, VerifyReport};

const WIDTHS: [usize; 2] = [80, 200];

fn rendered<R: Render>(report: &R, width: usize) -> String {
    let mut out = Vec::new();
    report
        .render_table(&mut out, Screen::new(width))
        .expect("rendering to memory");
    String::from_utf8(out).expect("UTF-8 output")
}

/// Snapshots `report` at every width, and checks the one rule that holds everywhere: no line
/// wider than the screen, except one that holds a single word too long for it.
fn pin<R: Render>(name: &str, report: &R) {
    for width in WIDTHS {
        let text = rendered(report, width);
        for line in text.lines() {
            let unbreakable = line.split_whitespace().count() <= 2;
            assert!(
                line.width() <= width || unbreakable,
                "{name} at {width} columns: a line of {}:\n{line}",
                line.width()
            );
        }
        insta::assert_snapshot!(format!("{name}_{width}"), text);
    }
}

const ORDER_EUR: &str = "a74b3881-80f3-7677-be4a-9f2c04d1e6b0";
const ORDER_JPY: &str = "0c5e0a1f-2b7d-4c1e-9a55-7d3f8e2b6c11";

fn finding(kind: Kind, order: Option<&str>, pi: &str, ours: &str, stripe: &str) -> Finding {
    Finding {
        kind,
        order_id: order.map(str::to_owned),
        payment_intent_id: Some(pi.to_owned()),
        ours: ours.to_owned(),
        stripe: stripe.to_owned(),
        database_amount: None,
        stripe_amount: None,
        stripe_object_id: None,
        effect_missing: None,
        repairs: Vec::new(),
    }
}

fn reconcile_report() -> ReconcileReport {
    let eur_total = Money::new(2666, "EUR");
    let eur_charged = Money::new(3166, "EUR");
    let jpy_total = Money::new(1500, "JPY");
    let jpy_refunded = Money::new(500, "JPY");
    let mut amount = finding(
        Kind::AmountMismatch,
        Some(ORDER_EUR),
        "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        &eur_total.to_string(),
        &eur_charged.to_string(),
    );
    amount.database_amount = Some(eur_total.clone());
    amount.stripe_amount = Some(eur_charged);
    let mut status = finding(
        Kind::StatusMismatch,
        Some(ORDER_EUR),
        "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        "PENDING",
        "succeeded",
    );
    status.repairs.push(Repair::MarkPaid {
        order_id: ORDER_EUR.to_owned(),
        paid_at: None,
    });
    let mut refund = finding(
        Kind::RefundMismatch,
        Some(ORDER_JPY),
        "pi_3MtweELkdIwHu7ix0Dt0gF2H",
        &format!("{} refunded (0 refunds)", Money::new(0, "JPY")),
        &format!("{jpy_refunded} refunded (1 refund)"),
    );
    refund.database_amount = Some(Money::new(0, "JPY"));
    refund.stripe_amount = Some(jpy_refunded);
    let duplicate = finding(
        Kind::DuplicatePaymentIntents,
        Some(ORDER_JPY),
        "pi_3MtweELkdIwHu7ix0Dt0gF2H",
        &format!("one order of {jpy_total}"),
        "2 succeeded PaymentIntents: pi_3MtweELkdIwHu7ix0Dt0gF2H, pi_3MtwfQLkdIwHu7ix1Zq9pQ2b",
    );
    let mut dispute = finding(
        Kind::DisputedPayment,
        Some(ORDER_EUR),
        "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        &format!("order PAID of {eur_total}"),
        &format!(
            "needs_response dispute dp_1Pgc71B7WZ01zgkWMevJiAUx of {eur_total}, reason fraudulent, evidence due 2026-11-22"
        ),
    );
    dispute.stripe_object_id = Some("dp_1Pgc71B7WZ01zgkWMevJiAUx".to_owned());
    let findings = vec![status, amount, duplicate, refund, dispute];
    ReconcileReport {
        run_id: "5f0c2b9e-0000-4000-8000-000000000001".to_owned(),
        database: "postgres://shop@db.internal:5432/shop".to_owned(),
        stripe: "https://api.stripe.com/".to_owned(),
        window: Window {
            since: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            until: Utc.with_ymd_and_hms(2026, 11, 15, 23, 59, 59).unwrap(),
            order: None,
        },
        apply: false,
        orders_checked: 1_204,
        payment_intents_listed: 1_210,
        payment_intents_retrieved: 2,
        refunds_listed: 14,
        disputes_listed: 1,
        failed_deliveries_listed: 0,
        stripe_requests: 20,
        stripe_retries: 1,
        duration_ms: 1_840,
        summary: summarize(&findings),
        repairs_pending: 1,
        findings,
        known_findings: Vec::new(),
        baseline: None,
        applied: Vec::new(),
    }
}

#[test]
fn reconcile_shows_money_as_money_in_eur_and_jpy() {
    let report = reconcile_report();
    pin("reconcile", &report);
    let text = rendered(&report, 80);
    for money in ["26.66 EUR", "31.66 EUR", "1,500 JPY", "500 JPY"] {
        assert!(text.contains(money), "{money} missing:\n{text}");
    }
    for id in [ORDER_EUR, ORDER_JPY, "pi_3MtwBwLkdIwHu7ix28a3tqPa"] {
        assert!(text.contains(id), "{id} split or missing:\n{text}");
    }
}

fn check_result(id: &str, status: Status, count: i64, sample: &[&str]) -> CheckResult {
    let check = CHECKS
        .iter()
        .find(|c| c.id == id)
        .expect("a check of CHECKS");
    CheckResult {
        id: check.id,
        category: check.category,
        severity: check.severity,
        status,
        count,
        sample: sample.iter().map(|s| (*s).to_owned()).collect(),
        meaning: check.meaning,
        duration_ms: 3,
    }
}

fn verify_report() -> VerifyReport {
    let mut checks: Vec<CheckResult> = CHECKS
        .iter()
        .filter(|c| c.category == Category::Schema)
        .map(|c| check_result(c.id, Status::Pass, 0, &[]))
        .collect();
    checks.push(check_result(
        "data.order_totals",
        Status::Fail,
        4,
        &[ORDER_JPY, ORDER_EUR, "b1c2d3e4-0000-4000-8000-00000000000a"],
    ));
    checks.push(check_result(
        "data.items_unresolvable",
        Status::Warn,
        1,
        &["i-00000042-1"],
    ));
    checks.push(check_result("data.currency_codes", Status::Skipped, 0, &[]));
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let summary = Summary {
        passed: count(Status::Pass),
        failed: count(Status::Fail),
        warnings: count(Status::Warn),
        notes: count(Status::Note),
        skipped: count(Status::Skipped),
    };
    VerifyReport {
        database: "postgres://shop@db.internal:5432/shop".to_owned(),
        id_type: IdType::Text,
        duration_ms: 412,
        summary,
        checks,
    }
}

#[test]
fn verify_fits_80_columns_and_explains_what_it_found() {
    let report = verify_report();
    pin("verify", &report);
    let narrow = rendered(&report, 80);
    // One line per check at 80 columns; the explanations of what was found come after.
    assert!(
        narrow.lines().count() < report.checks.len() + 20,
        "{narrow}"
    );
    assert!(narrow.contains(ORDER_JPY), "{narrow}");
    assert!(
        narrow.contains('—'),
        "a skipped check shows no count:\n{narrow}"
    );
}

fn step_report(step: &'static str, scanned: i64, changed: i64, unresolved: i64) -> StepReport {
    StepReport {
        step,
        scanned,
        changed,
        skipped: scanned - changed - unresolved,
        unresolved,
        duration_ms: 8_412,
        rows_per_second: 2_247,
        batches: 210,
        longest_batch_ms: 187,
        p50_batch_ms: 96,
        p95_batch_ms: 131,
        last_batch_size: 1_250,
        retries: 1,
        ..StepReport::default()
    }
}

fn backfill_report(dry_run: bool) -> BackfillReport {
    let mut items = step_report("items", 400_001, 399_978, 23);
    items.unresolved_by_reason = vec![Unresolved {
        reason: "product_deleted".to_owned(),
        rows: 23,
        sample: (1..=10).map(|n| format!("i-{n:08}-1")).collect(),
    }];
    let mut orders = step_report("orders", 200_000, 199_980, 20);
    orders.unresolved_by_reason = vec![Unresolved {
        reason: "items_without_snapshot".to_owned(),
        rows: 2,
        sample: vec!["o-00000001".to_owned(), "o-00000007".to_owned()],
    }];
    // The orders step writes the payments; the payments step had nothing queued.
    orders.payments_written = 199_980;
    let payments = StepReport {
        step: "payments",
        changed: 199_980,
        duration_ms: 3,
        last_batch_size: 1_000,
        ..StepReport::default()
    };
    let steps = vec![items, orders, payments];
    let steps = if dry_run {
        steps
            .into_iter()
            .map(|s| StepReport {
                step: s.step,
                // A dry run's payments step reads what it would write or leave unresolved.
                scanned: if s.step == "payments" {
                    s.changed + s.unresolved
                } else {
                    s.scanned
                },
                changed: s.changed,
                skipped: s.skipped,
                unresolved: s.unresolved,
                unresolved_by_reason: s.unresolved_by_reason,
                duration_ms: 1_120,
                ..StepReport::default()
            })
            .collect()
    } else {
        steps
    };
    BackfillReport {
        interrupted: false,
        held: Default::default(),
        database: "postgres://shop@db.internal:5432/shop".to_owned(),
        dry_run,
        strict: false,
        rounds: 1,
        steps,
        indexes_built: if dry_run {
            Vec::new()
        } else {
            vec![
                "order_items_pending_snapshot_idx",
                "orders_pending_total_idx",
            ]
        },
        indexes_not_built: None,
    }
}

#[test]
fn backfill_runs_and_dry_runs() {
    pin("backfill", &backfill_report(false));
    let dry = backfill_report(true);
    pin("backfill_dry_run", &dry);
    let text = rendered(&dry, 200);
    assert!(!text.contains("rows/s") && !text.contains("p95"), "{text}");
}

fn migrate_plan() -> MigratePlan {
    let rows: BTreeMap<String, Option<i64>> = [
        ("orders", 200_000),
        ("order_items", 400_001),
        ("stocks", 1_000),
        ("users", 5_000),
        ("products", 200),
    ]
    .into_iter()
    .map(|(t, n)| (t.to_owned(), Some(n)))
    .collect();
    let policy = LockPolicy::default();
    let planned = |phase: Phase| {
        STEPS
            .iter()
            .filter(|s| s.phase == phase)
            .map(|s| plan_step(s, &rows, &policy, 5_000))
            .collect::<Vec<_>>()
    };
    MigratePlan {
        overridden_timeouts: Vec::new(),
        database: "postgres://shop@db.internal:5432/shop".to_owned(),
        id_type: IdType::Text,
        steps_total: STEPS.len(),
        steps_applied: 0,
        pending: planned(Phase::Migrate),
        after_backfill: planned(Phase::AfterBackfill),
        cleanup: planned(Phase::Cleanup),
        preflight: PreflightReport::default(),
        show_sql: false,
    }
}

#[test]
fn migrate_plan_and_status() {
    pin("migrate_plan", &migrate_plan());
    let (steps, _) = compare(STEPS, &[]);
    let status = StatusReport {
        running: None,
        database: "postgres://shop@db.internal:5432/shop".to_owned(),
        applied: 0,
        pending: steps.iter().filter(|s| s.phase == Phase::Migrate).count(),
        interrupted: 0,
        drift: 0,
        cleanup_pending: 2,
        after_backfill_pending: 2,
        steps,
    };
    pin("migrate_status", &status);
}

#[test]
fn seed() {
    let report = SeedReport {
        database: "postgres://shop@db.internal:5432/shop".to_owned(),
        rows: [("orders", 200_000), ("order_items", 400_001)]
            .into_iter()
            .map(|(t, n)| (t.to_owned(), n))
            .collect(),
        duration_ms: 12_345,
        stock_anomalies: true,
    };
    pin("seed", &report);
}

#[test]
fn migrate_apply_refused_and_down() {
    use crate::migrate::{
        ApplyOutcome, ApplyReport, DownReport, MigrateOutput, PreflightFinding, StepRun,
    };
    let steps: Vec<StepRun> = STEPS
        .iter()
        .filter(|s| s.phase == Phase::Migrate)
        .map(|s| StepRun {
            version: s.version,
            name: s.name,
            kind: s.kind,
            duration_ms: 12,
            retries: u32::from(s.name == "022_orders_status_swap"),
            rows_changed: (s.kind == StepKind::Batched).then_some(200_000),
            detail: (s.name == "007_stocks_slot_unique_index")
                .then(|| "rebuilt an INVALID index left by an interrupted run".to_owned()),
        })
        .collect();
    let applied = ApplyReport {
        database: "postgres://shop@db.internal:5432/shop".to_owned(),
        phase: Phase::Migrate,
        outcome: ApplyOutcome::Applied,
        waited_for_other_run_ms: 0,
        steps,
        drift: Vec::new(),
        preflight: PreflightReport::default(),
        duration_ms: 4_210,
    };
    pin("migrate_apply", &MigrateOutput::Apply(applied));
    let refused = ApplyReport {
        database: "postgres://shop@db.internal:5432/shop".to_owned(),
        phase: Phase::Migrate,
        outcome: ApplyOutcome::RefusedDirtyData,
        waited_for_other_run_ms: 0,
        steps: Vec::new(),
        drift: Vec::new(),
        preflight: PreflightReport {
            checks_run: vec!["stocks_negative_quantity"],
            findings: vec![PreflightFinding {
                check: "stocks_negative_quantity",
                guards_step: 9,
                problem: "stock quantities below zero break CHECK stocks_quantity_non_negative (quantity >= 0)",
                offending_rows: 3,
                sample: vec![format!(
                    "stocks {ORDER_EUR} (machine {ORDER_JPY}, slot 4, quantity -2)"
                )],
                fix: "count the slots again and set the real quantity, e.g. UPDATE stocks SET quantity = 0 WHERE quantity < 0 AND id IN (...);",
            }],
        },
        duration_ms: 80,
    };
    pin("migrate_refused", &MigrateOutput::Apply(refused));
    let down = DownReport {
        database: "postgres://shop@db.internal:5432/shop".to_owned(),
        destroyed_rows: vec![("payments".to_owned(), 199_980), ("refunds".to_owned(), 14)],
        retries: 0,
        duration_ms: 310,
    };
    pin("migrate_down", &MigrateOutput::Down(down));
}

/// What a table shows is what JSON carries: one name per value.
#[test]
fn table_names_are_json_names() {
    use crate::migrate::StepState;
    use crate::reconcile::RepairOutcome;
    use crate::verify::Severity;
    let json = |v: serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    for s in [
        StepState::Pending,
        StepState::Interrupted,
        StepState::Applied,
        StepState::Drift,
    ] {
        assert_eq!(json(serde_json::to_value(s).unwrap()), s.as_str());
    }
    for c in [Category::Schema, Category::Data] {
        assert_eq!(json(serde_json::to_value(c).unwrap()), c.as_str());
    }
    for s in [Severity::Error, Severity::Warning, Severity::Note] {
        assert_eq!(json(serde_json::to_value(s).unwrap()), s.as_str());
    }
    for k in Kind::ALL {
        assert_eq!(json(serde_json::to_value(k).unwrap()), k.name());
        assert_eq!(k.to_string(), k.name());
    }
    for o in [
        RepairOutcome::Applied,
        RepairOutcome::Unchanged,
        RepairOutcome::Conflict,
    ] {
        assert_eq!(json(serde_json::to_value(o).unwrap()), o.as_str());
    }
}
