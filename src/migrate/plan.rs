//! What a migration run will do, step by step: a pure function of the steps, the row
//! estimates and the lock policy.

use std::collections::BTreeMap;

use serde::Serialize;

use super::LockPolicy;
use super::preflight::PreflightReport;
use super::steps::{Lock, Phase, Step, StepKind};
use crate::db::IdType;

#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub version: i32,
    pub phase: Phase,
    pub name: &'static str,
    pub kind: StepKind,
    pub table: &'static str,
    pub lock: Lock,
    pub blocks_writes: bool,
    /// Rows in the table, from the planner statistics (None: never analyzed).
    pub table_rows_estimate: Option<i64>,
    /// Rows the step reads or writes (0 for catalog-only changes).
    pub rows_touched_estimate: Option<i64>,
    pub lock_timeout_ms: u64,
    /// None: no statement_timeout for this step.
    pub statement_timeout_ms: Option<u64>,
    pub hazards: Vec<String>,
    pub sql: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigratePlan {
    pub database: String,
    /// The type of orders.id, which payments.order_id takes.
    pub id_type: IdType,
    pub steps_total: usize,
    pub steps_applied: usize,
    /// Steps `paytool migrate` applies.
    pub pending: Vec<PlannedStep>,
    /// Steps `paytool backfill payments` applies after its first complete pass.
    pub after_backfill: Vec<PlannedStep>,
    /// Steps only `paytool migrate cleanup` applies, once the legacy application is gone.
    pub cleanup: Vec<PlannedStep>,
    /// The checks of what runs next: the migration, or once it is applied, the cleanup.
    pub preflight: PreflightReport,
    /// Timeouts set for the role or database by someone else (name, value) that paytool's
    /// sessions override, each step setting its own.
    pub overridden_timeouts: Vec<(String, String)>,
    #[serde(skip)]
    pub show_sql: bool,
}

/// The plan of each phase.
pub struct Phases {
    pub migrate: Vec<PlannedStep>,
    pub after_backfill: Vec<PlannedStep>,
    pub cleanup: Vec<PlannedStep>,
}

/// The plan of `steps` (those not applied yet, in the order they run), by phase: everything
/// it says comes from each step's declaration and the row estimates.
pub fn plan_phases(
    steps: &[&Step],
    rows: &BTreeMap<String, Option<i64>>,
    policy: &LockPolicy,
    batch_size: i64,
) -> Phases {
    let of = |phase: Phase| -> Vec<PlannedStep> {
        steps
            .iter()
            .filter(|s| s.phase == phase)
            .map(|s| plan_step(s, rows, policy, batch_size))
            .collect()
    };
    Phases {
        migrate: of(Phase::Migrate),
        after_backfill: of(Phase::AfterBackfill),
        cleanup: of(Phase::Cleanup),
    }
}

pub fn plan_step(
    step: &Step,
    rows: &BTreeMap<String, Option<i64>>,
    policy: &LockPolicy,
    batch_size: i64,
) -> PlannedStep {
    let table_rows = rows.get(step.table).copied().flatten();
    let rows_touched = match step.kind {
        StepKind::Transactional => Some(0),
        _ => table_rows,
    };
    let timeouts = policy.timeouts_for(step.kind);
    let mut hazards = hazards(step, table_rows, policy, batch_size);
    hazards.extend(step.note.map(str::to_owned));
    PlannedStep {
        version: step.version,
        phase: step.phase,
        name: step.name,
        kind: step.kind,
        table: step.table,
        lock: step.lock,
        blocks_writes: step.lock.blocks_writes(),
        table_rows_estimate: table_rows,
        rows_touched_estimate: rows_touched,
        lock_timeout_ms: timeouts.lock_timeout.as_millis() as u64,
        statement_timeout_ms: (!timeouts.statement_timeout.is_zero())
            .then_some(timeouts.statement_timeout.as_millis() as u64),
        hazards,
        sql: step.sql,
    }
}

