//! The reconciliation itself: a pure function from database rows and Stripe objects to
//! findings and the repairs that are safe to make. No I/O here.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use crate::domain::{IntentStatus, OrderStatus};
use crate::human::{Money, plural};
use crate::stripe::{DisputeView, EventView, PaymentIntentView, RefundView};

/// An order and its payment as the database has them.
#[derive(Debug, Clone, Default)]
pub struct OrderRow {
    pub id: String,
    pub status: OrderStatus,
    pub amount_total_cents: i64,
    pub currency: String,
    pub payment_intent_id: Option<String>,
    pub created_at: Option<NaiveDateTime>,
    pub payment: Option<PaymentRow>,
}

#[derive(Debug, Clone, Default)]
pub struct PaymentRow {
    pub id: String,
    pub status: IntentStatus,
    pub payment_intent_id: Option<String>,
    pub succeeded_at: Option<NaiveDateTime>,
    pub last_error_code: Option<String>,
    /// Stripe ids of the refunds recorded for this payment.
    pub refund_ids: Vec<String>,
    /// Pending and succeeded refunds, in cents.
    pub refunded_cents: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    MissingInStripe,
    StatusMismatch,
    AmountMismatch,
    CurrencyMismatch,
    UnlinkedPaymentIntent,
    OrphanPaymentIntent,
    DuplicatePaymentIntents,
    RefundMismatch,
    PaymentRowMismatch,
    DisputedPayment,
    StalePaymentIntent,
    FailedWebhookDelivery,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::MissingInStripe,
        Kind::StatusMismatch,
        Kind::AmountMismatch,
        Kind::CurrencyMismatch,
        Kind::UnlinkedPaymentIntent,
        Kind::OrphanPaymentIntent,
        Kind::DuplicatePaymentIntents,
        Kind::RefundMismatch,
        Kind::PaymentRowMismatch,
        Kind::DisputedPayment,
        Kind::StalePaymentIntent,
        Kind::FailedWebhookDelivery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::MissingInStripe => "missing_in_stripe",
            Kind::StatusMismatch => "status_mismatch",
            Kind::AmountMismatch => "amount_mismatch",
            Kind::CurrencyMismatch => "currency_mismatch",
            Kind::UnlinkedPaymentIntent => "unlinked_payment_intent",
            Kind::OrphanPaymentIntent => "orphan_payment_intent",
            Kind::DuplicatePaymentIntents => "duplicate_payment_intents",
            Kind::RefundMismatch => "refund_mismatch",
            Kind::PaymentRowMismatch => "payment_row_mismatch",
            Kind::DisputedPayment => "disputed_payment",
            Kind::StalePaymentIntent => "stale_payment_intent",
            Kind::FailedWebhookDelivery => "failed_webhook_delivery",
        }
    }
}

/// One name per kind: JSON, CSV, the audit table and the tables all say [`Kind::name`].
impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A database-side repair that Stripe's data proves; never an amount, never a Stripe call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Repair {
    /// Set orders.stripe_payment_intent_id (and the payment's) where it is NULL.
    Link {
        order_id: String,
        payment_intent_id: String,
    },
    /// Mark the order PAID, with paid_at from the charge, because Stripe says succeeded.
    MarkPaid {
        order_id: String,
        paid_at: Option<DateTime<Utc>>,
    },
    /// Bring the payment row's status, PaymentIntent id, succeeded_at and last error in line.
    SyncPayment {
        payment_id: String,
        payment_intent_id: String,
        status: IntentStatus,
        succeeded_at: Option<DateTime<Utc>>,
        last_error_code: Option<String>,
        last_error_message: Option<String>,
    },
    /// Record a refund made in Stripe (e.g. from the dashboard) that the database lacks.
    RecordRefund {
        payment_id: String,
        refund: RefundView,
    },
    /// Store in payment_events an event whose webhook never arrived, as the handler would have.
    RecordEvent { event: EventView },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub order_id: Option<String>,
    pub payment_intent_id: Option<String>,
    /// The database's value.
    pub ours: String,
    /// Stripe's value.
    pub stripe: String,
    /// The amount `ours` speaks of, in minor units, for findings about money.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_amount: Option<Money>,
    /// The amount `stripe` speaks of, in minor units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe_amount: Option<Money>,
    /// The Stripe object the finding is about when it is neither the order nor the
    /// PaymentIntent: a dispute (`dp_…`) or an event (`evt_…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe_object_id: Option<String>,
    /// For `failed_webhook_delivery`: whether the database lacks what the event says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect_missing: Option<bool>,
    /// What `--apply` does about it, if anything is safe.
    pub repairs: Vec<Repair>,
}

