//! The embedded migration steps of SPEC §3, in order, with what paytool needs to know to run
//! each one online: how it executes, which table it touches and which lock it takes.
//!
//! Long on purpose: it is the step table, one declaration per step, and the only place a
//! step number appears besides the SQL file names.

use std::sync::OnceLock;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::IdType;
use crate::domain::BackfillStep;

/// How a step is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// The whole file in one transaction together with its history row, under
    /// lock_timeout (retried with backoff) and statement_timeout.
    Transactional,
    /// A `VALIDATE CONSTRAINT`: one transaction, scans the table under a lock that does not
    /// block reads or writes, so it runs without statement_timeout.
    Validation,
    /// A single `CREATE [UNIQUE] INDEX CONCURRENTLY`, outside any transaction; an INVALID
    /// index left by an interrupted build is dropped and rebuilt.
    ConcurrentIndex { index: &'static str },
    /// One batch statement (`$1` last id, `$2` batch size) run until it returns no last id,
    /// each batch its own short transaction.
    Batched,
    /// A single `DROP INDEX CONCURRENTLY IF EXISTS`, outside any transaction: it waits for the
    /// transactions using the table instead of blocking them.
    ConcurrentDrop { index: &'static str },
}

/// The table-level lock a step takes, by PostgreSQL's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Lock {
    #[serde(rename = "ACCESS EXCLUSIVE")]
    AccessExclusive,
    #[serde(rename = "SHARE ROW EXCLUSIVE")]
    ShareRowExclusive,
    #[serde(rename = "SHARE UPDATE EXCLUSIVE")]
    ShareUpdateExclusive,
    #[serde(rename = "ROW EXCLUSIVE")]
    RowExclusive,
    /// Creates or drops functions, operators or types only: no table is locked.
    #[serde(rename = "none")]
    NoTableLock,
}

impl Lock {
    pub fn name(self) -> &'static str {
        match self {
            Lock::AccessExclusive => "ACCESS EXCLUSIVE",
            Lock::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Lock::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            Lock::RowExclusive => "ROW EXCLUSIVE",
            Lock::NoTableLock => "none",
        }
    }

    /// Whether the application's INSERT/UPDATE/DELETE wait while this lock is held or queued.
    pub fn blocks_writes(self) -> bool {
        matches!(self, Lock::AccessExclusive | Lock::ShareRowExclusive)
    }
}

/// When a step runs: with `paytool migrate`; with `paytool backfill payments` once its first
/// full pass is done; or only with `paytool migrate cleanup`, once the application no longer
/// needs what it removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Migrate,
    AfterBackfill,
    Cleanup,
}

impl Phase {
    pub fn command(self) -> &'static str {
        match self {
            Phase::Migrate => "paytool migrate",
            Phase::AfterBackfill => "paytool backfill payments",
            Phase::Cleanup => "paytool migrate cleanup",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Identity in the history table. Steps run in the order of [`STEPS`], which is not always
    /// the order of their versions: a step added later may have to run before an older one.
    pub version: i32,
    pub phase: Phase,
    pub name: &'static str,
    pub sql: &'static str,
    pub kind: StepKind,
    pub table: &'static str,
    pub lock: Lock,
    /// Something the operator must know beyond what kind and lock already say.
    pub note: Option<&'static str>,
    /// Checksums of earlier versions of the file that did the same thing on every database
    /// they could run on (Liquibase's validCheckSum): a database that applied one of them is
    /// not in drift.
    pub earlier_checksums: &'static [&'static str],
    /// For a step of [`Phase::AfterBackfill`]: the backfill pass whose first complete run
    /// builds it.
    pub after_pass: Option<BackfillStep>,
    /// The preflight checks (their ids in `preflight.rs`) of data this step would fail on,
    /// run while the step is pending.
    pub preflight: &'static [&'static str],
    /// For a [`StepKind::Batched`] step: the rows it still has to write, for its progress.
    pub remaining_sql: Option<&'static str>,
    /// How the step differs where orders.id is uuid.
    pub on_uuid_ids: Option<UuidVariant>,
}

