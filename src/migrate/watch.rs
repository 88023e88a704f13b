//! What a concurrent index build waits for. `CREATE INDEX CONCURRENTLY` waits, by design, for
//! every transaction older than its snapshot; a forgotten `BEGIN` in a psql session makes it
//! wait for as long as that session stays open, and the build's own connection says nothing
//! meanwhile. A second connection watches: it names the sessions the build waits for, again
//! and again, and after `max_wait` of waiting cancels the build (the INVALID index it leaves
//! is dropped and rebuilt by the next run).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgConnection;

use crate::db::{self, DatabaseUrl};

/// How often the watcher looks, and how often it repeats itself while the wait goes on.
const LOOK_EVERY: Duration = Duration::from_secs(2);
const SAY_EVERY: Duration = Duration::from_secs(10);

const BLOCKERS_SQL: &str = "
SELECT coalesce(string_agg('pid ' || a.pid || ' (' || coalesce(nullif(a.application_name, ''), 'no name')
       || ', ' || coalesce(a.state, '?') || ', transaction open for '
       || coalesce(date_trunc('second', now() - a.xact_start)::text, '?')
       || ', last query started ' || coalesce(to_char(a.query_start, 'YYYY-MM-DD HH24:MI:SS TZ'), '?') || ')',
       '; ' ORDER BY a.pid), '')
FROM pg_stat_activity a
WHERE a.pid = ANY(pg_blocking_pids($1))";

/// Who the watched backend waits for, when it gave up: set once the build was cancelled.
#[derive(Debug, Clone)]
pub struct GaveUp {
    pub waited: Duration,
    pub blockers: String,
}

/// A watcher running beside one statement. Dropping it stops it.
pub struct Watcher {
    task: tokio::task::JoinHandle<()>,
    gave_up: Arc<Mutex<Option<GaveUp>>>,
}

impl Watcher {
    /// Watches backend `pid` (the connection about to run the build) through a connection of
    /// its own; `None` if it cannot connect (the build then runs unwatched, as before).
    pub async fn start(
        url: &DatabaseUrl,
        pid: i32,
        what: String,
        max_wait: Duration,
    ) -> Option<Watcher> {
        let conn = db::connect(url).await.ok()?;
        let gave_up = Arc::new(Mutex::new(None));
        let task = tokio::spawn(watch(conn, pid, what, max_wait, gave_up.clone()));
        Some(Watcher { task, gave_up })
    }

    /// Stops watching; `Some` if the watcher cancelled the statement.
    pub fn stop(self) -> Option<GaveUp> {
        self.task.abort();
        self.gave_up.lock().ok().and_then(|g| g.clone())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch(
    mut conn: PgConnection,
    pid: i32,
    what: String,
    max_wait: Duration,
    gave_up: Arc<Mutex<Option<GaveUp>>>,
) {
    let mut blocked_since: Option<Instant> = None;
    let mut last_said: Option<Instant> = None;
    loop {
        tokio::time::sleep(LOOK_EVERY).await;
        let blockers: String = match sqlx::query_scalar(BLOCKERS_SQL)
            .bind(pid)
            .fetch_one(&mut conn)
            .await
        {
            Ok(b) => b,
            Err(_) => return,
        };
        if blockers.is_empty() {
            blocked_since = None;
            continue;
        }
        let since = *blocked_since.get_or_insert_with(Instant::now);
        let waited = since.elapsed() + LOOK_EVERY;
        if waited >= max_wait {
            if let Ok(mut g) = gave_up.lock() {
                *g = Some(GaveUp {
                    waited,
                    blockers: blockers.clone(),
                });
            }
            let _ = sqlx::query("SELECT pg_cancel_backend($1)")
                .bind(pid)
                .execute(&mut conn)
                .await;
            return;
        }
        if last_said.is_none_or(|t| t.elapsed() >= SAY_EVERY) {
            tracing::warn!(
                "{what} has waited {} for older transactions to end, as it must: {blockers}. \
                 Gives up after --max-wait {} (left {}).",
                crate::human::duration(waited),
                crate::human::duration(max_wait),
                crate::human::duration(max_wait.saturating_sub(waited)),
            );
            last_said = Some(Instant::now());
        }
    }
}
