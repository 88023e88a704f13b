//! `paytool prisma`: what a Prisma application needs to agree with the migrated database —
//! the upgraded models (`schema`) and a Prisma Migrate baseline recorded as applied
//! (`baseline`), so that `prisma migrate status` and `prisma migrate deploy` see no change.

mod baseline;
mod schema;

use std::path::PathBuf;

use thiserror::Error;

pub use baseline::{BaselineReport, BaselineRequest, baseline};
pub use schema::{PrismaSchemaReport, schema};

use crate::exit;

#[derive(Debug, Error)]
pub enum PrismaError {
    #[error(
        "{path} already holds a different payment_system migration (written by another paytool version, \
         or edited); remove that folder or pass --name to write another one"
    )]
    BaselineDiffers { path: PathBuf },
    #[error("cannot write the migration to {path}: {reason}")]
    CannotWrite { path: PathBuf, reason: String },
    #[error("--name must be letters, digits and underscores (Prisma's migration names), not {0:?}")]
    BadName(String),
    #[error(
        "{dir} has no migration that creates the application's tables, and its ids are uuid (@db.Uuid): \
         paytool's legacy schema (text ids) cannot stand in for it. Create that migration first \
         (prisma migrate diff --from-empty --to-schema-datamodel <the legacy schema.prisma> --script, \
         saved as {dir}/0_init/migration.sql and marked applied with prisma migrate resolve --applied 0_init), \
         then run paytool prisma baseline again"
    )]
    NoLegacyMigration { dir: PathBuf },
}

impl PrismaError {
    pub fn exit_code(&self) -> u8 {
        match self {
            PrismaError::BaselineDiffers { .. }
            | PrismaError::BadName(_)
            | PrismaError::NoLegacyMigration { .. } => exit::USAGE,
            PrismaError::CannotWrite { .. } => exit::RUNTIME_FAILURE,
        }
    }
}
