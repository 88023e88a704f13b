//! Connections, their settings, advisory locks and the classification of database errors.
//!
//! Long on purpose: the one place a session is made and set up (schema, TLS, timeouts,
//! planner settings) and every error of it classified; URL parsing, connect errors and
//! paytool's own tables are already files of their own.

pub mod bookkeeping;
mod catalog;
mod connect_error;
mod keys;
mod pooler;
mod url;

use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};
use thiserror::Error;

pub use catalog::*;
pub use keys::{IdType, Key, KeyError, Keys};
pub use url::{DatabaseUrl, DatabaseUrlArg};

use crate::exit;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLSTATEs callers branch on.
pub mod sqlstate {
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
}

#[derive(Debug, Error)]
pub enum DbError {
    #[error("no database given: pass --database-url or set DATABASE_URL")]
    NoUrl,
    #[error("invalid --database-url: {0}")]
    InvalidUrl(String),
    #[error("cannot reach PostgreSQL at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("PostgreSQL refused the credentials for {url}: {reason}")]
    AuthFailed { url: String, reason: String },
    #[error("the database in {url} does not exist: {reason}")]
    DatabaseMissing { url: String, reason: String },
    #[error(
        "this database does not have the legacy payments schema (missing: {}); is --database-url pointing at the right database?",
        .missing.join(", ")
    )]
    LegacySchemaMissing { missing: Vec<String> },
    #[error(
        "the schema {schema:?} of ?schema= does not exist in this database (names are case-sensitive)"
    )]
    SchemaMissing { schema: String },
    #[error(
        "?schema={schema} did not take effect: the session's schema is {current:?}; paytool stops rather than act \
         on another schema (is something between paytool and PostgreSQL resetting the search_path?)"
    )]
    SchemaNotApplied { schema: String, current: String },
    #[error(
        "{url} runs PostgreSQL {version}: paytool supports PostgreSQL 14 to 18 (13 is out of support and lacks what \
         the migration needs); upgrade the server first. Nothing was read or written"
    )]
    UnsupportedServer { url: String, version: String },
    #[error("the role {role} lacks {privilege}: {fix}")]
    MissingPrivilege {
        role: String,
        privilege: String,
        fix: String,
    },
    #[error("cannot connect to {url}: {reason}")]
    ConnectRefused { url: String, reason: String },
    #[error(
        "{url} is a standby (in recovery, read-only): paytool {command} writes, point --database-url at the primary \
         (paytool verify constraints runs on a standby)"
    )]
    Standby { url: String, command: &'static str },
    #[error(
        "{tables} partitioned here: paytool migrate does not handle partitioned tables yet (indexes would have to be \
         built ON ONLY the parent, then concurrently per partition and attached); docs/scaling.md says what it would take"
    )]
    Partitioned { tables: String },
    #[error(
        "this database runs Citus: paytool migrate does not handle distributed tables yet (DDL through the coordinator, \
         the distribution column in every unique constraint); docs/scaling.md says what it would take"
    )]
    Citus,
    #[error(
        "the role {role} may not use the schema {schema} that holds the legacy tables (no USAGE privilege): \
         GRANT USAGE ON SCHEMA {schema} TO {role}, or connect as the tables' owner"
    )]
    NoSchemaUsage { role: String, schema: String },
    #[error(
        "another paytool {operation} has held the lock on this database for {waited:?} ({holder}); try again when it has finished"
    )]
    LockBusy {
        operation: &'static str,
        waited: Duration,
        holder: String,
    },
    #[error(
        "{url} goes through a transaction-pooling proxy (PgBouncer pool_mode = transaction or alike): {evidence}; \
         paytool needs one server session per run (its lock, its settings), so give it a direct or session-pooled URL \
         with --migrate-url (Prisma's directUrl) and keep DATABASE_URL for the application"
    )]
    TransactionPooler { url: String, evidence: String },
    #[error(
        "this connection no longer holds paytool's {operation} lock: is a transaction-pooling proxy \
         (PgBouncer in transaction mode) in between? paytool {operation} needs a direct or session-pooled connection"
    )]
    LockLost { operation: &'static str },
}

