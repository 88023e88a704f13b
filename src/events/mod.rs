//! `paytool backfill events`: Stripe's events of the last 30 days into payment_events, so the
//! audit trail the design promises does not start the day the webhook handler was upgraded.
//! Read-only on Stripe (reconcile's client); one transaction per page of 100 events, the
//! checkpoint in it, so a killed run resumes at the next page.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use thiserror::Error;

use crate::db::{self, DatabaseUrl};
use crate::exit;
use crate::progress::Progress;
use crate::stripe::{
    EventPage, EventQuery, EventView, PAYMENT_EVENT_TYPES, StripeAccess, StripeFailure, StripeHttp,
    StripeSource,
};

const CHECKPOINT_SQL: &str = include_str!("../../sql/internal/event_backfill.sql");
const INSERT_SQL: &str = include_str!("../../sql/backfill/events_insert.sql");
const UNLINKED_SQL: &str = include_str!("../../sql/backfill/events_unlinked.sql");

const LOAD_SQL: &str = "SELECT since, until, last_event_id, finished_at IS NOT NULL AS finished
FROM paytool.event_backfill WHERE type_pattern = $1";

const START_SQL: &str = "
INSERT INTO paytool.event_backfill (type_pattern, since, until) VALUES ($1, $2, $3)
ON CONFLICT (type_pattern) DO UPDATE
SET since = $2, until = $3, last_event_id = NULL, pages = 0, fetched = 0, inserted = 0,
    started_at = now(), updated_at = now(), finished_at = NULL";

const ADVANCE_SQL: &str = "
UPDATE paytool.event_backfill
SET last_event_id = $2, pages = pages + 1, fetched = fetched + $3, inserted = inserted + $4, updated_at = now()
WHERE type_pattern = $1";

const FINISH_SQL: &str = "UPDATE paytool.event_backfill SET finished_at = now(), updated_at = now() WHERE type_pattern = $1";

/// How long Stripe keeps events.
pub const RETENTION_DAYS: i64 = 30;

#[derive(Debug, Error)]
pub enum EventsError {
    #[error(
        "no Stripe key: set STRIPE_SECRET_KEY or pass --stripe-key (a restricted key with read access to Events is enough)"
    )]
    NoKey,
    #[error("--since {since} is after --until {until}")]
    EmptyWindow { since: String, until: String },
    #[error(
        "--until {until} is more than 30 days ago: Stripe keeps events 30 days, so there is nothing to fetch"
    )]
    BeyondRetention { until: String },
    #[error(
        "could not read Stripe's events ({0}); every page before it is stored: run again to resume"
    )]
    Stripe(#[from] StripeFailure),
}

impl EventsError {
    pub fn exit_code(&self) -> u8 {
        match self {
            EventsError::NoKey
            | EventsError::EmptyWindow { .. }
            | EventsError::BeyondRetention { .. } => exit::USAGE,
            EventsError::Stripe(_) => exit::RUNTIME_FAILURE,
        }
    }
}

