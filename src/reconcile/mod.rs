//! `paytool reconcile`: orders and payments against Stripe PaymentIntents and refunds. Stripe
//! is read first, completely; the database is written (with `--apply`) only afterwards, so a
//! Stripe failure leaves nothing half-done.

mod apply;
pub mod baseline;
pub mod finding;
pub mod payouts;
mod rules;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use sqlx::PgConnection;
use thiserror::Error;

pub use apply::{AppliedRepair, RepairOutcome};
pub use baseline::{Acceptance, BaselineError, BaselineSummary};
use finding::{Finding, OrderRow, PaymentRow};
pub use rules::StaleAfter;
use rules::{Inputs, Scope};

use crate::db::{self, DatabaseUrl, IdType, Key, Keys};
use crate::domain::{IntentStatus, OrderStatus};
use crate::exit;
use crate::progress::Progress;
use crate::stripe::{PaymentIntentView, StripeAccess, StripeFailure, StripeHttp, StripeSource};

const ORDERS_SQL: &str = include_str!("../../sql/reconcile/orders.sql");
const KNOWN_ORDERS_SQL: &str = include_str!("../../sql/reconcile/known_orders.sql");
const STORED_EVENTS_SQL: &str = include_str!("../../sql/reconcile/stored_events.sql");

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error(
        "no Stripe key: set STRIPE_SECRET_KEY or pass --stripe-key (a restricted read-only key is enough)"
    )]
    NoKey,
    #[error("--since {since} is after --until {until}")]
    EmptyWindow { since: String, until: String },
    #[error("order {0} does not exist")]
    NoSuchOrder(String),
    #[error("could not read Stripe, nothing was written: {0}")]
    Stripe(#[from] StripeFailure),
}

impl ReconcileError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ReconcileError::NoKey
            | ReconcileError::EmptyWindow { .. }
            | ReconcileError::NoSuchOrder(_) => exit::USAGE,
            ReconcileError::Stripe(_) => exit::RUNTIME_FAILURE,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub order: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    pub run_id: String,
    pub database: String,
    pub stripe: String,
    pub window: Window,
    pub apply: bool,
    pub orders_checked: usize,
    pub payment_intents_listed: usize,
    pub payment_intents_retrieved: usize,
    pub refunds_listed: usize,
    pub disputes_listed: usize,
    /// Payment events of the window whose webhooks failed.
    pub failed_deliveries_listed: usize,
    pub stripe_requests: u64,
    pub stripe_retries: u64,
    pub duration_ms: u64,
    /// New findings per kind, every kind listed.
    pub summary: BTreeMap<&'static str, usize>,
    /// Findings the baseline does not hold (all of them without `--baseline`).
    pub findings: Vec<Finding>,
    /// Findings the baseline holds: accepted, not alerted on.
    pub known_findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineSummary>,
    /// Repairs `--apply` would make (without it) or made.
    pub repairs_pending: usize,
    pub applied: Vec<AppliedRepair>,
}

impl ReconcileReport {
    pub fn exit_code(&self) -> u8 {
        if self.findings.is_empty() {
            exit::OK
        } else {
            exit::PROBLEMS_FOUND
        }
    }
}

/// What `paytool reconcile` is asked to do.
#[derive(Debug, Clone)]
pub struct ReconcileRequest {
    pub stripe: StripeAccess,
    /// Orders created at or after; default 30 days before `until`.
    pub since: Option<DateTime<Utc>>,
    /// Orders created at or before; default now.
    pub until: Option<DateTime<Utc>>,
    /// This one order only.
    pub order: Option<String>,
    pub apply: bool,
    pub stale_after: StaleAfter,
    /// Accepted findings: only the others make the run exit 1.
    pub baseline: Option<PathBuf>,
    /// Accept every finding of this run into this file.
    pub write_baseline: Option<Acceptance>,
}

