//! Data that would break a constraint of the migration, found before anything changes.

use serde::Serialize;
use sqlx::PgConnection;

use crate::db;

/// One kind of offending data, checked only while the step it would break is pending.
struct Check {
    id: &'static str,
    guards_step: i32,
    /// The column the check reads, when it only exists part-way through the migration.
    needs_column: Option<(&'static str, &'static str)>,
    problem: &'static str,
    fix: &'static str,
    /// Returns (offending rows, sample descriptions) with `$1` = sample size.
    sql: &'static str,
}

const CHECKS: &[Check] = &[
    Check {
        id: "stocks_negative_quantity",
        guards_step: 10,
        needs_column: None,
        problem: "stock quantities below zero break CHECK stocks_quantity_non_negative (quantity >= 0)",
        fix: "count the slots again and set the real quantity, e.g. \
              UPDATE stocks SET quantity = 0 WHERE quantity < 0 AND id IN (...);",
        sql: "
WITH bad AS (
    SELECT id, machine_id, slot_number, quantity FROM stocks WHERE NOT (quantity >= 0)
)
SELECT (SELECT count(*) FROM bad),
       ARRAY(SELECT 'stocks ' || id || ' (machine ' || machine_id || ', slot ' || slot_number
                    || ', quantity ' || quantity || ')'
             FROM bad ORDER BY id LIMIT $1)",
    },
    Check {
        id: "stocks_duplicate_slot",
        guards_step: 7,
        needs_column: None,
        problem: "two stocks rows for one machine slot break UNIQUE stocks_machine_id_slot_number_key",
        fix: "keep one stocks row per (machine_id, slot_number): add the quantities into one row \
              and DELETE the others, or move them to a free slot_number",
        sql: "
WITH bad AS (
    SELECT machine_id, slot_number, count(*) AS n, string_agg(id, ', ' ORDER BY id) AS ids
    FROM stocks GROUP BY machine_id, slot_number HAVING count(*) > 1
)
SELECT (SELECT coalesce(sum(n), 0)::bigint FROM bad),
       ARRAY(SELECT 'machine ' || machine_id || ' slot ' || slot_number || ': stocks ' || ids
             FROM bad ORDER BY machine_id, slot_number LIMIT $1)",
    },
    Check {
        id: "orders_duplicate_payment_intent",
        guards_step: 11,
        needs_column: Some(("orders", "stripe_payment_intent_id")),
        problem: "one PaymentIntent linked to several orders breaks UNIQUE orders_stripe_payment_intent_id_key",
        fix: "a PaymentIntent pays one order: find the order Stripe really charged (its \
              metadata.order_id) and set stripe_payment_intent_id = NULL on the others",
        sql: "
WITH bad AS (
    SELECT stripe_payment_intent_id AS pi, count(*) AS n, string_agg(id, ', ' ORDER BY id) AS ids
    FROM orders WHERE stripe_payment_intent_id IS NOT NULL
    GROUP BY stripe_payment_intent_id HAVING count(*) > 1
)
SELECT (SELECT coalesce(sum(n), 0)::bigint FROM bad),
       ARRAY(SELECT pi || ': orders ' || ids FROM bad ORDER BY pi LIMIT $1)",
    },
    Check {
        id: "order_items_inconsistent_snapshot",
        guards_step: 5,
        needs_column: Some(("order_items", "label")),
        problem: "snapshots whose subtotal is not unit price × quantity (or whose unit price is \
                  negative) break CHECK order_items_snapshot_check",
        fix: "a snapshot was written by hand: set label = NULL on those items so that \
              `paytool backfill payments` takes the snapshot again",
        sql: "
WITH bad AS (
    SELECT id FROM order_items
    WHERE label IS NOT NULL
      AND NOT (unit_price_cents >= 0 AND subtotal_cents::bigint = unit_price_cents::bigint * quantity)
)
SELECT (SELECT count(*) FROM bad), ARRAY(SELECT 'order_items ' || id FROM bad ORDER BY id LIMIT $1)",
    },
];

/// How many offending rows a finding names.
pub const SAMPLE_SIZE: i64 = 10;

#[derive(Debug, Clone, Serialize)]
pub struct PreflightFinding {
    pub check: &'static str,
    pub guards_step: i32,
    pub problem: &'static str,
    pub offending_rows: i64,
    pub sample: Vec<String>,
    pub fix: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PreflightReport {
    pub checks_run: Vec<&'static str>,
    pub findings: Vec<PreflightFinding>,
}

impl PreflightReport {
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Runs, read-only, every check whose step is still pending.
pub async fn run(
    conn: &mut PgConnection,
    pending_versions: &[i32],
) -> anyhow::Result<PreflightReport> {
    let mut report = PreflightReport::default();
    for check in CHECKS
        .iter()
        .filter(|c| pending_versions.contains(&c.guards_step))
    {
        if let Some((table, column)) = check.needs_column
            && !db::column_exists(conn, table, column).await?
        {
            continue;
        }
        let (offending_rows, sample): (i64, Vec<String>) = sqlx::query_as(check.sql)
            .bind(SAMPLE_SIZE)
            .fetch_one(&mut *conn)
            .await?;
        report.checks_run.push(check.id);
        if offending_rows > 0 {
            report.findings.push(PreflightFinding {
                check: check.id,
                guards_step: check.guards_step,
                problem: check.problem,
                offending_rows,
                sample,
                fix: check.fix,
            });
        }
    }
    Ok(report)
}