impl Finding {
    /// What identifies a finding from one run to the next (a baseline's key): its kind and
    /// the ids it is about, not its values, except a dispute's status, so that a dispute
    /// accepted while under review alerts again when it is lost.
    pub fn fingerprint(&self) -> String {
        let mut key = format!(
            "{}|{}|{}|{}",
            self.kind,
            self.order_id.as_deref().unwrap_or("-"),
            self.payment_intent_id.as_deref().unwrap_or("-"),
            self.stripe_object_id.as_deref().unwrap_or("-"),
        );
        if self.kind == Kind::DisputedPayment {
            key.push('|');
            key.push_str(self.stripe.split(' ').next().unwrap_or("-"));
        }
        key
    }
}

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

/// Everything reconcile compares.
pub struct Inputs<'a> {
    pub orders: &'a [OrderRow],
    /// Orders named by a PaymentIntent's metadata but outside the window: they exist, so the
    /// PaymentIntent is no orphan.
    pub other_known_orders: &'a HashSet<String>,
    /// PaymentIntents linked by id from orders outside the window: no orphans either.
    pub linked_elsewhere: &'a HashSet<String>,
    /// Only PaymentIntents created in this window can be orphans (the list reaches a little
    /// past it, for checkouts that happen after their order); `None`: look for none.
    pub orphan_window: Option<(DateTime<Utc>, DateTime<Utc>)>,
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
        findings.extend(check_order(order, &intents, candidates, input, &refunds_of));
    }
    findings.extend(orphans(input, &intents));
    let order_of = orders_by_intent(input, &intents);
    findings.extend(disputes(input, &order_of));
    findings.extend(stale_intents(input, &intents, &order_of));
    let failed = failed_deliveries(input, &order_of, &findings);
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

fn finding(
    kind: Kind,
    order: &OrderRow,
    pi: Option<&str>,
    ours: String,
    stripe: String,
) -> Finding {
    about(kind, Some(order), pi, ours, stripe)
}

impl Finding {
    fn with_amounts(mut self, database: Option<Money>, stripe: Option<Money>) -> Self {
        self.database_amount = database;
        self.stripe_amount = stripe;
        self
    }
}

fn order_total(order: &OrderRow) -> Money {
    Money::new(order.amount_total_cents, &order.currency)
}

