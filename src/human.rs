//! Values as people read them: money by its currency's exponent, durations, rates, counts.
//! Human output only; JSON and CSV carry the raw integers (minor units, milliseconds).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Currencies whose Stripe amounts are whole units (`amount: 1500` is ¥1500), from
/// <https://docs.stripe.com/currencies#zero-decimal>.
const ZERO_DECIMAL: [&str; 16] = [
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// Currencies whose Stripe amounts are thousandths (`amount: 5124` is 5.124 KWD).
const THREE_DECIMAL: [&str; 5] = ["BHD", "JOD", "KWD", "OMR", "TND"];

/// Decimal places of a currency's minor unit in Stripe's API: 0, 2 or 3. ISK, HUF and TWD are
/// two-decimal in the API although their coins are whole, so 2 is right for them too.
pub fn currency_exponent(currency: &str) -> u32 {
    let code = currency.to_ascii_uppercase();
    if ZERO_DECIMAL.contains(&code.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&code.as_str()) {
        3
    } else {
        2
    }
}

/// An amount in a currency's minor units, as the database and Stripe store it. Serialized as
/// the integer and the currency (`{"minor_units": 2666, "currency": "EUR"}`); displayed as money
/// (`26.66 EUR`, `1,500 JPY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Money {
    pub minor_units: i64,
    pub currency: String,
}

impl Money {
    pub fn new(minor_units: i64, currency: &str) -> Self {
        Money {
            minor_units,
            currency: currency.to_ascii_uppercase(),
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = currency_exponent(&self.currency);
        let sign = if self.minor_units < 0 { "-" } else { "" };
        let magnitude = self.minor_units.unsigned_abs();
        let scale = 10u64.pow(exponent);
        let units = grouped(magnitude / scale);
        if exponent == 0 {
            write!(f, "{sign}{units} {}", self.currency)
        } else {
            let fraction = magnitude % scale;
            write!(
                f,
                "{sign}{units}.{fraction:0width$} {}",
                self.currency,
                width = exponent as usize
            )
        }
    }
}

/// 1234567 → "1,234,567".
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A signed count with thousands separators.
pub fn count(n: i64) -> String {
    if n < 0 {
        format!("-{}", grouped(n.unsigned_abs()))
    } else {
        grouped(n as u64)
    }
}

/// "1 refund", "2 refunds".
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", grouped(n as u64))
    }
}

/// A byte count as a person reads it: "812 B", "64.0 kB", "1.2 MB", "3.4 GB" (powers of 1024,
/// as PostgreSQL's pg_size_pretty).
pub fn bytes(n: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// Milliseconds as a person reads them: "87 ms", "1,250 ms" below ten seconds, then "12.3 s".
pub fn millis(ms: u64) -> String {
    if ms >= 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} ms", grouped(ms))
    }
}

/// A duration rounded to what matters in a log line ("722 ms", "1.5 s"), never
/// `721.937948ms`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// A rate as whole units per second: "2,247 rows/s".
pub fn rate(per_second: f64, unit: &str) -> String {
    let whole = if per_second.is_finite() && per_second > 0.0 {
        per_second.round() as u64
    } else {
        0
    };
    format!("{} {unit}/s", grouped(whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_follows_the_currencys_exponent() {
        assert_eq!(Money::new(2666, "EUR").to_string(), "26.66 EUR");
        assert_eq!(Money::new(2666, "eur").to_string(), "26.66 EUR");
        assert_eq!(Money::new(5, "usd").to_string(), "0.05 USD");
        assert_eq!(Money::new(1500, "JPY").to_string(), "1,500 JPY");
        assert_eq!(Money::new(5124, "KWD").to_string(), "5.124 KWD");
        assert_eq!(Money::new(-500, "EUR").to_string(), "-5.00 EUR");
        assert_eq!(
            Money::new(123_456_789, "EUR").to_string(),
            "1,234,567.89 EUR"
        );
        assert_eq!(Money::new(0, "JPY").to_string(), "0 JPY");
        assert_eq!(
            Money::new(i64::MIN, "EUR").to_string(),
            "-92,233,720,368,547,758.08 EUR"
        );
    }

    #[test]
    fn money_serializes_as_minor_units_and_currency() {
        let json = serde_json::to_value(Money::new(1500, "jpy")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"minor_units": 1500, "currency": "JPY"})
        );
    }

    #[test]
    fn numbers_and_durations_are_rounded_for_people() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(count(-1234), "-1,234");
        assert_eq!(millis(87), "87 ms");
        assert_eq!(millis(1250), "1,250 ms");
        assert_eq!(millis(12_340), "12.3 s");
        assert_eq!(duration(Duration::from_nanos(721_937_948)), "721 ms");
        assert_eq!(duration(Duration::from_millis(1_540)), "1.5 s");
        assert_eq!(duration(Duration::from_secs(125)), "2m 05s");
        assert_eq!(rate(2246.8951, "rows"), "2,247 rows/s");
        assert_eq!(rate(f64::NAN, "rows"), "0 rows/s");
    }
}
