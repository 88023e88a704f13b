//! Stripe's report runs (`reconcile payouts --source reports`): one report of every balance
//! transaction paid out in a window, instead of a page per hundred. A run is started with the
//! one POST paytool ever sends, polled until it succeeded, and its CSV read from Stripe's
//! files host. CSV amounts are decimal strings in major units: read exactly, by the
//! currency's exponent, never through a float.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use super::{BalanceTxnView, StripeFailure, StripeHttp, timestamp};

/// The itemized payout reconciliation report: every balance transaction of the automatic
/// payouts whose effective date is in the interval.
pub const PAYOUT_RECONCILIATION: &str = "payout_reconciliation.itemized.5";

/// The columns paytool asks for, in this order.
const COLUMNS: [&str; 11] = [
    "automatic_payout_id",
    "balance_transaction_id",
    "created_utc",
    "available_on_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "payment_intent_id",
];

/// How long a report run may take before paytool gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
const POLL_EVERY: Duration = Duration::from_secs(2);

/// When a report type's data starts and ends (Stripe refreshes it about twice a day).
#[derive(Debug, Clone, Copy)]
pub struct DataAvailable {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// One row of the report: a balance transaction and the payout that paid it out.
#[derive(Debug, Clone)]
pub struct ReportRow {
    pub payout_id: String,
    pub txn: BalanceTxnView,
}

impl StripeHttp {
    pub async fn report_data_available(
        &self,
        report_type: &str,
        base_url: &str,
    ) -> Result<DataAvailable, StripeFailure> {
        let bytes = self
            .get_url(&format!(
                "{base_url}v1/reporting/report_types/{report_type}"
            ))
            .await?;
        let raw: Value =
            serde_json::from_slice(&bytes).map_err(|e| StripeFailure::Decode(e.to_string()))?;
        let at = |field: &str| {
            raw[field].as_i64().map(timestamp).ok_or_else(|| {
                StripeFailure::Decode(format!("report type {report_type} without {field}"))
            })
        };
        Ok(DataAvailable {
            start: at("data_available_start")?,
            end: at("data_available_end")?,
        })
    }

    /// Runs the report over `[start, end)` and reads its rows; `files_base_url` replaces the
    /// origin of the file's URL (Stripe's files host, or the simulator).
    pub async fn payout_report(
        &self,
        base_url: &str,
        files_base_url: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<ReportRow>, StripeFailure> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("report_type", PAYOUT_RECONCILIATION);
        form.append_pair("parameters[interval_start]", &start.timestamp().to_string());
        form.append_pair("parameters[interval_end]", &end.timestamp().to_string());
        for column in COLUMNS {
            form.append_pair("parameters[columns][]", column);
        }
        let run = self.create_report_run(&form.finish()).await?;
        let id = run["id"]
            .as_str()
            .ok_or_else(|| StripeFailure::Decode("a report run without id".into()))?
            .to_owned();
        let started = std::time::Instant::now();
        let mut run = run;
        while run["status"] == "pending" {
            if started.elapsed() > RUN_TIMEOUT {
                return Err(StripeFailure::Decode(format!(
                    "report run {id} still pending after {}",
                    crate::human::duration(RUN_TIMEOUT)
                )));
            }
            tokio::time::sleep(POLL_EVERY).await;
            let bytes = self
                .get_url(&format!("{base_url}v1/reporting/report_runs/{id}"))
                .await?;
            run =
                serde_json::from_slice(&bytes).map_err(|e| StripeFailure::Decode(e.to_string()))?;
        }
        if run["status"] != "succeeded" {
            return Err(StripeFailure::Decode(format!(
                "report run {id} {}: {}",
                run["status"].as_str().unwrap_or("failed"),
                run["error"].as_str().unwrap_or("no error given")
            )));
        }
        let url = run["result"]["url"]
            .as_str()
            .ok_or_else(|| StripeFailure::Decode(format!("report run {id} without a file")))?;
        let url = match files_base_url {
            Some(base) => on_files_host(url, base),
            None => url.to_owned(),
        };
        let csv = self.get_url(&url).await?;
        parse_report(&csv).map_err(StripeFailure::Decode)
    }
}

/// The file's URL with `base` as its origin: `https://files.stripe.com/v1/files/…` →
/// `{base}v1/files/…`.
fn on_files_host(url: &str, base: &str) -> String {
    match url.find("/v1/") {
        Some(i) => format!("{}{}", base.trim_end_matches('/'), &url[i..]),
        None => url.to_owned(),
    }
}

/// The report's rows, by header name (Stripe may order or add columns).
pub fn parse_report(csv: &[u8]) -> Result<Vec<ReportRow>, String> {
    let mut reader = csv::Reader::from_reader(csv);
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let index: Vec<Option<usize>> = COLUMNS.iter().map(|c| column(c)).collect();
    for (name, i) in COLUMNS.iter().zip(&index) {
        if i.is_none() && *name != "payment_intent_id" {
            return Err(format!("the report has no column {name}"));
        }
    }
    let mut rows = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let record = record.map_err(|e| e.to_string())?;
        let get = |c: usize| -> &str { index[c].and_then(|i| record.get(i)).unwrap_or("") };
        let line = n + 2;
        let currency = get(4).to_uppercase();
        let amount = |c: usize| {
            minor_units(get(c), &currency).map_err(|e| format!("report line {line}: {e}"))
        };
        let at = |c: usize| {
            NaiveDateTime::parse_from_str(get(c), "%Y-%m-%d %H:%M:%S")
                .map(|t| t.and_utc())
                .map_err(|e| format!("report line {line}: {}: {e}", get(c)))
        };
        let payout_id = get(0).to_owned();
        if payout_id.is_empty() {
            continue;
        }
        let reporting_category = get(8).to_owned();
        rows.push(ReportRow {
            payout_id,
            txn: BalanceTxnView {
                id: get(1).to_owned(),
                // The report has categories, not types.
                type_: type_of_category(&reporting_category).to_owned(),
                reporting_category,
                amount: amount(5)?,
                fee: amount(6)?,
                net: amount(7)?,
                currency: currency.clone(),
                exchange_rate: None,
                created: at(2)?,
                available_on: at(3)?,
                status: "available".to_owned(),
                source_id: Some(get(9).to_owned()).filter(|s| !s.is_empty()),
                payment_intent_id: Some(get(10).to_owned()).filter(|s| !s.is_empty()),
                charged: None,
            },
        });
    }
    Ok(rows)
}

