//! The rules of reconcile, one file per family (squawk's layout): each turns the inputs into
//! findings of its kinds, its tests beside it. [`reconcile`] runs them all, in an order where
//! the webhook rule can read what the others found.

mod disputes;
mod orders;
mod orphans;
mod refunds;
mod stale;
mod webhooks;

#[cfg(test)]
mod fixtures;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::human::Money;
use crate::reconcile::finding::{Finding, OrderRow};
use crate::stripe::{DisputeView, EventView, PaymentIntentView, RefundView};

/// When a PaymentIntent that is neither paid nor failed has waited too long.
#[derive(Debug, Clone, Copy)]
pub struct StaleAfter {
    /// `requires_capture`: Stripe cancels an uncaptured card authorization after about 7 days.
    pub capture: chrono::Duration,
    /// `processing`: bank debits take days, not weeks.
    pub processing: chrono::Duration,
}

impl Default for StaleAfter {
    fn default() -> Self {
        StaleAfter {
            capture: chrono::Duration::days(5),
            processing: chrono::Duration::days(7),
        }
    }
}

/// What a reconcile run is about.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// Orders created in the window, and every Stripe object of it: only PaymentIntents
    /// created in the window can be orphans (the list reaches a little past it, for checkouts
    /// that happen after their order).
    Window {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    /// One order (`--order`): its disputes, stale PaymentIntents and failed webhooks, never
    /// strangers near it.
    Order,
}

impl Scope {
    pub fn is_one_order(self) -> bool {
        matches!(self, Scope::Order)
    }
}

/// Everything reconcile compares.
pub struct Inputs<'a> {
    pub orders: &'a [OrderRow],
    /// Orders named by a PaymentIntent's metadata but outside the window: they exist, so the
    /// PaymentIntent is no orphan.
    pub other_known_orders: &'a HashSet<String>,
    /// PaymentIntents linked by id from orders outside the window: no orphans either.
    pub linked_elsewhere: &'a HashSet<String>,
    /// What the run is about: a window of time, or one order.
    pub scope: Scope,
    /// PaymentIntents listed in the window.
    pub listed: &'a [PaymentIntentView],
    /// PaymentIntents retrieved one by one (linked from an order, created outside the window).
    pub retrieved: &'a [PaymentIntentView],
    /// Ids that Stripe answered 404 for.
    pub unknown_to_stripe: &'a HashSet<String>,
    pub refunds: &'a [RefundView],
    pub disputes: &'a [DisputeView],
    /// Payment events of the window whose webhooks failed.
    pub failed_events: &'a [EventView],
    /// Of those, the ones payment_events already holds.
    pub stored_events: &'a HashSet<String>,
    /// The run's clock, for `stale_payment_intent`.
    pub now: DateTime<Utc>,
    pub stale_after: StaleAfter,
}

pub fn reconcile(input: &Inputs<'_>) -> Vec<Finding> {
    let intents: HashMap<&str, &PaymentIntentView> = input
        .listed
        .iter()
        .chain(input.retrieved)
        .map(|pi| (pi.id.as_str(), pi))
        .collect();
    let mut tagged: HashMap<&str, Vec<&PaymentIntentView>> = HashMap::new();
    for pi in intents.values() {
        if let Some(order) = &pi.order_id {
            tagged.entry(order.as_str()).or_default().push(pi);
        }
    }
    let mut refunds_of: HashMap<&str, Vec<&RefundView>> = HashMap::new();
    for refund in input.refunds {
        if let Some(pi) = &refund.payment_intent_id {
            refunds_of.entry(pi.as_str()).or_default().push(refund);
        }
    }
    let mut findings = Vec::new();
    for order in input.orders {
        let candidates = tagged.get(order.id.as_str()).cloned().unwrap_or_default();
        findings.extend(orders::check_order(
            order,
            &intents,
            candidates,
            input,
            &refunds_of,
        ));
    }
    findings.extend(orphans::orphans(input, &intents));
    let order_of = orders_by_intent(input, &intents);
    findings.extend(disputes::disputes(input, &order_of));
    findings.extend(stale::stale_intents(input, &intents, &order_of));
    let failed = webhooks::failed_deliveries(input, &order_of, &findings);
    findings.extend(failed);
    findings.sort_by(|a, b| {
        (a.kind, &a.order_id, &a.payment_intent_id).cmp(&(
            b.kind,
            &b.order_id,
            &b.payment_intent_id,
        ))
    });
    findings
}

pub(super) fn order_total(order: &OrderRow) -> Money {
    Money::new(order.amount_total_cents, &order.currency)
}

/// The order each PaymentIntent belongs to: the order linking it, else the one its metadata
/// names, among the orders checked.
pub(super) fn orders_by_intent<'a>(
    input: &Inputs<'a>,
    intents: &HashMap<&str, &PaymentIntentView>,
) -> HashMap<String, &'a OrderRow> {
    let by_id: HashMap<&str, &OrderRow> = input.orders.iter().map(|o| (o.id.as_str(), o)).collect();
    let mut out: HashMap<String, &OrderRow> = HashMap::new();
    for pi in intents.values() {
        if let Some(order) = pi.order_id.as_deref().and_then(|id| by_id.get(id)) {
            out.insert(pi.id.clone(), order);
        }
    }
    for order in input.orders {
        if let Some(pi) = &order.payment_intent_id {
            out.insert(pi.clone(), order);
        }
    }
    out
}
