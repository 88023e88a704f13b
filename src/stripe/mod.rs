//! What reconcile and `backfill events` need from Stripe, as plain values ([`PaymentIntentView`],
//! [`RefundView`], [`DisputeView`], [`EventView`])
//! behind a trait, so the reconcile logic is a pure function and tests can feed it directly.

mod client;
mod payouts;
pub mod reports;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde::Serialize;
use stripe_client_core::StripeRequest;
use stripe_core::dispute::ListDispute;
use stripe_core::event::ListEvent;
use stripe_core::payment_intent::{ListPaymentIntent, RetrievePaymentIntent};
use stripe_core::refund::ListRefund;
use stripe_types::{Expandable, RangeBoundsTs, RangeQueryTs};

pub use crate::domain::IntentStatus;
pub use client::{StripeFailure, StripeHttp, StripeSettings, is_retryable};
pub use payouts::{BalanceTxnView, PayoutView};

/// How to reach Stripe, as the command line gave it.
#[derive(Debug, Clone)]
pub struct StripeAccess {
    /// Secret or restricted key (never printed); `None` when not given.
    pub key: Option<String>,
    pub base_url: String,
    pub max_rps: u32,
    pub concurrency: usize,
    pub request_timeout: std::time::Duration,
    pub max_retries: u32,
}

impl StripeAccess {
    /// The API root with its trailing slash.
    pub fn base_url(&self) -> String {
        if self.base_url.ends_with('/') {
            self.base_url.clone()
        } else {
            format!("{}/", self.base_url)
        }
    }

    pub fn client(&self, key: String) -> Result<StripeHttp, StripeFailure> {
        StripeHttp::new(StripeSettings {
            key,
            base_url: self.base_url(),
            max_rps: self.max_rps,
            concurrency: self.concurrency,
            timeout: self.request_timeout,
            max_retries: self.max_retries,
        })
    }
}

/// Stripe's list page size maximum.
pub const PAGE_SIZE: i64 = 100;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaymentIntentView {
    pub id: String,
    pub amount: i64,
    pub amount_received: i64,
    /// Upper-cased (Stripe sends `eur`, paytool stores `EUR`).
    pub currency: String,
    pub status: IntentStatus,
    pub created: DateTime<Utc>,
    /// `metadata.order_id`, how the shop tags its PaymentIntents.
    pub order_id: Option<String>,
    /// When the latest charge was made, if it succeeded: the moment the order was paid.
    pub paid_at: Option<DateTime<Utc>>,
    pub last_error_code: Option<String>,
    pub last_error_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefundView {
    pub id: String,
    pub payment_intent_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub reason: Option<String>,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisputeView {
    pub id: String,
    pub payment_intent_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    /// `warning_needs_response`, `needs_response`, `under_review`, `won`, `lost`, ...
    pub status: String,
    pub reason: String,
    /// When the evidence is due.
    pub evidence_due_by: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
}

impl DisputeView {
    /// Still open: Stripe waits for evidence or the bank decides.
    pub fn is_open(&self) -> bool {
        !matches!(
            self.status.as_str(),
            "won" | "lost" | "warning_closed" | "prevented"
        )
    }
}

/// A Stripe event, with its payload exactly as Stripe sent it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub created: DateTime<Utc>,
    /// The PaymentIntent the event concerns: the object itself, or its `payment_intent`.
    pub payment_intent_id: Option<String>,
    /// `data.object.id`: the PaymentIntent, charge, refund or dispute.
    pub object_id: Option<String>,
    /// Webhooks not yet delivered (Stripe keeps retrying those for up to 3 days).
    pub pending_webhooks: i64,
    /// Left out of reports (the stored row has it).
    #[serde(skip)]
    pub payload: serde_json::Value,
}

impl EventView {
    /// Reads what paytool needs out of a raw event; `None` when it is not an event.
    pub fn of(payload: serde_json::Value) -> Option<EventView> {
        let id = payload.get("id")?.as_str()?.to_owned();
        let type_ = payload.get("type")?.as_str()?.to_owned();
        let created = timestamp(payload.get("created")?.as_i64()?);
        let object = payload.pointer("/data/object");
        let object_kind = object
            .and_then(|o| o.get("object"))
            .and_then(|k| k.as_str());
        let object_id = object
            .and_then(|o| o.get("id"))
            .and_then(|i| i.as_str())
            .map(str::to_owned);
        let payment_intent_id = match object_kind {
            Some("payment_intent") => object_id.clone(),
            _ => object.and_then(|o| o.get("payment_intent")).and_then(|pi| {
                // A string, or the PaymentIntent itself when expanded.
                pi.as_str()
                    .or_else(|| pi.get("id").and_then(|i| i.as_str()))
                    .map(str::to_owned)
            }),
        };
        let pending_webhooks = payload
            .get("pending_webhooks")
            .and_then(|p| p.as_i64())
            .unwrap_or(0);
        Some(EventView {
            id,
            type_,
            created,
            payment_intent_id,
            object_id,
            pending_webhooks,
            payload,
        })
    }
}

/// The event types that concern payments, as Stripe's `type` filter takes them (one list per
/// pattern: `types[]` takes exact names only, at most 20, and these are more).
pub const PAYMENT_EVENT_TYPES: [&str; 3] = ["payment_intent.*", "charge.*", "refund.*"];

/// One page of `GET /v1/events`, newest first.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<EventView>,
    pub has_more: bool,
}