pub async fn run(
    args: &ReconcileRequest,
    url: &DatabaseUrl,
    progress: Progress,
) -> anyhow::Result<ReconcileReport> {
    let started = Instant::now();
    let key = args.stripe.key.clone().ok_or(ReconcileError::NoKey)?;
    let window = window_of(args)?;
    // A bad baseline is a usage error, found before Stripe is asked anything.
    let accepted = load_baseline(args)?;
    let mut conn = db::connect(url).await?;
    if args.apply {
        db::require_primary(&mut conn, url, "reconcile --apply").await?;
    }
    let id_type = crate::migrate::require_migrated(&mut conn).await?.orders_id;
    let stripe = args.stripe.client(key).map_err(ReconcileError::from)?;
    let orders = load_orders(&mut conn, &window, id_type).await?;
    let stripe_window = stripe_window(&window, &orders);
    let counted = stripe.clone();
    let bar = progress.stages_with_counter(5, move || {
        format!(
            "{} Stripe requests, {} retried",
            counted.requests(),
            counted.retries()
        )
    });
    bar.set_message(Stage::ListingIntents.as_str());
    let listed = stripe
        .payment_intents(stripe_window.0, stripe_window.1)
        .await
        .map_err(ReconcileError::from)?;
    bar.inc(1);
    bar.set_message(Stage::RetrievingOutsideTheWindow.as_str());
    let (retrieved, unknown) =
        retrieve_missing(&stripe, &orders, &listed, args.stripe.concurrency).await?;
    bar.inc(1);
    bar.set_message(Stage::ListingRefunds.as_str());
    let refunds = stripe
        .refunds(stripe_window.0)
        .await
        .map_err(ReconcileError::from)?;
    bar.inc(1);
    bar.set_message(Stage::ListingDisputes.as_str());
    let disputes = stripe
        .disputes(stripe_window.0)
        .await
        .map_err(ReconcileError::from)?;
    bar.inc(1);
    bar.set_message(Stage::ListingFailedDeliveries.as_str());
    let failed_events = stripe
        .failed_events(stripe_window.0, stripe_window.1)
        .await
        .map_err(ReconcileError::from)?;
    bar.finish_and_clear();
    let (other_known, linked_elsewhere) =
        known_orders(&mut conn, id_type, &orders, &listed).await?;
    let failed_ids: Vec<&str> = failed_events.iter().map(|e| e.id.as_str()).collect();
    let stored_events: HashSet<String> = sqlx::query_scalar(STORED_EVENTS_SQL)
        .bind(&failed_ids)
        .fetch_all(&mut conn)
        .await?
        .into_iter()
        .collect();
    let findings = rules::reconcile(&Inputs {
        orders: &orders,
        other_known_orders: &other_known,
        linked_elsewhere: &linked_elsewhere,
        scope: match window.order {
            Some(_) => Scope::Order,
            None => Scope::Window {
                since: window.since,
                until: window.until,
            },
        },
        listed: &listed,
        retrieved: &retrieved,
        unknown_to_stripe: &unknown,
        refunds: &refunds,
        disputes: &disputes,
        failed_events: &failed_events,
        stored_events: &stored_events,
        now: Utc::now(),
        stale_after: args.stale_after,
    });
    let run_id: String = sqlx::query_scalar("SELECT gen_random_uuid()::text")
        .fetch_one(&mut conn)
        .await?;
    let repairs_pending = findings.iter().map(|f| f.repairs.len()).sum();
    let applied = if args.apply {
        apply::apply_all(&mut conn, id_type, &run_id, &findings).await?
    } else {
        Vec::new()
    };
    let (findings, known_findings, baseline) = apply_baseline(args, accepted, findings)?;
    Ok(ReconcileReport {
        run_id,
        database: url.redacted().to_owned(),
        stripe: args.stripe.base_url(),
        window,
        apply: args.apply,
        orders_checked: orders.len(),
        payment_intents_listed: listed.len(),
        payment_intents_retrieved: retrieved.len(),
        refunds_listed: refunds.len(),
        disputes_listed: disputes.len(),
        failed_deliveries_listed: failed_events.len(),
        stripe_requests: stripe.requests(),
        stripe_retries: stripe.retries(),
        duration_ms: started.elapsed().as_millis() as u64,
        summary: finding::summarize(&findings),
        findings,
        known_findings,
        baseline,
        repairs_pending,
        applied,
    })
}

