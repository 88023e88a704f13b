use std::io::{self, Write};

use super::ci::{CiItem, CiSeverity, cell};
use super::{Grid, Render, Screen, millis, paragraph};
use crate::human::{Money, grouped, plural};
use crate::reconcile::finding::{Finding, Importance, Kind, Repair};
use crate::reconcile::{ReconcileReport, RepairOutcome};

impl ReconcileReport {
    fn scope_text(&self) -> String {
        match &self.window.order {
            Some(order) => format!("order {order}"),
            None => format!(
                "orders created {} – {}",
                self.window.since.format("%Y-%m-%d %H:%M"),
                self.window.until.format("%Y-%m-%d %H:%M")
            ),
        }
    }
}

fn ci_severity(kind: Kind) -> CiSeverity {
    match kind.importance() {
        Importance::Error => CiSeverity::Error,
        Importance::Warning => CiSeverity::Warning,
    }
}

/// `amount_mismatch order o-1 (pi_1)`
fn finding_title(f: &Finding) -> String {
    let mut title = format!("paytool reconcile: {}", f.kind.name());
    if let Some(order) = &f.order_id {
        title.push_str(&format!(" order {order}"));
    }
    if let Some(pi) = &f.payment_intent_id {
        title.push_str(&format!(" ({pi})"));
    }
    title
}

impl Render for ReconcileReport {
    fn markdown_lines(&self) -> Option<Vec<String>> {
        let mut lines = vec![
            "### paytool reconcile".to_owned(),
            String::new(),
            format!(
                "{} orders ({}) against Stripe: {} new finding(s), {} known (baseline).",
                grouped(self.orders_checked as u64),
                self.scope_text(),
                self.findings.len(),
                self.known_findings.len()
            ),
            String::new(),
        ];
        if self.findings.is_empty() {
            lines.push("Nothing new to report: the database and Stripe agree.".to_owned());
            return Some(lines);
        }
        lines.push("| finding | order | PaymentIntent | database | Stripe |".to_owned());
        lines.push("|---|---|---|---|---|".to_owned());
        let mut findings: Vec<&Finding> = self.findings.iter().collect();
        findings.sort_by_key(|f| ci_severity(f.kind));
        for f in findings {
            lines.push(format!(
                "| `{}` | {} | {} | {} | {} |",
                f.kind.name(),
                cell(f.order_id.as_deref().unwrap_or("-")),
                cell(f.payment_intent_id.as_deref().unwrap_or("-")),
                cell(&f.ours),
                cell(&f.stripe)
            ));
        }
        Some(lines)
    }

