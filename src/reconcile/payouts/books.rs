//! Closing the books, as a pure function: each payout's make-up from its balance transactions,
//! the sum checked to the cent, every transaction linked to an order through its
//! PaymentIntent, and the findings. Integer minor units throughout.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::stripe::{BalanceTxnView, PayoutView};

/// What the database knows of an order paid through a PaymentIntent.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderOfIntent {
    pub order_id: String,
    pub status: String,
    pub amount_total_cents: i64,
    pub currency: String,
}

/// The balance transaction types and reporting categories paytool knows (Stripe adds more:
/// the others are reported, never guessed).
const KNOWN_TYPES: &[&str] = &[
    "adjustment",
    "application_fee",
    "application_fee_refund",
    "charge",
    "payment",
    "payment_failure_refund",
    "payment_refund",
    "payment_reversal",
    "payout",
    "payout_cancel",
    "payout_failure",
    "refund",
    "refund_failure",
    "stripe_fee",
    "tax_fee",
    "transfer",
    "transfer_refund",
];
const KNOWN_CATEGORIES: &[&str] = &[
    "charge",
    "charge_failure",
    "dispute",
    "dispute_reversal",
    "fee",
    "other_adjustment",
    "partial_capture_reversal",
    "payout",
    "payout_reversal",
    "refund",
    "refund_failure",
    "tax",
];
/// The categories whose money an order explains.
const ORDER_CATEGORIES: &[&str] = &[
    "charge",
    "refund",
    "refund_failure",
    "dispute",
    "dispute_reversal",
    "partial_capture_reversal",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutKind {
    PayoutTotalMismatch,
    PayoutFailed,
    UnmatchedBalanceTransaction,
    PaidOrderNotPaidOut,
    UnknownBalanceTransactionType,
}

impl PayoutKind {
    pub const ALL: [PayoutKind; 5] = [
        PayoutKind::PayoutTotalMismatch,
        PayoutKind::PayoutFailed,
        PayoutKind::UnmatchedBalanceTransaction,
        PayoutKind::PaidOrderNotPaidOut,
        PayoutKind::UnknownBalanceTransactionType,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PayoutKind::PayoutTotalMismatch => "payout_total_mismatch",
            PayoutKind::PayoutFailed => "payout_failed",
            PayoutKind::UnmatchedBalanceTransaction => "unmatched_balance_transaction",
            PayoutKind::PaidOrderNotPaidOut => "paid_order_not_paid_out",
            PayoutKind::UnknownBalanceTransactionType => "unknown_balance_transaction_type",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PayoutFinding {
    pub kind: PayoutKind,
    pub payout_id: Option<String>,
    pub balance_transaction_id: Option<String>,
    pub order_id: Option<String>,
    pub payment_intent_id: Option<String>,
    /// What was found, in one sentence.
    pub detail: String,
}

impl PayoutFinding {
    /// Its kind and the ids it is about, not its values: a baseline's key.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.kind.name(),
            self.payout_id.as_deref().unwrap_or("-"),
            self.balance_transaction_id.as_deref().unwrap_or("-"),
            self.order_id.as_deref().unwrap_or("-"),
        )
    }
}

impl crate::reconcile::baseline::Acceptable for PayoutFinding {
    fn fingerprint(&self) -> String {
        PayoutFinding::fingerprint(self)
    }

    fn accepted(
        &self,
        acceptance: &crate::reconcile::baseline::Acceptance,
        now: DateTime<Utc>,
    ) -> crate::reconcile::baseline::Accepted {
        crate::reconcile::baseline::Accepted {
            fingerprint: PayoutFinding::fingerprint(self),
            kind: self.kind.name().to_owned(),
            order_id: self.order_id.clone(),
            payment_intent_id: self.payment_intent_id.clone(),
            stripe_object_id: self
                .balance_transaction_id
                .clone()
                .or_else(|| self.payout_id.clone()),
            database: String::new(),
            stripe: self.detail.clone(),
            accepted_by: acceptance.by.clone(),
            accepted_at: now,
            reason: acceptance.reason.clone(),
        }
    }
}

/// One payout and what it is made of (minor units of its currency).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PayoutLine {
    pub id: String,
    pub arrival_date: DateTime<Utc>,
    pub status: String,
    pub currency: String,
    pub amount: i64,
    pub reconciliation_status: String,
    /// Its balance transactions were listed (an automatic payout whose reconciliation is
    /// completed); else its make-up is unknown, never guessed.
    pub itemized: bool,
    pub gross_charges: i64,
    /// Stripe's fees on everything but disputes (negative: money kept by Stripe).
    pub fees: i64,
    pub refunds: i64,
    pub disputes: i64,
    pub dispute_fees: i64,
    pub other_adjustments: i64,
    /// Σ net of its balance transactions (its own payout transaction aside).
    pub net: i64,
    /// Whether `net` equals `amount`, to the minor unit.
    pub balanced: Option<bool>,
    pub orders: usize,
    pub balance_transactions: usize,
}

