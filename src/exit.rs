//! The documented exit codes and how an error is said. Imports nothing of paytool: every
//! command uses these, and the mapping from an error to its code lives in the app layer.

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