/// What `paytool backfill events` is asked to do.
#[derive(Debug, Clone)]
pub struct EventsRequest {
    pub stripe: StripeAccess,
    /// Events created at or after; default and earliest: 30 days ago.
    pub since: Option<DateTime<Utc>>,
    /// Events created at or before; default now.
    pub until: Option<DateTime<Utc>>,
    /// Forget an interrupted run's checkpoint.
    pub restart: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventsReport {
    pub database: String,
    pub stripe: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// `--since` was earlier than Stripe's retention and was moved to its start.
    pub since_clamped: bool,
    /// One line per event type pattern listed.
    pub types: Vec<TypeTally>,
    pub fetched: u64,
    pub inserted: u64,
    pub already_present: u64,
    /// Events stored before their payment existed, linked by this run.
    pub linked_now: u64,
    /// Events of this run stored without a payment (no PaymentIntent, or none known here).
    pub unlinked: u64,
    pub stripe_requests: u64,
    pub stripe_retries: u64,
    pub duration_ms: u64,
}

impl EventsReport {
    pub fn exit_code(&self) -> u8 {
        exit::OK
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeTally {
    pub type_pattern: String,
    pub pages: u64,
    pub fetched: u64,
    pub inserted: u64,
    pub already_present: u64,
    pub linked_now: u64,
    pub unlinked: u64,
    /// The event an interrupted run had stored last; this run went on after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<String>,
}

/// The window of one pattern's listing, fixed when it starts so that a resumed run goes on
/// over the same one.
#[derive(Debug, Clone, Copy)]
struct Window {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
}

pub async fn run(
    request: &EventsRequest,
    url: &DatabaseUrl,
    progress: Progress,
) -> anyhow::Result<EventsReport> {
    let started = Instant::now();
    let key = request.stripe.key.clone().ok_or(EventsError::NoKey)?;
    let (window, since_clamped) = window_of(request, Utc::now())?;
    let mut conn = db::connect(url).await?;
    db::require_primary(&mut conn, url, "backfill events").await?;
    crate::migrate::require_migrated(&mut conn).await?;
    db::bookkeeping::ensure(&mut conn, CHECKPOINT_SQL, &["paytool.event_backfill"]).await?;
    let stripe = request.stripe.client(key).map_err(EventsError::from)?;
    let stored = Arc::new(AtomicU64::new(0));
    let bar = progress.stages_with_counter(PAYMENT_EVENT_TYPES.len() as u64, {
        let (stored, stripe) = (stored.clone(), stripe.clone());
        move || {
            format!(
                "{} events stored, {} Stripe requests",
                crate::human::grouped(stored.load(Ordering::Relaxed)),
                stripe.requests()
            )
        }
    });
    let mut types = Vec::new();
    for pattern in PAYMENT_EVENT_TYPES {
        bar.set_message(format!("listing {pattern} events"));
        let tally = backfill_pattern(
            &mut conn,
            &stripe,
            pattern,
            window,
            request.restart,
            &stored,
        )
        .await?;
        if let Some(after) = &tally.resumed_after {
            tracing::info!("{pattern}: resuming after {after}");
        }
        types.push(tally);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let sum = |f: fn(&TypeTally) -> u64| types.iter().map(f).sum::<u64>();
    Ok(EventsReport {
        database: url.redacted().to_owned(),
        stripe: request.stripe.base_url(),
        since: window.since,
        until: window.until,
        since_clamped,
        fetched: sum(|t| t.fetched),
        inserted: sum(|t| t.inserted),
        already_present: sum(|t| t.already_present),
        linked_now: sum(|t| t.linked_now),
        unlinked: sum(|t| t.unlinked),
        types,
        stripe_requests: stripe.requests(),
        stripe_retries: stripe.retries(),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// `[since, until]`, `since` no earlier than Stripe's retention (and whether it was moved).
fn window_of(request: &EventsRequest, now: DateTime<Utc>) -> Result<(Window, bool), EventsError> {
    let retention_start = now - chrono::Duration::days(RETENTION_DAYS);
    let until = request.until.unwrap_or(now);
    let asked = request.since.unwrap_or(retention_start);
    let since = asked.max(retention_start);
    if until < retention_start {
        return Err(EventsError::BeyondRetention {
            until: until.to_rfc3339(),
        });
    }
    if since > until {
        return Err(EventsError::EmptyWindow {
            since: since.to_rfc3339(),
            until: until.to_rfc3339(),
        });
    }
    Ok((Window { since, until }, asked < retention_start))
}

/// One event type pattern, page after page, from the newest event (or the checkpoint) down.
async fn backfill_pattern(
    conn: &mut PgConnection,
    stripe: &StripeHttp,
    pattern: &str,
    requested: Window,
    restart: bool,
    stored: &AtomicU64,
) -> anyhow::Result<TypeTally> {
    let mut tally = TypeTally {
        type_pattern: pattern.to_owned(),
        ..TypeTally::default()
    };
    let (window, mut cursor) = match unfinished(conn, pattern).await? {
        Some((window, cursor)) if !restart => {
            tally.resumed_after.clone_from(&cursor);
            (window, cursor)
        }
        _ => {
            sqlx::query(START_SQL)
                .bind(pattern)
                .bind(requested.since)
                .bind(requested.until)
                .execute(&mut *conn)
                .await?;
            (requested, None)
        }
    };
    loop {
        let page = match fetch_page(stripe, pattern, window, cursor.as_deref()).await {
            Ok(page) => page,
            // The cursor's event left Stripe's retention meanwhile: the list again from the
            // newest (what is stored already is left as it is).
            Err(failure) if failure.is_not_found() && cursor.is_some() => {
                tracing::warn!(
                    "{pattern}: Stripe no longer has event {}; listing again from the newest",
                    cursor.as_deref().unwrap_or_default()
                );
                cursor = None;
                continue;
            }
            Err(failure) => return Err(EventsError::from(failure).into()),
        };
        if let Some(last) = page.events.last() {
            store_page(conn, pattern, &page.events, &last.id.clone(), &mut tally).await?;
            stored.fetch_add(page.events.len() as u64, Ordering::Relaxed);
            cursor = Some(last.id.clone());
        }
        if !page.has_more || page.events.is_empty() {
            break;
        }
    }
    sqlx::query(FINISH_SQL).bind(pattern).execute(conn).await?;
    Ok(tally)
}

async fn fetch_page(
    stripe: &StripeHttp,
    pattern: &str,
    window: Window,
    after: Option<&str>,
) -> Result<EventPage, StripeFailure> {
    stripe
        .events_page(&EventQuery {
            type_pattern: pattern,
            since: window.since,
            until: window.until,
            failed_only: false,
            starting_after: after,
        })
        .await
}

/// One row of paytool.event_backfill.
#[derive(sqlx::FromRow)]
struct CheckpointRow {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    last_event_id: Option<String>,
    finished: bool,
}

/// The window and cursor of an interrupted run of this pattern.
async fn unfinished(
    conn: &mut PgConnection,
    pattern: &str,
) -> Result<Option<(Window, Option<String>)>, sqlx::Error> {
    let row: Option<CheckpointRow> = sqlx::query_as(LOAD_SQL)
        .bind(pattern)
        .fetch_optional(conn)
        .await?;
    Ok(row.and_then(|row| {
        (!row.finished).then_some((
            Window {
                since: row.since,
                until: row.until,
            },
            row.last_event_id,
        ))
    }))
}

/// One page and the checkpoint after it, in one transaction.
async fn store_page(
    conn: &mut PgConnection,
    pattern: &str,
    events: &[EventView],
    last_id: &str,
    tally: &mut TypeTally,
) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.type_.as_str()).collect();
    let payloads: Vec<String> = events.iter().map(|e| e.payload.to_string()).collect();
    let created: Vec<chrono::NaiveDateTime> =
        events.iter().map(|e| e.created.naive_utc()).collect();
    let intents: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.payment_intent_id.as_deref())
        .collect();
    let mut tx = conn.begin().await?;
    let (inserted, linked_now): (i64, i64) = sqlx::query_as(INSERT_SQL)
        .bind(&ids)
        .bind(&types)
        .bind(&payloads)
        .bind(&created)
        .bind(&intents)
        .fetch_one(&mut *tx)
        .await?;
    let unlinked: i64 = sqlx::query_scalar(UNLINKED_SQL)
        .bind(&ids)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(ADVANCE_SQL)
        .bind(pattern)
        .bind(last_id)
        .bind(events.len() as i64)
        .bind(inserted)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let fetched = events.len() as u64;
    tally.pages += 1;
    tally.fetched += fetched;
    tally.inserted += inserted as u64;
    tally.linked_now += linked_now as u64;
    tally.already_present += fetched - inserted as u64;
    tally.unlinked += unlinked as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(since: Option<&str>, until: Option<&str>) -> EventsRequest {
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().to_utc();
        EventsRequest {
            stripe: StripeAccess {
                key: None,
                base_url: String::new(),
                max_rps: 1,
                concurrency: 1,
                request_timeout: std::time::Duration::from_secs(1),
                max_retries: 0,
            },
            since: since.map(at),
            until: until.map(at),
            restart: false,
        }
    }

    #[test]
    fn the_window_stops_at_stripes_retention() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T00:00:00Z")
            .unwrap()
            .to_utc();
        let (window, clamped) = window_of(&request(None, None), now).unwrap();
        assert_eq!(window.since.to_rfc3339(), "2026-11-02T00:00:00+00:00");
        assert!(!clamped);
        let (window, clamped) =
            window_of(&request(Some("2026-01-01T00:00:00Z"), None), now).unwrap();
        assert_eq!(window.since.to_rfc3339(), "2026-11-02T00:00:00+00:00");
        assert!(clamped);
        assert!(matches!(
            window_of(
                &request(Some("2026-11-20T00:00:00Z"), Some("2026-11-10T00:00:00Z")),
                now
            ),
            Err(EventsError::EmptyWindow { .. })
        ));
        assert!(matches!(
            window_of(&request(None, Some("2026-10-01T00:00:00Z")), now),
            Err(EventsError::BeyondRetention { .. })
        ));
    }
}
