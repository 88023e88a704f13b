//! Health-aware throttling: between two batches, a few cheap queries read the database's health
//! (standbys' replay lag, the WAL archive backlog, autovacuum on the step's table; each signal
//! this role may read, the others named once with the privilege they need) and the
//! operator's own `--throttle-query`; each batch counts, just before it commits, the sessions
//! queued behind its locks. While a signal is over its limit the backfill (and migrate's
//! batched copy) holds: no batch commits, the progress bar and a log line say which signal and
//! its value. It resumes once every signal is below half its limit and the hold has lasted its
//! minimum (hysteresis, so it does not flap), and the report gives the time held per signal.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const HEALTH_SQL: &str = include_str!("../sql/backfill/health.sql");
const REPLICAS_SQL: &str = include_str!("../sql/backfill/health_replicas.sql");
const ARCHIVE_SQL: &str = include_str!("../sql/backfill/health_archive.sql");
const AUTOVACUUM_SQL: &str = include_str!("../sql/backfill/health_autovacuum.sql");
const WAITING_SQL: &str = include_str!("../sql/backfill/waiting_for_this_batch.sql");

/// A step that writes fewer rows than this (`--autovacuum-min-rows`) does not hold for
/// autovacuum: its writes cannot slow a vacuum down (a few pages of dead tuples against the
/// table's), while a hold (at least `--throttle-min-hold`) would make a catch-up of seconds
/// last many times its work. GitLab stops a batched migration for any autovacuum on its
/// tables; its migrations are large by nature. The other signals hold whatever the size:
/// replica lag and the archive backlog grow with any write, and the sessions waiting are
/// waiting now.
pub const AUTOVACUUM_MIN_ROWS: i64 = 10_000;

/// How often a hold looks again, and how often it says it still holds.
const LOOK_EVERY: Duration = Duration::from_millis(500);
const SAY_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    pub enabled: bool,
    pub max_replica_lag: Duration,
    pub max_replica_lag_bytes: i64,
    /// WAL segments waiting for the archiver.
    pub max_archive_backlog: i64,
    pub autovacuum: bool,
    /// Steps writing fewer rows do not hold for autovacuum ([`AUTOVACUUM_MIN_ROWS`]).
    pub autovacuum_min_rows: i64,
    pub max_lock_waiters: i64,
    /// The operator's SQL: one boolean, true to hold.
    pub throttle_query: Option<String>,
    pub min_hold: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            enabled: true,
            max_replica_lag: Duration::from_secs(10),
            max_replica_lag_bytes: 256 * 1024 * 1024,
            max_archive_backlog: 42,
            autovacuum: true,
            autovacuum_min_rows: AUTOVACUUM_MIN_ROWS,
            max_lock_waiters: 5,
            throttle_query: None,
            min_hold: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signal {
    ReplicaLag,
    ReplicaLagBytes,
    ArchiveBacklog,
    Autovacuum,
    LockWaiters,
    ThrottleQuery,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::ReplicaLag => "replica_lag",
            Signal::ReplicaLagBytes => "replica_lag_bytes",
            Signal::ArchiveBacklog => "archive_backlog",
            Signal::Autovacuum => "autovacuum",
            Signal::LockWaiters => "lock_waiters",
            Signal::ThrottleQuery => "throttle_query",
        }
    }
}

/// One reading of the health signals; None where not read.
#[derive(Debug, Clone, Default)]
struct Health {
    replica_lag_ms: Option<i64>,
    replica_lag_bytes: Option<i64>,
    archive_backlog: Option<i64>,
    autovacuum: bool,
}

/// What this role may read (sql/backfill/health.sql), asked once per run.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Readable {
    sees_replication: bool,
    archiving: bool,
    may_list_archive: bool,
    role: String,
}

/// A signal over its limit: which, and its value as people read it.
#[derive(Debug, Clone)]
struct Over {
    signal: Signal,
    value: String,
    limit: String,
}

/// Time held per signal, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Held {
    pub ms: u64,
    pub times: u64,
}

