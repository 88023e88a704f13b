//! The backfill's three steps and their SQL (in `sql/backfill/`), in the order they run: what
//! each writes, which key it walks, and the statements that find and do its work.

use super::BackfillStep;

/// The column whose type a step's keys have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyedBy {
    /// order_items.id.
    ItemIds,
    /// orders.id (the queues are keyed by order).
    OrderIds,
}

/// One step and its SQL.
pub(super) struct StepDef {
    pub step: BackfillStep,
    pub name: &'static str,
    /// The table the step writes, analyzed once it changed rows: the next step reads it.
    pub writes: &'static str,
    /// Whose ids the step's keys are: their type (text or uuid) is resolved once per run.
    pub keyed_by: KeyedBy,
    /// Pending row count and largest pending key, when the step starts.
    pub extent_sql: &'static str,
    /// The next batch: (last key, rows) of the next $2 keys after $1, up to $3.
    pub range_sql: &'static str,
    /// The batch over ($1, $2]: (rows changed, payments written). The orders step writes the
    /// payment of each order it settles; the payments step, those of its queue. $3 is
    /// `first_pass` (only the orders batch reads it).
    pub batch_sql: &'static str,
    pub unresolved_sql: &'static str,
    /// Every $1-th pending key and the last one, in order, as text, each with the number of
    /// pending keys: where cooperative workers' ranges end.
    pub boundaries_sql: &'static str,
    /// The orders step's first pass: its keys are the orders at 0 themselves, not its queue.
    pub first_pass: bool,
    /// The partial index (built by migrate after the first complete pass) that the step's
    /// extent and unresolved reads walk, when they read the table rather than a queue.
    pub pending_index: Option<&'static str>,
}

macro_rules! step_sql {
    ($step:literal, $part:literal) => {
        include_str!(concat!("../../sql/backfill/", $step, "_", $part, ".sql"))
    };
}

macro_rules! step_def {
    ($step:expr, $name:literal, writes: $writes:literal, keyed_by: $keyed_by:expr, pending_index: $index:expr) => {
        StepDef {
            step: $step,
            name: $name,
            writes: $writes,
            keyed_by: $keyed_by,
            extent_sql: step_sql!($name, "extent"),
            range_sql: step_sql!($name, "range"),
            batch_sql: step_sql!($name, "batch"),
            unresolved_sql: step_sql!($name, "unresolved"),
            boundaries_sql: step_sql!($name, "boundaries"),
            first_pass: false,
            pending_index: $index,
        }
    };
}

pub(super) const STEPS: [StepDef; 3] = [
    step_def!(
        BackfillStep::Items,
        "items",
        writes: "order_items",
        keyed_by: KeyedBy::ItemIds,
        pending_index: Some("order_items_pending_snapshot_idx")
    ),
    // The order queue: what the application inserted or changed since the last run (fed by
    // migrate's triggers), and once every order not totalled yet, never the orders settled.
    step_def!(
        BackfillStep::Orders,
        "orders",
        writes: "orders",
        keyed_by: KeyedBy::OrderIds,
        pending_index: None
    ),
    step_def!(
        BackfillStep::Payments,
        "payments",
        writes: "payments",
        keyed_by: KeyedBy::OrderIds,
        pending_index: None
    ),
];

/// The orders step's first pass, until one completes: it walks the orders at 0 themselves by
/// their primary key, each once, instead of seeding the order queue with all of them first (a
/// second copy of every key, written and then deleted: ~7 % of a first pass on 200k orders of the
/// empty-carts benchmark shape). Once it is done
/// (the checkpoint `order_queue_seeded`), the queue holds every order still to settle: the
/// application's writes have been queued by migrate's triggers all along.
pub(super) const ORDERS_FIRST_PASS: StepDef = StepDef {
    step: BackfillStep::Orders,
    name: "orders_first_pass",
    writes: "orders",
    keyed_by: KeyedBy::OrderIds,
    extent_sql: step_sql!("orders_first_pass", "extent"),
    range_sql: step_sql!("orders_first_pass", "range"),
    batch_sql: step_sql!("orders", "batch"),
    unresolved_sql: step_sql!("orders", "unresolved"),
    boundaries_sql: step_sql!("orders_first_pass", "boundaries"),
    first_pass: true,
    pending_index: Some("orders_pending_total_idx"),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_in_the_order_each_reads_what_the_one_before_wrote() {
        let order: Vec<BackfillStep> = STEPS.iter().map(|s| s.step).collect();
        assert_eq!(
            order,
            [
                BackfillStep::Items,
                BackfillStep::Orders,
                BackfillStep::Payments
            ]
        );
        for step in &STEPS {
            assert_eq!(step.name, step.step.name());
        }
    }

    /// The orders batch and the payments batch both write payments: with the same status for
    /// the same order status (SPEC §4.2).
    #[test]
    fn both_batches_that_write_payments_map_the_order_status_alike() {
        let mapping = "CASE WHEN 'PAID' THEN 'succeeded' WHEN 'REFUNDED' THEN 'succeeded' \
                       WHEN 'CANCELLED' THEN 'canceled' ELSE 'requires_payment_method' END, \
                       CASE WHEN IN ('PAID', 'REFUNDED') THEN";
        let normalised = |sql: &str| -> String {
            // Without the column names (o.status, f.status) and the layout.
            let words: Vec<&str> = sql
                .split_whitespace()
                .filter(|w| !w.ends_with(".status") && !w.ends_with(".paid_at"))
                .collect();
            words.join(" ")
        };
        for step in [&STEPS[1], &STEPS[2]] {
            assert!(
                normalised(step.batch_sql).contains(&normalised(mapping)),
                "{}'s batch maps statuses otherwise",
                step.name
            );
        }
    }

    /// The indexes the steps' reads count on are the ones migrate builds after their pass.
    #[test]
    fn pending_indexes_are_those_migrate_builds_after_each_pass() {
        use crate::migrate::steps::{STEPS as MIGRATE_STEPS, StepKind};
        for step in STEPS.iter().chain([&ORDERS_FIRST_PASS]) {
            let Some(index) = step.pending_index else {
                continue;
            };
            let built_after = MIGRATE_STEPS.iter().find(
                |m| matches!(m.kind, StepKind::ConcurrentIndex { index: built } if built == index),
            );
            assert_eq!(
                built_after.and_then(|m| m.after_pass),
                Some(step.step),
                "{}",
                step.name
            );
        }
    }
}