/// One balance transaction as the accountant's CSV lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerLine {
    pub payout_id: String,
    pub arrival_date: DateTime<Utc>,
    pub txn: BalanceTxnView,
    pub order_id: Option<String>,
}

/// Everything closing the books compares.
pub struct Books<'a> {
    pub payouts: &'a [PayoutView],
    /// The balance transactions of each itemized payout, by payout id.
    pub transactions: &'a HashMap<String, Vec<BalanceTxnView>>,
    /// Charges created around the window (for `paid_order_not_paid_out`).
    pub charges: &'a [BalanceTxnView],
    /// Orders by PaymentIntent id.
    pub orders: &'a HashMap<String, OrderOfIntent>,
    /// A charge available before this and in no payout is `paid_order_not_paid_out`.
    pub paid_out_by: DateTime<Utc>,
    /// Charges available before this are another window's business.
    pub available_since: DateTime<Utc>,
}

pub struct Closed {
    pub payouts: Vec<PayoutLine>,
    pub ledger: Vec<LedgerLine>,
    pub findings: Vec<PayoutFinding>,
}

pub fn close(books: &Books<'_>) -> Closed {
    let mut findings = Vec::new();
    let mut lines = Vec::new();
    let mut ledger = Vec::new();
    let mut unknown_seen = HashSet::new();
    for payout in books.payouts {
        let txns = books.transactions.get(&payout.id);
        let mut line = make_up(
            payout,
            txns.map(Vec::as_slice).unwrap_or_default(),
            books.orders,
        );
        line.itemized = txns.is_some();
        if !line.itemized {
            line.balanced = None;
        }
        if matches!(payout.status.as_str(), "failed" | "canceled") {
            findings.push(PayoutFinding {
                kind: PayoutKind::PayoutFailed,
                payout_id: Some(payout.id.clone()),
                balance_transaction_id: None,
                order_id: None,
                payment_intent_id: None,
                detail: format!(
                    "payout {} {} ({}): the money went back to the Stripe balance and is paid out again with a later payout",
                    payout.status,
                    payout.failure_code.as_deref().unwrap_or("no failure code"),
                    crate::human::Money::new(payout.amount, &payout.currency)
                ),
            });
        }
        if line.balanced == Some(false) {
            findings.push(PayoutFinding {
                kind: PayoutKind::PayoutTotalMismatch,
                payout_id: Some(payout.id.clone()),
                balance_transaction_id: None,
                order_id: None,
                payment_intent_id: None,
                detail: format!(
                    "its balance transactions add up to {} net, the payout is {}",
                    crate::human::Money::new(line.net, &payout.currency),
                    crate::human::Money::new(payout.amount, &payout.currency)
                ),
            });
        }
        for txn in txns.into_iter().flatten() {
            let order = txn
                .payment_intent_id
                .as_deref()
                .and_then(|pi| books.orders.get(pi));
            findings.extend(unknown_type(txn, &payout.id, &mut unknown_seen));
            if let (Some(order), Some((amount, currency))) = (order, &txn.charged)
                && currency.eq_ignore_ascii_case(&order.currency)
                && *amount != order.amount_total_cents
            {
                // Compared in the order's currency, as the customer was charged; the payout
                // sums the settlement currency.
                findings.push(PayoutFinding {
                    kind: PayoutKind::UnmatchedBalanceTransaction,
                    payout_id: Some(payout.id.clone()),
                    balance_transaction_id: Some(txn.id.clone()),
                    order_id: Some(order.order_id.clone()),
                    payment_intent_id: txn.payment_intent_id.clone(),
                    detail: format!(
                        "the charge is {}, its order {} totals {}: the order explains only part of it",
                        crate::human::Money::new(*amount, currency),
                        order.order_id,
                        crate::human::Money::new(order.amount_total_cents, &order.currency)
                    ),
                });
            }
            if ORDER_CATEGORIES.contains(&txn.reporting_category.as_str()) && order.is_none() {
                findings.push(PayoutFinding {
                    kind: PayoutKind::UnmatchedBalanceTransaction,
                    payout_id: Some(payout.id.clone()),
                    balance_transaction_id: Some(txn.id.clone()),
                    order_id: None,
                    payment_intent_id: txn.payment_intent_id.clone(),
                    detail: format!(
                        "{} {} in the payout that no order explains ({})",
                        txn.reporting_category,
                        crate::human::Money::new(txn.net, &txn.currency),
                        match &txn.payment_intent_id {
                            Some(pi) => format!("no order has PaymentIntent {pi}"),
                            None => "no PaymentIntent".to_owned(),
                        }
                    ),
                });
            }
            ledger.push(LedgerLine {
                payout_id: payout.id.clone(),
                arrival_date: payout.arrival_date,
                txn: txn.clone(),
                order_id: order.map(|o| o.order_id.clone()),
            });
        }
        lines.push(line);
    }
    findings.extend(not_paid_out(books));
    findings.sort_by(|a, b| {
        (a.kind, &a.payout_id, &a.balance_transaction_id).cmp(&(
            b.kind,
            &b.payout_id,
            &b.balance_transaction_id,
        ))
    });
    Closed {
        payouts: lines,
        ledger,
        findings,
    }
}