/// A step whose SQL names the type of an order id: on uuid ids, `text` is replaced by `uuid`,
/// and the plan says so in `note`.
#[derive(Debug, Clone, Copy)]
pub struct UuidVariant {
    pub text: &'static str,
    pub uuid: &'static str,
    pub note: &'static str,
}

impl Step {
    pub fn checksum(&self) -> String {
        checksum(self.sql)
    }

    /// Whether the checksum recorded when the step was applied is this step's.
    pub fn matches_applied(&self, recorded: &str) -> bool {
        recorded == self.checksum() || self.earlier_checksums.contains(&recorded)
    }

    /// The step as it runs where orders.id is `uuid`, as its [`UuidVariant`] says.
    fn with_uuid_order_ids(&self) -> Step {
        let Some(variant) = self.on_uuid_ids else {
            return *self;
        };
        let sql = self.sql.replace(variant.text, variant.uuid);
        Step {
            // Built once per process (see steps_for), so leaking it costs a few kilobytes once.
            sql: Box::leak(sql.into_boxed_str()),
            note: Some(variant.note),
            ..*self
        }
    }
}

/// The steps as they run on a database whose orders.id has the type `orders_id`. On text ids
/// they are the embedded files as they are; on uuid ids the steps with a [`UuidVariant`] run
/// it, and their checksum is that of the SQL they run.
pub fn steps_for(orders_id: IdType) -> &'static [Step] {
    static UUID_STEPS: OnceLock<Vec<Step>> = OnceLock::new();
    match orders_id {
        IdType::Text => STEPS,
        IdType::Uuid => {
            UUID_STEPS.get_or_init(|| STEPS.iter().map(Step::with_uuid_order_ids).collect())
        }
    }
}

/// SHA-256 of the SQL with line endings and trailing whitespace normalised, so a checkout
/// with CRLF line endings or an editor that trims lines does not look like drift.
pub fn checksum(sql: &str) -> String {
    let normalised: Vec<&str> = sql.lines().map(str::trim_end).collect();
    let text = normalised.join("\n");
    hex::encode(Sha256::digest(text.trim_end().as_bytes()))
}

macro_rules! step {
    (after_pass: $pass:expr, $version:expr, $file:literal, $kind:expr, $table:literal, $lock:expr, $note:expr) => {
        Step {
            after_pass: Some($pass),
            ..step!(
                Phase::AfterBackfill,
                $version,
                $file,
                $kind,
                $table,
                $lock,
                $note
            )
        }
    };
    ($version:expr, $file:literal, $kind:expr, $table:literal, $lock:expr, $note:expr, earlier: $earlier:expr) => {
        Step {
            earlier_checksums: $earlier,
            ..step!(Phase::Migrate, $version, $file, $kind, $table, $lock, $note)
        }
    };
    ($version:expr, $file:literal, $kind:expr, $table:literal, $lock:expr, $note:expr) => {
        step!(Phase::Migrate, $version, $file, $kind, $table, $lock, $note)
    };
    ($phase:expr, $version:expr, $file:literal, $kind:expr, $table:literal, $lock:expr, $note:expr) => {
        Step {
            version: $version,
            phase: $phase,
            name: $file,
            sql: include_str!(concat!("../../sql/migrations/", $file, ".sql")),
            kind: $kind,
            table: $table,
            lock: $lock,
            note: $note,
            earlier_checksums: &[],
            after_pass: None,
            preflight: &[],
            remaining_sql: None,
            on_uuid_ids: None,
        }
    };
}

use Lock::*;
use StepKind::*;

