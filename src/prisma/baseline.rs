//! `paytool prisma baseline`: writes the payment system as a Prisma migration and records it
//! as applied, exactly as `prisma migrate resolve --applied` would, so that Prisma Migrate
//! neither reports drift nor applies the change a second time.
//!
//! The migration is made of paytool's own steps, in the order they run, turned into what a
//! new database needs: one transaction (no CONCURRENTLY) and the batched status copy as one
//! UPDATE. The end state is therefore the one `paytool migrate` leaves, by construction.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};

use super::PrismaError;
use crate::db::IdType;
use crate::migrate::steps::{Phase, Step, StepKind, steps_for};

const LEGACY_SCHEMA_SQL: &str = include_str!("../../sql/fixtures/legacy_schema.sql");
const STATUS_COPY_ONCE_SQL: &str = include_str!("../../sql/prisma/status_copy_once.sql");
const PRISMA_MIGRATIONS_SQL: &str = include_str!("../../sql/prisma/prisma_migrations.sql");
const RECORD_MIGRATION_SQL: &str = include_str!("../../sql/prisma/record_migration.sql");

#[derive(Debug, Clone)]
pub struct BaselineRequest {
    pub migrations_dir: PathBuf,
    /// The migration's name after its timestamp.
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    /// `<timestamp>_<name>`, the folder under the migrations directory.
    pub migration_name: String,
    pub path: PathBuf,
    /// sha256 of migration.sql, as Prisma records it.
    pub checksum: String,
    /// The folder was written by this run (false: an identical one was already there).
    pub written: bool,
    /// The migration was recorded as applied by this run (false: it already was).
    pub recorded: bool,
    /// The migrations directory had no earlier migration, so this one also creates the legacy
    /// tables (SPEC §2) and builds the whole schema on an empty database.
    pub includes_legacy_schema: bool,
    /// The cleanup's drop of the enum type is included (it ran on this database) or not.
    pub includes_cleanup: bool,
}

pub async fn baseline(
    url: &crate::db::DatabaseUrl,
    request: &BaselineRequest,
) -> anyhow::Result<BaselineReport> {
    if request.name.is_empty()
        || !request
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(PrismaError::BadName(request.name.clone()).into());
    }
    let conn = &mut crate::db::connect(url).await?;
    crate::db::require_primary(conn, url, "prisma baseline").await?;
    let migrated = crate::migrate::require_migrated(conn).await?;
    let statuses = crate::migrate::current_statuses(conn).await?;
    let pending_cleanup: Vec<i32> = crate::migrate::pending_steps(&statuses, Phase::Cleanup)
        .map(|s| s.version)
        .collect();
    let dir = &request.migrations_dir;
    let existing = existing_migrations(dir)?;
    let suffix = format!("_{}", request.name);
    let ours = existing.iter().find(|m| m.ends_with(&suffix)).cloned();
    let earlier = existing.iter().any(|m| !m.ends_with(&suffix));
    let id_type = migrated.orders_id;
    if !earlier && id_type != IdType::Text {
        return Err(PrismaError::NoLegacyMigration { dir: dir.clone() }.into());
    }
    let sql = migration_sql(!earlier, id_type, &pending_cleanup);

    let (migration_name, written) = match ours {
        Some(name) => {
            let path = dir.join(&name).join("migration.sql");
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            if on_disk != sql {
                return Err(PrismaError::BaselineDiffers { path }.into());
            }
            (name, false)
        }
        None => {
            let name = format!("{}{suffix}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
            write_migration(&dir.join(&name), &sql)?;
            (name, true)
        }
    };
    write_lock_file(dir)?;
    let checksum = hex::encode(Sha256::digest(sql.as_bytes()));
    let recorded = record_applied(conn, &migration_name, &checksum).await?;
    Ok(BaselineReport {
        path: dir.join(&migration_name).join("migration.sql"),
        migration_name,
        checksum,
        written,
        recorded,
        includes_legacy_schema: !earlier,
        includes_cleanup: !pending_cleanup.contains(&25),
    })
}

