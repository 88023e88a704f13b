//! Accepted findings: a file a team keeps in version control, so that a scheduled reconcile
//! exits 1 only on what nobody has looked at yet. Each entry says who accepted it and why.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::finding::Finding;
use crate::exit;

/// The file format's version, written in every file.
const FORMAT: u32 = 1;

#[derive(Debug, Error)]
pub enum BaselineError {
    #[error("baseline {0} does not exist: create it with --write-baseline {0} --reason \"...\"")]
    Missing(PathBuf),
    #[error("cannot read baseline {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("baseline {path} is not a paytool baseline: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("cannot write baseline {path}: {reason}")]
    Unwritable { path: PathBuf, reason: String },
}

impl BaselineError {
    pub fn exit_code(&self) -> u8 {
        match self {
            BaselineError::Unwritable { .. } => exit::RUNTIME_FAILURE,
            _ => exit::USAGE,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineFile {
    pub paytool_baseline: u32,
    pub accepted: Vec<Accepted>,
}

/// One accepted finding: what it was when accepted, and who accepted it, when and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accepted {
    pub fingerprint: String,
    pub kind: String,
    pub order_id: Option<String>,
    pub payment_intent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_object_id: Option<String>,
    pub database: String,
    pub stripe: String,
    pub accepted_by: String,
    pub accepted_at: DateTime<Utc>,
    pub reason: String,
}

/// Who accepts the findings `--write-baseline` writes, and why.
#[derive(Debug, Clone)]
pub struct Acceptance {
    pub path: PathBuf,
    pub by: String,
    pub reason: String,
}

/// What the baseline did to a run, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineSummary {
    pub file: String,
    /// Findings of this run the baseline holds: reported, not alerted on.
    pub known: usize,
    /// Entries of the file.
    pub entries: usize,
    /// Entries this run did not find (resolved, or outside the window).
    pub not_seen: usize,
    /// Whether this run wrote the file (`--write-baseline`).
    pub wrote: bool,
    /// Entries `--write-baseline` added.
    pub written: usize,
}

pub fn load(path: &Path) -> Result<BaselineFile, BaselineError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(BaselineError::Missing(path.to_owned()));
        }
        Err(err) => {
            return Err(BaselineError::Unreadable {
                path: path.to_owned(),
                reason: err.to_string(),
            });
        }
    };
    let file: BaselineFile = serde_json::from_str(&text).map_err(|e| BaselineError::Malformed {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if file.paytool_baseline != FORMAT {
        return Err(BaselineError::Malformed {
            path: path.to_owned(),
            reason: format!(
                "format {} (this paytool reads format {FORMAT})",
                file.paytool_baseline
            ),
        });
    }
    Ok(file)
}

/// Splits findings into (new, known).
pub fn partition(file: &BaselineFile, findings: Vec<Finding>) -> (Vec<Finding>, Vec<Finding>) {
    let accepted: HashSet<&str> = file
        .accepted
        .iter()
        .map(|a| a.fingerprint.as_str())
        .collect();
    findings
        .into_iter()
        .partition(|f| !accepted.contains(f.fingerprint().as_str()))
}

/// Entries of the file that none of `findings` matches.
pub fn not_seen(file: &BaselineFile, findings: &[&Finding]) -> usize {
    let seen: HashSet<String> = findings.iter().map(|f| f.fingerprint()).collect();
    file.accepted
        .iter()
        .filter(|a| !seen.contains(&a.fingerprint))
        .count()
}

/// Adds every finding not yet accepted to the file (kept entries keep their who and why) and
/// writes it atomically (a temporary file renamed over it). Returns how many were added.
pub fn write(
    acceptance: &Acceptance,
    mut file: BaselineFile,
    findings: &[&Finding],
    now: DateTime<Utc>,
) -> Result<usize, BaselineError> {
    let known: HashSet<String> = file
        .accepted
        .iter()
        .map(|a| a.fingerprint.clone())
        .collect();
    let mut added = 0;
    for f in findings {
        let fingerprint = f.fingerprint();
        if known.contains(&fingerprint) {
            continue;
        }
        file.accepted.push(Accepted {
            fingerprint,
            kind: f.kind.name().to_owned(),
            order_id: f.order_id.clone(),
            payment_intent_id: f.payment_intent_id.clone(),
            stripe_object_id: f.stripe_object_id.clone(),
            database: f.ours.clone(),
            stripe: f.stripe.clone(),
            accepted_by: acceptance.by.clone(),
            accepted_at: now,
            reason: acceptance.reason.clone(),
        });
        added += 1;
    }
    file.accepted
        .sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    let unwritable = |e: &dyn std::fmt::Display| BaselineError::Unwritable {
        path: acceptance.path.clone(),
        reason: e.to_string(),
    };
    let text = serde_json::to_string_pretty(&file).map_err(|e| unwritable(&e))?;
    let dir = acceptance
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| unwritable(&e))?;
    std::io::Write::write_all(&mut temp, format!("{text}\n").as_bytes())
        .map_err(|e| unwritable(&e))?;
    temp.persist(&acceptance.path)
        .map_err(|e| unwritable(&e.error))?;
    Ok(added)
}

/// An empty baseline, for a first `--write-baseline`.
pub fn empty() -> BaselineFile {
    BaselineFile {
        paytool_baseline: FORMAT,
        accepted: Vec::new(),
    }
}