impl DbError {
    pub fn exit_code(&self) -> u8 {
        match self {
            DbError::NoUrl
            | DbError::InvalidUrl(_)
            | DbError::AuthFailed { .. }
            | DbError::DatabaseMissing { .. }
            | DbError::LegacySchemaMissing { .. }
            | DbError::SchemaMissing { .. }
            | DbError::SchemaNotApplied { .. }
            | DbError::ConnectRefused { .. }
            | DbError::MissingPrivilege { .. }
            | DbError::UnsupportedServer { .. }
            | DbError::Standby { .. }
            | DbError::Partitioned { .. }
            | DbError::Citus
            | DbError::NoSchemaUsage { .. }
            | DbError::TransactionPooler { .. } => exit::USAGE,
            DbError::Unreachable { .. } | DbError::LockBusy { .. } | DbError::LockLost { .. } => {
                exit::RUNTIME_FAILURE
            }
        }
    }
}

const LOCK_HOLDERS_SQL: &str = "
SELECT coalesce(string_agg(DISTINCT 'pid ' || a.pid || ' (' || coalesce(nullif(a.application_name, ''), 'no name')
       || ', ' || coalesce(a.state, '?') || ', transaction open for '
       || coalesce(date_trunc('second', now() - a.xact_start)::text, '?') || ')', '; '), 'none found')
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.relation = to_regclass($1) AND l.granted AND a.pid <> pg_backend_pid()";

/// The sessions holding a lock on `table` (pid, application, state, how long their
/// transaction has been open), for the error that says a lock was never obtained.
pub async fn lock_holders(conn: &mut PgConnection, table: &str) -> String {
    sqlx::query_scalar(LOCK_HOLDERS_SQL)
        .bind(table)
        .fetch_one(conn)
        .await
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Refuses a standby for a command that writes, before it tries to: PostgreSQL's own
/// "cannot execute … in a read-only transaction" would come from the middle of the work.
pub async fn require_primary(
    conn: &mut PgConnection,
    url: &DatabaseUrl,
    command: &'static str,
) -> anyhow::Result<()> {
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(conn)
        .await?;
    if in_recovery {
        return Err(DbError::Standby {
            url: url.redacted().to_owned(),
            command,
        }
        .into());
    }
    Ok(())
}

/// Refuses what migrate's steps do not know how to change online: partitioned legacy tables
/// and Citus-distributed ones. Said before any step, rather than by a failing statement.
pub async fn require_plain_tables(conn: &mut PgConnection) -> anyhow::Result<()> {
    let partitioned: Option<String> = sqlx::query_scalar(
        "SELECT string_agg(t, ', ' ORDER BY t) || CASE WHEN count(*) = 1 THEN ' is' ELSE ' are' END
         FROM unnest($1::text[]) AS t
         WHERE (SELECT relkind FROM pg_class WHERE oid = to_regclass(t)) = 'p'",
    )
    .bind(&catalog::LEGACY_TABLES[..])
    .fetch_one(&mut *conn)
    .await?;
    if let Some(tables) = partitioned {
        return Err(DbError::Partitioned { tables }.into());
    }
    let citus: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
            .fetch_one(&mut *conn)
            .await?;
    if citus {
        return Err(DbError::Citus.into());
    }
    Ok(())
}

/// Opens one session connection (not a pool: migrate needs session state such as advisory
/// locks), tagged `application_name = paytool` so operators can see it in pg_stat_activity.
pub async fn connect(url: &DatabaseUrl) -> Result<PgConnection, DbError> {
    if url.says_transaction_pooler() {
        // Said before any connection: nothing of paytool's may be left on a pooled server.
        return Err(DbError::TransactionPooler {
            url: url.redacted().to_owned(),
            evidence: "the URL has Prisma's pgbouncer=true, which says so".to_owned(),
        });
    }
    let options = url
        .connect_options()
        .map_err(DbError::InvalidUrl)?
        .application_name("paytool")
        // Long statements are paytool's own business (index builds, scans) and reported in
        // its summaries; sqlx's statement and slow-statement logs would only repeat the SQL text.
        .disable_statement_logging();
    let limit = url.connect_timeout().unwrap_or(CONNECT_TIMEOUT);
    let attempt = tokio::time::timeout(limit, PgConnection::connect_with(&options)).await;
    let mut conn = match attempt {
        Err(_) => {
            return Err(DbError::Unreachable {
                url: url.redacted().to_owned(),
                reason: format!("no answer within {}", crate::human::duration(limit)),
            });
        }
        Ok(result) => result.map_err(|e| connect_error::classify(url, e))?,
    };
    // Before anything is set on the session, which a pooler would leave to the next client.
    if let Some(probe) = pooler::probe(&mut conn, &options).await
        && probe.shows_transaction_pooling()
    {
        let _ = conn.close().await;
        return Err(DbError::TransactionPooler {
            url: url.redacted().to_owned(),
            evidence: probe.evidence(),
        });
    }
    require_supported_server(&mut conn, url).await?;
    // If paytool dies (kill -9), its backend notices within seconds and aborts what it was
    // doing, instead of finishing a half-wanted concurrent index build. PostgreSQL 14+ only,
    // so a failure here is not fatal.
    let _ = sqlx::query("SELECT set_config('client_connection_check_interval', '2s', false)")
        .execute(&mut conn)
        .await;
    own_the_session_timeouts(&mut conn)
        .await
        .map_err(|e| session_lost(url, e))?;
    if let Some(schema) = url.schema() {
        use_schema(&mut conn, url, schema).await?;
    }
    announce_url_parameters(url);
    Ok(conn)
}

/// A statement of the connection's setup failed: the session is gone (or unusable), which may
/// pass by itself.
fn session_lost(url: &DatabaseUrl, err: sqlx::Error) -> DbError {
    DbError::Unreachable {
        url: url.redacted().to_owned(),
        reason: err.to_string(),
    }
}

/// The PostgreSQL majors paytool runs on (SPEC §7), checked by the test suite.
pub const SUPPORTED_MAJORS: std::ops::RangeInclusive<u32> = 14..=18;

/// Refuses a server paytool does not support before anything is read or written: PostgreSQL
/// 13 lacks what the snapshot trigger step needs (`CREATE OR REPLACE TRIGGER`), and would fail after five steps
/// were applied. Warns once on 14.0–14.3, whose concurrent index builds could miss entries.
async fn require_supported_server(
    conn: &mut PgConnection,
    url: &DatabaseUrl,
) -> Result<(), DbError> {
    let (number, version): (i32, String) = sqlx::query_as(
        "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
    )
    .fetch_one(conn)
    .await
    .map_err(|e| session_lost(url, e))?;
    let major = (number / 10_000) as u32;
    if major < *SUPPORTED_MAJORS.start() {
        return Err(DbError::UnsupportedServer {
            url: url.redacted().to_owned(),
            version,
        });
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if (140_000..140_004).contains(&number) {
            tracing::warn!(
                "PostgreSQL {version}: 14.0 to 14.3 can build indexes with CREATE INDEX CONCURRENTLY that miss \
                 entries (fixed in 14.4), and paytool migrate builds nine that way: upgrade to the latest 14.x first"
            );
        } else if major > *SUPPORTED_MAJORS.end() {
            tracing::warn!(
                "PostgreSQL {version} is newer than the versions paytool is tested on ({} to {})",
                SUPPORTED_MAJORS.start(),
                SUPPORTED_MAJORS.end()
            );
        }
    });
    Ok(())
}

