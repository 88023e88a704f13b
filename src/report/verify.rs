use std::io::{self, Write};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::ci::{CiItem, CiSeverity, cell};
use super::{Grid, Render, Screen, millis, paragraph, wrap};
use crate::db::IdType;
use crate::verify::{Category, CheckResult, Status, VerifyReport};

/// Ids shown per check in the table; JSON and JUnit carry the whole sample.
const TABLE_SAMPLE: usize = 3;

impl Render for VerifyReport {
    fn render_table(&self, out: &mut dyn Write, screen: Screen) -> io::Result<()> {
        const MEANING: &str = "what it means";
        let mut t = Grid::new(&["status", "severity", "check", "count", MEANING, "took"])
            .prose(&[MEANING])
            .optional(&["took", "severity", MEANING]);
        for check in &self.checks {
            t.add_row(vec![
                status_label(check.status).to_owned(),
                check.severity.as_str().to_owned(),
                check.id.to_owned(),
                count_text(check),
                meaning_with_sample(check),
                millis(check.duration_ms),
            ]);
        }
        let table = t.render(screen);
        writeln!(out, "{}", table.text)?;
        if table.dropped.iter().any(|c| c == MEANING) {
            // Too narrow for the explanations beside every check: give them for the checks
            // that found something, under the table.
            for check in self.checks.iter().filter(|c| c.count > 0) {
                let lines = wrap(&meaning_with_sample(check), screen.width.saturating_sub(4));
                writeln!(out, "{} {}", status_label(check.status), check.id)?;
                for line in lines {
                    writeln!(out, "    {line}")?;
                }
            }
        }
        let s = &self.summary;
        paragraph(out, screen, &self.summary_line())?;
        if self.id_type == IdType::Uuid {
            writeln!(
                out,
                "The legacy ids are uuid (@db.Uuid): payments.order_id is expected as uuid too."
            )?;
        }
        if s.skipped > 0 {
            paragraph(
                out,
                screen,
                "Data checks were skipped: the tables or columns they read are not as expected (run paytool migrate).",
            )?;
        }
        Ok(())
    }

    fn markdown_lines(&self) -> Option<Vec<String>> {
        Some(verify_markdown(self))
    }

    fn ci_items(&self) -> Option<Vec<CiItem>> {
        Some(
            self.checks
                .iter()
                .filter_map(|check| {
                    let severity = ci_severity(check.status)?;
                    Some(CiItem {
                        severity,
                        check: check.id.to_owned(),
                        title: format!("paytool verify: {}", check.id),
                        message: match check.status {
                            Status::Skipped => {
                                "not run: the schema checks it depends on failed".to_owned()
                            }
                            _ => format!(
                                "{} found: {}",
                                count_text(check),
                                meaning_with_sample(check)
                            ),
                        },
                        identity: format!("verify|{}", check.id),
                        path: "sql/verify/expected_schema.txt".to_owned(),
                    })
                })
                .collect(),
        )
    }

    fn render_junit(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut report = Report::new("paytool verify constraints");
        report.set_time(Duration::from_millis(self.duration_ms));
        for category in [Category::Schema, Category::Data] {
            let mut suite = TestSuite::new(category.as_str());
            for check in self.checks.iter().filter(|c| c.category == category) {
                suite.add_test_case(test_case(check));
            }
            if !suite.test_cases.is_empty() {
                report.add_test_suite(suite);
            }
        }
        report.serialize(&mut *out).map_err(io::Error::other)?;
        writeln!(out)
    }
}

impl VerifyReport {
    fn summary_line(&self) -> String {
        let s = &self.summary;
        format!(
            "{} passed, {} failed, {} warnings, {} notes, {} skipped in {} on {}",
            s.passed,
            s.failed,
            s.warnings,
            s.notes,
            s.skipped,
            millis(self.duration_ms),
            self.database
        )
    }
}

/// What CI shows of a check: failures as errors, warnings and skipped checks as warnings.
fn ci_severity(status: Status) -> Option<CiSeverity> {
    match status {
        Status::Fail => Some(CiSeverity::Error),
        Status::Warn | Status::Skipped => Some(CiSeverity::Warning),
        Status::Pass | Status::Note => None,
    }
}

pub(super) fn verify_markdown(report: &VerifyReport) -> Vec<String> {
    let mut lines = vec![
        "### paytool verify constraints".to_owned(),
        String::new(),
        report.summary_line(),
        String::new(),
    ];
    let found: Vec<&CheckResult> = report
        .checks
        .iter()
        .filter(|c| ci_severity(c.status).is_some())
        .collect();
    if found.is_empty() {
        lines.push("Every check passed.".to_owned());
        return lines;
    }
    lines.push("| status | check | count | what it means |".to_owned());
    lines.push("|---|---|---:|---|".to_owned());
    for check in found {
        lines.push(format!(
            "| {} | `{}` | {} | {} |",
            status_label(check.status),
            check.id,
            count_text(check),
            cell(&meaning_with_sample(check))
        ));
    }
    lines
}

fn status_label(status: Status) -> &'static str {
    match status {
        Status::Pass => "ok",
        Status::Fail => "FAIL",
        Status::Warn => "warn",
        Status::Note => "note",
        Status::Skipped => "skipped",
    }
}

/// A skipped check counted nothing: "—", not a reassuring 0.
fn count_text(check: &CheckResult) -> String {
    match check.status {
        Status::Skipped => "—".to_owned(),
        _ => crate::human::count(check.count),
    }
}

fn meaning_with_sample(check: &CheckResult) -> String {
    if check.sample.is_empty() {
        return check.meaning.to_owned();
    }
    let shown: Vec<&str> = check
        .sample
        .iter()
        .take(TABLE_SAMPLE)
        .map(String::as_str)
        .collect();
    let more = if check.count as usize > shown.len() {
        ", …"
    } else {
        ""
    };
    format!("{}: {}{more}", check.meaning, shown.join(", "))
}

/// One testcase per check: an error-severity failure is a `<failure>`; a warning passes (JUnit
/// has no warning) and says so in its system-out; a skipped check is `<skipped>`.
fn test_case(check: &CheckResult) -> TestCase {
    let found = format!("{} found: {}", check.count, check.meaning);
    let status = match check.status {
        Status::Pass | Status::Warn | Status::Note => TestCaseStatus::success(),
        Status::Skipped => {
            let mut s = TestCaseStatus::skipped();
            s.set_message("not run: the schema checks it depends on failed");
            s
        }
        Status::Fail => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(found.clone())
                .set_type(check.id)
                .set_description(sample_text(check));
            s
        }
    };
    let mut case = TestCase::new(check.id, status);
    case.set_classname(format!(
        "paytool.verify.{}",
        check.id.split('.').next().unwrap_or("check")
    ))
    .set_time(Duration::from_millis(check.duration_ms));
    match check.status {
        Status::Warn => {
            case.set_system_out(format!("warning: {found}\n{}", sample_text(check)));
        }
        Status::Note => {
            case.set_system_out(format!("note: {found}\n{}", sample_text(check)));
        }
        _ => {}
    }
    case
}

fn sample_text(check: &CheckResult) -> String {
    format!("sample ids:\n{}", check.sample.join("\n"))
}
