//! Logs go to stderr; stdout carries only the report.

use tracing_subscriber::EnvFilter;

use crate::cli::GlobalArgs;

pub fn init(global: &GlobalArgs) {
    // With bars on screen, info lines would tear them; the bars say the same.
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) if crate::progress::bars_enabled_for(global) => "warn",
        (false, 0) => "info,sqlx=warn",
        (false, 1) => "info,paytool=debug",
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
