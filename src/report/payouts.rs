use std::io::{self, Write};

use super::{Grid, Render, Screen, millis, paragraph};
use crate::human::{Money, grouped};
use crate::reconcile::payouts::PayoutsReport;

impl Render for PayoutsReport {
    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        let scope = match &self.payout {
            Some(payout) => format!("payout {payout}"),
            None => format!(
                "payouts arriving {} – {}",
                self.since.format("%Y-%m-%d"),
                self.until.format("%Y-%m-%d")
            ),
        };
        paragraph(
            out,
            screen,
            &format!(
                "Closed the books of {} {scope}: {} balance transactions from {} in {} ({} Stripe requests for a budget of {} pages, {} retried).",
                self.payouts.len(),
                grouped(self.balance_transactions as u64),
                self.stripe,
                millis(self.duration_ms),
                self.stripe_requests,
                self.request_budget,
                self.stripe_retries,
            ),
        )?;
        if !self.payouts.is_empty() {
            let mut grid = Grid::new(&[
                "payout",
                "arrival",
                "status",
                "amount",
                "charges",
                "fees",
                "refunds",
                "disputes",
                "dispute fees",
                "other",
                "net",
                "orders",
                "adds up",
            ])
            .optional(&["dispute fees", "other", "orders", "status"]);
            for p in &self.payouts {
                let money = |amount: i64| -> String {
                    if p.itemized {
                        Money::new(amount, &p.currency).to_string()
                    } else {
                        "-".to_owned()
                    }
                };
                grid.add_row(vec![
                    p.id.clone(),
                    p.arrival_date.format("%Y-%m-%d").to_string(),
                    p.status.clone(),
                    Money::new(p.amount, &p.currency).to_string(),
                    money(p.gross_charges),
                    money(p.fees),
                    money(p.refunds),
                    money(p.disputes),
                    money(p.dispute_fees),
                    money(p.other_adjustments),
                    money(p.net),
                    if p.itemized {
                        p.orders.to_string()
                    } else {
                        "-".to_owned()
                    },
                    match p.balanced {
                        Some(true) => "yes".to_owned(),
                        Some(false) => "NO".to_owned(),
                        None => format!("not itemized ({})", p.reconciliation_status),
                    },
                ]);
            }
            writeln!(out, "{}", grid.render(screen).with_hint())?;
        }
        if let Some(baseline) = &self.baseline {
            paragraph(out, screen, &super::reconcile::baseline_sentence(baseline))?;
        }
        if self.findings.is_empty() {
            return writeln!(
                out,
                "{}",
                if self.known_findings.is_empty() {
                    "Every payout is explained to the cent."
                } else {
                    "Nothing new to report."
                }
            );
        }
        let mut findings =
            Grid::new(&["finding", "payout", "transaction", "order", "detail"]).prose(&["detail"]);
        for f in &self.findings {
            findings.add_row(vec![
                f.kind.name().to_owned(),
                f.payout_id.clone().unwrap_or_else(|| "-".into()),
                f.balance_transaction_id
                    .clone()
                    .unwrap_or_else(|| "-".into()),
                f.order_id.clone().unwrap_or_else(|| "-".into()),
                f.detail.clone(),
            ]);
        }
        writeln!(out, "{}", findings.render(screen).with_hint())
    }

    /// One line per balance transaction, importable as is: integer minor units.
    fn render_csv(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record([
            "payout_id",
            "arrival_date",
            "balance_transaction_id",
            "type",
            "reporting_category",
            "order_id",
            "payment_intent_id",
            "source_id",
            "currency",
            "gross_minor_units",
            "fee_minor_units",
            "net_minor_units",
            "exchange_rate",
            "created",
            "available_on",
        ])?;
        for line in &self.ledger {
            let t = &line.txn;
            writer.write_record([
                line.payout_id.as_str(),
                &line.arrival_date.format("%Y-%m-%d").to_string(),
                &t.id,
                &t.type_,
                &t.reporting_category,
                line.order_id.as_deref().unwrap_or(""),
                t.payment_intent_id.as_deref().unwrap_or(""),
                t.source_id.as_deref().unwrap_or(""),
                &t.currency,
                &t.amount.to_string(),
                &t.fee.to_string(),
                &t.net.to_string(),
                &t.exchange_rate.map(|r| r.to_string()).unwrap_or_default(),
                &t.created.to_rfc3339(),
                &t.available_on.to_rfc3339(),
            ])?;
        }
        writer.flush()
    }
}
