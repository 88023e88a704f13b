//! The finding model: what reconcile compares (rows of the database), what it finds (one
//! [`Finding`] of a [`Kind`]) and what `--apply` may do about it ([`Repair`]). The rules that
//! make findings are in `rules/`, one file per family.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use crate::domain::{IntentStatus, OrderStatus};
use crate::human::Money;
use crate::stripe::{EventView, RefundView};

/// An order and its payment as the database has them.
#[derive(Debug, Clone, Default)]
pub struct OrderRow {
    pub id: String,
    pub status: OrderStatus,
    pub amount_total_cents: i64,
    pub currency: String,
    pub payment_intent_id: Option<String>,
    pub created_at: Option<NaiveDateTime>,
    pub payment: Option<PaymentRow>,
}

#[derive(Debug, Clone, Default)]
pub struct PaymentRow {
    pub id: String,
    pub status: IntentStatus,
    pub payment_intent_id: Option<String>,
    pub succeeded_at: Option<NaiveDateTime>,
    pub last_error_code: Option<String>,
    /// Stripe ids of the refunds recorded for this payment.
    pub refund_ids: Vec<String>,
    /// Pending and succeeded refunds, in cents.
    pub refunded_cents: i64,
}

/// Declares the finding kinds once: the enum, [`Kind::ALL`], each kind's one name (JSON, CSV,
/// the audit table, docs and `--help` all say it) and its importance come from this list.
macro_rules! kinds {
    ($($kind:ident => $name:literal, $importance:ident,)+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Kind {
            $($kind,)+
        }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$kind,)+];

            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$kind => $name,)+
                }
            }

            /// How much it matters, for CI annotations and alerting.
            pub fn importance(self) -> Importance {
                match self {
                    $(Kind::$kind => Importance::$importance,)+
                }
            }
        }
    };
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Importance {
    /// Money or a customer's record is wrong: a person acts today.
    Error,
    /// A link, a row or a delivery to repair; no money is wrong yet.
    Warning,
}

kinds! {
    MissingInStripe => "missing_in_stripe", Error,
    StatusMismatch => "status_mismatch", Error,
    AmountMismatch => "amount_mismatch", Error,
    CurrencyMismatch => "currency_mismatch", Error,
    UnlinkedPaymentIntent => "unlinked_payment_intent", Warning,
    OrphanPaymentIntent => "orphan_payment_intent", Warning,
    DuplicatePaymentIntents => "duplicate_payment_intents", Error,
    RefundMismatch => "refund_mismatch", Error,
    PaymentRowMismatch => "payment_row_mismatch", Warning,
    DisputedPayment => "disputed_payment", Error,
    StalePaymentIntent => "stale_payment_intent", Warning,
    FailedWebhookDelivery => "failed_webhook_delivery", Warning,
}

/// One name per kind: JSON, CSV, the audit table and the tables all say [`Kind::name`].
impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A database-side repair that Stripe's data proves; never an amount, never a Stripe call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Repair {
    /// Set orders.stripe_payment_intent_id (and the payment's) where it is NULL.
    Link {
        order_id: String,
        payment_intent_id: String,
    },
    /// Mark the order PAID, with paid_at from the charge, because Stripe says succeeded.
    MarkPaid {
        order_id: String,
        paid_at: Option<DateTime<Utc>>,
    },
    /// Bring the payment row's status, PaymentIntent id, succeeded_at and last error in line.
    SyncPayment {
        payment_id: String,
        payment_intent_id: String,
        status: IntentStatus,
        succeeded_at: Option<DateTime<Utc>>,
        last_error_code: Option<String>,
        last_error_message: Option<String>,
    },
    /// Record a refund made in Stripe (e.g. from the dashboard) that the database lacks.
    RecordRefund {
        payment_id: String,
        refund: RefundView,
    },
    /// Store in payment_events an event whose webhook never arrived, as the handler would have.
    RecordEvent { event: EventView },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub order_id: Option<String>,
    pub payment_intent_id: Option<String>,
    /// The database's value.
    pub ours: String,
    /// Stripe's value.
    pub stripe: String,
    /// The amount `ours` speaks of, in minor units, for findings about money.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_amount: Option<Money>,
    /// The amount `stripe` speaks of, in minor units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe_amount: Option<Money>,
    /// The Stripe object the finding is about when it is neither the order nor the
    /// PaymentIntent: a dispute (`dp_…`) or an event (`evt_…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe_object_id: Option<String>,
    /// For `failed_webhook_delivery`: whether the database lacks what the event says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect_missing: Option<bool>,
    /// What `--apply` does about it, if anything is safe.
    pub repairs: Vec<Repair>,
}

