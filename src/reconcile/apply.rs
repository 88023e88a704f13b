//! `reconcile --apply`: the repairs the findings carry, each in its own transaction with its
//! audit row. Only database-side, never an amount, never a Stripe call.

use serde::Serialize;
use sqlx::{Connection, PgConnection};

use super::finding::{Finding, Kind, Repair};
use crate::db::{self, IdType, Key};

const AUDIT_TABLE_SQL: &str = include_str!("../../sql/reconcile/audit.sql");
const INSERT_AUDIT_SQL: &str = include_str!("../../sql/reconcile/insert_audit.sql");
const LINK_SQL: &str = include_str!("../../sql/reconcile/link.sql");
const MARK_PAID_SQL: &str = include_str!("../../sql/reconcile/mark_paid.sql");
const SYNC_PAYMENT_SQL: &str = include_str!("../../sql/reconcile/sync_payment.sql");
const RECORD_REFUND_SQL: &str = include_str!("../../sql/reconcile/record_refund.sql");
const RECORD_EVENT_SQL: &str = include_str!("../../sql/reconcile/record_event.sql");

/// What became of one repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairOutcome {
    /// Written and audited.
    Applied,
    /// The row had changed meanwhile and the guard held: nothing written.
    Unchanged,
    /// Another row already holds that Stripe id: nothing written, a person must look.
    Conflict,
}

impl RepairOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RepairOutcome::Applied => "applied",
            RepairOutcome::Unchanged => "unchanged",
            RepairOutcome::Conflict => "conflict",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AppliedRepair {
    pub finding: Kind,
    pub order_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub action: &'static str,
    pub outcome: RepairOutcome,
}

type Change = (Option<serde_json::Value>, Option<serde_json::Value>);

pub async fn apply_all(
    conn: &mut PgConnection,
    id_type: IdType,
    run_id: &str,
    findings: &[Finding],
) -> anyhow::Result<Vec<AppliedRepair>> {
    crate::db::bookkeeping::ensure(conn, AUDIT_TABLE_SQL, &["paytool.reconcile_audit"]).await?;
    let mut work: Vec<(&Finding, &Repair)> = findings
        .iter()
        .flat_map(|f| f.repairs.iter().map(move |r| (f, r)))
        .collect();
    // Links first: the other repairs of the same order assume it.
    work.sort_by_key(|(_, repair)| order_of(repair));
    let mut applied = Vec::new();
    for (finding, repair) in work {
        let done = apply_one(conn, id_type, run_id, finding, repair).await.map_err(|e| {
            e.context(format!(
                "reconcile --apply stopped after {} repair(s) (each committed and audited under run {run_id}); \
                 run it again: what is left will be found again",
                applied.len()
            ))
        })?;
        applied.push(done);
    }
    Ok(applied)
}

fn order_of(repair: &Repair) -> u8 {
    match repair {
        Repair::Link { .. } => 0,
        Repair::MarkPaid { .. } => 1,
        Repair::SyncPayment { .. } => 2,
        Repair::RecordRefund { .. } => 3,
        // After the links: the event finds its payment through them.
        Repair::RecordEvent { .. } => 4,
    }
}

fn action_name(repair: &Repair) -> &'static str {
    match repair {
        Repair::Link { .. } => "link",
        Repair::MarkPaid { .. } => "mark_paid",
        Repair::SyncPayment { .. } => "sync_payment",
        Repair::RecordRefund { .. } => "record_refund",
        Repair::RecordEvent { .. } => "record_event",
    }
}