#[derive(Debug)]
pub struct Throttle {
    pub settings: ThrottleSettings,
    /// Who holds, as the log names it: "backfill" or "migrate".
    pub work: &'static str,
    pub held: BTreeMap<&'static str, Held>,
    /// Set by Ctrl-C or SIGTERM: a hold ends at once, the run stops.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// The most sessions found waiting for a batch's locks since the last health check.
    waiting_for_batches: i64,
    /// Read at the first health check.
    readable: Option<Readable>,
    /// The autovacuum query failed once (pg_locks denied): not asked again.
    autovacuum_unreadable: bool,
    /// Rows the current step has to write, when known (`autovacuum_min_rows`).
    rows_to_write: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
#[error("--throttle-query does not run as a query returning one boolean: {0}")]
pub struct BadThrottleQuery(pub String);

impl Throttle {
    pub fn new(settings: ThrottleSettings, work: &'static str) -> Self {
        Throttle {
            settings,
            work,
            held: BTreeMap::new(),
            stop: None,
            waiting_for_batches: 0,
            readable: None,
            autovacuum_unreadable: false,
            rows_to_write: None,
        }
    }

    /// The rows the step now starting has to write: a small one does not hold for autovacuum.
    pub fn step_writes(&mut self, rows: i64) {
        self.rows_to_write = Some(rows);
    }

    /// Whether autovacuum is a reason to hold for the work at hand.
    fn autovacuum_matters(&self) -> bool {
        self.settings.autovacuum
            && self
                .rows_to_write
                .is_none_or(|rows| rows >= self.settings.autovacuum_min_rows)
    }

    /// What [`sessions_waiting_for_this_batch`] counted before a batch committed, for the next
    /// health check.
    pub fn batch_was_waited_for(&mut self, sessions: i64) {
        self.waiting_for_batches = self.waiting_for_batches.max(sessions);
    }

    /// Runs the operator's query once before the first batch, so a typo is a usage error and
    /// not a hold that never ends.
    pub async fn check_query(&self, conn: &mut PgConnection) -> Result<(), BadThrottleQuery> {
        match self.operator_says_hold(conn).await {
            Ok(_) => Ok(()),
            Err(err) => Err(BadThrottleQuery(err.to_string())),
        }
    }