/// Folder names of the migrations already in `dir` (none when it does not exist yet).
fn existing_migrations(dir: &Path) -> Result<Vec<String>, PrismaError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(PrismaError::CannotWrite {
                path: dir.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("migration.sql").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

fn write_migration(folder: &Path, sql: &str) -> Result<(), PrismaError> {
    let cannot = |e: std::io::Error| PrismaError::CannotWrite {
        path: folder.to_owned(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(folder).map_err(cannot)?;
    std::fs::write(folder.join("migration.sql"), sql).map_err(cannot)
}

/// Prisma Migrate refuses a migrations folder without migration_lock.toml (it names the
/// database provider); a folder that has one is left alone.
const MIGRATION_LOCK: &str = "# Please do not edit this file manually\n\
# It should be added in your version-control system (e.g., Git)\n\
provider = \"postgresql\"\n";

fn write_lock_file(dir: &Path) -> Result<(), PrismaError> {
    let path = dir.join("migration_lock.toml");
    if path.exists() {
        return Ok(());
    }
    std::fs::write(&path, MIGRATION_LOCK).map_err(|e| PrismaError::CannotWrite {
        path,
        reason: e.to_string(),
    })
}

/// The SQL of the migration: paytool's steps in run order (the cleanup steps that ran on the
/// database, not `pending_cleanup`), made fit for one transaction on a new database, after the
/// legacy schema when nothing else creates it.
pub fn migration_sql(with_legacy_schema: bool, id_type: IdType, pending_cleanup: &[i32]) -> String {
    let mut sql = String::from(
        "-- The payment system of paytool (SPEC §3), written by `paytool prisma baseline` and recorded as\n\
         -- applied: paytool migrate applied it online. Prisma runs it only on new databases (shadow\n\
         -- databases of `prisma migrate dev`, new environments), where nothing runs concurrently.\n",
    );
    if with_legacy_schema {
        sql.push_str("\n-- ==== legacy schema (SPEC §2): no earlier migration creates it ====\n");
        sql.push_str(LEGACY_SCHEMA_SQL.trim_end());
        sql.push('\n');
    }
    let steps = steps_for(id_type)
        .iter()
        .filter(|s| s.phase != Phase::Cleanup || !pending_cleanup.contains(&s.version));
    for step in steps {
        sql.push_str(&format!("\n-- ==== {} ====\n", step.name));
        sql.push_str(step_sql_for_new_database(step).trim_end());
        sql.push('\n');
    }
    sql
}

fn step_sql_for_new_database(step: &Step) -> String {
    match step.kind {
        StepKind::ConcurrentIndex { .. } | StepKind::ConcurrentDrop { .. } => {
            step.sql.replace(" CONCURRENTLY", "")
        }
        StepKind::Batched => STATUS_COPY_ONCE_SQL.to_owned(),
        StepKind::Transactional | StepKind::Validation => step.sql.to_owned(),
    }
}

/// Records the migration as `prisma migrate resolve --applied` does; false when it already was.
async fn record_applied(
    conn: &mut PgConnection,
    name: &str,
    checksum: &str,
) -> anyhow::Result<bool> {
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(PRISMA_MIGRATIONS_SQL)
        .execute(&mut *tx)
        .await?;
    let inserted = sqlx::query(RECORD_MIGRATION_SQL)
        .bind(name)
        .bind(checksum)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(inserted > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_has_no_concurrent_build_and_no_batch_statement() {
        let cleanup_steps: Vec<i32> = crate::migrate::steps::steps_of(Phase::Cleanup)
            .map(|s| s.version)
            .collect();
        for (legacy, cleanup) in [(false, false), (true, true)] {
            let pending: &[i32] = if cleanup { &[] } else { &cleanup_steps };
            let sql = migration_sql(legacy, IdType::Text, pending);
            assert!(!sql.contains("CONCURRENTLY"), "{sql}");
            assert!(
                !sql.contains("LIMIT $2"),
                "the batched copy is one UPDATE: {sql}"
            );
            assert_eq!(sql.contains("CREATE TABLE users"), legacy);
            assert_eq!(sql.contains("DROP TYPE IF EXISTS order_status"), cleanup);
        }
    }

    #[test]
    fn on_uuid_ids_payments_order_id_is_uuid() {
        let sql = migration_sql(false, IdType::Uuid, &[]);
        assert!(sql.contains("order_id UUID NOT NULL,"), "{sql}");
    }
}