pub const STEPS: &[Step] = &[
    step!(
        1,
        "001_users_stripe_customer_id",
        Transactional,
        "users",
        AccessExclusive,
        None
    ),
    step!(
        2,
        "002_orders_payment_columns",
        Transactional,
        "orders",
        AccessExclusive,
        None
    ),
    step!(
        3,
        "003_order_items_snapshot_columns",
        Transactional,
        "order_items",
        AccessExclusive,
        None
    ),
    step!(
        4,
        "004_order_items_snapshot_check",
        Transactional,
        "order_items",
        AccessExclusive,
        None
    ),
    Step {
        preflight: &["order_items_inconsistent_snapshot"],
        ..step!(
            5,
            "005_order_items_snapshot_check_validate",
            Validation,
            "order_items",
            ShareUpdateExclusive,
            None
        )
    },
    step!(
        6,
        "006_order_items_snapshot_immutable",
        Transactional,
        "order_items",
        ShareRowExclusive,
        None
    ),
    Step {
        preflight: &["stocks_duplicate_slot"],
        ..step!(
            7,
            "007_stocks_slot_unique_index",
            ConcurrentIndex {
                index: "stocks_machine_id_slot_number_key"
            },
            "stocks",
            ShareUpdateExclusive,
            Some("fails on duplicate (machine_id, slot_number): the preflight checks them first")
        )
    },
    step!(
        8,
        "008_stocks_slot_unique_constraint",
        Transactional,
        "stocks",
        AccessExclusive,
        None
    ),
    step!(
        9,
        "009_stocks_quantity_check",
        Transactional,
        "stocks",
        AccessExclusive,
        None
    ),
    Step {
        preflight: &["stocks_negative_quantity"],
        ..step!(
            10,
            "010_stocks_quantity_check_validate",
            Validation,
            "stocks",
            ShareUpdateExclusive,
            Some("fails on negative quantities: the preflight checks them first")
        )
    },
    Step {
        preflight: &["orders_duplicate_payment_intent"],
        ..step!(
            11,
            "011_orders_payment_intent_unique_index",
            ConcurrentIndex {
                index: "orders_stripe_payment_intent_id_key"
            },
            "orders",
            ShareUpdateExclusive,
            Some("fails on duplicate PaymentIntent ids: the preflight checks them first")
        )
    },
    step!(
        12,
        "012_orders_payment_intent_unique_constraint",
        Transactional,
        "orders",
        AccessExclusive,
        None
    ),
    step!(
        13,
        "013_orders_user_id_created_at_index",
        ConcurrentIndex {
            index: "orders_user_id_created_at_idx"
        },
        "orders",
        ShareUpdateExclusive,
        None
    ),
    step!(
        14,
        "014_orders_machine_id_index",
        ConcurrentIndex {
            index: "orders_machine_id_idx"
        },
        "orders",
        ShareUpdateExclusive,
        None
    ),
    step!(
        15,
        "015_order_items_product_id_index",
        ConcurrentIndex {
            index: "order_items_product_id_idx"
        },
        "order_items",
        ShareUpdateExclusive,
        None
    ),
    step!(
        16,
        "016_stocks_product_id_index",
        ConcurrentIndex {
            index: "stocks_product_id_idx"
        },
        "stocks",
        ShareUpdateExclusive,
        None
    ),
    step!(
        17,
        "017_orders_status_shadow_column",
        Transactional,
        "orders",
        AccessExclusive,
        Some("from here until step 22 every write to orders also fills status_new (a trigger)")
    ),
    Step {
        remaining_sql: Some("SELECT count(*) FROM orders WHERE status_new IS NULL"),
        ..step!(
            18,
            "018_orders_status_shadow_backfill",
            Batched,
            "orders",
            RowExclusive,
            None,
            // Before uuid ids were supported: max(id) and '' as the first lower bound.
            earlier: &["a1842e0c863d9c75d4295604bf6a8865e0e596820c245e68da095a3cd4d24938"]
        )
    },
    step!(
        19,
        "019_orders_status_not_null_check",
        Transactional,
        "orders",
        AccessExclusive,
        None
    ),
    step!(
        20,
        "020_orders_status_not_null_check_validate",
        Validation,
        "orders",
        ShareUpdateExclusive,
        None
    ),
    step!(
        21,
        "021_orders_status_new_index",
        ConcurrentIndex {
            index: "orders_status_new_idx"
        },
        "orders",
        ShareUpdateExclusive,
        None
    ),
    // Before the swap, so the legacy application's enum comparisons never fail (added after
    // 023 had shipped, hence its number).
    step!(
        24,
        "024_orders_status_legacy_operators",
        Transactional,
        "orders",
        NoTableLock,
        Some(
            "the legacy application's enum filters (status = CAST($1 AS order_status), IN, NOT IN) \
             keep working on the VARCHAR column through these operators, until `paytool migrate cleanup`"
        )
    ),
    step!(
        22,
        "022_orders_status_swap",
        Transactional,
        "orders",
        AccessExclusive,
        Some(
            "orders.status becomes VARCHAR; the enum type order_status stays, with the operators of \
             step 24, until `paytool migrate cleanup`"
        ),
        // Before the NOT NULL constraint of PostgreSQL 18 was renamed.
        earlier: &["166775eda0246bc45d8599823fa5e5f4f0da430d3673d3d8dbf87197d6d69de1"]
    ),
    Step {
        // The one column paytool creates that references a legacy id.
        on_uuid_ids: Some(UuidVariant {
            text: "order_id TEXT NOT NULL,",
            uuid: "order_id UUID NOT NULL,",
            note: "creates payments, payment_events and refunds (empty); orders.id is uuid (@db.Uuid), \
                   so payments.order_id is created as uuid, the type of the ids it references",
        }),
        ..step!(
            23,
            "023_payment_tables",
            Transactional,
            "orders",
            ShareRowExclusive,
            Some("creates payments, payment_events and refunds (empty)")
        )
    },
    step!(
        29,
        "029_order_totals_follow_the_application",
        Transactional,
        "order_items",
        ShareRowExclusive,
        Some(
            "triggers on order_items and orders (each locked a moment): an item written without a \
             snapshot takes it at once, an unpaid order's item quantity may change, totals and pending \
             payments follow every change of items, new and changed orders are queued for the \
             backfill's catch-up"
        )
    ),
    step!(
        after_pass: BackfillStep::Items,
        27,
        "027_order_items_pending_snapshot_index",
        ConcurrentIndex {
            index: "order_items_pending_snapshot_idx"
        },
        "order_items",
        ShareUpdateExclusive,
        Some(
            "partial: only items without a snapshot, so later backfills read what is pending; \
             built by the first complete backfill, because before it its predicate would make \
             every backfill update of order_items ineligible for HOT"
        )
    ),
    step!(
        after_pass: BackfillStep::Items,
        30,
        "030_order_items_resolvable_snapshot_index",
        ConcurrentIndex {
            index: "order_items_resolvable_snapshot_idx"
        },
        "order_items",
        ShareUpdateExclusive,
        Some(
            "partial: only the items without a snapshot whose product exists, which the items \
             step walks; 027's index also holds the items whose product was deleted, which no run \
             can snapshot; built by the first complete backfill, as 027"
        )
    ),
    step!(
        after_pass: BackfillStep::Orders,
        28,
        "028_orders_pending_total_index",
        ConcurrentIndex {
            index: "orders_pending_total_idx"
        },
        "orders",
        ShareUpdateExclusive,
        Some("partial: only orders not totalled yet; built by the first complete backfill, as 027")
    ),
    Step {
        preflight: &["order_status_still_used", "legacy_clients_connected"],
        ..step!(
            Phase::Cleanup,
            25,
            "025_drop_legacy_order_status",
            Transactional,
            "orders",
            NoTableLock,
            Some(
                "drops the legacy enum type order_status and the operators of step 24: the legacy \
                 application's enum filters fail from here on, so paytool first checks that no session \
                 still uses the type"
            )
        )
    },
    step!(
        Phase::Cleanup,
        26,
        "026_drop_redundant_orders_user_id_index",
        ConcurrentDrop {
            index: "orders_user_id_idx"
        },
        "orders",
        ShareUpdateExclusive,
        Some(
            "orders_user_id_idx is a prefix of orders_user_id_created_at_idx (step 13), which serves \
             its queries; remove @@index([userId]) from schema.prisma with it"
        )
    ),
];