/// What reconcile is reading from Stripe, shown on the progress bar.
#[derive(Debug, Clone, Copy)]
enum Stage {
    ListingIntents,
    RetrievingOutsideTheWindow,
    ListingRefunds,
    ListingDisputes,
    ListingFailedDeliveries,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::ListingIntents => "listing PaymentIntents",
            Stage::RetrievingOutsideTheWindow => {
                "retrieving PaymentIntents created outside the window"
            }
            Stage::ListingRefunds => "listing refunds",
            Stage::ListingDisputes => "listing disputes",
            Stage::ListingFailedDeliveries => "listing events whose webhooks failed",
        }
    }
}

/// The baseline to compare with: `--baseline`'s file (it must exist), else the file
/// `--write-baseline` adds to, if it exists already.
fn load_baseline(args: &ReconcileRequest) -> Result<Option<baseline::BaselineFile>, BaselineError> {
    baseline::load_for(args.baseline.as_deref(), args.write_baseline.as_ref())
}

type Partitioned = (Vec<Finding>, Vec<Finding>, Option<BaselineSummary>);

/// Splits the findings into new and known, and writes the baseline if asked to.
fn apply_baseline(
    args: &ReconcileRequest,
    accepted: Option<baseline::BaselineFile>,
    findings: Vec<Finding>,
) -> Result<Partitioned, BaselineError> {
    let applied = baseline::apply(
        args.baseline.as_deref(),
        args.write_baseline.as_ref(),
        accepted,
        findings,
    )?;
    Ok((applied.new, applied.known, applied.summary))
}

fn window_of(args: &ReconcileRequest) -> Result<Window, ReconcileError> {
    let until = args.until.unwrap_or_else(Utc::now);
    let since = args.since.unwrap_or(until - chrono::Duration::days(30));
    if since > until {
        return Err(ReconcileError::EmptyWindow {
            since: since.to_rfc3339(),
            until: until.to_rfc3339(),
        });
    }
    Ok(Window {
        since,
        until,
        order: args.order.clone(),
    })
}

/// The PaymentIntent window: the orders' window and one day more, or around the one order (a
/// PaymentIntent is created at checkout, after its order).
fn stripe_window(window: &Window, orders: &[OrderRow]) -> (DateTime<Utc>, DateTime<Utc>) {
    match (&window.order, orders.first().and_then(|o| o.created_at)) {
        (Some(_), Some(created)) => {
            let created = created.and_utc();
            (
                created - chrono::Duration::days(1),
                created + chrono::Duration::days(7),
            )
        }
        // A checkout can come a little after its order: list a day past the window's end.
        _ => (window.since, window.until + chrono::Duration::days(1)),
    }
}

/// One row of sql/reconcile/orders.sql: an order, its payment (if any) and its refunds.
#[derive(sqlx::FromRow)]
struct OrderRecord {
    id: String,
    status: String,
    amount_total_cents: i64,
    currency: String,
    stripe_payment_intent_id: Option<String>,
    created_at: NaiveDateTime,
    payment_id: Option<String>,
    payment_status: Option<String>,
    payment_intent_id: Option<String>,
    succeeded_at: Option<NaiveDateTime>,
    last_error_code: Option<String>,
    refund_ids: Vec<String>,
    refunded_cents: i64,
}

