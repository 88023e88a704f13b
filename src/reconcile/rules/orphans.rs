//! Rules about PaymentIntents no order explains.

use std::collections::{HashMap, HashSet};

use crate::human::Money;
use crate::reconcile::finding::{Finding, Kind};
use crate::stripe::PaymentIntentView;

use super::{Inputs, Scope};

/// Listed PaymentIntents that no order links and whose metadata names no known order.
pub(super) fn orphans(
    input: &Inputs<'_>,
    intents: &HashMap<&str, &PaymentIntentView>,
) -> Vec<Finding> {
    let Scope::Window { since, until } = input.scope else {
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
            Finding::about(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::rules::fixtures::*;

    #[test]
    fn an_intent_naming_no_known_order_is_an_orphan() {
        let findings = run(&[], &[intent("pi_9", Some("ghost"), "succeeded")], &[]);
        assert_eq!(kinds(&findings), [Kind::OrphanPaymentIntent]);
    }
}