fn check_order<'a>(
    order: &OrderRow,
    intents: &HashMap<&str, &'a PaymentIntentView>,
    mut candidates: Vec<&'a PaymentIntentView>,
    input: &Inputs<'_>,
    refunds_of: &HashMap<&str, Vec<&RefundView>>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let linked = order.payment_intent_id.as_deref();
    if let Some(id) = linked {
        if input.unknown_to_stripe.contains(id) {
            out.push(finding(
                Kind::MissingInStripe,
                order,
                Some(id),
                format!("order {} names {id}", order.status),
                "no such PaymentIntent".into(),
            ));
            return out;
        }
        if let Some(pi) = intents.get(id)
            && !candidates.iter().any(|c| c.id == pi.id)
        {
            candidates.push(pi);
        }
    }
    candidates.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    let succeeded: Vec<&&PaymentIntentView> = candidates
        .iter()
        .filter(|pi| pi.status == IntentStatus::Succeeded)
        .collect();
    if succeeded.len() > 1 {
        let ids: Vec<&str> = succeeded.iter().map(|pi| pi.id.as_str()).collect();
        out.push(
            finding(
                Kind::DuplicatePaymentIntents,
                order,
                linked.or(ids.first().copied()),
                format!("one order of {}", order_total(order)),
                format!("{} succeeded PaymentIntents: {}", ids.len(), ids.join(", ")),
            )
            .with_amounts(Some(order_total(order)), None),
        );
    }
    let primary = match linked {
        Some(id) => intents.get(id).copied(),
        // The succeeded one if any, else the newest: what the customer last tried.
        None => succeeded
            .first()
            .map(|pi| **pi)
            .or(candidates.last().copied()),
    };
    let Some(pi) = primary else {
        if order.status == OrderStatus::Paid && linked.is_none() {
            out.push(finding(
                Kind::MissingInStripe,
                order,
                None,
                "PAID, no PaymentIntent id".into(),
                "no PaymentIntent tagged with this order".into(),
            ));
        }
        return out;
    };
    let duplicated = succeeded.len() > 1;
    if linked.is_none() {
        let mut f = finding(
            Kind::UnlinkedPaymentIntent,
            order,
            Some(&pi.id),
            "no PaymentIntent id".into(),
            format!(
                "{} ({}) has metadata.order_id = {}",
                pi.id, pi.status, order.id
            ),
        );
        // With two succeeded PaymentIntents a person must decide which one is the order's.
        if !duplicated {
            f.repairs.push(Repair::Link {
                order_id: order.id.clone(),
                payment_intent_id: pi.id.clone(),
            });
        }
        out.push(f);
    }
    out.extend(compare_with_intent(order, pi, duplicated));
    if let Some(payment) = &order.payment {
        let refunds = refunds_of.get(pi.id.as_str()).cloned().unwrap_or_default();
        out.extend(compare_refunds(order, payment, pi, &refunds));
    }
    out
}

fn compare_with_intent(order: &OrderRow, pi: &PaymentIntentView, duplicated: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let pi_paid = pi.status == IntentStatus::Succeeded;
    if order.status.is_paid() != pi_paid {
        let mut f = finding(
            Kind::StatusMismatch,
            order,
            Some(&pi.id),
            order.status.to_string(),
            pi.status.to_string(),
        );
        if pi_paid
            && !duplicated
            && matches!(order.status, OrderStatus::Pending | OrderStatus::Failed)
        {
            f.repairs.push(Repair::MarkPaid {
                order_id: order.id.clone(),
                paid_at: pi.paid_at,
            });
        }
        out.push(f);
    }
    let stripe_amount = if pi_paid {
        pi.amount_received
    } else {
        pi.amount
    };
    if stripe_amount != order.amount_total_cents {
        let theirs = Money::new(stripe_amount, &pi.currency);
        out.push(
            finding(
                Kind::AmountMismatch,
                order,
                Some(&pi.id),
                order_total(order).to_string(),
                theirs.to_string(),
            )
            .with_amounts(Some(order_total(order)), Some(theirs)),
        );
    }
    if pi.currency != order.currency.to_uppercase() {
        out.push(finding(
            Kind::CurrencyMismatch,
            order,
            Some(&pi.id),
            order.currency.clone(),
            pi.currency.clone(),
        ));
    }
    if let Some(payment) = &order.payment
        && !duplicated
    {
        out.extend(compare_payment_row(order, payment, pi));
    }
    out
}