async fn load_orders(
    conn: &mut PgConnection,
    window: &Window,
    id_type: IdType,
) -> anyhow::Result<Vec<OrderRow>> {
    let order = match &window.order {
        Some(id) => Key::parse(id_type, id).map_err(|_| ReconcileError::NoSuchOrder(id.clone()))?,
        None => Key::start(id_type),
    };
    let rows: Vec<OrderRecord> = sqlx::query_as(ORDERS_SQL)
        .bind(window.since.naive_utc())
        .bind(window.until.naive_utc())
        .bind(&order)
        .fetch_all(conn)
        .await?;
    if let Some(id) = &window.order
        && rows.is_empty()
    {
        return Err(ReconcileError::NoSuchOrder(id.clone()).into());
    }
    Ok(rows.into_iter().map(order_of).collect())
}

fn order_of(row: OrderRecord) -> OrderRow {
    let payment = row.payment_id.map(|id| PaymentRow {
        id,
        status: IntentStatus::parse(row.payment_status.as_deref().unwrap_or_default()),
        payment_intent_id: row.payment_intent_id,
        succeeded_at: row.succeeded_at,
        last_error_code: row.last_error_code,
        refund_ids: row.refund_ids,
        refunded_cents: row.refunded_cents,
    });
    OrderRow {
        id: row.id,
        status: OrderStatus::parse(&row.status),
        amount_total_cents: row.amount_total_cents,
        currency: row.currency,
        payment_intent_id: row.stripe_payment_intent_id,
        created_at: Some(row.created_at),
        payment,
    }
}

/// PaymentIntents linked from an order but not in the list (created outside the window),
/// retrieved one by one, a few at a time; the ids Stripe does not know.
async fn retrieve_missing(
    stripe: &StripeHttp,
    orders: &[OrderRow],
    listed: &[PaymentIntentView],
    concurrency: usize,
) -> Result<(Vec<PaymentIntentView>, HashSet<String>), ReconcileError> {
    let seen: HashSet<&str> = listed.iter().map(|pi| pi.id.as_str()).collect();
    let wanted: Vec<String> = orders
        .iter()
        .filter_map(|o| o.payment_intent_id.clone())
        .filter(|id| !seen.contains(id.as_str()))
        .collect();
    let answers: Vec<(String, Option<PaymentIntentView>)> = futures_util::stream::iter(wanted)
        .map(|id| async move { stripe.payment_intent(&id).await.map(|pi| (id, pi)) })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut retrieved = Vec::new();
    let mut unknown = HashSet::new();
    for (id, answer) in answers {
        match answer {
            Some(pi) => retrieved.push(pi),
            None => {
                unknown.insert(id);
            }
        }
    }
    Ok((retrieved, unknown))
}

/// Orders outside the window that listed PaymentIntents name (metadata) or that link them
/// (by id): their ids, and the PaymentIntent ids they link.
async fn known_orders(
    conn: &mut PgConnection,
    id_type: IdType,
    orders: &[OrderRow],
    listed: &[PaymentIntentView],
) -> Result<(HashSet<String>, HashSet<String>), sqlx::Error> {
    let in_window: HashSet<&str> = orders.iter().map(|o| o.id.as_str()).collect();
    let linked_in_window: HashSet<&str> = orders
        .iter()
        .filter_map(|o| o.payment_intent_id.as_deref())
        .collect();
    let named: Vec<String> = listed
        .iter()
        .filter_map(|pi| pi.order_id.clone())
        .filter(|id| !in_window.contains(id.as_str()))
        .collect();
    let unlinked: Vec<String> = listed
        .iter()
        .map(|pi| pi.id.clone())
        .filter(|id| !linked_in_window.contains(id.as_str()))
        .collect();
    if named.is_empty() && unlinked.is_empty() {
        return Ok((HashSet::new(), HashSet::new()));
    }
    let found: Vec<(String, Option<String>)> = sqlx::query_as(KNOWN_ORDERS_SQL)
        .bind(Keys::valid(id_type, &named))
        .bind(&unlinked)
        .fetch_all(conn)
        .await?;
    let ids = found.iter().map(|(id, _)| id.clone()).collect();
    let links = found.into_iter().filter_map(|(_, pi)| pi).collect();
    Ok((ids, links))
}
