//! Read-only catalog queries (pg_catalog, so validity flags are visible).

use std::collections::BTreeMap;

use sqlx::PgConnection;

/// The tables of the legacy schema (SPEC §2) every command expects to find.
pub const LEGACY_TABLES: [&str; 6] = [
    "users",
    "machines",
    "products",
    "stocks",
    "orders",
    "order_items",
];

const MISSING_TABLES_SQL: &str = "
SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NULL ORDER BY t";

const COLUMN_EXISTS_SQL: &str = "
SELECT EXISTS (
    SELECT 1 FROM pg_attribute
    WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped)";

const INDEX_STATE_SQL: &str = "
SELECT i.indisvalid, i.indisready
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.oid = to_regclass($1)";

const ESTIMATED_ROWS_SQL: &str = "
SELECT c.relname::text, c.reltuples::bigint
FROM pg_class c
WHERE c.relkind IN ('r', 'p') AND c.relnamespace = to_regnamespace(quote_ident(current_schema()))::oid";

/// Legacy tables absent from the database (empty when the schema is there).
pub async fn missing_legacy_tables(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let names: Vec<String> = LEGACY_TABLES.iter().map(|t| t.to_string()).collect();
    sqlx::query_scalar(MISSING_TABLES_SQL)
        .bind(names)
        .fetch_all(conn)
        .await
}

/// A schema holding legacy tables that this role may not use: the tables are there, out of
/// sight (pg_class is readable without the privilege).
const UNUSABLE_SCHEMA_SQL: &str = "
SELECT n.nspname::text, current_user::text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = ANY($1) AND c.relkind IN ('r', 'p') AND NOT has_schema_privilege(n.oid, 'USAGE')
GROUP BY n.nspname
ORDER BY count(*) DESC, n.nspname
LIMIT 1";

/// Fails with a clear sentence when the database is not a legacy payments database, or when
/// it is one this role may not see.
pub async fn require_legacy_schema(conn: &mut PgConnection) -> anyhow::Result<()> {
    let missing = missing_legacy_tables(conn).await?;
    if missing.is_empty() {
        return Ok(());
    }
    require_usage_of(conn, &missing).await?;
    Err(super::DbError::LegacySchemaMissing { missing }.into())
}

/// Fails when legacy tables this role cannot see are in a schema it may not use: the cause is a
/// privilege, not a wrong database.
pub async fn require_schema_usage(conn: &mut PgConnection) -> anyhow::Result<()> {
    let missing = missing_legacy_tables(conn).await?;
    if missing.is_empty() {
        return Ok(());
    }
    require_usage_of(conn, &missing).await
}

async fn require_usage_of(conn: &mut PgConnection, missing: &[String]) -> anyhow::Result<()> {
    let unusable: Option<(String, String)> = sqlx::query_as(UNUSABLE_SCHEMA_SQL)
        .bind(missing)
        .fetch_optional(&mut *conn)
        .await?;
    match unusable {
        Some((schema, role)) => Err(super::DbError::NoSchemaUsage { role, schema }.into()),
        None => Ok(()),
    }
}

pub async fn column_exists(
    conn: &mut PgConnection,
    table: &str,
    column: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(COLUMN_EXISTS_SQL)
        .bind(table)
        .bind(column)
        .fetch_one(conn)
        .await
}

pub async fn relation_exists(conn: &mut PgConnection, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(conn)
        .await
}

/// Whether an index exists and can be used; an interrupted `CREATE INDEX CONCURRENTLY`
/// leaves one that exists but is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexState {
    Missing,
    Valid,
    Invalid,
}

pub async fn index_state(conn: &mut PgConnection, index: &str) -> Result<IndexState, sqlx::Error> {
    let row: Option<(bool, bool)> = sqlx::query_as(INDEX_STATE_SQL)
        .bind(index)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        None => IndexState::Missing,
        Some((true, true)) => IndexState::Valid,
        Some(_) => IndexState::Invalid,
    })
}

/// Row estimates from the planner statistics (no table scan). A table never analyzed has none.
pub async fn estimated_rows(
    conn: &mut PgConnection,
) -> Result<BTreeMap<String, Option<i64>>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(ESTIMATED_ROWS_SQL).fetch_all(conn).await?;
    Ok(rows
        .into_iter()
        .map(|(table, n)| (table, (n >= 0).then_some(n)))
        .collect())
}
