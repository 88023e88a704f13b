//! paytool.schema_history: which steps ran, with which checksum, and whether they finished.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use super::steps::{HISTORY_SQL, Phase, Step};
use crate::db;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryRow {
    pub version: i32,
    pub name: String,
    pub checksum: String,
    pub state: String,
    pub finished_at: Option<DateTime<Utc>>,
    pub execution_ms: Option<i64>,
}

const LOAD_SQL: &str = "
SELECT version, name, checksum, state, finished_at, execution_ms
FROM paytool.schema_history ORDER BY version";

const MARK_RUNNING_SQL: &str = "
INSERT INTO paytool.schema_history (version, name, checksum, state)
VALUES ($1, $2, $3, 'running')
ON CONFLICT (version) DO UPDATE
SET name = EXCLUDED.name, checksum = EXCLUDED.checksum, state = 'running',
    started_at = now(), finished_at = NULL, execution_ms = NULL";

const MARK_APPLIED_SQL: &str = "
INSERT INTO paytool.schema_history (version, name, checksum, state, finished_at, execution_ms)
VALUES ($1, $2, $3, 'applied', now(), $4)
ON CONFLICT (version) DO UPDATE
SET name = EXCLUDED.name, checksum = EXCLUDED.checksum, state = 'applied',
    finished_at = now(), execution_ms = EXCLUDED.execution_ms";

/// The history, empty when paytool never ran on this database.
pub async fn load(conn: &mut PgConnection) -> Result<Vec<HistoryRow>, sqlx::Error> {
    if !db::relation_exists(conn, "paytool.schema_history").await? {
        return Ok(Vec::new());
    }
    sqlx::query_as(LOAD_SQL).fetch_all(conn).await
}

pub async fn ensure_table(conn: &mut PgConnection) -> anyhow::Result<()> {
    db::bookkeeping::ensure(conn, HISTORY_SQL, &["paytool.schema_history"]).await
}

pub async fn mark_running(conn: &mut PgConnection, step: &Step) -> Result<(), sqlx::Error> {
    sqlx::query(MARK_RUNNING_SQL)
        .bind(step.version)
        .bind(step.name)
        .bind(step.checksum())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn mark_applied(
    conn: &mut PgConnection,
    step: &Step,
    execution_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(MARK_APPLIED_SQL)
        .bind(step.version)
        .bind(step.name)
        .bind(step.checksum())
        .bind(execution_ms)
        .execute(conn)
        .await?;
    Ok(())
}

/// Where one step stands, comparing the embedded SQL with the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    /// Started but never finished (killed, lost connection, failed): the next run redoes it.
    Interrupted,
    /// Started, and a paytool migrate holding the migrate lock is running it now.
    Running,
    Applied,
    /// Applied with SQL other than the SQL embedded in this binary.
    Drift,
}

impl StepState {
    /// The name JSON carries (serde's snake_case) and the tables show.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Interrupted => "interrupted",
            StepState::Running => "running",
            StepState::Applied => "applied",
            StepState::Drift => "drift",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepStatus {
    pub version: i32,
    pub phase: Phase,
    pub name: &'static str,
    pub state: StepState,
    pub checksum: String,
    pub applied_checksum: Option<String>,
    pub applied_at: Option<DateTime<Utc>>,
    pub execution_ms: Option<i64>,
    /// The step as it runs on this database.
    #[serde(skip)]
    pub step: &'static Step,
}

/// Pure comparison of the steps as they run on this database with the recorded history.
pub fn compare(
    steps: &'static [Step],
    history: &[HistoryRow],
) -> (Vec<StepStatus>, Vec<HistoryRow>) {
    let statuses = steps
        .iter()
        .map(|step| {
            let checksum = step.checksum();
            let row = history.iter().find(|h| h.version == step.version);
            let state = match row {
                None => StepState::Pending,
                Some(h) if !step.matches_applied(&h.checksum) => StepState::Drift,
                Some(h) if h.state == "applied" => StepState::Applied,
                Some(_) => StepState::Interrupted,
            };
            StepStatus {
                version: step.version,
                phase: step.phase,
                name: step.name,
                state,
                checksum,
                applied_checksum: row.map(|h| h.checksum.clone()),
                applied_at: row.and_then(|h| h.finished_at),
                execution_ms: row.and_then(|h| h.execution_ms),
                step,
            }
        })
        .collect();
    let unknown = history
        .iter()
        .filter(|h| !steps.iter().any(|s| s.version == h.version))
        .cloned()
        .collect();
    (statuses, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::IdType;
    use crate::migrate::steps::{STEPS, steps_for};

    fn row(version: i32, checksum: String, state: &str) -> HistoryRow {
        HistoryRow {
            version,
            name: format!("step {version}"),
            checksum,
            state: state.to_owned(),
            finished_at: None,
            execution_ms: None,
        }
    }

    #[test]
    fn states_follow_history_and_checksums() {
        let history = vec![
            row(1, STEPS[0].checksum(), "applied"),
            row(2, "0000".to_owned(), "applied"),
            row(3, STEPS[2].checksum(), "running"),
            row(99, "ffff".to_owned(), "applied"),
        ];
        let (statuses, unknown) = compare(STEPS, &history);
        assert_eq!(statuses[0].state, StepState::Applied);
        assert_eq!(statuses[1].state, StepState::Drift);
        assert_eq!(statuses[2].state, StepState::Interrupted);
        assert_eq!(statuses[3].state, StepState::Pending);
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].version, 99);
    }

    #[test]
    fn an_earlier_equivalent_version_of_a_step_is_not_drift() {
        let rewritten = STEPS
            .iter()
            .find(|s| !s.earlier_checksums.is_empty())
            .unwrap();
        let history = vec![row(
            rewritten.version,
            rewritten.earlier_checksums[0].to_owned(),
            "applied",
        )];
        let (statuses, _) = compare(STEPS, &history);
        let status = statuses
            .iter()
            .find(|s| s.version == rewritten.version)
            .unwrap();
        assert_eq!(status.state, StepState::Applied);
    }

    #[test]
    fn a_step_applied_for_text_ids_is_drift_where_ids_are_uuid() {
        let variant = STEPS.iter().find(|s| s.on_uuid_ids.is_some()).unwrap();
        let history = vec![row(variant.version, variant.checksum(), "applied")];
        let (statuses, _) = compare(steps_for(IdType::Uuid), &history);
        let status = statuses
            .iter()
            .find(|s| s.version == variant.version)
            .unwrap();
        assert_eq!(status.state, StepState::Drift);
    }
}
