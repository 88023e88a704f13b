//! Metrics of a run for alerting: OpenMetrics text for node_exporter's textfile collector,
//! written atomically (a temporary file in the same directory, then a rename), so a collector
//! never reads half a file and a killed run leaves the previous one whole.
//!
//! Every value describes the last run, so every family is a gauge (a counter, `_total`, would
//! promise a total over runs); units are in the names and declared (`_seconds`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::backfill::BackfillReport;
use crate::reconcile::ReconcileReport;
use crate::reconcile::finding::{Importance, Kind};
use crate::reconcile::payouts::PayoutsReport;
use crate::verify::{Status, VerifyReport};

/// One metric family: a gauge with its help, unit and samples.
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub unit: Option<&'static str>,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    fn gauge(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            unit: None,
            samples: Vec::new(),
        }
    }

    fn seconds(name: &'static str, help: &'static str) -> Self {
        Family {
            unit: Some("seconds"),
            ..Family::gauge(name, help)
        }
    }

    fn sample(mut self, labels: &[(&'static str, &str)], value: f64) -> Self {
        self.push(labels, value);
        self
    }

    fn push(&mut self, labels: &[(&'static str, &str)], value: f64) {
        let labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.samples.push((labels, value));
    }
}

/// The metrics a report carries besides the run's own.
pub trait Metrics {
    fn metric_families(&self) -> Vec<Family>;
}

/// How a run ended, for the families every command writes.
pub struct RunOutcome<'a> {
    pub command: &'a str,
    pub exit_code: u8,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub duration: std::time::Duration,
}

fn run_families(run: &RunOutcome<'_>) -> Vec<Family> {
    let command = [("command", run.command)];
    vec![
        Family::seconds(
            "paytool_last_run_timestamp_seconds",
            "When the last run ended (Unix time).",
        )
        .sample(&command, run.finished_at.timestamp_millis() as f64 / 1000.0),
        Family::seconds(
            "paytool_last_run_duration_seconds",
            "How long the last run took.",
        )
        .sample(&command, run.duration.as_secs_f64()),
        Family::gauge(
            "paytool_last_run_exit_code",
            "The last run's exit code: 0 ok, 1 problems found, 2 usage or configuration, 3 runtime failure.",
        )
        .sample(&command, f64::from(run.exit_code)),
        Family::gauge(
            "paytool_last_run_completed",
            "1 when the last run went to its end (exit 0 or 1), 0 when it could not.",
        )
        .sample(&command, if run.exit_code <= 1 { 1.0 } else { 0.0 }),
    ]
}

/// The file's text: the run's families, then the report's, then `# EOF`.
pub fn openmetrics(run: &RunOutcome<'_>, report: Option<&dyn Metrics>) -> String {
    let mut families = run_families(run);
    if let Some(report) = report {
        families.extend(report.metric_families());
    }
    let mut text = String::new();
    for family in &families {
        let _ = writeln!(text, "# TYPE {} gauge", family.name);
        if let Some(unit) = family.unit {
            let _ = writeln!(text, "# UNIT {} {unit}", family.name);
        }
        let _ = writeln!(text, "# HELP {} {}", family.name, escape(family.help));
        for (labels, value) in &family.samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            let _ = writeln!(text, "{}{labels} {value}", family.name);
        }
    }
    text.push_str("# EOF\n");
    text
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "paytool.prom".to_owned());
    // A leading dot: node_exporter's collector reads only *.prom files.
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::Warn => "warn",
        Status::Note => "note",
        Status::Skipped => "skipped",
    }
}

impl Metrics for VerifyReport {
    fn metric_families(&self) -> Vec<Family> {
        let mut checks = Family::gauge(
            "paytool_verify_checks",
            "Checks of the last verify run by status.",
        );
        for status in [
            Status::Pass,
            Status::Fail,
            Status::Warn,
            Status::Note,
            Status::Skipped,
        ] {
            let n = self.checks.iter().filter(|c| c.status == status).count();
            checks.push(&[("status", status_name(status))], n as f64);
        }
        let mut found = Family::gauge(
            "paytool_verify_check_found",
            "Offending rows or schema objects each check found in the last verify run.",
        );
        for check in &self.checks {
            found.push(
                &[
                    ("check", check.id),
                    ("category", check.category.as_str()),
                    ("severity", check.severity.as_str()),
                    ("status", status_name(check.status)),
                ],
                check.count as f64,
            );
        }
        vec![checks, found]
    }
}

