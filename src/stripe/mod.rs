//! What reconcile needs from Stripe, as plain values ([`PaymentIntentView`], [`RefundView`])
//! behind a trait, so the reconcile logic is a pure function and tests can feed it directly.

mod client;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde::Serialize;
use stripe_core::payment_intent::{ListPaymentIntent, RetrievePaymentIntent};
use stripe_core::refund::ListRefund;
use stripe_types::{Expandable, RangeBoundsTs, RangeQueryTs};

pub use crate::domain::IntentStatus;
pub use client::{StripeFailure, StripeHttp, StripeSettings, is_retryable};

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

    async fn payment_intent(&self, id: &str) -> Result<Option<PaymentIntentView>, StripeFailure> {
        let retrieve = RetrievePaymentIntent::new(id).expand(vec!["latest_charge".to_owned()]);
        match retrieve.send(self).await {
            Ok(intent) => Ok(Some(view_of_intent(&intent))),
            Err(failure) if failure.is_not_found() => Ok(None),
            Err(failure) => Err(failure),
        }
    }
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
