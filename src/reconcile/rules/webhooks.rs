//! Rules about webhooks Stripe could not deliver, and whether their effect is missing here.

use std::collections::HashMap;

use crate::human::plural;
use crate::reconcile::finding::{Finding, Kind, OrderRow, Repair};

use super::Inputs;

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
pub(super) fn failed_deliveries(
    input: &Inputs<'_>,
    order_of: &HashMap<String, &OrderRow>,
    found: &[Finding],
) -> Vec<Finding> {
    let one_order = input.scope.is_one_order();
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
        let mut f = Finding::about(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::IntentStatus;
    use crate::reconcile::rules::fixtures::*;
    use crate::stripe::EventView;

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
}
