//! The checks of `paytool verify constraints`: what each one means, how bad a failure is, and
//! its SQL (sql/verify/), which returns `(count, sample)`.

use serde::Serialize;

use crate::db::IdType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Tables, columns, constraints, indexes and the trigger, from pg_catalog.
    Schema,
    /// Invariants of the rows, one set-based query each.
    Data,
}

impl Category {
    /// The name JSON carries and JUnit's suites are called.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Schema => "schema",
            Category::Data => "data",
        }
    }
}

impl Severity {
    /// The name JSON carries and the table shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A failure fails the run (exit 1).
    Error,
    /// Reported, never fails the run.
    Warning,
    /// For the reader: what the application owns and paytool only describes.
    Note,
}

/// Which lines of sql/verify/expected_schema.txt a schema check compares with.
#[derive(Debug, Clone, Copy)]
pub enum Expected {
    Nothing,
    Lines(&'static str),
}

pub struct Check {
    pub id: &'static str,
    pub category: Category,
    pub severity: Severity,
    /// What a failure means, in one line.
    pub meaning: &'static str,
    pub sql: &'static str,
    pub expected: Expected,
}

pub const EXPECTED_SCHEMA: &str = include_str!("../../sql/verify/expected_schema.txt");

/// The expected objects of one kind ("table", "column", ...), without their kind prefix, for
/// a database whose ids are of type `ids`.
pub fn expected_lines(kind: &str, ids: IdType) -> Vec<String> {
    let prefix = format!("{kind} ");
    EXPECTED_SCHEMA
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|line| line.replace("{id type}", ids.sql()))
        .collect()
}

const fn schema(
    id: &'static str,
    severity: Severity,
    meaning: &'static str,
    sql: &'static str,
    expected: Expected,
) -> Check {
    Check {
        id,
        category: Category::Schema,
        severity,
        meaning,
        sql,
        expected,
    }
}

const fn data(
    id: &'static str,
    severity: Severity,
    meaning: &'static str,
    sql: &'static str,
) -> Check {
    Check {
        id,
        category: Category::Data,
        severity,
        meaning,
        sql,
        expected: Expected::Nothing,
    }
}

use Severity::{Error, Note, Warning};

pub const CHECKS: &[Check] = &[
    schema(
        "schema.tables",
        Error,
        "tables of the payment schema are missing (run paytool migrate)",
        include_str!("../../sql/verify/schema_tables.sql"),
        Expected::Lines("table"),
    ),
    schema(
        "schema.columns",
        Error,
        "columns are missing or differ in type, nullability or default",
        include_str!("../../sql/verify/schema_columns.sql"),
        Expected::Lines("column"),
    ),
    schema(
        "schema.constraints",
        Error,
        "constraints are missing or defined differently",
        include_str!("../../sql/verify/schema_constraints.sql"),
        Expected::Lines("constraint"),
    ),
    schema(
        "schema.constraints_validated",
        Error,
        "constraints are NOT VALID: existing rows were never checked",
        include_str!("../../sql/verify/schema_constraints_validated.sql"),
        Expected::Nothing,
    ),
    schema(
        "schema.indexes",
        Error,
        "indexes are missing or defined differently",
        include_str!("../../sql/verify/schema_indexes.sql"),
        Expected::Lines("index"),
    ),
    schema(
        "schema.indexes_valid",
        Error,
        "indexes are INVALID or not ready (a failed CREATE INDEX CONCURRENTLY): drop and rebuild",
        include_str!("../../sql/verify/schema_indexes_valid.sql"),
        Expected::Nothing,
    ),
    schema(
        "schema.snapshot_trigger",
        Error,
        "the trigger that makes order_items snapshots immutable is missing, different or disabled",
        include_str!("../../sql/verify/schema_trigger.sql"),
        Expected::Lines("trigger"),
    ),
    schema(
        "schema.legacy_status_compat",
        Error,
        "the legacy application's enum filters on orders.status (Prisma's CAST($1 AS order_status)) \
         lack their operators: run paytool migrate (after paytool migrate cleanup, none may be left)",
        include_str!("../../sql/verify/schema_legacy_status_compat.sql"),
        Expected::Lines("compat"),
    ),
    schema(
        "schema.duplicate_indexes",
        Warning,
        "indexes duplicate another one (a = b) or lead it (a ⊂ b): writes pay twice, queries use one",
        include_str!("../../sql/verify/schema_duplicate_indexes.sql"),
        Expected::Nothing,
    ),
    schema(
        "schema.application_objects",
        Note,
        "the application's own legacy objects differ from SPEC §2 as Prisma writes them (id types, \
         foreign-key actions, indexes): the application owns them, paytool works with either",
        include_str!("../../sql/verify/schema_application_objects.sql"),
        Expected::Lines("app"),
    ),
    schema(
        "schema.foreign_keys_indexed",
        Warning,
        "foreign keys have no index on their columns: deletes of the parent scan the table",
        include_str!("../../sql/verify/schema_foreign_keys_indexed.sql"),
        Expected::Nothing,
    ),
    data(
        "data.order_totals",
        Error,
        "orders whose total is not the sum of their item subtotals",
        include_str!("../../sql/verify/data_order_totals.sql"),
    ),
    data(
        "data.payment_amounts",
        Error,
        "payments whose amount or currency differ from their order's",
        include_str!("../../sql/verify/data_payment_amounts.sql"),
    ),
    data(
        "data.payment_intent_ids",
        Error,
        "orders and their payment name different Stripe PaymentIntents",
        include_str!("../../sql/verify/data_payment_intent_ids.sql"),
    ),
    data(
        "data.paid_orders_succeeded",
        Error,
        "PAID orders whose payment is not succeeded",
        include_str!("../../sql/verify/data_paid_orders_succeeded.sql"),
    ),
    data(
        "data.refunds_within_payment",
        Error,
        "payments refunded for more than their amount",
        include_str!("../../sql/verify/data_refunds_within_payment.sql"),
    ),
    data(
        "data.items_missing_snapshot",
        Error,
        "items without a snapshot whose product exists (run paytool backfill payments)",
        include_str!("../../sql/verify/data_items_missing_snapshot.sql"),
    ),
    data(
        "data.currency_codes",
        Error,
        "currency codes that are not three upper-case letters",
        include_str!("../../sql/verify/data_currency_codes.sql"),
    ),
    data(
        "data.items_unresolvable",
        Warning,
        "items that cannot be snapshotted (product deleted, amount overflows INTEGER)",
        include_str!("../../sql/verify/data_items_unresolvable.sql"),
    ),
    data(
        "data.orders_without_payment",
        Warning,
        "orders without a payment row (backfill not run, or order not totalled)",
        include_str!("../../sql/verify/data_orders_without_payment.sql"),
    ),
    data(
        "data.paid_orders_without_paid_at",
        Warning,
        "PAID or REFUNDED orders without paid_at (legacy rows)",
        include_str!("../../sql/verify/data_paid_orders_without_paid_at.sql"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_check_has_expected_lines_and_ids_are_unique() {
        for check in CHECKS {
            if let Expected::Lines(kind) = check.expected {
                assert!(
                    !expected_lines(kind, IdType::Text).is_empty(),
                    "{}",
                    check.id
                );
            }
            assert_eq!(CHECKS.iter().filter(|c| c.id == check.id).count(), 1);
        }
        assert_eq!(expected_lines("table", IdType::Text).len(), 9);
        assert!(
            expected_lines("column", IdType::Uuid)
                .contains(&"payments.order_id uuid NOT NULL".to_owned())
        );
    }
}
