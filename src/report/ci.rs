//! What CI systems show on their own, from any report that has checks or findings: GitHub
//! Actions workflow commands (annotations) and job summaries, GitLab Code Quality, and markdown
//! sized for one pull-request comment.

use std::io::{self, Write};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// GitHub shows at most this many annotations of each of error and warning per step.
pub const GITHUB_ANNOTATIONS_PER_SEVERITY: usize = 10;
/// A pull-request comment holds at most this many characters.
pub const PR_COMMENT_LIMIT: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CiSeverity {
    Error,
    Warning,
    Notice,
}

/// One failing or warning check, or one finding, as a CI system shows it.
#[derive(Debug, Clone)]
pub struct CiItem {
    pub severity: CiSeverity,
    /// The check or finding kind (`orders_total_matches_items`, `amount_mismatch`).
    pub check: String,
    /// A short title: the check and what it is about.
    pub title: String,
    /// One line: what was found.
    pub message: String,
    /// What identifies it from one run to the next (GitLab's fingerprint is its hash).
    pub identity: String,
    /// Where it lives, for GitLab's location (a file of the project when there is one).
    pub path: String,
}

/// Workflow commands for `items`, most important first: at most GitHub's limit of errors and
/// of warnings, then one notice counting what GitHub would not show.
pub fn github_commands(mut items: Vec<CiItem>) -> Vec<String> {
    items.sort_by_key(|i| i.severity);
    let mut lines = Vec::new();
    let mut left_out = [0usize; 2];
    for severity in [CiSeverity::Error, CiSeverity::Warning, CiSeverity::Notice] {
        let of: Vec<&CiItem> = items.iter().filter(|i| i.severity == severity).collect();
        let shown = match severity {
            CiSeverity::Notice => of.len().min(GITHUB_ANNOTATIONS_PER_SEVERITY - 1),
            _ => of.len().min(GITHUB_ANNOTATIONS_PER_SEVERITY),
        };
        for item in &of[..shown] {
            lines.push(format!(
                "::{} title={}::{}",
                match severity {
                    CiSeverity::Error => "error",
                    CiSeverity::Warning => "warning",
                    CiSeverity::Notice => "notice",
                },
                escape_property(&item.title),
                escape_data(&item.message)
            ));
        }
        match severity {
            CiSeverity::Error => left_out[0] = of.len() - shown,
            CiSeverity::Warning => left_out[1] = of.len() - shown,
            CiSeverity::Notice => {}
        }
    }
    if left_out.iter().any(|n| *n > 0) {
        lines.push(format!(
            "::notice title=paytool::{} more error(s) and {} more warning(s) than GitHub shows per step: see the job summary or the report",
            left_out[0], left_out[1]
        ));
    }
    lines
}

/// GitHub's escaping of a workflow command's message.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// GitHub's escaping of a workflow command's property value.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// One entry of GitLab's Code Quality report.
#[derive(Serialize)]
struct CodeQualityIssue<'a> {
    description: String,
    check_name: &'a str,
    fingerprint: String,
    severity: &'static str,
    location: Location<'a>,
}

#[derive(Serialize)]
struct Location<'a> {
    path: &'a str,
    lines: Lines,
}

#[derive(Serialize)]
struct Lines {
    begin: u32,
}