/// The session timeouts a role or database may set (`ALTER ROLE … SET statement_timeout`)
/// that would cut paytool's own work: a concurrent index build on a big table, a scan for the
/// rows a backfill cannot resolve, verify's checks, the idle moments of migrate between lock
/// retries. paytool sets each statement's limits itself (batches and blocking steps under
/// `lock_timeout` and `statement_timeout` of their own), so the session starts from none.
/// `lock_timeout` is left as it is: where paytool needs one, it sets it.
pub const OWNED_SESSION_TIMEOUTS: [&str; 3] = [
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
];

async fn own_the_session_timeouts(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config(name, '0', false) FROM pg_settings WHERE name = ANY($1)")
        .bind(&OWNED_SESSION_TIMEOUTS[..])
        .execute(conn)
        .await?;
    Ok(())
}

/// The timeouts someone else set for this role or database (what `RESET` would restore), that
/// paytool's sessions override: for `migrate plan` to say so.
pub async fn inherited_timeouts(
    conn: &mut PgConnection,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name::text, reset_val || coalesce(unit, '') FROM pg_settings
         WHERE name = ANY($1) AND reset_val <> '0' ORDER BY name",
    )
    .bind(&OWNED_SESSION_TIMEOUTS[..])
    .fetch_all(conn)
    .await
}

