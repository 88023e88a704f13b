//! paytool: move a live PostgreSQL payments database onto a robust Stripe payment model.

pub mod app;
pub mod backfill;
pub mod cli;
pub mod db;
pub mod demo;
pub mod domain;
pub mod events;
pub mod exit;
pub mod human;
pub mod logging;
pub mod migrate;
pub mod prisma;
pub mod progress;
pub mod reconcile;
pub mod report;
pub mod retry;
pub mod seed;
pub mod stripe;
pub mod stripe_sim;
pub mod throttle;
pub mod verify;

/// Runs one command and returns its exit code; errors carry their own (see [`app::exit_code`]).
pub fn run(cli: cli::Cli) -> anyhow::Result<u8> {
    app::run(cli)
}