fn compare_payment_row(
    order: &OrderRow,
    payment: &PaymentRow,
    pi: &PaymentIntentView,
) -> Option<Finding> {
    let stripe_succeeded_at = pi.paid_at.filter(|_| pi.status == IntentStatus::Succeeded);
    let mut differences = Vec::new();
    if payment.status != pi.status {
        differences.push(format!("status {} vs {}", payment.status, pi.status));
    }
    if payment.payment_intent_id.as_deref() != Some(pi.id.as_str()) {
        differences.push(format!(
            "payment_intent {} vs {}",
            payment.payment_intent_id.as_deref().unwrap_or("none"),
            pi.id
        ));
    }
    if pi.status == IntentStatus::Succeeded && payment.succeeded_at.is_none() {
        differences.push("succeeded_at missing".into());
    }
    if payment.last_error_code != pi.last_error_code && pi.status != IntentStatus::Succeeded {
        differences.push(format!(
            "last_error {} vs {}",
            payment.last_error_code.as_deref().unwrap_or("none"),
            pi.last_error_code.as_deref().unwrap_or("none")
        ));
    }
    if differences.is_empty() {
        return None;
    }
    let mut f = finding(
        Kind::PaymentRowMismatch,
        order,
        Some(&pi.id),
        format!("payment {}: {}", payment.id, payment.status),
        differences.join("; "),
    );
    f.repairs.push(Repair::SyncPayment {
        payment_id: payment.id.clone(),
        payment_intent_id: pi.id.clone(),
        status: pi.status.clone(),
        succeeded_at: stripe_succeeded_at,
        last_error_code: pi.last_error_code.clone(),
        last_error_message: pi.last_error_message.clone(),
    });
    Some(f)
}

fn counts_as_refunded(refund: &RefundView) -> bool {
    refund.status == "succeeded" || refund.status == "pending"
}

fn compare_refunds(
    order: &OrderRow,
    payment: &PaymentRow,
    pi: &PaymentIntentView,
    refunds: &[&RefundView],
) -> Option<Finding> {
    let stripe_total: i64 = refunds
        .iter()
        .filter(|r| counts_as_refunded(r))
        .map(|r| r.amount)
        .sum();
    let known: HashSet<&str> = payment.refund_ids.iter().map(String::as_str).collect();
    let missing: Vec<&RefundView> = refunds
        .iter()
        .filter(|r| counts_as_refunded(r) && !known.contains(r.id.as_str()))
        .copied()
        .collect();
    if stripe_total == payment.refunded_cents && missing.is_empty() {
        return None;
    }
    let ours = Money::new(payment.refunded_cents, &order.currency);
    let theirs = Money::new(stripe_total, &pi.currency);
    let mut f = finding(
        Kind::RefundMismatch,
        order,
        Some(&pi.id),
        format!(
            "{ours} refunded ({})",
            plural(payment.refund_ids.len(), "refund")
        ),
        format!(
            "{theirs} refunded ({})",
            plural(
                refunds.iter().filter(|r| counts_as_refunded(r)).count(),
                "refund"
            )
        ),
    )
    .with_amounts(Some(ours), Some(theirs));
    f.repairs = missing
        .into_iter()
        .map(|refund| Repair::RecordRefund {
            payment_id: payment.id.clone(),
            refund: refund.clone(),
        })
        .collect();
    Some(f)
}

/// Listed PaymentIntents that no order links and whose metadata names no known order.
fn orphans(input: &Inputs<'_>, intents: &HashMap<&str, &PaymentIntentView>) -> Vec<Finding> {
    let Some((since, until)) = input.orphan_window else {
        return Vec::new();
    };
    let linked: HashSet<&str> = input
        .orders
        .iter()
        .filter_map(|o| o.payment_intent_id.as_deref())
        .collect();
    let window_orders: HashSet<&str> = input.orders.iter().map(|o| o.id.as_str()).collect();
    let mut out = Vec::new();
    for pi in input.listed {
        let known_order = pi
            .order_id
            .as_deref()
            .is_some_and(|id| window_orders.contains(id) || input.other_known_orders.contains(id));
        let in_window = pi.created >= since && pi.created <= until;
        if linked.contains(pi.id.as_str())
            || input.linked_elsewhere.contains(&pi.id)
            || known_order
            || !in_window
            || !intents.contains_key(pi.id.as_str())
        {
            continue;
        }
        let amount = Money::new(pi.amount, &pi.currency);
        out.push(
            about(
                Kind::OrphanPaymentIntent,
                None,
                Some(&pi.id),
                "no order".into(),
                format!(
                    "{} {amount}, metadata.order_id = {}",
                    pi.status,
                    pi.order_id.as_deref().unwrap_or("none")
                ),
            )
            .with_amounts(None, Some(amount)),
        );
    }
    out
}

