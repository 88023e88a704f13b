//! paytool's own tables, in its schema `paytool`: created only when missing, so a command on a
//! database where they exist needs no privilege to create anything, and a role that may not
//! create them is told which privilege it lacks.
//!
//! `CREATE SCHEMA IF NOT EXISTS` and `CREATE TABLE IF NOT EXISTS` check the CREATE privilege
//! (on the database, on the schema) before they look whether the object exists, so they are
//! never run when it does.

use sqlx::{AssertSqlSafe, PgConnection};

use super::DbError;

const STATE_SQL: &str = "
SELECT bool_or(to_regclass(t) IS NULL) AS tables_missing,
       to_regnamespace('paytool') IS NOT NULL AS schema_exists,
       has_database_privilege(current_database(), 'CREATE') AS may_create_schema,
       coalesce(has_schema_privilege(to_regnamespace('paytool'), 'CREATE'), false) AS may_create_tables,
       current_user::text AS role,
       current_database()::text AS database
FROM unnest($1::text[]) AS t";

#[derive(sqlx::FromRow)]
struct State {
    tables_missing: Option<bool>,
    schema_exists: bool,
    may_create_schema: bool,
    may_create_tables: bool,
    role: String,
    database: String,
}

/// Runs `ddl` (CREATE TABLE IF NOT EXISTS paytool.…) unless every one of `tables` exists,
/// creating the schema first when it is missing.
pub async fn ensure(
    conn: &mut PgConnection,
    ddl: &'static str,
    tables: &[&str],
) -> anyhow::Result<()> {
    let state: State = sqlx::query_as(STATE_SQL)
        .bind(tables)
        .fetch_one(&mut *conn)
        .await?;
    if state.tables_missing != Some(true) {
        return Ok(());
    }
    let quoted_role = quote(&state.role);
    if !state.schema_exists {
        if !state.may_create_schema {
            return Err(DbError::MissingPrivilege {
                role: state.role.clone(),
                privilege: format!(
                    "CREATE on the database {} (for paytool's schema)",
                    state.database
                ),
                fix: format!(
                    "GRANT CREATE ON DATABASE {} TO {quoted_role}, or have an owner run once: \
                     CREATE SCHEMA paytool AUTHORIZATION {quoted_role}",
                    quote(&state.database)
                ),
            }
            .into());
        }
        sqlx::raw_sql("CREATE SCHEMA IF NOT EXISTS paytool")
            .execute(&mut *conn)
            .await?;
    } else if !state.may_create_tables {
        return Err(DbError::MissingPrivilege {
            role: state.role.clone(),
            privilege: format!(
                "CREATE on the schema paytool (to add {})",
                tables.join(", ")
            ),
            fix: format!("GRANT USAGE, CREATE ON SCHEMA paytool TO {quoted_role}"),
        }
        .into());
    }
    // The DDL ships with paytool (sql/internal, sql/reconcile).
    sqlx::raw_sql(AssertSqlSafe(ddl))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn quote(identifier: &str) -> String {
    if identifier
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        identifier.to_owned()
    } else {
        format!("\"{}\"", identifier.replace('"', "\"\""))
    }
}