impl Metrics for ReconcileReport {
    fn metric_families(&self) -> Vec<Family> {
        let mut findings = Family::gauge(
            "paytool_reconcile_findings",
            "New findings of the last reconcile run (not in the baseline), by kind; every kind listed.",
        );
        let mut known = Family::gauge(
            "paytool_reconcile_known_findings",
            "Findings of the last reconcile run that the baseline accepts, by kind.",
        );
        for kind in Kind::ALL {
            let severity = match kind.importance() {
                Importance::Error => "error",
                Importance::Warning => "warning",
            };
            let labels = [("kind", kind.name()), ("severity", severity)];
            let new = self.findings.iter().filter(|f| f.kind == *kind).count();
            let accepted = self
                .known_findings
                .iter()
                .filter(|f| f.kind == *kind)
                .count();
            findings.push(&labels, new as f64);
            known.push(&labels, accepted as f64);
        }
        vec![
            findings,
            known,
            Family::gauge(
                "paytool_reconcile_orders_checked",
                "Orders the last reconcile run compared with Stripe.",
            )
            .sample(&[], self.orders_checked as f64),
            Family::gauge(
                "paytool_reconcile_stripe_requests",
                "Stripe API requests the last reconcile run made.",
            )
            .sample(&[], self.stripe_requests as f64),
            Family::gauge(
                "paytool_reconcile_repairs_pending",
                "Repairs --apply would make (or made, with --apply).",
            )
            .sample(&[], self.repairs_pending as f64),
        ]
    }
}

impl Metrics for PayoutsReport {
    fn metric_families(&self) -> Vec<Family> {
        let mut findings = Family::gauge(
            "paytool_payouts_findings",
            "Findings of the last reconcile payouts run, by kind; every kind listed.",
        );
        for (kind, count) in &self.summary {
            findings.push(&[("kind", kind)], *count as f64);
        }
        let mut unbalanced = Family::gauge(
            "paytool_payouts_unbalanced",
            "Itemized payouts whose balance transactions do not add up to them, by currency.",
        );
        let mut currencies: Vec<&str> = self.payouts.iter().map(|p| p.currency.as_str()).collect();
        currencies.sort_unstable();
        currencies.dedup();
        for currency in currencies {
            let n = self
                .payouts
                .iter()
                .filter(|p| p.currency == currency && p.balanced == Some(false))
                .count();
            unbalanced.push(&[("currency", currency)], n as f64);
        }
        vec![
            findings,
            unbalanced,
            Family::gauge("paytool_payouts", "Payouts of the last run's window.")
                .sample(&[], self.payouts.len() as f64),
            Family::gauge(
                "paytool_payouts_stripe_requests",
                "Stripe API requests the last reconcile payouts run made.",
            )
            .sample(&[], self.stripe_requests as f64),
        ]
    }
}

impl Metrics for BackfillReport {
    fn metric_families(&self) -> Vec<Family> {
        let mut changed = Family::gauge(
            "paytool_backfill_rows_changed",
            "Rows the last backfill run wrote, by step.",
        );
        let mut scanned = Family::gauge(
            "paytool_backfill_rows_scanned",
            "Rows the last backfill run read, by step.",
        );
        let mut unresolved = Family::gauge(
            "paytool_backfill_rows_unresolved",
            "Rows left pending that no run can resolve (a deleted product, no total), by step.",
        );
        for step in &self.steps {
            let labels = [("step", step.step)];
            changed.push(&labels, step.changed as f64);
            scanned.push(&labels, step.scanned as f64);
            unresolved.push(&labels, step.unresolved as f64);
        }
        let mut held = Family::seconds(
            "paytool_backfill_held_seconds",
            "Time the last backfill run held for each health signal (and operators' pauses).",
        );
        for (signal, h) in &self.held {
            held.push(&[("signal", signal)], h.ms as f64 / 1000.0);
        }
        vec![changed, scanned, unresolved, held]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_still_says_when_and_how() {
        let run = RunOutcome {
            command: "reconcile",
            exit_code: 3,
            finished_at: chrono::DateTime::from_timestamp(1_765_000_000, 0).unwrap(),
            duration: std::time::Duration::from_millis(1_500),
        };
        let text = openmetrics(&run, None);
        assert!(text.contains("paytool_last_run_completed{command=\"reconcile\"} 0\n"));
        assert!(
            text.contains("paytool_last_run_timestamp_seconds{command=\"reconcile\"} 1765000000\n")
        );
        assert!(text.contains("# UNIT paytool_last_run_duration_seconds seconds\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a \"b\" \\ c\nd"), "a \\\"b\\\" \\\\ c\\nd");
    }
}
