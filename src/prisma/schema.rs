//! `paytool prisma schema`: the upgraded `schema.prisma` models, with each field's native type
//! (`@db.*`) read from the database, so ids stored as `uuid` print as `@db.Uuid`.

use std::collections::BTreeMap;

use serde::Serialize;

const TEMPLATE: &str = include_str!("upgraded.prisma");
const COLUMNS_SQL: &str = include_str!("../../sql/prisma/columns.sql");
/// Which of the indexes the template names optionally (`{index:NAME}`) exist.
const EXISTING_INDEXES_SQL: &str =
    "SELECT name FROM unnest($1::TEXT[]) AS name WHERE to_regclass(quote_ident(name)) IS NOT NULL";

/// The tables paytool creates; the models describe them and the legacy ones.
const PAYMENT_TABLES: [&str; 3] = ["payments", "payment_events", "refunds"];

#[derive(Debug, Clone, Serialize)]
pub struct PrismaSchemaReport {
    /// The models, ready to replace those of the application's schema.prisma.
    pub schema: String,
    /// Columns of the application's own that paytool does not model (`table.column type`):
    /// keep their fields from the application's schema.
    pub unmodelled_columns: Vec<String>,
}

#[derive(Debug, sqlx::FromRow)]
struct Column {
    table_name: String,
    column_name: String,
    column_type: String,
}

/// paytool's partial indexes (the backfill's catch-up reads them) need Prisma's
/// `partialIndexes` preview feature, which Prisma 7's `db pull` turns on: a schema with it and
/// without them drops them on the next `prisma migrate dev`; a schema without it cannot hold
/// them. `partial_indexes`: print them as attributes (the schema has the feature), else as
/// comments that say so.
pub async fn schema(
    url: &crate::db::DatabaseUrl,
    partial_indexes: bool,
) -> anyhow::Result<PrismaSchemaReport> {
    let conn = &mut crate::db::connect(url).await?;
    crate::migrate::require_migrated(conn).await?;
    let names: Vec<String> = crate::db::LEGACY_TABLES
        .iter()
        .chain(PAYMENT_TABLES.iter())
        .map(|t| t.to_string())
        .collect();
    let columns: Vec<Column> = sqlx::query_as(COLUMNS_SQL)
        .bind(names)
        .fetch_all(&mut *conn)
        .await?;
    let optional: Vec<String> = TEMPLATE
        .lines()
        .filter_map(|line| optional_index(line).or_else(|| partial_index(line)))
        .map(|(_, index)| index.to_owned())
        .collect();
    let indexes: Vec<String> = sqlx::query_scalar(EXISTING_INDEXES_SQL)
        .bind(optional)
        .fetch_all(conn)
        .await?;
    Ok(render(&columns, &indexes, partial_indexes))
}

/// `(line, index)` for a template line ending in `{index:NAME}`: kept only while NAME exists
/// (`paytool migrate cleanup` drops a redundant one).
fn optional_index(line: &str) -> Option<(&str, &str)> {
    let open = line.rfind("{index:")?;
    let index = line[open + "{index:".len()..].strip_suffix('}')?;
    Some((&line[..open], index))
}

/// `(line, index)` for a template line ending in `{partial:NAME}`: a partial index, kept while
/// NAME exists (the backfill builds it).
fn partial_index(line: &str) -> Option<(&str, &str)> {
    let open = line.rfind("{partial:")?;
    let index = line[open + "{partial:".len()..].strip_suffix('}')?;
    Some((&line[..open], index))
}

const PARTIAL_INDEX_NOTE: &str = "  // paytool's partial index (its backfill's catch-up reads it). With previewFeatures = [\"partialIndexes\"]\n  // (Prisma 7's db pull turns it on) uncomment it, or `prisma migrate dev` drops it\n  // (`paytool prisma schema --partial-indexes` prints it so):\n";

