//! `paytool reconcile payouts`: every payout of a window explained to the cent, order by order.
//! Reads Stripe's payouts and the balance transactions each paid out (GET only), links each
//! transaction to its order through its PaymentIntent, and closes the books ([`books`]).

pub mod books;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ReconcileError;
use crate::db::{self, DatabaseUrl};
use crate::progress::Progress;
use crate::stripe::{BalanceTxnView, PayoutView, StripeAccess};
use books::{Books, LedgerLine, OrderOfIntent, PayoutFinding, PayoutLine};

/// Above this many paid orders in the window, `--source auto` takes a report run: their pages
/// alone (one per hundred transactions) would take over 25 s at paytool's default 20
/// requests/s, longer than a report run is expected to take (see docs/payouts.md).
pub const AUTO_REPORTS_ABOVE: i64 = 50_000;

const PAID_ORDERS_SQL: &str =
    "SELECT count(*) FROM orders WHERE status::TEXT = 'PAID' AND paid_at >= $1 AND paid_at <= $2";

const PAYOUT_ORDERS_SQL: &str = include_str!("../../../sql/reconcile/payout_orders.sql");

/// Where the balance transactions are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The API below [`AUTO_REPORTS_ABOVE`] paid orders in the window, a report run above.
    Auto,
    /// A page per hundred balance transactions of each payout.
    Api,
    /// One report run of the whole window (Stripe's payout reconciliation report), topped up
    /// from the API where the report's data does not reach.
    Reports,
}