/// A payout's make-up from its balance transactions; its own payout transaction is the
/// other side of the sum, not part of it.
fn make_up(
    payout: &PayoutView,
    txns: &[BalanceTxnView],
    orders: &HashMap<String, OrderOfIntent>,
) -> PayoutLine {
    let mut line = PayoutLine {
        id: payout.id.clone(),
        arrival_date: payout.arrival_date,
        status: payout.status.clone(),
        currency: payout.currency.clone(),
        amount: payout.amount,
        reconciliation_status: payout.reconciliation_status.clone(),
        itemized: true,
        gross_charges: 0,
        fees: 0,
        refunds: 0,
        disputes: 0,
        dispute_fees: 0,
        other_adjustments: 0,
        net: 0,
        balanced: None,
        orders: 0,
        balance_transactions: 0,
    };
    let mut order_ids = HashSet::new();
    for txn in txns.iter().filter(|t| !is_the_payout_itself(t, &payout.id)) {
        line.balance_transactions += 1;
        line.net += txn.net;
        match txn.reporting_category.as_str() {
            "charge" => line.gross_charges += txn.amount,
            "refund" | "refund_failure" | "partial_capture_reversal" => line.refunds += txn.amount,
            "dispute" | "dispute_reversal" => line.disputes += txn.amount,
            _ => line.other_adjustments += txn.amount,
        }
        match txn.reporting_category.as_str() {
            "dispute" | "dispute_reversal" => line.dispute_fees -= txn.fee,
            _ => line.fees -= txn.fee,
        }
        if let Some(order) = txn
            .payment_intent_id
            .as_deref()
            .and_then(|pi| orders.get(pi))
        {
            order_ids.insert(order.order_id.clone());
        }
    }
    line.orders = order_ids.len();
    line.balanced = Some(line.net == payout.amount);
    line
}

fn is_the_payout_itself(txn: &BalanceTxnView, payout: &str) -> bool {
    txn.reporting_category == "payout" && txn.source_id.as_deref() == Some(payout)
}

