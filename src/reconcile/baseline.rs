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

/// A finding a baseline can hold: `reconcile`'s and `reconcile payouts`'.
pub trait Acceptable {
    /// What identifies it from one run to the next.
    fn fingerprint(&self) -> String;
    /// The entry that accepts it.
    fn accepted(&self, acceptance: &Acceptance, now: DateTime<Utc>) -> Accepted;
}

impl Acceptable for Finding {
    fn fingerprint(&self) -> String {
        Finding::fingerprint(self)
    }

    fn accepted(&self, acceptance: &Acceptance, now: DateTime<Utc>) -> Accepted {
        Accepted {
            fingerprint: Finding::fingerprint(self),
            kind: self.kind.name().to_owned(),
            order_id: self.order_id.clone(),
            payment_intent_id: self.payment_intent_id.clone(),
            stripe_object_id: self.stripe_object_id.clone(),
            database: self.ours.clone(),
            stripe: self.stripe.clone(),
            accepted_by: acceptance.by.clone(),
            accepted_at: now,
            reason: acceptance.reason.clone(),
        }
    }
}

/// The baseline to compare with: `baseline`'s file (it must exist), else the file
/// `write` adds to, if it exists already.
pub fn load_for(
    baseline: Option<&Path>,
    write: Option<&Acceptance>,
) -> Result<Option<BaselineFile>, BaselineError> {
    if let Some(path) = baseline {
        return load(path).map(Some);
    }
    match write {
        Some(acceptance) if acceptance.path.exists() => load(&acceptance.path).map(Some),
        _ => Ok(None),
    }
}

/// Findings split into new and known, and what the baseline did.
pub struct Applied<T> {
    pub new: Vec<T>,
    pub known: Vec<T>,
    pub summary: Option<BaselineSummary>,
}

/// Splits the findings into new and known, and writes the baseline if asked to (then
/// everything this run found is accepted: nothing is new).
pub fn apply<T: Acceptable>(
    baseline: Option<&Path>,
    write_to: Option<&Acceptance>,
    accepted: Option<BaselineFile>,
    findings: Vec<T>,
) -> Result<Applied<T>, BaselineError> {
    let Some(acceptance) = write_to else {
        let Some(file) = accepted else {
            return Ok(Applied {
                new: findings,
                known: Vec::new(),
                summary: None,
            });
        };
        let all: Vec<&T> = findings.iter().collect();
        let not_seen = not_seen(&file, &all);
        let entries = file.accepted.len();
        let (new, known) = partition(&file, findings);
        let summary = BaselineSummary {
            file: baseline.unwrap_or(Path::new("")).display().to_string(),
            known: known.len(),
            entries,
            not_seen,
            wrote: false,
            written: 0,
        };
        return Ok(Applied {
            new,
            known,
            summary: Some(summary),
        });
    };
    let file = accepted.unwrap_or_else(empty);
    let all: Vec<&T> = findings.iter().collect();
    let not_seen = not_seen(&file, &all);
    let entries_before = file.accepted.len();
    let written = write(acceptance, file, &all, Utc::now())?;
    let summary = BaselineSummary {
        file: acceptance.path.display().to_string(),
        known: findings.len(),
        entries: entries_before + written,
        not_seen,
        wrote: true,
        written,
    };
    Ok(Applied {
        new: Vec::new(),
        known: findings,
        summary: Some(summary),
    })
}

/// Splits findings into (new, known).
pub fn partition<T: Acceptable>(file: &BaselineFile, findings: Vec<T>) -> (Vec<T>, Vec<T>) {
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
pub fn not_seen<T: Acceptable>(file: &BaselineFile, findings: &[&T]) -> usize {
    let seen: HashSet<String> = findings.iter().map(|f| f.fingerprint()).collect();
    file.accepted
        .iter()
        .filter(|a| !seen.contains(&a.fingerprint))
        .count()
}

/// Adds every finding not yet accepted to the file (kept entries keep their who and why) and
/// writes it atomically (a temporary file renamed over it). Returns how many were added.
pub fn write<T: Acceptable>(
    acceptance: &Acceptance,
    mut file: BaselineFile,
    findings: &[&T],
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
        file.accepted.push(f.accepted(acceptance, now));
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
