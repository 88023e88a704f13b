//! Rules about one order and its PaymentIntent: missing in Stripe, status, amount and currency
//! mismatches, unlinked and duplicate PaymentIntents, the payment row.

use std::collections::HashMap;

use crate::domain::{IntentStatus, OrderStatus};
use crate::human::Money;
use crate::reconcile::finding::{Finding, Kind, OrderRow, PaymentRow, Repair};
use crate::stripe::{PaymentIntentView, RefundView};

use super::refunds::compare_refunds;
use super::{Inputs, order_total};

pub(super) fn check_order<'a>(
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
            out.push(Finding::about(
                Kind::MissingInStripe,
                Some(order),
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
            Finding::about(
                Kind::DuplicatePaymentIntents,
                Some(order),
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
            out.push(Finding::about(
                Kind::MissingInStripe,
                Some(order),
                None,
                "PAID, no PaymentIntent id".into(),
                "no PaymentIntent tagged with this order".into(),
            ));
        }
        return out;
    };
    let duplicated = succeeded.len() > 1;
    if linked.is_none() {
        let mut f = Finding::about(
            Kind::UnlinkedPaymentIntent,
            Some(order),
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
        let mut f = Finding::about(
            Kind::StatusMismatch,
            Some(order),
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
            Finding::about(
                Kind::AmountMismatch,
                Some(order),
                Some(&pi.id),
                order_total(order).to_string(),
                theirs.to_string(),
            )
            .with_amounts(Some(order_total(order)), Some(theirs)),
        );
    }
    if pi.currency != order.currency.to_uppercase() {
        out.push(Finding::about(
            Kind::CurrencyMismatch,
            Some(order),
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
    let mut f = Finding::about(
        Kind::PaymentRowMismatch,
        Some(order),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::rules::fixtures::*;

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
}