/// A type or reporting category paytool does not know, once per balance transaction.
fn unknown_type(
    txn: &BalanceTxnView,
    payout: &str,
    seen: &mut HashSet<String>,
) -> Option<PayoutFinding> {
    let known = KNOWN_TYPES.contains(&txn.type_.as_str())
        && KNOWN_CATEGORIES.contains(&txn.reporting_category.as_str());
    if known || !seen.insert(txn.id.clone()) {
        return None;
    }
    Some(PayoutFinding {
        kind: PayoutKind::UnknownBalanceTransactionType,
        payout_id: Some(payout.to_owned()),
        balance_transaction_id: Some(txn.id.clone()),
        order_id: None,
        payment_intent_id: txn.payment_intent_id.clone(),
        detail: format!(
            "type {} / reporting_category {} ({} net): counted as an other adjustment; paytool does not know it",
            txn.type_,
            txn.reporting_category,
            crate::human::Money::new(txn.net, &txn.currency)
        ),
    })
}

/// Charges of PAID orders, available long enough to have been paid out, in no payout listed.
fn not_paid_out(books: &Books<'_>) -> Vec<PayoutFinding> {
    let paid_out: HashSet<&str> = books
        .transactions
        .values()
        .flatten()
        .map(|t| t.id.as_str())
        .collect();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for charge in books.charges {
        if paid_out.contains(charge.id.as_str())
            || charge.available_on > books.paid_out_by
            || charge.available_on < books.available_since
            || !seen.insert(charge.id.as_str())
        {
            continue;
        }
        let Some(order) = charge
            .payment_intent_id
            .as_deref()
            .and_then(|pi| books.orders.get(pi))
        else {
            continue;
        };
        if order.status != "PAID" {
            continue;
        }
        out.push(PayoutFinding {
            kind: PayoutKind::PaidOrderNotPaidOut,
            payout_id: None,
            balance_transaction_id: Some(charge.id.clone()),
            order_id: Some(order.order_id.clone()),
            payment_intent_id: charge.payment_intent_id.clone(),
            detail: format!(
                "{} available since {} and in no payout of the window",
                crate::human::Money::new(charge.net, &charge.currency),
                charge.available_on.format("%Y-%m-%d")
            ),
        });
    }
    out
}