    fn ci_items(&self) -> Option<Vec<CiItem>> {
        Some(
            self.findings
                .iter()
                .map(|f| CiItem {
                    severity: ci_severity(f.kind),
                    check: f.kind.name().to_owned(),
                    title: finding_title(f),
                    message: format!("database: {}; Stripe: {}", f.ours, f.stripe),
                    identity: f.fingerprint(),
                    path: "docs/reconcile.md".to_owned(),
                })
                .collect(),
        )
    }

    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        let scope = self.scope_text();
        paragraph(
            out,
            screen,
            &format!(
                "Reconciled {} {scope} against {} PaymentIntents ({} listed, {} retrieved), {}, {} and {} from {} in {} ({} Stripe requests, {} retried).",
                grouped(self.orders_checked as u64),
                grouped((self.payment_intents_listed + self.payment_intents_retrieved) as u64),
                grouped(self.payment_intents_listed as u64),
                grouped(self.payment_intents_retrieved as u64),
                plural(self.refunds_listed, "refund"),
                plural(self.disputes_listed, "dispute"),
                match self.failed_deliveries_listed {
                    1 => "1 failed webhook delivery".to_owned(),
                    n => format!("{} failed webhook deliveries", grouped(n as u64)),
                },
                self.stripe,
                millis(self.duration_ms),
                self.stripe_requests,
                self.stripe_retries,
            ),
        )?;
        let mut summary = Grid::new(&["finding", "count"]);
        for (kind, count) in &self.summary {
            summary.add_row(vec![kind.to_string(), count.to_string()]);
        }
        writeln!(out, "{}", summary.render(screen).with_hint())?;
        if let Some(baseline) = &self.baseline {
            paragraph(out, screen, &baseline_sentence(baseline))?;
        }
        if self.findings.is_empty() {
            return if self.known_findings.is_empty() {
                writeln!(out, "Nothing to report: the database and Stripe agree.")
            } else {
                writeln!(out, "Nothing new to report.")
            };
        }
        let mut details = Grid::new(&[
            "finding",
            "order",
            "PaymentIntent",
            "database",
            "Stripe",
            "--apply",
        ])
        .prose(&["database", "Stripe", "--apply"]);
        for f in &self.findings {
            details.add_row(vec![
                f.kind.name().to_owned(),
                f.order_id.clone().unwrap_or_else(|| "-".into()),
                f.payment_intent_id.clone().unwrap_or_else(|| "-".into()),
                f.ours.clone(),
                f.stripe.clone(),
                repairs_text(f),
            ]);
        }
        writeln!(out, "{}\n", details.render(screen).with_hint())?;
        let closing = if self.apply {
            let count = |outcome| self.applied.iter().filter(|a| a.outcome == outcome).count();
            format!(
                "Applied {} repair(s) (run {}; audit: paytool.reconcile_audit); {} unchanged because the row had changed meanwhile; {} refused because another row already holds that Stripe id. The rest needs a person: see docs/reconcile.md.",
                count(RepairOutcome::Applied),
                self.run_id,
                count(RepairOutcome::Unchanged),
                count(RepairOutcome::Conflict),
            )
        } else if self.repairs_pending > 0 {
            format!(
                "{} repair(s) can be made safely on the database side: run again with --apply.",
                self.repairs_pending
            )
        } else {
            "Nothing here can be repaired automatically: see docs/reconcile.md.".to_owned()
        };
        paragraph(out, screen, &closing)?;
        if self
            .findings
            .iter()
            .any(|f| f.kind == Kind::DisputedPayment)
        {
            paragraph(
                out,
                screen,
                "Disputes are reported, not recorded: the schema has no table for them (their charge.dispute.* events go to payment_events with paytool backfill events). Answer them in the Stripe dashboard before the evidence is due.",
            )?;
        }
        Ok(())
    }

    fn render_csv(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record([
            "kind",
            "order_id",
            "payment_intent_id",
            "database",
            "stripe",
            "repair",
            "database_minor_units",
            "database_currency",
            "stripe_minor_units",
            "stripe_currency",
            "stripe_object_id",
            "effect_missing",
            "known",
        ])?;
        let new = self.findings.iter().map(|f| (f, false));
        let known = self.known_findings.iter().map(|f| (f, true));
        for (f, is_known) in new.chain(known) {
            let [database_units, database_currency] = money_fields(f.database_amount.as_ref());
            let [stripe_units, stripe_currency] = money_fields(f.stripe_amount.as_ref());
            writer.write_record([
                f.kind.name(),
                f.order_id.as_deref().unwrap_or(""),
                f.payment_intent_id.as_deref().unwrap_or(""),
                &f.ours,
                &f.stripe,
                &repairs_text(f),
                &database_units,
                &database_currency,
                &stripe_units,
                &stripe_currency,
                f.stripe_object_id.as_deref().unwrap_or(""),
                f.effect_missing
                    .map_or("", |m| if m { "true" } else { "false" }),
                if is_known { "true" } else { "false" },
            ])?;
        }
        writer.flush()
    }
}

/// An amount as two CSV fields, integer minor units and currency; empty when the finding is
/// not about money.
fn money_fields(amount: Option<&Money>) -> [String; 2] {
    amount.map_or_else(Default::default, |m| {
        [m.minor_units.to_string(), m.currency.clone()]
    })
}

fn repairs_text(finding: &Finding) -> String {
    if finding.repairs.is_empty() {
        return "-".into();
    }
    finding
        .repairs
        .iter()
        .map(|r| match r {
            Repair::Link { .. } => "link".to_owned(),
            Repair::MarkPaid { .. } => "mark PAID".to_owned(),
            Repair::SyncPayment { status, .. } => format!("sync payment ({status})"),
            Repair::RecordRefund { refund, .. } => format!("record {}", refund.id),
            Repair::RecordEvent { event } => format!("store {} in payment_events", event.id),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a baseline did to a run, in one sentence (reconcile and reconcile payouts).
pub(super) fn baseline_sentence(baseline: &crate::reconcile::BaselineSummary) -> String {
    if baseline.wrote {
        format!(
            "Baseline {}: {} finding(s) accepted by this run, {} entries in all.",
            baseline.file,
            grouped(baseline.written as u64),
            grouped(baseline.entries as u64)
        )
    } else {
        format!(
            "Baseline {}: {} known finding(s) skipped (accepted there); {} of its {} entries not found this run (resolved, or outside the window).",
            baseline.file,
            grouped(baseline.known as u64),
            grouped(baseline.not_seen as u64),
            grouped(baseline.entries as u64)
        )
    }
}
