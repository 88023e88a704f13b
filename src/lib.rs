//! paytool: move a live PostgreSQL payments database onto a robust Stripe payment model.

pub mod app;
mod backfill;
pub mod cli;
pub mod db;
pub mod demo;
mod domain;
mod events;
pub mod exit;
mod human;
mod logging;
pub mod migrate;
mod prisma;
mod progress;
mod reconcile;
mod report;
mod retry;
pub mod seed;
pub mod stripe;
pub mod stripe_sim;
pub mod throttle;
mod verify;

/// Runs one command and returns its exit code; errors carry their own (see [`app::exit_code`]).
pub fn run(cli: cli::Cli) -> anyhow::Result<u8> {
    app::run(cli)
}
