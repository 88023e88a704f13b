//! What the rules' tests build their inputs from.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::{Inputs, Scope, StaleAfter, reconcile};
use crate::domain::{IntentStatus, OrderStatus};
use crate::reconcile::finding::{Finding, Kind, OrderRow, PaymentRow};
use crate::stripe::{DisputeView, EventView, PaymentIntentView, RefundView};

pub fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

pub fn order(id: &str, status: &str, pi: Option<&str>) -> OrderRow {
    let status = OrderStatus::parse(status);
    let paid = status.is_paid();
    OrderRow {
        id: id.into(),
        status,
        amount_total_cents: 1000,
        currency: "EUR".into(),
        payment_intent_id: pi.map(Into::into),
        payment: Some(PaymentRow {
            id: format!("pay-{id}"),
            status: if paid {
                IntentStatus::Succeeded
            } else {
                IntentStatus::RequiresPaymentMethod
            },
            payment_intent_id: pi.map(Into::into),
            succeeded_at: paid.then(|| at(10).naive_utc()),
            ..PaymentRow::default()
        }),
        ..OrderRow::default()
    }
}

pub fn intent(id: &str, order: Option<&str>, status: &str) -> PaymentIntentView {
    PaymentIntentView {
        id: id.into(),
        amount: 1000,
        amount_received: if status == "succeeded" { 1000 } else { 0 },
        currency: "EUR".into(),
        status: IntentStatus::parse(status),
        created: at(0),
        order_id: order.map(Into::into),
        paid_at: (status == "succeeded").then(|| at(10)),
        last_error_code: None,
        last_error_message: None,
    }
}

pub fn run(
    orders: &[OrderRow],
    listed: &[PaymentIntentView],
    refunds: &[RefundView],
) -> Vec<Finding> {
    run_all(orders, listed, refunds, &[], &[], at(3_600))
}

/// Every input but the ones nobody sets in these tests (retrieved, unknown ids, stored
/// events).
pub fn run_all(
    orders: &[OrderRow],
    listed: &[PaymentIntentView],
    refunds: &[RefundView],
    disputes: &[DisputeView],
    failed_events: &[EventView],
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let none = HashSet::new();
    reconcile(&Inputs {
        orders,
        other_known_orders: &none,
        linked_elsewhere: &none,
        scope: Scope::Window {
            since: at(-86_400),
            until: at(86_400),
        },
        listed,
        retrieved: &[],
        unknown_to_stripe: &none,
        refunds,
        disputes,
        failed_events,
        stored_events: &none,
        now,
        stale_after: StaleAfter::default(),
    })
}

pub fn kinds(findings: &[Finding]) -> Vec<Kind> {
    findings.iter().map(|f| f.kind).collect()
}

pub fn with_stripe_side(
    orders: &[OrderRow],
    listed: &[PaymentIntentView],
    disputes: &[DisputeView],
    failed_events: &[EventView],
    now: DateTime<Utc>,
) -> Vec<Finding> {
    run_all(orders, listed, &[], disputes, failed_events, now)
}
