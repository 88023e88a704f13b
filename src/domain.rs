//! The shop's domain values, one name each: what the database stores, what JSON carries and what
//! people read all come from one `as_str` per type.

use std::fmt;

use serde::{Serialize, Serializer};

/// `orders.status` (SPEC §2; the enum type `order_status` of the legacy schema, VARCHAR with a
/// CHECK after the migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OrderStatus {
    #[default]
    Pending,
    Paid,
    Failed,
    Cancelled,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Failed,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Paid => "PAID",
            OrderStatus::Failed => "FAILED",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Refunded => "REFUNDED",
        }
    }

    /// The customer paid (and may have been refunded since).
    pub fn is_paid(self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::Refunded)
    }
}

/// A status the schema's CHECK constraint does not allow.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an order status (PENDING, PAID, FAILED, CANCELLED, REFUNDED)")]
pub struct UnknownOrderStatus(pub String);

impl TryFrom<String> for OrderStatus {
    type Error = UnknownOrderStatus;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        OrderStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or(UnknownOrderStatus(text))
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
            let name = status.as_str();
            assert_eq!(status.to_string(), name);
            assert_eq!(serde_json::to_value(status).unwrap(), name);
            assert_eq!(OrderStatus::try_from(name.to_owned()).unwrap(), status);
        }
        assert!(OrderStatus::try_from("paid".to_owned()).is_err());
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
