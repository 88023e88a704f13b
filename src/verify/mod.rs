//! `paytool verify constraints`: the schema of SPEC §3 and the invariants of its data, as a
//! CI gate. Read-only: it runs in one READ ONLY transaction, so a role with SELECT suffices.

mod checks;

use std::time::Instant;

use serde::Serialize;
use sqlx::{Connection, PgConnection};

pub use checks::{CHECKS, Category, Check, Severity};

use crate::db::{self, DatabaseUrl, IdType};
use crate::exit;
use crate::progress::Progress;
use checks::Expected;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    /// An error-severity check found rows or objects.
    Fail,
    /// A warning-severity check found rows or objects.
    Warn,
    /// A note-severity check found objects (the application's own).
    Note,
    /// Not run: the schema checks it depends on failed.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub id: &'static str,
    pub category: Category,
    pub severity: Severity,
    pub status: Status,
    /// Offending rows or schema objects.
    pub count: i64,
    /// Up to `--sample` of their ids (names for schema objects), sorted.
    pub sample: Vec<String>,
    pub meaning: &'static str,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub warnings: usize,
    pub notes: usize,
    pub skipped: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub database: String,
    /// The type of the legacy ids (orders.id): what payments.order_id is expected to be.
    pub id_type: IdType,
    pub duration_ms: u64,
    pub summary: Summary,
    pub checks: Vec<CheckResult>,
}

impl VerifyReport {
    pub fn exit_code(&self) -> u8 {
        if self.summary.failed > 0 {
            exit::PROBLEMS_FOUND
        } else {
            exit::OK
        }
    }
}

/// What `paytool verify constraints` is asked to run.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    /// Only the schema checks or only the data checks; all when `None`.
    pub only: Option<Category>,
    /// How many offending ids each check lists.
    pub sample: i64,
}

/// Data checks need the tables and columns they read.
const DATA_PREREQUISITES: [&str; 2] = ["schema.tables", "schema.columns"];

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// `--only data` on a database without the payment model: every query would fail.
    #[error(
        "the data checks read tables and columns this database does not have ({missing} failed): \
         run paytool migrate first (paytool verify constraints --only schema shows what is missing)"
    )]
    NotMigrated { missing: String },
}

impl VerifyError {
    pub fn exit_code(&self) -> u8 {
        match self {
            VerifyError::NotMigrated { .. } => exit::USAGE,
        }
    }
}

pub async fn run(
    args: &VerifyRequest,
    url: &DatabaseUrl,
    progress: Progress,
) -> anyhow::Result<VerifyReport> {
    let mut conn = db::connect(url).await?;
    db::require_schema_usage(&mut conn).await?;
    let database = url.redacted().to_owned();
    let started = Instant::now();
    let selected: Vec<&Check> = CHECKS
        .iter()
        .filter(|c| args.only.is_none_or(|only| only == c.category))
        .collect();
    let bar = progress.steps(selected.len() as u64);
    // One snapshot for every check, and the guarantee that verify writes nothing.
    let mut tx = conn.begin().await?;
    sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let id_type = IdType::of(&mut tx, "orders", "id").await?;
    if args.only == Some(Category::Data) {
        require_data_prerequisites(&mut tx, id_type).await?;
    }
    let mut results: Vec<CheckResult> = Vec::new();
    for check in selected {
        bar.set_message(check.id);
        let result = if check.category == Category::Data && schema_broken(&results) {
            skipped(check)
        } else {
            run_check(&mut tx, check, id_type, args.sample).await?
        };
        tracing::debug!(
            "{}: {:?} ({} ms)",
            check.id,
            result.status,
            result.duration_ms
        );
        results.push(result);
        bar.inc(1);
    }
    tx.rollback().await?;
    bar.finish_and_clear();
    Ok(VerifyReport {
        database,
        id_type,
        duration_ms: started.elapsed().as_millis() as u64,
        summary: summarize(&results),
        checks: results,
    })
}

/// Runs the schema checks the data checks depend on, unreported, and refuses if one fails.
async fn require_data_prerequisites(
    conn: &mut PgConnection,
    id_type: IdType,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for check in CHECKS.iter().filter(|c| DATA_PREREQUISITES.contains(&c.id)) {
        if run_check(conn, check, id_type, 0).await?.status == Status::Fail {
            failed.push(check.id);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(VerifyError::NotMigrated {
            missing: failed.join(", "),
        }
        .into())
    }
}

fn schema_broken(results: &[CheckResult]) -> bool {
    results
        .iter()
        .any(|r| DATA_PREREQUISITES.contains(&r.id) && r.status == Status::Fail)
}

async fn run_check(
    conn: &mut PgConnection,
    check: &Check,
    id_type: IdType,
    sample: i64,
) -> anyhow::Result<CheckResult> {
    let started = Instant::now();
    let query = sqlx::query_as(check.sql);
    let query = match check.expected {
        Expected::Lines(kind) => query.bind(checks::expected_lines(kind, id_type)),
        Expected::Nothing => query,
    };
    let (count, sample): (i64, Vec<String>) =
        query.bind(sample).fetch_one(conn).await.map_err(|e| {
            anyhow::Error::new(e).context(format!("check {} could not run", check.id))
        })?;
    Ok(CheckResult {
        id: check.id,
        category: check.category,
        severity: check.severity,
        status: status_of(check.severity, count),
        count,
        sample,
        meaning: check.meaning,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

fn status_of(severity: Severity, count: i64) -> Status {
    match (count, severity) {
        (0, _) => Status::Pass,
        (_, Severity::Error) => Status::Fail,
        (_, Severity::Warning) => Status::Warn,
        (_, Severity::Note) => Status::Note,
    }
}

fn skipped(check: &Check) -> CheckResult {
    CheckResult {
        id: check.id,
        category: check.category,
        severity: check.severity,
        status: Status::Skipped,
        count: 0,
        sample: Vec::new(),
        meaning: check.meaning,
        duration_ms: 0,
    }
}

fn summarize(results: &[CheckResult]) -> Summary {
    let count = |status| results.iter().filter(|r| r.status == status).count();
    Summary {
        passed: count(Status::Pass),
        failed: count(Status::Fail),
        warnings: count(Status::Warn),
        notes: count(Status::Note),
        skipped: count(Status::Skipped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_error_severity_fails() {
        assert_eq!(status_of(Severity::Error, 0), Status::Pass);
        assert_eq!(status_of(Severity::Error, 3), Status::Fail);
        assert_eq!(status_of(Severity::Warning, 3), Status::Warn);
    }
}
