//! The shop's domain values, one name each: what the database stores, what JSON carries and what
//! people read all come from one `as_str` per type.

use std::fmt;

use serde::{Serialize, Serializer};

/// `orders.status` (SPEC §2): the enum type `order_status` of the legacy schema, a plain
/// VARCHAR after the migration — so the upgraded application may write a value of its own,
/// kept as [`OrderStatus::Other`] rather than refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum OrderStatus {
    #[default]
    Pending,
    Paid,
    Failed,
    Cancelled,
    Refunded,
    /// A value outside SPEC §2's five, as the database has it.
    Other(String),
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Failed,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Paid => "PAID",
            OrderStatus::Failed => "FAILED",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Refunded => "REFUNDED",
            OrderStatus::Other(text) => text,
        }
    }

    /// The database's text; never fails (see [`OrderStatus::Other`]).
    pub fn parse(text: &str) -> OrderStatus {
        OrderStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .unwrap_or_else(|| OrderStatus::Other(text.to_owned()))
    }

    /// The customer paid (and may have been refunded since).
    pub fn is_paid(&self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::Refunded)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for OrderStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A Stripe PaymentIntent's status, and a payments row's (which copies it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum IntentStatus {
    #[default]
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
    /// A status newer than this paytool, kept as Stripe wrote it.
    Other(String),
}

impl IntentStatus {
    const KNOWN: [IntentStatus; 7] = [
        IntentStatus::RequiresPaymentMethod,
        IntentStatus::RequiresConfirmation,
        IntentStatus::RequiresAction,
        IntentStatus::Processing,
        IntentStatus::RequiresCapture,
        IntentStatus::Canceled,
        IntentStatus::Succeeded,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            IntentStatus::RequiresPaymentMethod => "requires_payment_method",
            IntentStatus::RequiresConfirmation => "requires_confirmation",
            IntentStatus::RequiresAction => "requires_action",
            IntentStatus::Processing => "processing",
            IntentStatus::RequiresCapture => "requires_capture",
            IntentStatus::Canceled => "canceled",
            IntentStatus::Succeeded => "succeeded",
            IntentStatus::Other(text) => text,
        }
    }

    /// Stripe's name (or the database's copy of it); never fails.
    pub fn parse(text: &str) -> IntentStatus {
        IntentStatus::KNOWN
            .into_iter()
            .find(|s| s.as_str() == text)
            .unwrap_or_else(|| IntentStatus::Other(text.to_owned()))
    }
}

impl fmt::Display for IntentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for IntentStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_has_one_name_everywhere() {
        for status in OrderStatus::ALL {
            let name = status.as_str().to_owned();
            assert_eq!(status.to_string(), name);
            assert_eq!(serde_json::to_value(&status).unwrap(), name.as_str());
            assert_eq!(OrderStatus::parse(&name), status);
        }
        // After the migration orders.status is VARCHAR: another value is kept, not refused.
        let shipped = OrderStatus::parse("SHIPPED");
        assert_eq!(shipped, OrderStatus::Other("SHIPPED".into()));
        assert_eq!(shipped.to_string(), "SHIPPED");
        assert!(!shipped.is_paid() && !OrderStatus::parse("paid").is_paid());
        for status in IntentStatus::KNOWN {
            let name = status.as_str().to_owned();
            assert_eq!(IntentStatus::parse(&name), status);
            assert_eq!(serde_json::to_value(&status).unwrap(), name.as_str());
        }
        assert_eq!(
            IntentStatus::parse("something_new"),
            IntentStatus::Other("something_new".into())
        );
    }
}

/// The backfill's three passes (`paytool backfill payments --step`), in the order they run:
/// item snapshots, order totals, payment rows. Migration steps name the pass they wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillStep {
    Items,
    Orders,
    Payments,
}

impl BackfillStep {
    pub fn name(self) -> &'static str {
        match self {
            BackfillStep::Items => "items",
            BackfillStep::Orders => "orders",
            BackfillStep::Payments => "payments",
        }
    }
}