/// Prisma's `?schema=NAME`: every name paytool's SQL uses resolves in that schema first. Set
/// on the session once connected (never as a startup parameter, which a pooler may refuse or
/// drop), then read back: whatever is in between, paytool acts on that schema or not at all.
async fn use_schema(
    conn: &mut PgConnection,
    url: &DatabaseUrl,
    schema: &str,
) -> Result<(), DbError> {
    // current_schema() skips a schema the role may not use: whether it exists says which.
    let (_, current, exists, role): (String, Option<String>, bool, String) = sqlx::query_as(
        "SELECT set_config('search_path', $1, false), current_schema()::text,
                to_regnamespace($1) IS NOT NULL, current_user::text",
    )
    .bind(url::quote_identifier(schema))
    .fetch_one(conn)
    .await
    .map_err(|e| session_lost(url, e))?;
    match current {
        Some(current) if current == schema => Ok(()),
        None if exists => Err(DbError::NoSchemaUsage {
            role,
            schema: schema.to_owned(),
        }),
        None => Err(DbError::SchemaMissing {
            schema: schema.to_owned(),
        }),
        Some(current) => Err(DbError::SchemaNotApplied {
            schema: schema.to_owned(),
            current,
        }),
    }
}

/// Says once per run (with -v) what paytool made of a Prisma DATABASE_URL.
fn announce_url_parameters(url: &DatabaseUrl) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Some(schema) = url.schema() {
            tracing::info!("?schema={schema}: tables are read and created in schema {schema}");
        }
        let (prisma, others): (Vec<&str>, Vec<&str>) = url
            .ignored_parameters()
            .iter()
            .map(String::as_str)
            .partition(|p| url::PRISMA_POOL_PARAMETERS.contains(p));
        if !prisma.is_empty() {
            tracing::info!(
                "ignoring Prisma's own URL parameters: {} (they configure Prisma's pool, not PostgreSQL)",
                prisma.join(", ")
            );
        }
        if !others.is_empty() {
            tracing::info!(
                "ignoring the URL parameters {} (paytool keeps one session per run and checks the server it reached)",
                others.join(", ")
            );
        }
        for translation in &url.tls().translated {
            tracing::info!("{translation}");
        }
    });
}

/// The SQLSTATE of a database error, if it is one.
pub fn sqlstate_of(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()
        .and_then(|db| db.code().map(|c| c.into_owned()))
}

/// A lock_timeout expiry: the statement gave up waiting for a lock and can be retried.
pub fn is_lock_timeout(err: &sqlx::Error) -> bool {
    sqlstate_of(err).as_deref() == Some(sqlstate::LOCK_NOT_AVAILABLE)
}

/// Errors after which the same transaction, retried, may well succeed.
pub fn is_transient(err: &sqlx::Error) -> bool {
    matches!(
        sqlstate_of(err).as_deref(),
        Some(
            sqlstate::LOCK_NOT_AVAILABLE
                | sqlstate::SERIALIZATION_FAILURE
                | sqlstate::DEADLOCK_DETECTED
        )
    )
}

/// The connection is gone (killed backend, network, server restart): reconnect and retry.
pub fn is_connection_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        other => sqlstate_of(other).is_some_and(|code| {
            code.starts_with("08") || code == "57P01" || code == "57P02" || code == "57P03"
        }),
    }
}

/// How long a session setting lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Until changed again on this connection.
    Session,
    /// Until the current transaction ends (`SET LOCAL`).
    Transaction,
}

/// The one place paytool sets `lock_timeout` and `statement_timeout`; zero means none.
pub async fn set_timeouts(
    conn: &mut PgConnection,
    scope: Scope,
    lock_timeout: Duration,
    statement_timeout: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT set_config('lock_timeout', $1, $3), set_config('statement_timeout', $2, $3)",
    )
    .bind(format!("{}ms", lock_timeout.as_millis()))
    .bind(format!("{}ms", statement_timeout.as_millis()))
    .bind(scope == Scope::Transaction)
    .execute(conn)
    .await?;
    Ok(())
}

