//! Rules about refunds: what Stripe refunded against what the database recorded.

use std::collections::HashSet;

use crate::human::{Money, plural};
use crate::reconcile::finding::{Finding, Kind, OrderRow, PaymentRow, Repair};
use crate::stripe::{PaymentIntentView, RefundView};

fn counts_as_refunded(refund: &RefundView) -> bool {
    refund.status == "succeeded" || refund.status == "pending"
}

pub(super) fn compare_refunds(
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
    let mut f = Finding::about(
        Kind::RefundMismatch,
        Some(order),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::rules::fixtures::*;

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
}
