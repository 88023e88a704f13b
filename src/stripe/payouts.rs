//! What `paytool reconcile payouts` reads from Stripe: automatic payouts and the balance
//! transactions they paid out, as plain values read from Stripe's JSON (a type or reporting
//! category Stripe adds later is kept as text, never refused).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use stripe_client_core::StripeRequest;
use stripe_core::balance_transaction::ListBalanceTransaction;
use stripe_core::payout::{ListPayout, RetrievePayout};

use super::{PAGE_SIZE, RawList, StripeFailure, StripeHttp, timestamp, window};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PayoutView {
    pub id: String,
    /// Minor units of `currency`.
    pub amount: i64,
    /// Upper-cased.
    pub currency: String,
    pub created: DateTime<Utc>,
    pub arrival_date: DateTime<Utc>,
    /// `paid`, `pending`, `in_transit`, `canceled`, `failed`.
    pub status: String,
    pub failure_code: Option<String>,
    pub automatic: bool,
    /// `completed` once its balance transactions can be listed.
    pub reconciliation_status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BalanceTxnView {
    pub id: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub reporting_category: String,
    /// Gross, fee and net in minor units of `currency` (the settlement currency).
    pub amount: i64,
    pub fee: i64,
    pub net: i64,
    pub currency: String,
    /// Set when the charge was presented in another currency than it settled in.
    pub exchange_rate: Option<f64>,
    pub created: DateTime<Utc>,
    pub available_on: DateTime<Utc>,
    /// `pending` until `available_on`, then `available`.
    pub status: String,
    /// The charge, refund, dispute or payout it moved money for.
    pub source_id: Option<String>,
    /// The PaymentIntent behind its charge, refund or dispute (read from the expanded source).
    pub payment_intent_id: Option<String>,
    /// For a charge: its amount and currency as the customer was charged (the presentment
    /// currency, which the order's is), read from the expanded source; `None` from a report.
    #[serde(skip)]
    pub charged: Option<(i64, String)>,
}

impl PayoutView {
    fn of(raw: &Value) -> Result<PayoutView, StripeFailure> {
        Ok(PayoutView {
            id: text(raw, "id")?,
            amount: number(raw, "amount")?,
            currency: text(raw, "currency")?.to_uppercase(),
            created: timestamp(number(raw, "created")?),
            arrival_date: timestamp(number(raw, "arrival_date")?),
            status: text(raw, "status")?,
            failure_code: raw["failure_code"].as_str().map(str::to_owned),
            automatic: raw["automatic"].as_bool().unwrap_or(true),
            reconciliation_status: raw["reconciliation_status"]
                .as_str()
                .unwrap_or("not_applicable")
                .to_owned(),
        })
    }
}

impl BalanceTxnView {
    fn of(raw: &Value) -> Result<BalanceTxnView, StripeFailure> {
        let source = &raw["source"];
        let source_id = source
            .as_str()
            .or_else(|| source["id"].as_str())
            .map(str::to_owned);
        // An expanded charge, refund or dispute names its PaymentIntent (a string, or the
        // object itself when expanded further).
        let payment_intent_id = source["payment_intent"]
            .as_str()
            .or_else(|| source["payment_intent"]["id"].as_str())
            .map(str::to_owned);
        let charged = (source["object"] == "charge")
            .then(|| {
                Some((
                    source["amount"].as_i64()?,
                    source["currency"].as_str()?.to_uppercase(),
                ))
            })
            .flatten();
        Ok(BalanceTxnView {
            charged,
            id: text(raw, "id")?,
            type_: text(raw, "type")?,
            reporting_category: text(raw, "reporting_category")?,
            amount: number(raw, "amount")?,
            fee: number(raw, "fee")?,
            net: number(raw, "net")?,
            currency: text(raw, "currency")?.to_uppercase(),
            exchange_rate: raw["exchange_rate"].as_f64(),
            created: timestamp(number(raw, "created")?),
            available_on: timestamp(number(raw, "available_on")?),
            status: raw["status"].as_str().unwrap_or("available").to_owned(),
            source_id,
            payment_intent_id,
        })
    }
}

fn text(raw: &Value, field: &str) -> Result<String, StripeFailure> {
    raw[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| StripeFailure::Decode(format!("{field} missing from a Stripe object")))
}

fn number(raw: &Value, field: &str) -> Result<i64, StripeFailure> {
    raw[field]
        .as_i64()
        .ok_or_else(|| StripeFailure::Decode(format!("{field} missing from a Stripe object")))
}

impl StripeHttp {
    /// Payouts arriving in `[since, until]`, every page.
    pub async fn payouts(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<PayoutView>, StripeFailure> {
        let mut payouts = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut list = ListPayout::new()
                .arrival_date(window(Some(since), Some(until)))
                .limit(PAGE_SIZE);
            if let Some(after) = &after {
                list = list.starting_after(after.as_str());
            }
            let page: RawList = self.get_json(list.build()).await?;
            for raw in &page.data {
                payouts.push(PayoutView::of(raw)?);
            }
            after = payouts.last().map(|p| p.id.clone());
            if !page.has_more || page.data.is_empty() {
                return Ok(payouts);
            }
        }
    }

    /// One payout by id (`--payout`).
    pub async fn payout(&self, id: &str) -> Result<PayoutView, StripeFailure> {
        let raw: Value = self.get_json(RetrievePayout::new(id).build()).await?;
        PayoutView::of(&raw)
    }

    /// The balance transactions one automatic payout paid out (its own included), with their
    /// sources expanded to find the PaymentIntents, every page.
    pub async fn payout_transactions(
        &self,
        payout: &str,
    ) -> Result<Vec<BalanceTxnView>, StripeFailure> {
        self.balance_transactions(|list| list.payout(payout)).await
    }

    /// The balance transaction of a PaymentIntent's latest charge; `None` when Stripe does not
    /// know the PaymentIntent or it has no charge. Two requests.
    pub async fn charge_transaction_of(
        &self,
        payment_intent: &str,
    ) -> Result<Option<BalanceTxnView>, StripeFailure> {
        let retrieve = stripe_core::payment_intent::RetrievePaymentIntent::new(payment_intent);
        let intent: Value = match self.get_json(retrieve.build()).await {
            Ok(intent) => intent,
            Err(failure) if failure.is_not_found() => return Ok(None),
            Err(failure) => return Err(failure),
        };
        let Some(charge) = intent["latest_charge"].as_str() else {
            return Ok(None);
        };
        let list = ListBalanceTransaction::new()
            .source(charge)
            .limit(1)
            .expand(vec!["data.source".to_owned()]);
        let page: RawList = self.get_json(list.build()).await?;
        page.data.first().map(BalanceTxnView::of).transpose()
    }

    /// A PaymentIntent's `metadata.order_id`; `None` when it has none or Stripe does not know
    /// the PaymentIntent.
    pub async fn payment_intent_metadata_order(
        &self,
        payment_intent: &str,
    ) -> Result<Option<String>, StripeFailure> {
        let retrieve = stripe_core::payment_intent::RetrievePaymentIntent::new(payment_intent);
        match self.get_json::<Value>(retrieve.build()).await {
            Ok(intent) => Ok(intent["metadata"]["order_id"].as_str().map(str::to_owned)),
            Err(failure) if failure.is_not_found() => Ok(None),
            Err(failure) => Err(failure),
        }
    }

    /// The charges' balance transactions created in `[since, until]`: what should be in a
    /// payout once available.
    pub async fn charge_transactions(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<BalanceTxnView>, StripeFailure> {
        self.balance_transactions(|list| {
            list.type_("charge")
                .created(window(Some(since), Some(until)))
        })
        .await
    }

    async fn balance_transactions(
        &self,
        filter: impl Fn(ListBalanceTransaction) -> ListBalanceTransaction,
    ) -> Result<Vec<BalanceTxnView>, StripeFailure> {
        let mut txns = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut list = filter(ListBalanceTransaction::new())
                .limit(PAGE_SIZE)
                .expand(vec!["data.source".to_owned()]);
            if let Some(after) = &after {
                list = list.starting_after(after.as_str());
            }
            let page: RawList = self.get_json(list.build()).await?;
            for raw in &page.data {
                txns.push(BalanceTxnView::of(raw)?);
            }
            after = txns.last().map(|t| t.id.clone());
            if !page.has_more || page.data.is_empty() {
                return Ok(txns);
            }
        }
    }
}