/// Which events a listing asks for.
#[derive(Debug, Clone)]
pub struct EventQuery<'a> {
    pub type_pattern: &'a str,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Only events whose webhooks failed (`delivery_success=false`).
    pub failed_only: bool,
    /// The page after this event (Stripe's cursor).
    pub starting_after: Option<&'a str>,
}

/// Read-only access to the Stripe objects reconcile compares with.
#[allow(async_fn_in_trait)]
pub trait StripeSource {
    /// PaymentIntents created in `[since, until]`, with their latest charge.
    async fn payment_intents(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<PaymentIntentView>, StripeFailure>;
    /// Refunds created at or after `since` (a refund can come long after its payment).
    async fn refunds(&self, since: DateTime<Utc>) -> Result<Vec<RefundView>, StripeFailure>;
    /// One PaymentIntent by id; `None` when Stripe does not know it.
    async fn payment_intent(&self, id: &str) -> Result<Option<PaymentIntentView>, StripeFailure>;
    /// Disputes created at or after `since` (a dispute comes weeks after its payment).
    async fn disputes(&self, since: DateTime<Utc>) -> Result<Vec<DisputeView>, StripeFailure>;
    /// One page of events.
    async fn events_page(&self, query: &EventQuery<'_>) -> Result<EventPage, StripeFailure>;
    /// Every payment event of the window whose webhooks failed.
    async fn failed_events(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<EventView>, StripeFailure> {
        let mut failed = Vec::new();
        for type_pattern in PAYMENT_EVENT_TYPES {
            let mut after: Option<String> = None;
            loop {
                let page = self
                    .events_page(&EventQuery {
                        type_pattern,
                        since,
                        until,
                        failed_only: true,
                        starting_after: after.as_deref(),
                    })
                    .await?;
                after = page.events.last().map(|e| e.id.clone());
                failed.extend(page.events);
                if !page.has_more || after.is_none() {
                    break;
                }
            }
        }
        Ok(failed)
    }
}

/// The list envelope, with the objects left raw.
#[derive(serde::Deserialize)]
struct RawList {
    data: Vec<serde_json::Value>,
    has_more: bool,
}

impl StripeSource for StripeHttp {
    async fn payment_intents(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<PaymentIntentView>, StripeFailure> {
        let list = ListPaymentIntent::new()
            .created(window(Some(since), Some(until)))
            .limit(PAGE_SIZE)
            .expand(vec!["data.latest_charge".to_owned()]);
        let intents: Vec<stripe_shared::PaymentIntent> =
            list.paginate().stream(self).try_collect().await?;
        Ok(intents.iter().map(view_of_intent).collect())
    }

    async fn refunds(&self, since: DateTime<Utc>) -> Result<Vec<RefundView>, StripeFailure> {
        let list = ListRefund::new()
            .created(window(Some(since), None))
            .limit(PAGE_SIZE);
        let refunds: Vec<stripe_shared::Refund> =
            list.paginate().stream(self).try_collect().await?;
        Ok(refunds.iter().map(view_of_refund).collect())
    }

    async fn disputes(&self, since: DateTime<Utc>) -> Result<Vec<DisputeView>, StripeFailure> {
        let list = ListDispute::new()
            .created(window(Some(since), None))
            .limit(PAGE_SIZE);
        let disputes: Vec<stripe_shared::Dispute> =
            list.paginate().stream(self).try_collect().await?;
        Ok(disputes.iter().map(view_of_dispute).collect())
    }

    async fn events_page(&self, query: &EventQuery<'_>) -> Result<EventPage, StripeFailure> {
        let list: RawList = self.get_json(event_list(query).build()).await?;
        let events = list
            .data
            .into_iter()
            .map(|raw| {
                EventView::of(raw).ok_or_else(|| {
                    StripeFailure::Decode("an event without id, type or created".into())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EventPage {
            events,
            has_more: list.has_more,
        })
    }

    async fn payment_intent(&self, id: &str) -> Result<Option<PaymentIntentView>, StripeFailure> {
        let retrieve = RetrievePaymentIntent::new(id).expand(vec!["latest_charge".to_owned()]);
        match retrieve.send(self).await {
            Ok(intent) => Ok(Some(view_of_intent(&intent))),
            Err(failure) if failure.is_not_found() => Ok(None),
            Err(failure) => Err(failure),
        }
    }
}

fn event_list(query: &EventQuery<'_>) -> ListEvent {
    let mut list = ListEvent::new()
        .type_(query.type_pattern)
        .created(window(Some(query.since), Some(query.until)))
        .limit(PAGE_SIZE);
    if query.failed_only {
        list = list.delivery_success(false);
    }
    if let Some(after) = query.starting_after {
        list = list.starting_after(after);
    }
    list
}

fn window(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> RangeQueryTs {
    RangeQueryTs::Bounds(RangeBoundsTs {
        gt: None,
        gte: since.map(|t| t.timestamp()),
        lt: None,
        lte: until.map(|t| t.timestamp()),
    })
}

fn timestamp(ts: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(ts, 0).unwrap_or_default()
}

fn view_of_intent(pi: &stripe_shared::PaymentIntent) -> PaymentIntentView {
    let charge = match &pi.latest_charge {
        Some(Expandable::Object(charge)) => Some(charge.as_ref()),
        _ => None,
    };
    let paid_at = charge
        .filter(|c| c.paid && c.status.as_str() == "succeeded")
        .map(|c| timestamp(c.created));
    let metadata: &HashMap<String, String> = &pi.metadata;
    PaymentIntentView {
        id: pi.id.as_str().to_owned(),
        amount: pi.amount,
        amount_received: pi.amount_received,
        currency: pi.currency.to_string().to_uppercase(),
        status: IntentStatus::parse(pi.status.as_str()),
        created: timestamp(pi.created),
        order_id: metadata.get("order_id").cloned(),
        paid_at,
        last_error_code: pi
            .last_payment_error
            .as_ref()
            .and_then(|e| e.code.as_ref())
            .map(|c| c.as_str().to_owned()),
        last_error_message: pi
            .last_payment_error
            .as_ref()
            .and_then(|e| e.message.clone()),
    }
}

fn view_of_dispute(dispute: &stripe_shared::Dispute) -> DisputeView {
    DisputeView {
        id: dispute.id.as_str().to_owned(),
        payment_intent_id: dispute
            .payment_intent
            .as_ref()
            .map(|pi| pi.id().as_str().to_owned()),
        amount: dispute.amount,
        currency: dispute.currency.to_string().to_uppercase(),
        status: dispute.status.as_str().to_owned(),
        reason: dispute.reason.clone(),
        evidence_due_by: dispute.evidence_details.due_by.map(timestamp),
        created: timestamp(dispute.created),
    }
}

fn view_of_refund(refund: &stripe_shared::Refund) -> RefundView {
    RefundView {
        id: refund.id.as_str().to_owned(),
        payment_intent_id: refund
            .payment_intent
            .as_ref()
            .map(|pi| pi.id().as_str().to_owned()),
        amount: refund.amount,
        currency: refund.currency.to_string().to_uppercase(),
        status: refund
            .status
            .clone()
            .unwrap_or_else(|| "succeeded".to_owned()),
        reason: refund.reason.as_ref().map(|r| r.as_str().to_owned()),
        created: timestamp(refund.created),
    }
}