/// The steps of one phase, in the order they run.
pub fn steps_of(phase: Phase) -> impl Iterator<Item = &'static Step> {
    STEPS.iter().filter(move |s| s.phase == phase)
}

/// The rollback of SPEC §3 back to §2, run only with the explicit destruction flag.
pub const DOWN_SQL: &str = include_str!("../../sql/down/001_payment_system_down.sql");

/// paytool's own history table, created only after the preflight passed.
pub const HISTORY_SQL: &str = include_str!("../../sql/internal/history.sql");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_unique_contiguous_and_names_match_files() {
        let mut versions: Vec<i32> = STEPS.iter().map(|s| s.version).collect();
        versions.sort_unstable();
        assert_eq!(versions, (1..=STEPS.len() as i32).collect::<Vec<_>>());
        for step in STEPS {
            assert!(
                step.name.starts_with(&format!("{:03}_", step.version)),
                "{}",
                step.name
            );
        }
    }

    #[test]
    fn legacy_operators_run_before_the_swap_and_cleanup_comes_last() {
        let position = |v: i32| STEPS.iter().position(|s| s.version == v).unwrap();
        assert!(position(24) < position(22));
        let first_cleanup = STEPS
            .iter()
            .position(|s| s.phase == Phase::Cleanup)
            .unwrap();
        assert!(
            STEPS[first_cleanup..]
                .iter()
                .all(|s| s.phase == Phase::Cleanup)
        );
    }

    #[test]
    fn every_after_backfill_step_names_its_pass_and_no_other_step_does() {
        for step in STEPS {
            assert_eq!(
                step.after_pass.is_some(),
                step.phase == Phase::AfterBackfill,
                "{}",
                step.name
            );
            assert_eq!(
                step.remaining_sql.is_some(),
                step.kind == StepKind::Batched,
                "{}",
                step.name
            );
        }
    }

    /// docs/migrate.md's table of steps: the versions of its rows, ranges ("009–010") expanded,
    /// in the order of the table.
    fn documented_versions() -> Vec<i32> {
        let doc = include_str!("../../docs/migrate.md");
        let table = doc
            .split("## The steps")
            .nth(1)
            .expect("docs/migrate.md has a section The steps");
        let mut versions = Vec::new();
        for line in table.lines().skip_while(|l| !l.starts_with("| 0")) {
            let Some(cell) = line.strip_prefix("| ") else {
                break;
            };
            let first = cell.split(' ').next().unwrap_or("");
            let bounds: Vec<i32> = first.split('–').filter_map(|n| n.parse().ok()).collect();
            match bounds[..] {
                [one] => versions.push(one),
                [from, to] => versions.extend(from..=to),
                _ => panic!("a step row without a number: {line}"),
            }
        }
        versions
    }

    #[test]
    fn the_docs_list_every_step_in_the_order_they_run() {
        let run_order: Vec<i32> = STEPS.iter().map(|s| s.version).collect();
        assert_eq!(
            documented_versions(),
            run_order,
            "docs/migrate.md's table of steps and STEPS disagree"
        );
    }

    /// The names of what a step's SQL creates: tables, columns, indexes, constraints, triggers,
    /// functions, operators' functions (lower case, without schema).
    fn created_names(sql: &str) -> Vec<String> {
        let code: String = sql
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        let words: Vec<String> = code
            .split(|c: char| c.is_whitespace() || c == '(' || c == ',' || c == ';')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let skip = [
            "unique",
            "concurrently",
            "if",
            "not",
            "exists",
            "or",
            "replace",
            "constraint",
        ];
        let mut names = Vec::new();
        for (i, word) in words.iter().enumerate() {
            let creates = matches!(
                (word.as_str(), words.get(i + 1).map(String::as_str)),
                (
                    "create",
                    Some("index" | "table" | "trigger" | "function" | "unique")
                ) | ("create", Some("or"))
                    | ("add", Some("column" | "constraint"))
            );
            if !creates {
                continue;
            }
            let name = words[i + 1..]
                .iter()
                .skip(1)
                .find(|w| {
                    !skip.contains(&w.as_str())
                        && *w != "index"
                        && *w != "function"
                        && *w != "trigger"
                })
                .cloned();
            if let Some(name) = name {
                names.push(name.rsplit('.').next().unwrap_or(&name).to_owned());
            }
        }
        names
    }

    /// What `steps` create that `down` neither names nor drops with its table.
    fn forgotten_by_rollback(steps: &[Step], down: &str) -> Vec<String> {
        let down = down.to_lowercase();
        // Tables that go whole, with their indexes and constraints (named after them, as
        // PostgreSQL and these steps name them): dropped ones, and paytool's (its schema is
        // dropped with CASCADE).
        let mut gone_whole: Vec<String> = down
            .split("drop table if exists ")
            .skip(1)
            .filter_map(|rest| rest.split(';').next())
            .map(str::to_owned)
            .collect();
        for step in steps {
            let sql = step.sql.to_lowercase();
            gone_whole.extend(
                sql.split("paytool.")
                    .skip(1)
                    .filter_map(|rest| {
                        rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                            .next()
                    })
                    .map(str::to_owned),
            );
        }
        let mut forgotten = Vec::new();
        for step in steps {
            for name in created_names(step.sql) {
                let with_its_table = gone_whole.iter().any(|t| name.starts_with(t.as_str()));
                if !down.contains(&name) && !with_its_table {
                    forgotten.push(format!("{}: {name}", step.name));
                }
            }
        }
        forgotten
    }

    /// The rollback (`sql/down/`) is one transaction for the whole migration, written to stand
    /// any partly applied state; this keeps each step's part of it from being forgotten: what
    /// a step creates, the rollback names (or drops with its table or paytool's schema).
    #[test]
    fn the_rollback_removes_what_every_step_creates() {
        assert_eq!(
            forgotten_by_rollback(STEPS, DOWN_SQL),
            Vec::<String>::new(),
            "sql/down/ does not remove these"
        );
        let new_index = Step {
            name: "099_orders_total_index",
            sql: "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_total_idx ON orders (amount_total_cents);",
            ..STEPS[0]
        };
        assert_eq!(
            forgotten_by_rollback(&[new_index], DOWN_SQL),
            ["099_orders_total_index: orders_total_idx"]
        );
    }

    #[test]
    fn created_names_are_read_from_the_sql() {
        let names = created_names(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS a_idx ON t (x);
             ALTER TABLE t ADD COLUMN IF NOT EXISTS b INT, ADD CONSTRAINT c CHECK (b > 0) NOT VALID;
             CREATE OR REPLACE FUNCTION paytool.f() RETURNS trigger AS $$ $$;
             CREATE TRIGGER g AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();
             CREATE TABLE IF NOT EXISTS h (id int); -- CREATE TABLE commented",
        );
        assert_eq!(names, ["a_idx", "b", "c", "f", "g", "h"]);
    }

    #[test]
    fn checksum_ignores_line_endings_and_trailing_whitespace() {
        let lf = "ALTER TABLE a ADD COLUMN b INT;\nSELECT 1;\n";
        let crlf = "ALTER TABLE a ADD COLUMN b INT;  \r\nSELECT 1;\r\n\r\n";
        assert_eq!(checksum(lf), checksum(crlf));
        assert_ne!(
            checksum(lf),
            checksum("ALTER TABLE a ADD COLUMN c INT;\nSELECT 1;\n")
        );
    }

    #[test]
    fn on_uuid_ids_only_payments_order_id_changes_type() {
        let uuid = steps_for(IdType::Uuid);
        let changed: Vec<&str> = STEPS
            .iter()
            .zip(uuid)
            .filter(|(text, uuid)| text.sql != uuid.sql)
            .map(|(text, _)| text.name)
            .collect();
        assert_eq!(changed, ["023_payment_tables"]);
        let on_text = STEPS
            .iter()
            .find(|s| s.name == "023_payment_tables")
            .unwrap();
        let on_uuid = uuid.iter().find(|s| s.name == on_text.name).unwrap();
        assert_eq!(on_uuid.sql.matches("UUID NOT NULL").count(), 1);
        assert!(on_uuid.sql.contains("order_id UUID NOT NULL,"));
        assert!(on_text.sql.contains("order_id TEXT NOT NULL,"));
        assert_ne!(on_uuid.checksum(), on_text.checksum());
    }

    #[test]
    fn concurrent_index_steps_are_single_statements() {
        for step in STEPS.iter().filter(|s| {
            matches!(
                s.kind,
                StepKind::ConcurrentIndex { .. } | StepKind::ConcurrentDrop { .. }
            )
        }) {
            let statements = step.sql.matches(';').count();
            assert_eq!(
                statements, 1,
                "{} must hold exactly one statement",
                step.name
            );
            assert!(
                step.sql.contains("CONCURRENTLY IF NOT EXISTS")
                    || step.sql.contains("DROP INDEX CONCURRENTLY IF EXISTS"),
                "{}",
                step.name
            );
        }
    }
}