/// The order each PaymentIntent belongs to: the order linking it, else the one its metadata
/// names, among the orders checked.
fn orders_by_intent<'a>(
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

fn about(
    kind: Kind,
    order: Option<&OrderRow>,
    pi: Option<&str>,
    ours: String,
    stripe: String,
) -> Finding {
    Finding {
        kind,
        order_id: order.map(|o| o.id.clone()),
        payment_intent_id: pi.map(str::to_owned),
        ours,
        stripe,
        database_amount: None,
        stripe_amount: None,
        stripe_object_id: None,
        effect_missing: None,
        repairs: Vec::new(),
    }
}

/// Every dispute listed: money Stripe is taking back (or took, or gave back). With `--order`,
/// only that order's.
fn disputes(input: &Inputs<'_>, order_of: &HashMap<String, &OrderRow>) -> Vec<Finding> {
    let one_order = input.orphan_window.is_none();
    let mut out = Vec::new();
    for dispute in input.disputes {
        let order = dispute
            .payment_intent_id
            .as_deref()
            .and_then(|pi| order_of.get(pi).copied());
        if one_order && order.is_none() {
            continue;
        }
        let amount = Money::new(dispute.amount, &dispute.currency);
        let due = match dispute.evidence_due_by {
            Some(due) if dispute.is_open() => format!(", evidence due {}", due.format("%Y-%m-%d")),
            _ => String::new(),
        };
        let ours = match order {
            Some(o) => format!("order {} of {}", o.status, order_total(o)),
            None => "no order in the window".into(),
        };
        let mut f = about(
            Kind::DisputedPayment,
            order,
            dispute.payment_intent_id.as_deref(),
            ours,
            format!(
                "{} dispute {} of {amount}, reason {}{due}",
                dispute.status, dispute.id, dispute.reason
            ),
        )
        .with_amounts(order.map(order_total), Some(amount));
        f.stripe_object_id = Some(dispute.id.clone());
        out.push(f);
    }
    out
}

/// PaymentIntents authorised and never captured, or processing, for longer than they should.
fn stale_intents(
    input: &Inputs<'_>,
    intents: &HashMap<&str, &PaymentIntentView>,
    order_of: &HashMap<String, &OrderRow>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for pi in intents.values() {
        let age = input.now - pi.created;
        let (limit, advice) = match pi.status {
            IntentStatus::RequiresCapture if age > chrono::Duration::days(7) => (
                input.stale_after.capture,
                "authorizations expire after ~7 days, so it was likely never charged: cancel it, settle the order",
            ),
            IntentStatus::RequiresCapture => (
                input.stale_after.capture,
                "capture it or cancel it before the card authorization expires (about 7 days)",
            ),
            IntentStatus::Processing => (
                input.stale_after.processing,
                "ask the customer's bank or Stripe support; the money has not arrived",
            ),
            _ => continue,
        };
        let order = order_of.get(&pi.id).copied();
        if age <= limit || input.orphan_window.is_none() && order.is_none() {
            continue;
        }
        let amount = Money::new(pi.amount, &pi.currency);
        let ours = match order {
            Some(o) => format!("order {}", o.status),
            None => "no order".into(),
        };
        out.push(
            about(
                Kind::StalePaymentIntent,
                order,
                Some(&pi.id),
                ours,
                format!(
                    "{} {amount} for {} days: {advice}",
                    pi.status,
                    age.num_days()
                ),
            )
            .with_amounts(order.map(order_total), Some(amount)),
        );
    }
    out
}

/// The findings that say the database lacks an event's effect.
const EFFECT_KINDS: [Kind; 6] = [
    Kind::MissingInStripe,
    Kind::StatusMismatch,
    Kind::PaymentRowMismatch,
    Kind::RefundMismatch,
    Kind::UnlinkedPaymentIntent,
    Kind::OrphanPaymentIntent,
];