impl Finding {
    /// What identifies a finding from one run to the next (a baseline's key): its kind and
    /// the ids it is about, not its values, except a dispute's status, so that a dispute
    /// accepted while under review alerts again when it is lost.
    pub fn fingerprint(&self) -> String {
        let mut key = format!(
            "{}|{}|{}|{}",
            self.kind,
            self.order_id.as_deref().unwrap_or("-"),
            self.payment_intent_id.as_deref().unwrap_or("-"),
            self.stripe_object_id.as_deref().unwrap_or("-"),
        );
        if self.kind == Kind::DisputedPayment {
            key.push('|');
            key.push_str(self.stripe.split(' ').next().unwrap_or("-"));
        }
        key
    }
}

impl Finding {
    /// A finding of `kind` about an order (if any) and a PaymentIntent (if any): the one
    /// constructor every rule uses.
    pub(super) fn about(
        kind: Kind,
        order: Option<&OrderRow>,
        pi: Option<&str>,
        ours: String,
        stripe: String,
    ) -> Finding {
        Finding {
            kind,
            order_id: order.map(|o| o.id.clone()),
            payment_intent_id: pi.map(str::to_owned),
            ours,
            stripe,
            database_amount: None,
            stripe_amount: None,
            stripe_object_id: None,
            effect_missing: None,
            repairs: Vec::new(),
        }
    }

    pub(super) fn with_amounts(mut self, database: Option<Money>, stripe: Option<Money>) -> Self {
        self.database_amount = database;
        self.stripe_amount = stripe;
        self
    }
}

/// Findings per kind, every kind present (0 included), in a stable order.
pub fn summarize(findings: &[Finding]) -> BTreeMap<&'static str, usize> {
    let mut counts: BTreeMap<&'static str, usize> =
        Kind::ALL.iter().map(|k| (k.name(), 0)).collect();
    for f in findings {
        *counts.entry(f.kind.name()).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_every_kind() {
        assert_eq!(summarize(&[]).len(), Kind::ALL.len());
    }

    fn kinds_named() -> std::collections::BTreeSet<&'static str> {
        Kind::ALL.iter().map(|k| k.name()).collect()
    }

    #[test]
    fn the_docs_table_of_findings_lists_every_kind_and_no_other() {
        let doc = include_str!("../../docs/reconcile.md");
        let section = doc.split("\n## Findings").nth(1).unwrap();
        let section = section.split("\n## ").next().unwrap();
        let documented: std::collections::BTreeSet<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        assert_eq!(documented, kinds_named(), "docs/reconcile.md ## Findings");
    }

    #[test]
    fn reconcile_help_lists_every_kind_and_no_other() {
        let help = crate::cli::reconcile_help();
        let listed = help
            .split("Findings:")
            .nth(1)
            .and_then(|rest| rest.split('(').next())
            .unwrap();
        let listed: std::collections::BTreeSet<&str> = listed
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .collect();
        assert_eq!(listed, kinds_named(), "paytool reconcile --help");
    }

    #[test]
    fn every_kind_has_its_own_name() {
        let names: std::collections::BTreeSet<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), Kind::ALL.len());
    }
}
