//! Is there a transaction-pooling proxy (PgBouncer `pool_mode = transaction`, or any pooler
//! that hands each transaction to whichever server connection is free) between paytool and
//! PostgreSQL? paytool needs one server session for a whole run: its advisory locks, its
//! session settings and sqlx's prepared statements live there. Through such a pooler they end
//! up on a server connection another client gets next (a lock that outlives the run, a
//! `prepared statement "sqlx_s_2" already exists`), so paytool refuses it before it sets
//! anything.
//!
//! PostgreSQL cannot tell: the pooler speaks its protocol. Its behaviour does. Through a
//! direct or session-pooled connection, a client keeps its server backend, whatever other
//! clients do. Through a transaction pooler, the backend a client used is free between its
//! transactions: a second client that opens a transaction then gets it (PgBouncer reuses the
//! most recently released server connection first), and the first client's next statement
//! runs on another backend, or waits for one. Everything here uses the simple query protocol,
//! so no prepared statement is left on a pooled connection.

use std::time::Duration;

use sqlx::{Connection, PgConnection, Row, postgres::PgConnectOptions};

/// How long a probe statement may wait for a server connection before that wait counts as an
/// answer (see [`Probe::verdict`]).
const PROBE_WAIT: Duration = Duration::from_secs(2);

/// What the two-client probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The first client's backend, before the second client opened its transaction.
    pub first_before: i32,
    /// The second client's backend, inside its open transaction; `None` when it waited past
    /// [`PROBE_WAIT`] for a server connection (the pooler had none free).
    pub second: Option<i32>,
    /// The first client's backend while the second's transaction is open; `None` when it
    /// waited past [`PROBE_WAIT`] (its server connection was taken from it).
    pub first_after: Option<i32>,
}

impl Probe {
    /// True when the first client's server session did not stay its own.
    pub fn shows_transaction_pooling(&self) -> bool {
        match (self.second, self.first_after) {
            // The second client got no server at all: the first one holds its own.
            (None, _) => false,
            (Some(second), _) if second == self.first_before => true,
            (Some(_), None) => true,
            (Some(_), Some(after)) => after != self.first_before,
        }
    }

    /// The evidence, for the error message.
    pub fn evidence(&self) -> String {
        match (self.second, self.first_after) {
            (Some(second), _) if second == self.first_before => format!(
                "backend {} served another client's transaction between two statements of paytool's",
                self.first_before
            ),
            (Some(_), None) => format!(
                "paytool's next statement had no server connection for {PROBE_WAIT:?} while another client's \
                 transaction was open (its backend {} was no longer its own)",
                self.first_before
            ),
            (_, after) => format!(
                "paytool's session moved from backend {} to backend {} between two statements",
                self.first_before,
                after.map_or_else(|| "?".to_owned(), |p| p.to_string())
            ),
        }
    }
}

/// Runs the probe on `conn` (fresh: nothing set on it yet), opening one more connection with
/// `options`. `None` when it cannot tell (the second connection was refused, say): the run
/// goes on, as it did before the probe existed.
pub async fn probe(conn: &mut PgConnection, options: &PgConnectOptions) -> Option<Probe> {
    let first_before = backend_pid(conn).await.ok()?;
    let mut other =
        tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(options))
            .await
            .ok()?
            .ok()?;
    let second = match tokio::time::timeout(PROBE_WAIT, open_transaction_pid(&mut other)).await {
        Ok(Ok(pid)) => Some(pid),
        Ok(Err(_)) => return None,
        Err(_) => None,
    };
    let first_after = match second {
        None => Some(first_before),
        Some(_) => match tokio::time::timeout(PROBE_WAIT, backend_pid(conn)).await {
            Ok(Ok(pid)) => Some(pid),
            Ok(Err(_)) => return None,
            Err(_) => None,
        },
    };
    // Closing the connection ends its transaction; a pooler rolls it back and frees the server.
    let _ = tokio::time::timeout(Duration::from_secs(2), other.close()).await;
    Some(Probe {
        first_before,
        second,
        first_after,
    })
}

async fn backend_pid(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    let row = sqlx::raw_sql("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await?;
    row.try_get(0)
}

async fn open_transaction_pid(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    let row = sqlx::raw_sql("BEGIN; SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await?;
    row.try_get(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(second: Option<i32>, first_after: Option<i32>) -> Probe {
        Probe {
            first_before: 10,
            second,
            first_after,
        }
    }

    #[test]
    fn a_session_that_keeps_its_backend_is_not_pooled_per_transaction() {
        assert!(!probe(Some(11), Some(10)).shows_transaction_pooling());
        // A full session pool: the second client waits, the first keeps its server.
        assert!(!probe(None, Some(10)).shows_transaction_pooling());
    }

    #[test]
    fn a_backend_handed_to_another_client_or_a_moved_session_is_transaction_pooling() {
        let handed_over = probe(Some(10), Some(12));
        assert!(handed_over.shows_transaction_pooling());
        assert!(handed_over.evidence().contains("served another client"));
        assert!(probe(Some(11), Some(12)).shows_transaction_pooling());
        let starved = probe(Some(11), None);
        assert!(starved.shows_transaction_pooling());
        assert!(starved.evidence().contains("no server connection"));
    }
}