async fn apply_one(
    conn: &mut PgConnection,
    id_type: IdType,
    run_id: &str,
    finding: &Finding,
    repair: &Repair,
) -> anyhow::Result<AppliedRepair> {
    let mut tx = conn.begin().await?;
    let outcome = match change(&mut tx, id_type, repair).await {
        // Another order or payment already holds this Stripe id: a person must look.
        Err(err) if db::sqlstate_of(&err).as_deref() == Some(db::sqlstate::UNIQUE_VIOLATION) => {
            tx.rollback().await?;
            RepairOutcome::Conflict
        }
        Err(err) => return Err(err.into()),
        Ok((_, None)) => {
            tx.commit().await?;
            RepairOutcome::Unchanged
        }
        Ok((before, Some(after))) => {
            sqlx::query(INSERT_AUDIT_SQL)
                .bind(run_id)
                .bind(finding.kind.name())
                .bind(action_name(repair))
                .bind(&finding.order_id)
                .bind(&finding.payment_intent_id)
                .bind(before)
                .bind(after)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            RepairOutcome::Applied
        }
    };
    tracing::info!(
        "{} {} for order {}: {}",
        finding.kind.name(),
        action_name(repair),
        finding.order_id.as_deref().unwrap_or("-"),
        outcome.as_str()
    );
    Ok(AppliedRepair {
        finding: finding.kind,
        order_id: finding.order_id.clone(),
        payment_intent_id: finding.payment_intent_id.clone(),
        action: action_name(repair),
        outcome,
    })
}

/// The repair's SQL: the row before and after, `after` None when its guard no longer held.
async fn change(
    conn: &mut PgConnection,
    id_type: IdType,
    repair: &Repair,
) -> Result<Change, sqlx::Error> {
    // Order ids come from the database's own text form of its keys: they parse.
    let order_key =
        |id: &str| Key::parse(id_type, id).map_err(|e| sqlx::Error::Encode(Box::new(e)));
    match repair {
        Repair::Link {
            order_id,
            payment_intent_id,
        } => {
            sqlx::query_as(LINK_SQL)
                .bind(order_key(order_id)?)
                .bind(payment_intent_id)
                .fetch_one(conn)
                .await
        }
        Repair::MarkPaid { order_id, paid_at } => {
            sqlx::query_as(MARK_PAID_SQL)
                .bind(order_key(order_id)?)
                .bind(paid_at.map(|t| t.naive_utc()))
                .fetch_one(conn)
                .await
        }
        Repair::SyncPayment {
            payment_id,
            payment_intent_id,
            status,
            succeeded_at,
            last_error_code,
            last_error_message,
        } => {
            sqlx::query_as(SYNC_PAYMENT_SQL)
                .bind(payment_id)
                .bind(payment_intent_id)
                .bind(status.as_str())
                .bind(succeeded_at.map(|t| t.naive_utc()))
                .bind(last_error_code)
                .bind(last_error_message)
                .fetch_one(conn)
                .await
        }
        Repair::RecordRefund { payment_id, refund } => {
            sqlx::query_as(RECORD_REFUND_SQL)
                .bind(payment_id)
                .bind(&refund.id)
                .bind(refund.amount)
                .bind(&refund.currency)
                .bind(&refund.status)
                .bind(&refund.reason)
                .bind(refund.created.naive_utc())
                .fetch_one(conn)
                .await
        }
        Repair::RecordEvent { event } => {
            sqlx::query_as(RECORD_EVENT_SQL)
                .bind(&event.id)
                .bind(&event.type_)
                .bind(event.payload.to_string())
                .bind(event.created.naive_utc())
                .bind(&event.payment_intent_id)
                .fetch_one(conn)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::IntentStatus;

    #[test]
    fn the_audited_action_is_the_json_action() {
        let repairs = [
            Repair::Link {
                order_id: "o".into(),
                payment_intent_id: "pi".into(),
            },
            Repair::MarkPaid {
                order_id: "o".into(),
                paid_at: None,
            },
            Repair::SyncPayment {
                payment_id: "p".into(),
                payment_intent_id: "pi".into(),
                status: IntentStatus::Succeeded,
                succeeded_at: None,
                last_error_code: None,
                last_error_message: None,
            },
        ];
        for repair in &repairs {
            let json = serde_json::to_value(repair).unwrap();
            assert_eq!(json["action"], action_name(repair), "{json}");
        }
        assert_eq!(
            serde_json::to_value(RepairOutcome::Unchanged).unwrap(),
            RepairOutcome::Unchanged.as_str()
        );
    }
}