/// Events whose webhooks failed, each with whether its effect is missing here: another finding
/// of this run on the same PaymentIntent says the database disagrees with Stripe about it.
fn failed_deliveries(
    input: &Inputs<'_>,
    order_of: &HashMap<String, &OrderRow>,
    found: &[Finding],
) -> Vec<Finding> {
    let one_order = input.orphan_window.is_none();
    let mut out = Vec::new();
    for event in input.failed_events {
        let pi = event.payment_intent_id.as_deref();
        let order = pi.and_then(|pi| order_of.get(pi).copied());
        if one_order && order.is_none() {
            continue;
        }
        let disagreements: Vec<&str> = found
            .iter()
            .filter(|f| {
                EFFECT_KINDS.contains(&f.kind)
                    && f.payment_intent_id.as_deref() == pi
                    && pi.is_some()
            })
            .map(|f| f.kind.name())
            .collect();
        let is_dispute = event.type_.starts_with("charge.dispute.");
        let ours = if is_dispute {
            "disputes have no table here: see disputed_payment".to_owned()
        } else if disagreements.is_empty() {
            "effect present: the database agrees with Stripe".to_owned()
        } else {
            format!(
                "effect missing ({}): replay the event or run --apply",
                disagreements.join(", ")
            )
        };
        let mut f = about(
            Kind::FailedWebhookDelivery,
            order,
            pi,
            ours,
            format!(
                "{} {} at {}, {} undelivered",
                event.type_,
                event.id,
                event.created.format("%Y-%m-%d %H:%M"),
                plural(event.pending_webhooks.max(1) as usize, "webhook")
            ),
        );
        f.stripe_object_id = Some(event.id.clone());
        f.effect_missing = Some(!is_dispute && !disagreements.is_empty());
        if !input.stored_events.contains(&event.id) {
            f.repairs.push(Repair::RecordEvent {
                event: event.clone(),
            });
        }
        out.push(f);
    }
    out
}

