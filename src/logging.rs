//! Logs go to stderr; stdout carries only the report.

use tracing_subscriber::EnvFilter;

/// `quiet`: errors only; `verbose`: how many `-v`.
pub fn init(quiet: bool, verbose: u8) {
    // As --help says: warnings and errors by default, terminal or not (a CI log or a pipe gets
    // the report, not a running commentary); -v adds info, -vv debug.
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info,sqlx=warn",
        (false, 2) => "info,paytool=debug,sqlx=warn",
        (false, _) => "debug",
    };
    let filter = EnvFilter::try_from_env("PAYTOOL_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .try_init();
}
