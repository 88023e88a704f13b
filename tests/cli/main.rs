//! Integration tests of the `paytool` binary against a real PostgreSQL started by the harness.

mod backfill;
mod basics;
mod ci;
mod compat;
mod connections;
mod demo;
mod events;
mod harness;
mod migrate;
mod npm;
mod payouts;
mod pooler;
mod prisma;
mod privileges;
mod reconcile;
mod restarts;
mod servers;
mod setups;
mod standby;
mod steering;
mod throttling;
mod variants;
mod verify;
mod workers;
