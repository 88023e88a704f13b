//! Integration tests of the `paytool` binary against a real PostgreSQL started by the harness.

mod backfill;
mod basics;
mod demo;
mod harness;
mod migrate;
mod reconcile;
mod verify;
