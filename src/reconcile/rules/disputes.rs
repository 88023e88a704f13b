//! Rules about disputes: money Stripe is taking back.

use std::collections::HashMap;

use crate::human::Money;
use crate::reconcile::finding::{Finding, Kind, OrderRow};

use super::{Inputs, order_total};

/// Every dispute listed: money Stripe is taking back (or took, or gave back). With `--order`,
/// only that order's.
pub(super) fn disputes(input: &Inputs<'_>, order_of: &HashMap<String, &OrderRow>) -> Vec<Finding> {
    let one_order = input.scope.is_one_order();
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
        let mut f = Finding::about(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::rules::fixtures::*;
    use crate::stripe::DisputeView;

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
}
