//! `backfill payments --dry-run`: what a run would change and leave unresolved, read in one
//! statement (sql/backfill/dry_run.sql), writing nothing but paytool's own tables.

use std::time::Instant;

use sqlx::PgConnection;

use super::BackfillStep;
use super::catalogue::StepDef;
use super::checkpoint;
use super::report::{StepReport, Unresolved};
use super::runner::{SAMPLE_SIZE, extent, unresolved};

const DRY_RUN_SQL: &str = include_str!("../../sql/backfill/dry_run.sql");

const FIRST_PASS_SCANNED_SQL: &str =
    include_str!("../../sql/backfill/orders_first_pass_scanned.sql");

/// One row of dry_run.sql: a step, what would happen to some of its rows (changed, or left
/// unresolved for a reason), how many, and the first ids.
#[derive(sqlx::FromRow)]
struct DryRunOutcome {
    step: String,
    outcome: String,
    rows: i64,
    sample: Vec<String>,
}

/// The outcome of dry_run.sql's rows that a run would write.
const WOULD_CHANGE: &str = "would_change";

pub(super) async fn dry_run(
    conn: &mut PgConnection,
    steps: &[&StepDef],
) -> anyhow::Result<Vec<StepReport>> {
    let started = Instant::now();
    let outcomes: Vec<DryRunOutcome> = sqlx::query_as(DRY_RUN_SQL)
        .bind(SAMPLE_SIZE)
        .fetch_all(&mut *conn)
        .await?;
    let mut reports = Vec::new();
    for step in steps {
        let of_step = || outcomes.iter().filter(|o| o.step == step.name);
        let would_change: i64 = of_step()
            .filter(|o| o.outcome == WOULD_CHANGE)
            .map(|o| o.rows)
            .sum();
        // Items are unresolved for a reason of their own (a deleted product...); orders and
        // payments only because of their items or their total, as a real run would find.
        let unresolved_by_reason = if step.step == BackfillStep::Items {
            unresolved(conn, step).await?
        } else {
            of_step()
                .filter(|o| o.outcome != WOULD_CHANGE)
                .map(|o| Unresolved {
                    reason: o.outcome.clone(),
                    rows: o.rows,
                    sample: o.sample.clone(),
                })
                .collect()
        };
        let unresolved: i64 = unresolved_by_reason.iter().map(|u| u.rows).sum();
        // The payment queue does not exist before a first real run: what the payments step
        // would read is what it would write or leave unresolved.
        let scanned = match step.step {
            BackfillStep::Payments => would_change + unresolved,
            // Before its first pass has completed, the orders step reads the orders at 0
            // themselves, and then its queue.
            BackfillStep::Orders if !checkpoint::first_pass_done(conn).await? => {
                sqlx::query_scalar(FIRST_PASS_SCANNED_SQL)
                    .fetch_one(&mut *conn)
                    .await?
            }
            _ => extent(conn, step).await?.0,
        };
        reports.push(StepReport {
            step: step.name,
            scanned,
            changed: would_change,
            skipped: (scanned - would_change - unresolved).max(0),
            unresolved,
            unresolved_by_reason,
            duration_ms: started.elapsed().as_millis() as u64,
            ..StepReport::default()
        });
    }
    Ok(reports)
}