fn rows_text(rows: Option<i64>) -> String {
    rows.map_or_else(
        || "an unknown number of (never analyzed)".to_owned(),
        |n| format!("~{n}"),
    )
}

fn hazards(
    step: &Step,
    table_rows: Option<i64>,
    policy: &LockPolicy,
    batch_size: i64,
) -> Vec<String> {
    let rows = rows_text(table_rows);
    let table = step.table;
    match step.kind {
        StepKind::Transactional if step.lock == Lock::NoTableLock => vec![
            "catalog objects only (functions, operators, types): no table lock, the application \
             is never blocked"
                .to_owned(),
        ],
        StepKind::Transactional => {
            let blocked = if step.lock == Lock::AccessExclusive {
                "reads and writes"
            } else {
                "writes"
            };
            vec![format!(
                "{blocked} on {table} wait while {lock} is held (catalog only: milliseconds); an attempt \
                 waits at most {lt:?} for the lock, then retries later (up to {n} times), so queries \
                 queue behind it for {lt:?} at most",
                lock = step.lock.name(),
                lt = policy.lock_timeout,
                n = policy.lock_retries,
            )]
        }
        StepKind::Validation => vec![format!(
            "scans {rows} rows of {table} to validate the constraint; reads and writes go on; \
             no statement_timeout for this step"
        )],
        StepKind::ConcurrentIndex { index } => vec![
            format!("builds {index} over {rows} rows of {table} without blocking reads or writes"),
            "waits for every older transaction in this database to end (a long one delays it): \
             no statement_timeout for this step"
                .to_owned(),
            "an interrupted build leaves an INVALID index: the next run drops and rebuilds it"
                .to_owned(),
        ],
        StepKind::ConcurrentDrop { index } => vec![format!(
            "drops {index} without blocking reads or writes; waits for the transactions using \
             {table} to end: no statement_timeout for this step"
        )],
        StepKind::Batched => vec![format!(
            "updates {rows} rows of {table} in batches of {batch_size}, each its own transaction: \
             a row is locked for one batch at most; resumes where it stopped"
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::steps::{STEPS, steps_of};

    /// A step added the way every step is: one declaration (and its SQL file).
    const HYPOTHETICAL: Step = Step {
        version: 99,
        phase: Phase::Migrate,
        name: "099_orders_total_non_negative",
        sql: "ALTER TABLE orders ADD CONSTRAINT orders_total_non_negative \
              CHECK (amount_total_cents >= 0) NOT VALID;",
        kind: StepKind::Transactional,
        table: "orders",
        lock: Lock::AccessExclusive,
        note: Some("NOT VALID: no scan"),
        earlier_checksums: &[],
        after_pass: None,
        preflight: &[],
        remaining_sql: None,
        on_uuid_ids: None,
    };

    #[test]
    fn a_new_step_is_planned_from_its_declaration_alone() {
        let mut table: Vec<&Step> = STEPS.iter().collect();
        let before_cleanup = table
            .iter()
            .position(|s| s.phase != Phase::Migrate)
            .unwrap();
        table.insert(before_cleanup, &HYPOTHETICAL);
        let rows = BTreeMap::from([("orders".to_owned(), Some(1_000_000))]);
        let phases = plan_phases(&table, &rows, &LockPolicy::default(), 1_000);
        assert_eq!(phases.migrate.len(), steps_of(Phase::Migrate).count() + 1);
        assert_eq!(phases.cleanup.len(), steps_of(Phase::Cleanup).count());
        let planned = phases.migrate.last().unwrap();
        assert_eq!(planned.name, HYPOTHETICAL.name);
        assert_eq!(planned.lock, Lock::AccessExclusive);
        assert!(planned.blocks_writes);
        assert_eq!(planned.rows_touched_estimate, Some(0));
        assert!(planned.hazards.iter().any(|h| h == "NOT VALID: no scan"));
    }
}