    /// Returns once the database is healthy enough for the next batch (at once, usually).
    pub async fn wait_until_healthy(
        &mut self,
        conn: &mut PgConnection,
        table: &str,
        worker: Option<&str>,
        bar: &indicatif::ProgressBar,
    ) -> Result<(), sqlx::Error> {
        if !self.settings.enabled {
            return Ok(());
        }
        let waiting = std::mem::take(&mut self.waiting_for_batches);
        let over = self.over_limits(conn, table, waiting, 1.0).await?;
        let Some(first) = over.first().cloned() else {
            return Ok(());
        };
        let started = Instant::now();
        let mut last_said = Instant::now();
        let mut signals: Vec<Signal> = over.iter().map(|o| o.signal).collect();
        tracing::warn!(
            "{} holds: {} is {} (limit {}); no batch commits until it is below half of it",
            self.work,
            first.signal.name(),
            first.value,
            first.limit
        );
        let label = bar.message();
        let why = format!("{} {} > {}", first.signal.name(), first.value, first.limit);
        // `paytool backfill status` shows it too.
        say_held(conn, worker, Some(&why)).await;
        loop {
            bar.set_message(format!("{label}: held ({why})"));
            tokio::time::sleep(LOOK_EVERY).await;
            // A held worker still beats: `backfill status` tells it from a dead one.
            say_held(conn, worker, Some(&why)).await;
            // Hysteresis: resume only below half of every limit.
            // No batch runs while held: nobody waits for one.
            let still = self.over_limits(conn, table, 0, 0.5).await?;
            for o in &still {
                if !signals.contains(&o.signal) {
                    signals.push(o.signal);
                }
            }
            let stopping = self
                .stop
                .as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed));
            if stopping || still.is_empty() && started.elapsed() >= self.settings.min_hold {
                break;
            }
            if last_said.elapsed() >= SAY_EVERY {
                if let Some(o) = still.first() {
                    tracing::warn!(
                        "{} still holds after {}: {} is {} (resumes below half of {})",
                        self.work,
                        crate::human::duration(started.elapsed()),
                        o.signal.name(),
                        o.value,
                        o.limit
                    );
                }
                last_said = Instant::now();
            }
        }
        bar.set_message(label);
        say_held(conn, worker, None).await;
        let held = started.elapsed();
        tracing::warn!(
            "{} resumes after holding {}",
            self.work,
            crate::human::duration(held)
        );
        for signal in signals {
            let entry = self.held.entry(signal.name()).or_default();
            entry.ms += held.as_millis() as u64;
            entry.times += 1;
        }
        Ok(())
    }

    /// The signals over `fraction` of their limit; `waiting`: sessions that waited for the
    /// last batches' locks.
    async fn over_limits(
        &mut self,
        conn: &mut PgConnection,
        table: &str,
        waiting: i64,
        fraction: f64,
    ) -> Result<Vec<Over>, sqlx::Error> {
        let health = self.read_health(conn, table).await?;
        let s = &self.settings;
        let mut over = Vec::new();
        let scaled = |limit: i64| (limit as f64 * fraction) as i64;
        if let Some(ms) = health.replica_lag_ms
            && ms > scaled(s.max_replica_lag.as_millis() as i64)
        {
            over.push(Over {
                signal: Signal::ReplicaLag,
                value: crate::human::duration(Duration::from_millis(ms as u64)),
                limit: crate::human::duration(s.max_replica_lag),
            });
        }
        if let Some(bytes) = health.replica_lag_bytes
            && bytes > scaled(s.max_replica_lag_bytes)
        {
            over.push(Over {
                signal: Signal::ReplicaLagBytes,
                value: crate::human::bytes(bytes),
                limit: crate::human::bytes(s.max_replica_lag_bytes),
            });
        }
        if let Some(segments) = health.archive_backlog
            && segments > scaled(s.max_archive_backlog)
        {
            over.push(Over {
                signal: Signal::ArchiveBacklog,
                value: format!("{segments} segments"),
                limit: format!("{} segments", s.max_archive_backlog),
            });
        }
        if self.autovacuum_matters() && health.autovacuum {
            over.push(Over {
                signal: Signal::Autovacuum,
                value: format!("running on {table}"),
                limit: "none".into(),
            });
        }
        if waiting > scaled(s.max_lock_waiters) {
            over.push(Over {
                signal: Signal::LockWaiters,
                value: format!("{waiting} sessions waiting for a batch's locks"),
                limit: s.max_lock_waiters.to_string(),
            });
        }
        if s.throttle_query.is_some() && self.operator_says_hold(conn).await? {
            over.push(Over {
                signal: Signal::ThrottleQuery,
                value: "true".into(),
                limit: "false".into(),
            });
        }
        Ok(over)
    }

    /// Every signal this role may read. The first time, asks what it may read and says once
    /// which signals it cannot, and the privilege that would let it.
    async fn read_health(
        &mut self,
        conn: &mut PgConnection,
        table: &str,
    ) -> Result<Health, sqlx::Error> {
        let readable = match &self.readable {
            Some(readable) => readable.clone(),
            None => {
                let readable: Readable = sqlx::query_as(HEALTH_SQL).fetch_one(&mut *conn).await?;
                say_unreadable(&readable);
                self.readable = Some(readable.clone());
                readable
            }
        };
        let mut health = Health::default();
        if readable.sees_replication {
            let (ms, bytes): (Option<i64>, Option<i64>) =
                sqlx::query_as(REPLICAS_SQL).fetch_one(&mut *conn).await?;
            health.replica_lag_ms = ms;
            health.replica_lag_bytes = bytes;
        }
        if readable.archiving && readable.may_list_archive {
            health.archive_backlog = Some(
                sqlx::query_scalar(ARCHIVE_SQL)
                    .fetch_one(&mut *conn)
                    .await?,
            );
        }
        if self.autovacuum_matters() && !self.autovacuum_unreadable {
            match sqlx::query_scalar(AUTOVACUUM_SQL)
                .bind(table)
                .fetch_one(&mut *conn)
                .await
            {
                Ok(running) => health.autovacuum = running,
                Err(err) if crate::db::sqlstate_of(&err).as_deref() == Some("42501") => {
                    tracing::warn!(
                        "{}: autovacuum is not watched: the role {} may not read pg_locks ({})",
                        self.work,
                        readable.role,
                        err.as_database_error()
                            .map_or_else(|| err.to_string(), |d| d.message().to_owned())
                    );
                    self.autovacuum_unreadable = true;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(health)
    }

    /// The operator's own signal, in a read-only transaction of its own.
    async fn operator_says_hold(&self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        let Some(query) = &self.settings.throttle_query else {
            return Ok(false);
        };
        let mut tx = conn.begin().await?;
        sqlx::raw_sql("SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = '5s'")
            .execute(&mut *tx)
            .await?;
        // The operator's own query, by design (their signal), run read-only: the one SQL text
        // paytool does not ship itself.
        let hold: Option<bool> = sqlx::query_scalar(AssertSqlSafe(query.clone()))
            .fetch_one(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok(hold.unwrap_or(false))
    }
}

/// Sessions waiting for a lock this session holds; run inside a batch's transaction, just before
/// its commit.
pub async fn sessions_waiting_for_this_batch(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(WAITING_SQL).fetch_one(conn).await
}

/// [`sessions_waiting_for_this_batch`] in a savepoint of the batch's transaction: a count that
/// fails (a statement timeout on a busy lock table) is said and taken as 0, and the batch
/// commits all the same. A lost connection still fails the batch, at its commit.
pub async fn count_waiting_or_zero(tx: &mut PgConnection) -> i64 {
    let counted = async {
        let mut savepoint = tx.begin().await?;
        let waiting = sessions_waiting_for_this_batch(&mut savepoint).await;
        match waiting {
            Ok(n) => {
                savepoint.commit().await?;
                Ok(n)
            }
            Err(err) => {
                savepoint.rollback().await?;
                Err(err)
            }
        }
    };
    match counted.await {
        Ok(n) => n,
        Err(err) => {
            tracing::warn!("could not count the sessions waiting for the batch ({err})");
            0
        }
    }
}

/// The time held per signal as people read it: "12 s for replica_lag (2 holds), …"; `None`
/// when nothing held.
pub fn held_summary(held: &BTreeMap<&'static str, Held>) -> Option<String> {
    let parts: Vec<String> = held
        .iter()
        .map(|(signal, h)| {
            format!(
                "{} for {signal} ({} hold{})",
                crate::human::millis(h.ms),
                h.times,
                if h.times == 1 { "" } else { "s" }
            )
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The worker's row in paytool.backfill_workers: what holds it, or nothing. Best effort: the
/// status is for people, the hold does not depend on it.
async fn say_held(conn: &mut PgConnection, worker: Option<&str>, why: Option<&str>) {
    let Some(worker) = worker else {
        return;
    };
    let _ = sqlx::query(
        "UPDATE paytool.backfill_workers SET held = $2, heartbeat_at = now() WHERE worker = $1",
    )
    .bind(worker)
    .bind(why)
    .execute(conn)
    .await;
}

/// Said once per run: the signals this role cannot read, and how to let it.
fn say_unreadable(readable: &Readable) {
    let mut unread = Vec::new();
    if !readable.sees_replication {
        unread.push("standbys' replay lag");
    }
    if readable.archiving && !readable.may_list_archive {
        unread.push("the WAL archive backlog");
    }
    if !unread.is_empty() {
        tracing::warn!(
            "throttling cannot read {} as the role {}: GRANT pg_monitor TO {} to hold on them too \
             (autovacuum and waiting sessions are watched all the same)",
            unread.join(" nor "),
            readable.role,
            readable.role
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autovacuum_holds_only_steps_with_enough_to_write() {
        let mut throttle = Throttle::new(ThrottleSettings::default(), "backfill");
        // Before a step says its size (migrate's copy): the table is the work.
        assert!(throttle.autovacuum_matters());
        throttle.step_writes(100);
        assert!(!throttle.autovacuum_matters());
        throttle.step_writes(AUTOVACUUM_MIN_ROWS);
        assert!(throttle.autovacuum_matters());
        let mut ignoring = Throttle::new(
            ThrottleSettings {
                autovacuum: false,
                ..ThrottleSettings::default()
            },
            "backfill",
        );
        ignoring.step_writes(1_000_000);
        assert!(!ignoring.autovacuum_matters());
    }
}