/// Findings per kind, every kind present (0 included), in a stable order.
pub fn summarize(findings: &[Finding]) -> BTreeMap<&'static str, usize> {
    let mut counts: BTreeMap<&'static str, usize> =
        Kind::ALL.iter().map(|k| (k.name(), 0)).collect();
    for f in findings {
        *counts.entry(f.kind.name()).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn order(id: &str, status: &str, pi: Option<&str>) -> OrderRow {
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

    fn intent(id: &str, order: Option<&str>, status: &str) -> PaymentIntentView {
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

    fn run(
        orders: &[OrderRow],
        listed: &[PaymentIntentView],
        refunds: &[RefundView],
    ) -> Vec<Finding> {
        run_all(orders, listed, refunds, &[], &[], at(3_600))
    }

    /// Every input but the ones nobody sets in these tests (retrieved, unknown ids, stored
    /// events).
    fn run_all(
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
            orphan_window: Some((at(-86_400), at(86_400))),
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

    fn kinds(findings: &[Finding]) -> Vec<Kind> {
        findings.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn agreeing_data_has_no_finding() {
        let orders = [
            order("o1", "PAID", Some("pi_1")),
            order("o2", "PENDING", Some("pi_2")),
        ];
        let listed = [
            intent("pi_1", Some("o1"), "succeeded"),
            intent("pi_2", Some("o2"), "requires_payment_method"),
        ];
        assert_eq!(run(&orders, &listed, &[]), vec![]);
    }

    #[test]
    fn a_missed_webhook_is_a_status_mismatch_repaired_by_marking_paid() {
        let mut o = order("o1", "PENDING", Some("pi_1"));
        o.payment.as_mut().unwrap().status = IntentStatus::Succeeded;
        o.payment.as_mut().unwrap().succeeded_at = Some(at(10).naive_utc());
        let findings = run(&[o], &[intent("pi_1", Some("o1"), "succeeded")], &[]);
        assert_eq!(kinds(&findings), [Kind::StatusMismatch]);
        assert_eq!(
            findings[0].repairs,
            [Repair::MarkPaid {
                order_id: "o1".into(),
                paid_at: Some(at(10))
            }]
        );
    }

    #[test]
    fn currency_case_does_not_make_a_mismatch() {
        // Stripe's views are upper-cased when read (`eur` → `EUR`); a legacy row may hold `eur`.
        let mut lower = order("o1", "PAID", Some("pi_1"));
        lower.currency = "eur".into();
        let mut pi = intent("pi_1", Some("o1"), "succeeded");
        pi.currency = "EUR".into();
        assert!(run(&[lower], &[pi.clone()], &[]).is_empty());
        pi.currency = "USD".into();
        assert_eq!(
            kinds(&run(&[order("o1", "PAID", Some("pi_1"))], &[pi], &[])),
            [Kind::CurrencyMismatch]
        );
    }

    #[test]
    fn two_succeeded_intents_for_one_order_are_a_duplicate_and_nothing_is_linked() {
        let mut o = order("o1", "PENDING", None);
        o.payment = None;
        let mut second = intent("pi_2", Some("o1"), "succeeded");
        second.created = at(5);
        let findings = run(
            &[o],
            &[intent("pi_1", Some("o1"), "succeeded"), second],
            &[],
        );
        assert!(kinds(&findings).contains(&Kind::DuplicatePaymentIntents));
        assert!(
            findings.iter().all(|f| f.repairs.is_empty()),
            "{findings:?}"
        );
    }

    #[test]
    fn an_intent_naming_no_known_order_is_an_orphan() {
        let findings = run(&[], &[intent("pi_9", Some("ghost"), "succeeded")], &[]);
        assert_eq!(kinds(&findings), [Kind::OrphanPaymentIntent]);
    }

    #[test]
    fn a_dashboard_refund_is_recorded() {
        let refund = RefundView {
            id: "re_1".into(),
            payment_intent_id: Some("pi_1".into()),
            amount: 300,
            currency: "EUR".into(),
            status: "succeeded".into(),
            reason: Some("requested_by_customer".into()),
            created: at(100),
        };
        let findings = run(
            &[order("o1", "PAID", Some("pi_1"))],
            &[intent("pi_1", Some("o1"), "succeeded")],
            std::slice::from_ref(&refund),
        );
        assert_eq!(kinds(&findings), [Kind::RefundMismatch]);
        assert_eq!(
            findings[0].repairs,
            [Repair::RecordRefund {
                payment_id: "pay-o1".into(),
                refund
            }]
        );
    }

    #[test]
    fn zero_decimal_currencies_compare_in_their_own_minor_unit() {
        // ¥1,500 is 1500 in Stripe and 1500 here: nothing is multiplied by 100.
        let mut o = order("o1", "PAID", Some("pi_1"));
        o.currency = "JPY".into();
        o.amount_total_cents = 1500;
        let mut pi = intent("pi_1", Some("o1"), "succeeded");
        pi.currency = "JPY".into();
        pi.amount = 1500;
        pi.amount_received = 1500;
        assert_eq!(run(&[o.clone()], &[pi.clone()], &[]), vec![]);
        pi.amount_received = 1200;
        let found = run(&[o], &[pi], &[]);
        assert_eq!(found[0].kind, Kind::AmountMismatch);
        assert_eq!(
            (found[0].ours.as_str(), found[0].stripe.as_str()),
            ("1,500 JPY", "1,200 JPY")
        );
        assert_eq!(found[0].stripe_amount, Some(Money::new(1200, "JPY")));
    }

    fn with_stripe_side(
        orders: &[OrderRow],
        listed: &[PaymentIntentView],
        disputes: &[DisputeView],
        failed_events: &[EventView],
        now: DateTime<Utc>,
    ) -> Vec<Finding> {
        run_all(orders, listed, &[], disputes, failed_events, now)
    }

    #[test]
    fn a_dispute_is_reported_with_its_status_amount_and_due_date_and_repairs_nothing() {
        let dispute = DisputeView {
            id: "dp_1".into(),
            payment_intent_id: Some("pi_1".into()),
            amount: 1000,
            currency: "EUR".into(),
            status: "needs_response".into(),
            reason: "fraudulent".into(),
            evidence_due_by: Some(at(7 * 86_400)),
            created: at(100),
        };
        let found = with_stripe_side(
            &[order("o1", "PAID", Some("pi_1"))],
            &[intent("pi_1", Some("o1"), "succeeded")],
            std::slice::from_ref(&dispute),
            &[],
            at(3_600),
        );
        assert_eq!(kinds(&found), [Kind::DisputedPayment]);
        assert_eq!(found[0].order_id.as_deref(), Some("o1"));
        assert_eq!(found[0].stripe_object_id.as_deref(), Some("dp_1"));
        assert!(
            found[0]
                .stripe
                .starts_with("needs_response dispute dp_1 of 10.00 EUR"),
            "{}",
            found[0].stripe
        );
        assert!(
            found[0].stripe.contains("evidence due 2023-11-21"),
            "{}",
            found[0].stripe
        );
        assert!(found[0].repairs.is_empty());
        // A status change is a new finding for a baseline; a new amount text is not.
        let mut lost = found[0].clone();
        lost.stripe = lost.stripe.replace("needs_response", "lost");
        assert_ne!(lost.fingerprint(), found[0].fingerprint());
    }

    #[test]
    fn an_authorization_uncaptured_for_six_days_is_stale_and_one_of_four_is_not() {
        let mut o = order("o1", "PENDING", Some("pi_1"));
        o.payment.as_mut().unwrap().status = IntentStatus::RequiresCapture;
        let pi = intent("pi_1", Some("o1"), "requires_capture");
        let fresh = with_stripe_side(
            std::slice::from_ref(&o),
            std::slice::from_ref(&pi),
            &[],
            &[],
            at(4 * 86_400),
        );
        assert_eq!(fresh, vec![]);
        let stale = with_stripe_side(&[o], &[pi], &[], &[], at(6 * 86_400));
        assert_eq!(kinds(&stale), [Kind::StalePaymentIntent]);
        assert!(
            stale[0]
                .stripe
                .starts_with("requires_capture 10.00 EUR for 6 days")
        );
    }

    fn failed_event(id: &str, type_: &str, pi: &str) -> EventView {
        EventView::of(serde_json::json!({
            "id": id, "type": type_, "created": 1_700_000_100, "pending_webhooks": 1,
            "data": {"object": {"id": pi, "object": "payment_intent"}}
        }))
        .unwrap()
    }

    #[test]
    fn a_failed_delivery_says_whether_its_effect_is_missing() {
        // pi_1's success reached the database anyway; pi_2's did not (order still PENDING).
        let mut missed = order("o2", "PENDING", Some("pi_2"));
        missed.payment.as_mut().unwrap().status = IntentStatus::Succeeded;
        missed.payment.as_mut().unwrap().succeeded_at = Some(at(10).naive_utc());
        let found = with_stripe_side(
            &[order("o1", "PAID", Some("pi_1")), missed],
            &[
                intent("pi_1", Some("o1"), "succeeded"),
                intent("pi_2", Some("o2"), "succeeded"),
            ],
            &[],
            &[
                failed_event("evt_1", "payment_intent.succeeded", "pi_1"),
                failed_event("evt_2", "payment_intent.succeeded", "pi_2"),
            ],
            at(3_600),
        );
        let failed: Vec<(&str, Option<bool>)> = found
            .iter()
            .filter(|f| f.kind == Kind::FailedWebhookDelivery)
            .map(|f| (f.stripe_object_id.as_deref().unwrap(), f.effect_missing))
            .collect();
        assert_eq!(failed, [("evt_1", Some(false)), ("evt_2", Some(true))]);
        let stored: Vec<bool> = found
            .iter()
            .filter(|f| f.kind == Kind::FailedWebhookDelivery)
            .map(|f| matches!(&f.repairs[..], [Repair::RecordEvent { .. }]))
            .collect();
        assert_eq!(
            stored,
            [true, true],
            "not in payment_events yet: stored by --apply"
        );
        assert!(kinds(&found).contains(&Kind::StatusMismatch));
    }

    #[test]
    fn summary_lists_every_kind() {
        assert_eq!(summarize(&[]).len(), 12);
    }
}