/// What `paytool reconcile payouts` is asked to do.
#[derive(Debug, Clone)]
pub struct PayoutsRequest {
    pub stripe: StripeAccess,
    /// Payouts arriving in `[since, until]` (default: the 30 days before now).
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// One payout instead of a window.
    pub payout: Option<String>,
    /// A PAID order's charge available longer than this and in no payout is a finding.
    pub not_paid_out_after: Duration,
    /// Accepted findings: only the others make the run exit 1.
    pub baseline: Option<std::path::PathBuf>,
    /// Accept every finding of this run into this file.
    pub write_baseline: Option<super::Acceptance>,
    pub source: Source,
    /// Stripe's files host, where a report's file is read (the simulator's in tests).
    pub files_base_url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PayoutsReport {
    pub database: String,
    pub stripe: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub payout: Option<String>,
    /// The source used (`auto` resolved).
    pub source: Source,
    /// With `--source reports`: the interval the report covered (clamped to the report
    /// type's data), and the payouts read from the API because it did not reach them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_interval: Option<(DateTime<Utc>, DateTime<Utc>)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub topped_up_from_api: Vec<String>,
    pub payouts: Vec<PayoutLine>,
    /// New findings (not in the baseline) per kind, every kind listed.
    pub summary: BTreeMap<&'static str, usize>,
    pub findings: Vec<PayoutFinding>,
    /// Findings the baseline holds: accepted, not alerted on.
    pub known_findings: Vec<PayoutFinding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<super::BaselineSummary>,
    pub balance_transactions: usize,
    pub stripe_requests: u64,
    pub stripe_retries: u64,
    /// ⌈payouts/100⌉ + Σ ⌈transactions per payout/100⌉, plus two requests per PAID order
    /// that no payout paid out (or one listing of the window's charges, when cheaper): the
    /// requests this run needed; `stripe_requests` above it are retries.
    pub request_budget: u64,
    pub duration_ms: u64,
    /// One line per balance transaction: the CSV.
    #[serde(skip)]
    pub ledger: Vec<LedgerLine>,
}

impl PayoutsReport {
    pub fn exit_code(&self) -> u8 {
        if self.findings.is_empty() {
            crate::exit::OK
        } else {
            crate::exit::PROBLEMS_FOUND
        }
    }
}

fn pages(items: usize) -> u64 {
    (items.max(1) as u64).div_ceil(crate::stripe::PAGE_SIZE as u64)
}

pub async fn run(
    request: &PayoutsRequest,
    url: &DatabaseUrl,
    progress: Progress,
) -> anyhow::Result<PayoutsReport> {
    let started = Instant::now();
    let key = request.stripe.key.clone().ok_or(ReconcileError::NoKey)?;
    let until = request.until.unwrap_or_else(Utc::now);
    let since = request.since.unwrap_or(until - chrono::Duration::days(30));
    if since > until {
        return Err(ReconcileError::EmptyWindow {
            since: since.to_rfc3339(),
            until: until.to_rfc3339(),
        }
        .into());
    }
    // A bad baseline is a usage error, found before Stripe is asked anything.
    let accepted =
        super::baseline::load_for(request.baseline.as_deref(), request.write_baseline.as_ref())?;
    let mut conn = db::connect(url).await?;
    crate::migrate::require_migrated(&mut conn).await?;
    let stripe = request.stripe.client(key).map_err(ReconcileError::from)?;
    let source = match request.source {
        // One payout: a few pages at most.
        Source::Auto if request.payout.is_some() => Source::Api,
        Source::Auto => {
            // The payouts of the window pay out what was paid from a few days before it.
            let paid: i64 = sqlx::query_scalar(PAID_ORDERS_SQL)
                .bind(since - chrono::Duration::days(7))
                .bind(until)
                .fetch_one(&mut conn)
                .await?;
            if paid > AUTO_REPORTS_ABOVE {
                tracing::info!("{paid} paid orders in the window: reading Stripe's payout report");
                Source::Reports
            } else {
                Source::Api
            }
        }
        chosen => chosen,
    };
    let bar = progress.steps(3);
    bar.set_message("payouts");
    let payouts: Vec<PayoutView> = match &request.payout {
        Some(id) => vec![stripe.payout(id).await.map_err(ReconcileError::from)?],
        None => stripe
            .payouts(since, until)
            .await
            .map_err(ReconcileError::from)?,
    };
    bar.inc(1);
    bar.set_message("balance transactions");
    let itemizable: Vec<&PayoutView> = payouts
        .iter()
        .filter(|p| p.automatic && p.reconciliation_status == "completed")
        .collect();
    let mut budget = pages(payouts.len());
    let mut transactions: HashMap<String, Vec<BalanceTxnView>> = HashMap::new();
    let mut report_interval = None;
    if source == Source::Reports && !itemizable.is_empty() {
        let (interval, rows, requests) = from_report(&stripe, request, &itemizable).await?;
        budget += requests;
        report_interval = interval;
        for row in rows {
            transactions.entry(row.payout_id).or_default().push(row.txn);
        }
    }
    // Only an automatic payout whose reconciliation is completed can be itemized; what the
    // report did not cover is read from the API.
    let mut topped_up_from_api = Vec::new();
    for payout in itemizable {
        let covered = report_interval
            .is_some_and(|(start, end)| payout.arrival_date >= start && payout.arrival_date < end);
        if covered {
            transactions.entry(payout.id.clone()).or_default();
            continue;
        }
        let txns = stripe
            .payout_transactions(&payout.id)
            .await
            .map_err(ReconcileError::from)?;
        budget += pages(txns.len());
        if source == Source::Reports {
            topped_up_from_api.push(payout.id.clone());
        }
        transactions.insert(payout.id.clone(), txns);
    }
    let after =
        chrono::Duration::from_std(request.not_paid_out_after).unwrap_or(chrono::Duration::days(7));
    let charges = match &request.payout {
        Some(_) => Vec::new(),
        None => {
            let (charges, requests) =
                charges_not_paid_out(&mut conn, &stripe, &transactions, since, until - after)
                    .await?;
            budget += requests;
            charges
        }
    };
    bar.inc(1);
    bar.set_message("orders");
    let intents: Vec<String> = transactions
        .values()
        .flatten()
        .chain(&charges)
        .filter_map(|t| t.payment_intent_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut orders = orders_of(&mut conn, &intents).await?;
    // Money no order links: the PaymentIntent's metadata.order_id may name one (the shop tags
    // its PaymentIntents). One request each; normally none or a few.
    let unlinked: Vec<String> = intents
        .iter()
        .filter(|pi| !orders.contains_key(*pi))
        .cloned()
        .collect();
    if !unlinked.is_empty() {
        let (by_metadata, requests) = orders_by_metadata(&mut conn, &stripe, &unlinked).await?;
        budget += requests;
        orders.extend(by_metadata);
    }
    bar.finish_and_clear();
    let closed = books::close(&Books {
        payouts: &payouts,
        transactions: &transactions,
        charges: &charges,
        orders: &orders,
        paid_out_by: until - after,
        available_since: since,
    });
    let applied = super::baseline::apply(
        request.baseline.as_deref(),
        request.write_baseline.as_ref(),
        accepted,
        closed.findings,
    )?;
    let summary = books::summarize(&applied.new);
    Ok(PayoutsReport {
        database: url.redacted().to_owned(),
        stripe: request.stripe.base_url(),
        since,
        until,
        payout: request.payout.clone(),
        source,
        report_interval,
        topped_up_from_api,
        summary,
        balance_transactions: closed.ledger.len(),
        payouts: closed.payouts,
        findings: applied.new,
        known_findings: applied.known,
        baseline: applied.summary,
        stripe_requests: stripe.requests(),
        stripe_retries: stripe.retries(),
        request_budget: budget,
        duration_ms: started.elapsed().as_millis() as u64,
        ledger: closed.ledger,
    })
}

/// The report's interval for these payouts: their arrival dates, clamped to the report
/// type's data (Stripe answers 400 outside it); the rows; and the requests it took.
type FromReport = (
    Option<(DateTime<Utc>, DateTime<Utc>)>,
    Vec<crate::stripe::reports::ReportRow>,
    u64,
);

async fn from_report(
    stripe: &crate::stripe::StripeHttp,
    request: &PayoutsRequest,
    payouts: &[&PayoutView],
) -> anyhow::Result<FromReport> {
    let base = request.stripe.base_url();
    let available = stripe
        .report_data_available(crate::stripe::reports::PAYOUT_RECONCILIATION, &base)
        .await
        .map_err(ReconcileError::from)?;
    let first = payouts.iter().map(|p| p.arrival_date).min();
    let last = payouts.iter().map(|p| p.arrival_date).max();
    let (Some(first), Some(last)) = (first, last) else {
        return Ok((None, Vec::new(), 1));
    };
    // interval_end is exclusive.
    let start = first.max(available.start);
    let end = (last + chrono::Duration::seconds(1)).min(available.end);
    if start >= end {
        tracing::warn!(
            "the payout report's data ends {}: every payout is read from the API",
            available.end.format("%Y-%m-%d %H:%M UTC")
        );
        return Ok((None, Vec::new(), 1));
    }
    let (requests, retries) = (stripe.requests(), stripe.retries());
    let rows = stripe
        .payout_report(&base, Some(&request.files_base_url), start, end)
        .await
        .map_err(ReconcileError::from)?;
    // The report type, then the run, its polls and its file; retries are not the budget's.
    let made = (stripe.requests() - requests) - (stripe.retries() - retries);
    Ok((Some((start, end)), rows, 1 + made))
}

const PAYOUT_CANDIDATES_SQL: &str = include_str!("../../../sql/reconcile/payout_candidates.sql");

#[derive(sqlx::FromRow)]
struct Candidates {
    paid_orders: i64,
    candidates: Vec<String>,
}

/// The charges of PAID orders paid in `[since, paid_out_by]` that no itemized payout paid out,
/// for `paid_order_not_paid_out`, and the requests it took. Normally few: each is looked up
/// (two requests); when there are many (a payout that could not be itemized), one listing of
/// the window's charges costs less and is taken instead.
async fn charges_not_paid_out(
    conn: &mut sqlx::PgConnection,
    stripe: &crate::stripe::StripeHttp,
    transactions: &HashMap<String, Vec<BalanceTxnView>>,
    since: DateTime<Utc>,
    paid_out_by: DateTime<Utc>,
) -> anyhow::Result<(Vec<BalanceTxnView>, u64)> {
    if paid_out_by < since {
        return Ok((Vec::new(), 0));
    }
    let paid_out: Vec<String> = transactions
        .values()
        .flatten()
        .filter(|t| t.reporting_category == "charge")
        .filter_map(|t| t.payment_intent_id.clone())
        .collect();
    let found: Candidates = sqlx::query_as(PAYOUT_CANDIDATES_SQL)
        .bind(since)
        .bind(paid_out_by)
        .bind(&paid_out)
        .fetch_one(&mut *conn)
        .await?;
    if found.candidates.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let lookups = 2 * found.candidates.len() as u64;
    if lookups <= pages(found.paid_orders.max(0) as usize) {
        let mut charges = Vec::new();
        for pi in &found.candidates {
            let txn = stripe
                .charge_transaction_of(pi)
                .await
                .map_err(ReconcileError::from)?;
            charges.extend(txn);
        }
        return Ok((charges, lookups));
    }
    // A charge is created a little before its order is paid (authorization, capture).
    let charges = stripe
        .charge_transactions(since - chrono::Duration::days(7), paid_out_by)
        .await
        .map_err(ReconcileError::from)?;
    let requests = pages(charges.len());
    Ok((charges, requests))
}

const ORDERS_BY_ID_SQL: &str = "SELECT id::TEXT AS order_id, status::TEXT AS status, amount_total_cents::BIGINT AS amount_total_cents, currency FROM orders WHERE id::TEXT = ANY($1)";

#[derive(sqlx::FromRow)]
struct OrderById {
    order_id: String,
    status: String,
    amount_total_cents: i64,
    currency: String,
}

/// The orders named by these PaymentIntents' `metadata.order_id`, by PaymentIntent, and the
/// requests it took.
async fn orders_by_metadata(
    conn: &mut sqlx::PgConnection,
    stripe: &crate::stripe::StripeHttp,
    intents: &[String],
) -> anyhow::Result<(HashMap<String, OrderOfIntent>, u64)> {
    let mut named: Vec<(String, String)> = Vec::new();
    for pi in intents {
        let view = stripe
            .payment_intent_metadata_order(pi)
            .await
            .map_err(ReconcileError::from)?;
        if let Some(order) = view {
            named.push((pi.clone(), order));
        }
    }
    let ids: Vec<&str> = named.iter().map(|(_, order)| order.as_str()).collect();
    let found: Vec<OrderById> = sqlx::query_as(ORDERS_BY_ID_SQL)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    let by_id: HashMap<&str, &OrderById> = found.iter().map(|o| (o.order_id.as_str(), o)).collect();
    let linked = named
        .iter()
        .filter_map(|(pi, order)| {
            by_id.get(order.as_str()).map(|o| {
                (
                    pi.clone(),
                    OrderOfIntent {
                        order_id: o.order_id.clone(),
                        status: o.status.clone(),
                        amount_total_cents: o.amount_total_cents,
                        currency: o.currency.clone(),
                    },
                )
            })
        })
        .collect();
    Ok((linked, intents.len() as u64))
}

#[derive(sqlx::FromRow)]
struct OrderRecord {
    payment_intent_id: String,
    order_id: String,
    status: String,
    amount_total_cents: i64,
    currency: String,
}

async fn orders_of(
    conn: &mut sqlx::PgConnection,
    intents: &[String],
) -> Result<HashMap<String, OrderOfIntent>, sqlx::Error> {
    let rows: Vec<OrderRecord> = sqlx::query_as(PAYOUT_ORDERS_SQL)
        .bind(intents)
        .fetch_all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.payment_intent_id,
                OrderOfIntent {
                    order_id: r.order_id,
                    status: r.status,
                    amount_total_cents: r.amount_total_cents,
                    currency: r.currency,
                },
            )
        })
        .collect())
}