/// What a short, key-range-driven batch statement needs whatever the planner's statistics say
/// (`is_local`: for the current transaction only, else for the session). JIT compilation costs
/// hundreds of milliseconds once a stale row estimate crosses `jit_above_cost`; with stale or
/// missing statistics the planner also picked sequential scans and hash joins over whole
/// tables for batches of a few thousand keys. Batches are walked by primary key and joined by
/// indexed keys: nested loops over plain index scans (which return keys in order, so a walk
/// with LIMIT stops early; a bitmap scan would read every remaining key and sort) are the
/// plan, so the others are priced out (not forbidden: a table without the index still gets a
/// plan). It also marks the transaction as paytool's batch (`paytool.backfill`): migrate's order-totals
/// triggers, which keep derived data true after the application's writes, leave paytool's own
/// batches alone (they do that work themselves).
///
/// Each batch is planned for its own keys because the statements whose plan depends on them are
/// sent unnamed (`persistent(false)`): PostgreSQL plans an unnamed statement with the values
/// bound to it, where a prepared one may turn to a generic plan after five calls. That costs a
/// round trip per statement (parse, then bind and execute): two per batch, by arithmetic about
/// 2% of a 100 ms batch at 1 ms of network latency (not measured over a network).
/// `plan_cache_mode` stays `auto` (set, in case the server's default says otherwise), not
/// `force_custom_plan`: that setting also reaches the queries PostgreSQL runs inside the batch,
/// such as the foreign-key check of each payment row written, and re-planned that check for
/// every row, 17-20% of an orders batch.
pub async fn set_batch_planner(conn: &mut PgConnection, is_local: bool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT set_config('jit', 'off', $1), set_config('enable_seqscan', 'off', $1),
                set_config('enable_hashjoin', 'off', $1), set_config('enable_mergejoin', 'off', $1),
                set_config('enable_bitmapscan', 'off', $1),
                set_config('plan_cache_mode', 'auto', $1),
                set_config('paytool.backfill', 'on', $1)",
    )
    .bind(is_local)
    .execute(conn)
    .await?;
    Ok(())
}

/// Back to the server's planner settings after [`set_batch_planner`] for the session.
pub async fn reset_batch_planner(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "RESET jit; RESET enable_seqscan; RESET enable_hashjoin; RESET enable_mergejoin; \
         RESET enable_bitmapscan; RESET plan_cache_mode; RESET paytool.backfill",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// ANALYZE in a transaction of its own, so its short timeouts end with it. `SKIP_LOCKED`: a
/// maintenance that took the table between [`analyze_blocker`] and this statement makes it a
/// no-op (the server says so in a warning) instead of a wait.
async fn analyze(conn: &mut PgConnection, table: &'static str) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    set_timeouts(
        &mut tx,
        Scope::Transaction,
        Duration::from_secs(2),
        Duration::from_secs(300),
    )
    .await?;
    // The table name comes from paytool's constant step list, never from input.
    sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE (SKIP_LOCKED) {table}")))
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Why a table's statistics were not refreshed.
enum NotAnalyzed {
    /// Autovacuum works on the table and refreshes them itself (`hidden`: a session this role
    /// may not see holds it, an autovacuum or another role's maintenance).
    LeftToAutovacuum { hidden: bool },
    /// Another session holds the table, or the ANALYZE failed.
    Failed(String),
}

/// The session an ANALYZE of `table` would queue behind, if any.
async fn analyze_blocker(
    conn: &mut PgConnection,
    table: &'static str,
) -> Result<Option<NotAnalyzed>, sqlx::Error> {
    let holder: Option<(String, Option<String>)> =
        sqlx::query_as(include_str!("../../sql/internal/analyze_blocker.sql"))
            .bind(table)
            .fetch_optional(conn)
            .await?;
    Ok(holder.map(|(kind, session)| match kind.as_str() {
        "autovacuum" => NotAnalyzed::LeftToAutovacuum { hidden: false },
        "hidden" => NotAnalyzed::LeftToAutovacuum { hidden: true },
        _ => NotAnalyzed::Failed(session.unwrap_or(kind)),
    }))
}

/// Refreshes the planner statistics of a table a step has just rewritten, so what reads it next
/// is planned on its real size and values. Never blocks the application (SHARE UPDATE
/// EXCLUSIVE) and never waits: while autovacuum works on the table (after a big rewrite it
/// often does), the statistics are left to it, since an ANALYZE queued behind it would have it
/// cancelled after `deadlock_timeout` (a second lost, and the vacuum's work with it); another
/// session's VACUUM or index build skips it with a warning. The batch planner settings do not
/// depend on the statistics.
pub async fn analyze_after_rewrite(conn: &mut PgConnection, table: &'static str) {
    let started = Instant::now();
    let outcome = match analyze_blocker(conn, table).await {
        Ok(Some(blocked)) => Err(blocked),
        Ok(None) => analyze(conn, table).await.map_err(|err| {
            NotAnalyzed::Failed(
                err.as_database_error()
                    .map_or_else(|| err.to_string(), |d| d.message().to_owned()),
            )
        }),
        Err(err) => Err(NotAnalyzed::Failed(err.to_string())),
    };
    match outcome {
        Ok(()) => tracing::debug!(
            "analyzed {table} in {}",
            crate::human::duration(started.elapsed())
        ),
        Err(NotAnalyzed::LeftToAutovacuum { hidden: false }) => tracing::info!(
            "autovacuum is working on {table}: its statistics are left to it (an ANALYZE now \
             would wait for it and have it cancelled)"
        ),
        Err(NotAnalyzed::LeftToAutovacuum { hidden: true }) => tracing::info!(
            "a session this role may not see (autovacuum, or another role's maintenance) holds \
             {table}: its statistics are left to autovacuum"
        ),
        Err(NotAnalyzed::Failed(reason)) => tracing::warn!(
            "could not refresh the statistics of {table} ({reason}): going on without"
        ),
    }
}

/// Serializes backfill runs on one database (their checkpoints would otherwise clash); held
/// shared by cooperative workers. `migrate down`, which drops the checkpoints, takes it too.
pub const BACKFILL_LOCK: AdvisoryLock = AdvisoryLock {
    key: 0x7061_7974_6f6f_6c02,
    operation: "backfill",
};

/// A session-level advisory lock that serializes paytool runs of one kind on a database.
/// It lives as long as the connection: a killed paytool releases it with its backend.
pub struct AdvisoryLock {
    pub key: i64,
    pub operation: &'static str,
}

const ADVISORY_LOCK_HOLDER_SQL: &str = "
SELECT coalesce(a.application_name, '?') || ' pid ' || a.pid || ' from '
       || coalesce(host(a.client_addr), 'local socket') || ', running since '
       || to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ')
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
LIMIT 1";

const ADVISORY_LOCK_HELD_SQL: &str = "
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
      AND ((classid::bigint << 32) | objid::bigint) = $1)";

