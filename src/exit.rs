//! The documented exit codes, and the mapping from an error to its code.

use crate::backfill::BackfillError;
use crate::db::DbError;
use crate::migrate::MigrateError;
use crate::seed::SeedError;

/// Success: the command did its job, or every check passed.
pub const OK: u8 = 0;
/// The command ran and found problems (dirty data, failed checks, drift, findings).
pub const PROBLEMS_FOUND: u8 = 1;
/// Bad flags or configuration (malformed URL, wrong credentials, wrong database).
pub const USAGE: u8 = 2;
/// Runtime failure: the database or Stripe could not be reached or failed mid-way.
pub const RUNTIME_FAILURE: u8 = 3;

/// Text appended to every `--help`, so the codes are documented where users look.
pub const HELP_TEXT: &str =
    "Exit codes: 0 success, 1 problems found, 2 usage or configuration error,
3 runtime failure.";

/// The message of an error and its causes, each said once: `context: cause: root`. A cause
/// whose text its wrapper already includes (`#[error("…: {0}")]`) is not repeated.
pub fn message(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || parts.iter().any(|said| said.contains(text)) {
            continue;
        }
        parts.push(text.to_owned());
    }
    parts.join(": ")
}

/// The exit code for an error: the first typed error in the chain decides, else a runtime failure.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(db) = cause.downcast_ref::<DbError>() {
            return db.exit_code();
        }
        if let Some(key) = cause.downcast_ref::<crate::db::KeyError>() {
            return key.exit_code();
        }
        if let Some(migrate) = cause.downcast_ref::<MigrateError>() {
            return migrate.exit_code();
        }
        if let Some(backfill) = cause.downcast_ref::<BackfillError>() {
            return backfill.exit_code();
        }
        if let Some(reconcile) = cause.downcast_ref::<crate::reconcile::ReconcileError>() {
            return reconcile.exit_code();
        }
        if let Some(cluster) = cause.downcast_ref::<crate::demo::cluster::ClusterError>() {
            use crate::demo::cluster::ClusterError;
            return match cluster {
                ClusterError::NotInstalled
                | ClusterError::BadPgBin { .. }
                | ClusterError::Unreachable(_) => USAGE,
                _ => RUNTIME_FAILURE,
            };
        }
        if cause.is::<crate::cli::UnsupportedFormat>() {
            return USAGE;
        }
        if let Some(prisma) = cause.downcast_ref::<crate::prisma::PrismaError>() {
            return prisma.exit_code();
        }
        if let Some(verify) = cause.downcast_ref::<crate::verify::VerifyError>() {
            return verify.exit_code();
        }
        if let Some(seed) = cause.downcast_ref::<SeedError>() {
            return seed.exit_code();
        }
    }
    RUNTIME_FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("Stripe rejected the API key (HTTP 401): check STRIPE_SECRET_KEY")]
    struct Root;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct SaysItsSource(#[source] Root);

    #[test]
    fn each_cause_is_said_once() {
        let err = anyhow::Error::new(SaysItsSource(Root)).context("reconcile could not complete");
        assert_eq!(
            message(&err),
            "reconcile could not complete: Stripe rejected the API key (HTTP 401): check STRIPE_SECRET_KEY"
        );
        let plain = anyhow::anyhow!("column \"subtotal_cents\" does not exist");
        assert_eq!(message(&plain), "column \"subtotal_cents\" does not exist");
    }
}
