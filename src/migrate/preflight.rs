//! Data that would break a constraint of the migration, found before anything changes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgConnection;

use super::steps::Step;
use crate::db;

/// One kind of offending data, checked only while a step that names it (`Step::preflight`)
/// is pending.
struct Check {
    id: &'static str,
    /// The column the check reads, when it only exists part-way through the migration.
    needs_column: Option<(&'static str, &'static str)>,
    problem: &'static str,
    fix: &'static str,
    /// Returns (offending rows, sample descriptions) with `$1` = sample size.
    sql: &'static str,
    /// The check sees only what runs at one instant (sessions and their current query): it is
    /// repeated over the watch window and what it saw is merged.
    watched: bool,
}

const CHECKS: &[Check] = &[
    Check {
        id: "stocks_negative_quantity",
        needs_column: None,
        problem: "stock quantities below zero break CHECK stocks_quantity_non_negative (quantity >= 0)",
        fix: "count the slots again and set the real quantity, e.g. \
              UPDATE stocks SET quantity = 0 WHERE quantity < 0 AND id IN (...);",
        watched: false,
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
        needs_column: None,
        problem: "two stocks rows for one machine slot break UNIQUE stocks_machine_id_slot_number_key",
        fix: "keep one stocks row per (machine_id, slot_number): add the quantities into one row \
              and DELETE the others, or move them to a free slot_number",
        watched: false,
        sql: "
WITH bad AS (
    SELECT machine_id, slot_number, count(*) AS n, string_agg(id::TEXT, ', ' ORDER BY id) AS ids
    FROM stocks GROUP BY machine_id, slot_number HAVING count(*) > 1
)
SELECT (SELECT coalesce(sum(n), 0)::bigint FROM bad),
       ARRAY(SELECT 'machine ' || machine_id || ' slot ' || slot_number || ': stocks ' || ids
             FROM bad ORDER BY machine_id, slot_number LIMIT $1)",
    },
    Check {
        id: "orders_duplicate_payment_intent",
        needs_column: Some(("orders", "stripe_payment_intent_id")),
        problem: "one PaymentIntent linked to several orders breaks UNIQUE orders_stripe_payment_intent_id_key",
        fix: "a PaymentIntent pays one order: find the order Stripe really charged (its \
              metadata.order_id) and set stripe_payment_intent_id = NULL on the others",
        watched: false,
        sql: "
WITH bad AS (
    SELECT stripe_payment_intent_id AS pi, count(*) AS n, string_agg(id::TEXT, ', ' ORDER BY id) AS ids
    FROM orders WHERE stripe_payment_intent_id IS NOT NULL
    GROUP BY stripe_payment_intent_id HAVING count(*) > 1
)
SELECT (SELECT coalesce(sum(n), 0)::bigint FROM bad),
       ARRAY(SELECT pi || ': orders ' || ids FROM bad ORDER BY pi LIMIT $1)",
    },
    Check {
        id: "order_items_inconsistent_snapshot",
        needs_column: Some(("order_items", "label")),
        problem: "snapshots whose subtotal is not unit price × quantity (or whose unit price is \
                  negative) break CHECK order_items_snapshot_check",
        fix: "a snapshot was written by hand: set label = NULL on those items so that \
              `paytool backfill payments` takes the snapshot again",
        watched: false,
        sql: "
WITH bad AS (
    SELECT id FROM order_items
    WHERE label IS NOT NULL
      AND NOT (unit_price_cents >= 0 AND subtotal_cents::bigint = unit_price_cents::bigint * quantity)
)
SELECT (SELECT count(*) FROM bad), ARRAY(SELECT 'order_items ' || id FROM bad ORDER BY id LIMIT $1)",
    },
    Check {
        id: "order_status_still_used",
        needs_column: None,
        problem: "objects other than paytool's operators still use the enum type order_status, \
                  which the cleanup drops",
        fix: "change each object named here to VARCHAR or text (a column: ALTER TABLE ... ALTER COLUMN \
              ... TYPE VARCHAR; a function or view: recreate it without the type), then run \
              paytool migrate cleanup again",
        watched: false,
        sql: "
WITH bad AS (
    SELECT pg_describe_object(d.classid, d.objid, d.objsubid) AS what
    FROM pg_depend AS d
    WHERE d.refclassid = 'pg_type'::REGCLASS AND d.refobjid = to_regtype('order_status')
      AND d.deptype = 'n'
      AND NOT (d.classid = 'pg_proc'::REGCLASS AND d.objid IN (
          SELECT oid FROM pg_proc
          WHERE proname IN ('order_status_legacy_eq', 'order_status_legacy_ne')))
      AND NOT (d.classid = 'pg_operator'::REGCLASS AND d.objid IN (
          SELECT oid FROM pg_operator
          WHERE oprname IN ('=', '<>') AND oprleft = 'text'::REGTYPE))
)
SELECT (SELECT count(*) FROM bad), ARRAY(SELECT what FROM bad ORDER BY what LIMIT $1)",
    },
    Check {
        id: "legacy_clients_connected",
        needs_column: None,
        problem: "sessions whose last query used the enum type order_status: the legacy application \
                  (or a script written for it) is still connected, and its enum filters fail once \
                  the type is dropped",
        fix: "deploy the application built from the upgraded schema.prisma (status String, see \
              `paytool prisma schema`), stop every instance of the old one, then run paytool migrate \
              cleanup again. Only sessions this role may see are checked: run it as the table owner \
              or a member of pg_read_all_stats",
        watched: true,
        sql: "
WITH bad AS (
    SELECT pid, coalesce(nullif(application_name, ''), 'no application_name') AS app,
           coalesce(host(client_addr), 'local socket') AS client, coalesce(state, '?') AS state,
           left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS query
    FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND backend_type = 'client backend' AND query ILIKE '%order\\_status%'
      -- paytool's own sessions (a verify run reads the type's catalog entries) are not clients
      AND application_name <> 'paytool'
)
SELECT (SELECT count(*) FROM bad),
       ARRAY(SELECT 'pid ' || pid || ' (' || app || ', ' || client || ', ' || state || '): ' || query
             FROM bad ORDER BY pid LIMIT $1)",
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

/// Runs, read-only, the checks of the pending steps; checks of what runs at one instant are
/// repeated for `watch` (zero: once).
pub async fn run(
    conn: &mut PgConnection,
    pending: &[&Step],
    watch: Duration,
) -> anyhow::Result<PreflightReport> {
    let mut report = PreflightReport::default();
    let checks = CHECKS.iter().filter_map(|check| {
        pending
            .iter()
            .find(|step| step.preflight.contains(&check.id))
            .map(|step| (step, check))
    });
    for (step, check) in checks {
        if let Some((table, column)) = check.needs_column
            && !db::column_exists(conn, table, column).await?
        {
            continue;
        }
        let (offending_rows, sample) = if check.watched {
            watch_check(conn, check, watch).await?
        } else {
            sqlx::query_as(check.sql)
                .bind(SAMPLE_SIZE)
                .fetch_one(&mut *conn)
                .await?
        };
        report.checks_run.push(check.id);
        if offending_rows > 0 {
            report.findings.push(PreflightFinding {
                check: check.id,
                guards_step: step.version,
                problem: check.problem,
                offending_rows,
                sample,
                fix: check.fix,
            });
        }
    }
    Ok(report)
}

/// How often a watched check looks again.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);

/// Runs a watched check until `watch` has passed, merging what it saw by the first two words
/// of each description (`pid 1234`), so a session counts once however often it was seen.
async fn watch_check(
    conn: &mut PgConnection,
    check: &Check,
    watch: Duration,
) -> Result<(i64, Vec<String>), sqlx::Error> {
    let started = Instant::now();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let (_, sample): (i64, Vec<String>) = sqlx::query_as(check.sql)
            .bind(SAMPLE_SIZE)
            .fetch_one(&mut *conn)
            .await?;
        for description in sample {
            let key: String = description.split(' ').take(2).collect::<Vec<_>>().join(" ");
            seen.entry(key).or_insert(description);
        }
        if started.elapsed() >= watch {
            break;
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
    let count = seen.len() as i64;
    Ok((
        count,
        seen.into_values().take(SAMPLE_SIZE as usize).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::steps::STEPS;

    #[test]
    fn every_check_is_named_by_exactly_one_step_and_every_name_is_a_check() {
        for check in CHECKS {
            let naming = STEPS
                .iter()
                .filter(|s| s.preflight.contains(&check.id))
                .count();
            assert_eq!(naming, 1, "{} is named by {naming} steps", check.id);
        }
        for step in STEPS {
            for id in step.preflight {
                assert!(
                    CHECKS.iter().any(|c| c.id == *id),
                    "{}: no check {id}",
                    step.name
                );
            }
        }
    }
}
