//! Rules about PaymentIntents waiting too long: authorizations never captured, debits stuck.

use std::collections::HashMap;

use crate::domain::IntentStatus;
use crate::human::Money;
use crate::reconcile::finding::{Finding, Kind, OrderRow};
use crate::stripe::PaymentIntentView;

use super::{Inputs, order_total};

/// PaymentIntents authorised and never captured, or processing, for longer than they should.
pub(super) fn stale_intents(
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
        if age <= limit || input.scope.is_one_order() && order.is_none() {
            continue;
        }
        let amount = Money::new(pi.amount, &pi.currency);
        let ours = match order {
            Some(o) => format!("order {}", o.status),
            None => "no order".into(),
        };
        out.push(
            Finding::about(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::rules::fixtures::*;

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
}