/// Findings per kind, every kind listed.
pub fn summarize(findings: &[PayoutFinding]) -> BTreeMap<&'static str, usize> {
    let mut counts: BTreeMap<&'static str, usize> =
        PayoutKind::ALL.iter().map(|k| (k.name(), 0)).collect();
    for f in findings {
        *counts.entry(f.kind.name()).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + days * 86_400, 0).unwrap()
    }

    fn txn(id: &str, category: &str, amount: i64, fee: i64, pi: Option<&str>) -> BalanceTxnView {
        BalanceTxnView {
            id: id.into(),
            type_: match category {
                "dispute" => "adjustment".into(),
                other => other.into(),
            },
            reporting_category: category.into(),
            amount,
            fee,
            net: amount - fee,
            currency: "EUR".into(),
            exchange_rate: None,
            created: at(0),
            available_on: at(2),
            status: "available".into(),
            source_id: Some(format!("src_{id}")),
            payment_intent_id: pi.map(Into::into),
            charged: None,
        }
    }

    fn payout(id: &str, amount: i64, status: &str) -> PayoutView {
        PayoutView {
            id: id.into(),
            amount,
            currency: "EUR".into(),
            created: at(2),
            arrival_date: at(4),
            status: status.into(),
            failure_code: (status == "failed").then(|| "account_closed".into()),
            automatic: true,
            reconciliation_status: "completed".into(),
        }
    }

    fn order(id: &str, status: &str) -> OrderOfIntent {
        OrderOfIntent {
            order_id: id.into(),
            status: status.into(),
            amount_total_cents: 1_000,
            currency: "EUR".into(),
        }
    }

    #[test]
    fn a_payout_is_the_sum_of_charges_fees_refunds_and_disputes_to_the_cent() {
        let po = payout(
            "po_1",
            1_000 - 59 - 300 - 2_000 - 1_500 + 5_000 - 175,
            "paid",
        );
        let own = BalanceTxnView {
            type_: "payout".into(),
            source_id: Some("po_1".into()),
            ..txn("txn_po", "payout", -po.amount, 0, None)
        };
        let txns = vec![
            txn("t1", "charge", 1_000, 59, Some("pi_1")),
            txn("t2", "refund", -300, 0, Some("pi_1")),
            txn("t3", "dispute", -2_000, 1_500, Some("pi_2")),
            txn("t4", "charge", 5_000, 175, Some("pi_2")),
            own,
        ];
        let orders = HashMap::from([
            ("pi_1".to_owned(), order("o1", "REFUNDED")),
            ("pi_2".to_owned(), order("o2", "PAID")),
        ]);
        let line = make_up(&po, &txns, &orders);
        assert_eq!(line.gross_charges, 6_000);
        assert_eq!(line.fees, -234);
        assert_eq!(line.refunds, -300);
        assert_eq!(line.disputes, -2_000);
        assert_eq!(line.dispute_fees, -1_500);
        assert_eq!(line.net, po.amount);
        assert_eq!(line.balanced, Some(true));
        assert_eq!((line.orders, line.balance_transactions), (2, 4));
        assert_eq!(
            line.gross_charges
                + line.fees
                + line.refunds
                + line.disputes
                + line.dispute_fees
                + line.other_adjustments,
            line.net
        );
    }

    #[test]
    fn each_finding_kind_is_found_once() {
        let payouts = vec![
            payout("po_ok", 941, "paid"),
            payout("po_short", 1_000, "paid"),
            payout("po_failed", 941, "failed"),
        ];
        let transactions = HashMap::from([
            (
                "po_ok".to_owned(),
                vec![txn("t1", "charge", 1_000, 59, Some("pi_1"))],
            ),
            (
                "po_short".to_owned(),
                vec![
                    txn("t2", "charge", 1_000, 59, Some("pi_stranger")),
                    BalanceTxnView {
                        type_: "climate_order_purchase".into(),
                        ..txn("t3", "climate_order_purchase", 0, 0, None)
                    },
                ],
            ),
        ]);
        let charges = vec![
            txn("t1", "charge", 1_000, 59, Some("pi_1")),
            txn("t9", "charge", 2_000, 88, Some("pi_9")),
        ];
        let orders = HashMap::from([
            ("pi_1".to_owned(), order("o1", "PAID")),
            ("pi_9".to_owned(), order("o9", "PAID")),
        ]);
        let closed = close(&Books {
            payouts: &payouts,
            transactions: &transactions,
            charges: &charges,
            orders: &orders,
            paid_out_by: at(10),
            available_since: at(-30),
        });
        let kinds: Vec<PayoutKind> = closed.findings.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [
                PayoutKind::PayoutTotalMismatch,
                PayoutKind::PayoutFailed,
                PayoutKind::UnmatchedBalanceTransaction,
                PayoutKind::PaidOrderNotPaidOut,
                PayoutKind::UnknownBalanceTransactionType,
            ]
        );
        let failed = &closed.payouts[2];
        assert!(
            !failed.itemized && failed.balanced.is_none(),
            "never guessed"
        );
        assert_eq!(closed.findings[3].order_id.as_deref(), Some("o9"));
        assert_eq!(closed.ledger.len(), 3);
    }

    #[test]
    fn a_charge_is_compared_with_its_order_in_the_orders_currency() {
        let charged = |amount: i64, currency: &str| BalanceTxnView {
            charged: Some((amount, currency.into())),
            currency: "USD".into(),
            ..txn("t1", "charge", 1_080, 61, Some("pi_1"))
        };
        let orders = HashMap::from([("pi_1".to_owned(), order("o1", "PAID"))]);
        let close_with = |t: BalanceTxnView| {
            let payouts = vec![payout("po_1", t.net, "paid")];
            let transactions = HashMap::from([("po_1".to_owned(), vec![t])]);
            close(&Books {
                payouts: &payouts,
                transactions: &transactions,
                charges: &[],
                orders: &orders,
                paid_out_by: at(10),
                available_since: at(-30),
            })
            .findings
        };
        assert!(
            close_with(charged(1_000, "eur")).is_empty(),
            "1,000 EUR for a 1,000 EUR order, settled in USD"
        );
        let found = close_with(charged(1_500, "eur"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, PayoutKind::UnmatchedBalanceTransaction);
        assert_eq!(found[0].order_id.as_deref(), Some("o1"));
    }
}