/// Fills the template's `{table.column}` placeholders with native type attributes and its
/// `{extra:table}` lines with the columns the template does not know.
fn render(columns: &[Column], indexes: &[String], partial_indexes: bool) -> PrismaSchemaReport {
    let types: BTreeMap<String, &str> = columns
        .iter()
        .map(|c| {
            (
                format!("{}.{}", c.table_name, c.column_name),
                c.column_type.as_str(),
            )
        })
        .collect();
    let mut out = String::with_capacity(TEMPLATE.len());
    let mut modelled: Vec<String> = Vec::new();
    let mut unmodelled = Vec::new();
    for line in TEMPLATE.lines() {
        if let Some(table) = line
            .strip_prefix("{extra:")
            .and_then(|l| l.strip_suffix('}'))
        {
            for c in columns.iter().filter(|c| {
                c.table_name == table
                    && !modelled.contains(&format!("{}.{}", c.table_name, c.column_name))
            }) {
                out.push_str(&format!(
                    "  // column {} ({}) belongs to the application: keep its field from your schema\n",
                    c.column_name, c.column_type
                ));
                unmodelled.push(format!(
                    "{}.{} {}",
                    c.table_name, c.column_name, c.column_type
                ));
            }
            out.push('\n');
            continue;
        }
        if let Some((text, index)) = partial_index(line) {
            if indexes.iter().any(|i| i == index) {
                if partial_indexes {
                    out.push_str(text);
                } else {
                    out.push_str(PARTIAL_INDEX_NOTE);
                    out.push_str("  // ");
                    out.push_str(text.trim_start());
                }
                out.push('\n');
            }
            continue;
        }
        if let Some((text, index)) = optional_index(line) {
            if indexes.iter().any(|i| i == index) {
                out.push_str(text);
                out.push('\n');
            }
            continue;
        }
        match placeholder(line) {
            Some((field, key)) => {
                let native = types.get(key).map(|t| native_type(t)).unwrap_or_default();
                out.push_str(field);
                if !native.is_empty() {
                    out.push(' ');
                    out.push_str(&native);
                }
                modelled.push(key.to_owned());
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    PrismaSchemaReport {
        schema: out,
        unmodelled_columns: unmodelled,
    }
}

/// `(field text, "table.column")` for a template line ending in `{table.column}`.
fn placeholder(line: &str) -> Option<(&str, &str)> {
    let open = line.rfind('{')?;
    let key = line[open + 1..].strip_suffix('}')?;
    key.contains('.').then(|| (line[..open].trim_end(), key))
}

/// Prisma's native type attribute for a PostgreSQL type, empty where Prisma's default for the
/// field's scalar type is already that type (text, integer, timestamp(3), jsonb, boolean).
fn native_type(pg_type: &str) -> String {
    match pg_type {
        "uuid" => "@db.Uuid".to_owned(),
        "character varying" => "@db.VarChar".to_owned(),
        "timestamp(3) without time zone" | "text" | "integer" | "jsonb" | "boolean" | "bigint" => {
            String::new()
        }
        "timestamp(3) with time zone" => "@db.Timestamptz(3)".to_owned(),
        other => {
            if let Some(n) = other
                .strip_prefix("character varying(")
                .and_then(|r| r.strip_suffix(')'))
            {
                format!("@db.VarChar({n})")
            } else if let Some(ps) = other
                .strip_prefix("numeric(")
                .and_then(|r| r.strip_suffix(')'))
            {
                format!("@db.Decimal({})", ps.replace(',', ", "))
            } else if let Some(n) = other
                .strip_prefix("timestamp(")
                .and_then(|r| r.strip_suffix(") without time zone"))
            {
                format!("@db.Timestamp({n})")
            } else {
                String::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(table: &str, column: &str, pg_type: &str) -> Column {
        Column {
            table_name: table.to_owned(),
            column_name: column.to_owned(),
            column_type: pg_type.to_owned(),
        }
    }

    #[test]
    fn native_types_follow_the_database() {
        assert_eq!(native_type("uuid"), "@db.Uuid");
        assert_eq!(native_type("character varying(3)"), "@db.VarChar(3)");
        assert_eq!(native_type("numeric(10,2)"), "@db.Decimal(10, 2)");
        assert_eq!(native_type("timestamp(3) without time zone"), "");
        assert_eq!(
            native_type("timestamp(6) without time zone"),
            "@db.Timestamp(6)"
        );
        assert_eq!(native_type("text"), "");
    }

    #[test]
    fn uuid_ids_and_extra_columns_show_in_the_models() {
        let columns = vec![
            column("orders", "id", "uuid"),
            column("orders", "status", "character varying"),
            column("orders", "coupon_code", "text"),
        ];
        let report = render(&columns, &[], false);
        assert!(!report.schema.contains("@@index([userId])\n"));
        let with_index = render(&columns, &["orders_user_id_idx".to_owned()], false);
        assert!(with_index.schema.contains("  @@index([userId])\n"));
        assert!(
            report
                .schema
                .contains("String      @id @default(uuid()) @db.Uuid\n"),
            "{}",
            report.schema
        );
        assert!(
            report
                .schema
                .contains("@default(\"PENDING\") @db.VarChar\n")
        );
        assert!(report.schema.contains("// column coupon_code (text)"));
        assert_eq!(report.unmodelled_columns, vec!["orders.coupon_code text"]);
        assert!(
            !report.schema.contains("{extra:") && !report.schema.contains("{users."),
            "placeholders left"
        );
    }

    #[test]
    fn partial_indexes_are_attributes_only_when_asked() {
        let built = [
            "orders_pending_total_idx".to_owned(),
            "order_items_pending_snapshot_idx".to_owned(),
        ];
        let live = render(&[], &built, true).schema;
        assert!(live.contains(
            "\n  @@index([id], map: \"orders_pending_total_idx\", where: raw(\"amount_total_cents = 0\"))\n"
        ));
        let commented = render(&[], &built, false).schema;
        assert!(commented.contains(
            "  // @@index([id], map: \"order_items_pending_snapshot_idx\", where: raw(\"label IS NULL\"))\n"
        ));
        assert!(commented.contains("partialIndexes"));
        assert!(!render(&[], &[], true).schema.contains("pending"));
    }
}