/// The balance transaction type behind a reporting category, as Stripe maps them (a dispute
/// is an `adjustment`); a category paytool does not know stands for its own type.
fn type_of_category(category: &str) -> &str {
    match category {
        "dispute" | "dispute_reversal" | "other_adjustment" | "partial_capture_reversal" => {
            "adjustment"
        }
        "fee" => "stripe_fee",
        "charge_failure" => "payment_failure_refund",
        "payout_reversal" => "payout_cancel",
        "tax" => "tax_fee",
        other => other,
    }
}

/// A decimal amount in major units (`1234.5`, `-12.34`) as minor units of `currency`,
/// exactly: no float. More decimals than the currency has is an error, not a rounding.
pub fn minor_units(text: &str, currency: &str) -> Result<i64, String> {
    let exponent = crate::human::currency_exponent(currency) as usize;
    let (negative, digits) = match text.trim().strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.trim()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let valid = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !valid(whole) || !valid(fraction) {
        return Err(format!("{text:?} is not an amount"));
    }
    if fraction.len() > exponent {
        return Err(format!(
            "{text:?} has {} decimals, {} has {exponent}",
            fraction.len(),
            currency.to_uppercase()
        ));
    }
    let scaled = format!("{whole}{fraction:0<exponent$}");
    let value: i64 = scaled
        .parse()
        .map_err(|_| format!("{text:?} is out of range"))?;
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_units_become_minor_units_exactly() {
        assert_eq!(minor_units("1234.5", "eur"), Ok(123_450));
        assert_eq!(minor_units("12.34", "EUR"), Ok(1_234));
        assert_eq!(minor_units("-0.59", "EUR"), Ok(-59));
        assert_eq!(minor_units("7", "EUR"), Ok(700));
        assert_eq!(minor_units("1234", "JPY"), Ok(1_234));
        assert_eq!(minor_units("5.124", "KWD"), Ok(5_124));
        // 0.1 + 0.2 through a float is 0.30000000000000004: never here.
        assert_eq!(minor_units("0.30", "USD"), Ok(30));
        assert!(
            minor_units("1234.5", "JPY")
                .unwrap_err()
                .contains("JPY has 0")
        );
        assert!(minor_units("1.234", "EUR").is_err());
        assert!(minor_units("1e3", "EUR").is_err());
        assert!(minor_units("", "EUR").is_err());
    }

    #[test]
    fn a_report_is_read_by_its_headers() {
        let csv = "balance_transaction_id,automatic_payout_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,source_id,payment_intent_id,extra\n\
                   txn_1,po_1,2026-01-07 00:00:00,2026-01-09 00:00:00,eur,1234.5,35.5,1199,charge,ch_1,pi_1,x\n\
                   txn_2,,2026-01-07 00:00:00,2026-01-09 00:00:00,eur,1,0,1,charge,ch_2,,x\n";
        let rows = parse_report(csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 1, "rows of no payout are not a payout's");
        let t = &rows[0].txn;
        assert_eq!((t.amount, t.fee, t.net), (123_450, 3_550, 119_900));
        assert_eq!(t.payment_intent_id.as_deref(), Some("pi_1"));
        assert_eq!(rows[0].payout_id, "po_1");
        let jpy = csv.replace(",eur,", ",jpy,");
        assert!(parse_report(jpy.as_bytes()).unwrap_err().contains("line 2"));
    }

    #[test]
    fn the_file_is_fetched_from_the_files_host_given() {
        assert_eq!(
            on_files_host(
                "https://files.stripe.com/v1/files/file_1/contents",
                "http://127.0.0.1:9/"
            ),
            "http://127.0.0.1:9/v1/files/file_1/contents"
        );
    }
}