/// GitLab Code Quality JSON: an array of issues, each with a fingerprint stable across runs.
pub fn write_code_quality(out: &mut dyn Write, items: &[CiItem]) -> io::Result<()> {
    let issues: Vec<CodeQualityIssue> = items
        .iter()
        .map(|item| CodeQualityIssue {
            description: format!("{}: {}", item.title, item.message),
            check_name: &item.check,
            fingerprint: fingerprint(&item.identity),
            severity: match item.severity {
                CiSeverity::Error => "major",
                CiSeverity::Warning => "minor",
                CiSeverity::Notice => "info",
            },
            location: Location {
                path: &item.path,
                lines: Lines { begin: 1 },
            },
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &issues)?;
    writeln!(out)
}

/// 32 hex digits (GitLab's fingerprints are MD5-sized) of the item's identity.
fn fingerprint(identity: &str) -> String {
    hex::encode(&Sha256::digest(identity.as_bytes())[..16])
}

/// Whole lines up to `limit` characters; what does not fit is counted on a last line, never
/// cut in the middle.
pub fn fit_markdown(lines: Vec<String>, limit: usize) -> Vec<String> {
    let total: usize = lines.iter().map(|l| l.chars().count() + 1).sum();
    if total <= limit {
        return lines;
    }
    // Room for the note that says how much was left out.
    let budget = limit.saturating_sub(200);
    let mut kept = Vec::new();
    let mut used = 0;
    for line in &lines {
        let cost = line.chars().count() + 1;
        if used + cost > budget {
            break;
        }
        used += cost;
        kept.push(line.clone());
    }
    let left = lines.len() - kept.len();
    kept.push(String::new());
    kept.push(format!(
        "*… {left} more line(s) left out to fit one comment: the JSON report has everything.*"
    ));
    kept
}

pub fn write_lines(out: &mut dyn Write, lines: &[String]) -> io::Result<()> {
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// A markdown table cell: pipes escaped, one line.
pub fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Under GitHub Actions (`GITHUB_ACTIONS=true`): the report's annotations on stderr (the
/// runner reads workflow commands there too, and stdout keeps the requested format) and its
/// markdown appended to `$GITHUB_STEP_SUMMARY`.
pub fn github_actions_extras<R: super::Render>(
    report: &R,
    in_github_actions: bool,
    step_summary: Option<&std::path::Path>,
    annotate_on_stderr: bool,
) -> io::Result<()> {
    if !in_github_actions {
        return Ok(());
    }
    if annotate_on_stderr && let Some(items) = report.ci_items() {
        let mut err = io::stderr().lock();
        write_lines(&mut err, &github_commands(items))?;
    }
    if let (Some(path), Some(lines)) = (step_summary, report.markdown_lines()) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        // The summary of a step holds up to 1 MiB; one report is sized like a comment.
        write_lines(&mut file, &fit_markdown(lines, PR_COMMENT_LIMIT))?;
        writeln!(file)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(severity: CiSeverity, n: usize) -> CiItem {
        CiItem {
            severity,
            check: format!("check_{n}"),
            title: format!("check_{n}"),
            message: format!("found {n}, 100% sure: a, b"),
            identity: format!("check_{n}"),
            path: "paytool".into(),
        }
    }

    #[test]
    fn github_gets_its_limit_of_each_severity_and_a_count_of_the_rest() {
        let items: Vec<CiItem> = (0..15)
            .map(|n| item(CiSeverity::Error, n))
            .chain((0..3).map(|n| item(CiSeverity::Warning, n)))
            .collect();
        let lines = github_commands(items);
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("::error ")).count(),
            10
        );
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("::warning ")).count(),
            3
        );
        assert_eq!(
            lines.last().unwrap(),
            "::notice title=paytool::5 more error(s) and 0 more warning(s) than GitHub shows per step: see the job summary or the report"
        );
        assert!(
            lines[0].ends_with("::found 0, 100%25 sure: a, b"),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn markdown_is_cut_between_lines_with_a_count() {
        let lines: Vec<String> = (0..10_000).map(|n| format!("| row {n} | x |")).collect();
        let fitted = fit_markdown(lines, PR_COMMENT_LIMIT);
        let size: usize = fitted.iter().map(|l| l.chars().count() + 1).sum();
        assert!(size <= PR_COMMENT_LIMIT, "{size}");
        assert!(fitted.last().unwrap().contains("more line(s) left out"));
        assert!(fitted.iter().rev().nth(2).unwrap().starts_with("| row "));
    }

    #[test]
    fn code_quality_fingerprints_are_stable_and_distinct() {
        let a = fingerprint("amount_mismatch|o1|pi_1|-");
        assert_eq!(a, fingerprint("amount_mismatch|o1|pi_1|-"));
        assert_ne!(a, fingerprint("amount_mismatch|o2|pi_2|-"));
        assert_eq!(a.len(), 32);
    }
}