impl AdvisoryLock {
    /// Waits up to `wait` for the lock, telling the user who holds it.
    pub async fn acquire(
        &self,
        conn: &mut PgConnection,
        wait: Duration,
    ) -> anyhow::Result<Duration> {
        self.acquire_as(conn, wait, "SELECT pg_try_advisory_lock($1)")
            .await
    }

    /// The lock in shared mode: any number of shared holders run together (cooperative
    /// backfill workers), while an exclusive holder waits for them all and they for it.
    pub async fn acquire_shared(
        &self,
        conn: &mut PgConnection,
        wait: Duration,
    ) -> anyhow::Result<Duration> {
        self.acquire_as(conn, wait, "SELECT pg_try_advisory_lock_shared($1)")
            .await
    }

    async fn acquire_as(
        &self,
        conn: &mut PgConnection,
        wait: Duration,
        try_sql: &'static str,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut announced = false;
        loop {
            let got: bool = sqlx::query_scalar(try_sql)
                .bind(self.key)
                .fetch_one(&mut *conn)
                .await?;
            if got {
                return Ok(started.elapsed());
            }
            let holder = self.holder(conn).await;
            if started.elapsed() >= wait {
                return Err(DbError::LockBusy {
                    operation: self.operation,
                    waited: wait,
                    holder,
                }
                .into());
            }
            if !announced {
                tracing::warn!(
                    "another paytool {} is running ({holder}); waiting up to {wait:?}",
                    self.operation
                );
                announced = true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn release(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Fails when this session does not hold the lock, which happens when a pooler hands
    /// later statements to another server connection.
    pub async fn ensure_held(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        let held: bool = sqlx::query_scalar(ADVISORY_LOCK_HELD_SQL)
            .bind(self.key)
            .fetch_one(conn)
            .await?;
        if held {
            Ok(())
        } else {
            Err(DbError::LockLost {
                operation: self.operation,
            }
            .into())
        }
    }

    /// Who holds the lock now, if another session does: a run under way.
    pub async fn held_elsewhere(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar::<_, String>(ADVISORY_LOCK_HOLDER_SQL)
            .bind(self.key)
            .fetch_optional(conn)
            .await
    }

    async fn holder(&self, conn: &mut PgConnection) -> String {
        sqlx::query_scalar::<_, String>(ADVISORY_LOCK_HOLDER_SQL)
            .bind(self.key)
            .fetch_optional(conn)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| "holder unknown".to_owned())
    }
}
