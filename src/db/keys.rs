//! Row keys of the legacy tables. Their ids are `text` in Prisma's default schema and `uuid`
//! with `@db.Uuid` (SPEC §2). paytool carries a key as text (checkpoints, reports, samples) and
//! binds it with the column's own type, so that `id > $1` is a primary-key range scan on either.

use std::fmt;

use serde::Serialize;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo};
use sqlx::{Encode, PgConnection, Postgres, Type};
use thiserror::Error;
use uuid::Uuid;

use crate::exit;

/// The SQL type of an id column paytool walks or references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdType {
    /// `text` or `varchar`: Prisma's `String @id`.
    Text,
    /// `uuid`: Prisma's `String @id @db.Uuid`.
    Uuid,
}

#[derive(Debug, Error)]
pub enum KeyError {
    #[error(
        "{table}.{column} is of type {found}: paytool supports text, varchar and uuid ids (Prisma's String @id, with or without @db.Uuid)"
    )]
    UnsupportedIdType {
        table: &'static str,
        column: &'static str,
        found: String,
    },
    #[error("{value:?} is not a valid {ty} key")]
    Invalid { value: String, ty: IdType },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl KeyError {
    pub fn exit_code(&self) -> u8 {
        match self {
            KeyError::UnsupportedIdType { .. } | KeyError::Invalid { .. } => exit::USAGE,
            KeyError::Database(_) => exit::RUNTIME_FAILURE,
        }
    }
}

const COLUMN_TYPE_SQL: &str = "
SELECT format_type(atttypid, NULL)
FROM pg_attribute
WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped";

impl IdType {
    /// The type of `table.column` in the current schema; a missing column counts as text (the
    /// caller's own checks report missing tables more clearly).
    pub async fn of(
        conn: &mut PgConnection,
        table: &'static str,
        column: &'static str,
    ) -> Result<IdType, KeyError> {
        let found: Option<String> = sqlx::query_scalar(COLUMN_TYPE_SQL)
            .bind(table)
            .bind(column)
            .fetch_optional(conn)
            .await?;
        match found.as_deref() {
            None | Some("text") | Some("character varying") => Ok(IdType::Text),
            Some("uuid") => Ok(IdType::Uuid),
            Some(other) => Err(KeyError::UnsupportedIdType {
                table,
                column,
                found: other.to_owned(),
            }),
        }
    }

    /// The type's name in SQL.
    pub fn sql(self) -> &'static str {
        match self {
            IdType::Text => "text",
            IdType::Uuid => "uuid",
        }
    }
}

impl fmt::Display for IdType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql())
    }
}

/// A key bound with its column's type; no value means "before the first row" (SQL NULL, which
/// the batch statements read as no lower bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Text(Option<String>),
    Uuid(Option<Uuid>),
}

impl Key {
    pub fn start(ty: IdType) -> Key {
        match ty {
            IdType::Text => Key::Text(None),
            IdType::Uuid => Key::Uuid(None),
        }
    }

    /// A key from its text form; the empty text is the start.
    pub fn parse(ty: IdType, text: &str) -> Result<Key, KeyError> {
        if text.is_empty() {
            return Ok(Key::start(ty));
        }
        match ty {
            IdType::Text => Ok(Key::Text(Some(text.to_owned()))),
            IdType::Uuid => Uuid::parse_str(text)
                .map(|u| Key::Uuid(Some(u)))
                .map_err(|_| KeyError::Invalid {
                    value: text.to_owned(),
                    ty,
                }),
        }
    }

    /// The text form, empty for the start (as checkpoints store it).
    pub fn text(&self) -> String {
        match self {
            Key::Text(v) => v.clone().unwrap_or_default(),
            Key::Uuid(v) => v.map(|u| u.hyphenated().to_string()).unwrap_or_default(),
        }
    }

    pub fn key_type(&self) -> IdType {
        match self {
            Key::Text(_) => IdType::Text,
            Key::Uuid(_) => IdType::Uuid,
        }
    }

    pub fn is_start(&self) -> bool {
        matches!(self, Key::Text(None) | Key::Uuid(None))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl Type<Postgres> for Key {
    fn type_info() -> PgTypeInfo {
        <String as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as Type<Postgres>>::compatible(ty) || <Uuid as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Key {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        match self {
            Key::Text(v) => <Option<String> as Encode<Postgres>>::encode_by_ref(v, buf),
            Key::Uuid(v) => <Option<Uuid> as Encode<Postgres>>::encode_by_ref(v, buf),
        }
    }

    // The declared parameter type: what makes `id > $1` compare uuid with uuid.
    fn produces(&self) -> Option<PgTypeInfo> {
        Some(match self {
            Key::Text(_) => <String as Type<Postgres>>::type_info(),
            Key::Uuid(_) => <Uuid as Type<Postgres>>::type_info(),
        })
    }
}

/// A list of keys bound as one array of the column's type (`id = ANY($1)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    Text(Vec<String>),
    Uuid(Vec<Uuid>),
}

impl Keys {
    /// The values that can be keys of type `ty`: text that is no uuid cannot name a uuid row,
    /// so it is left out rather than failing the statement.
    pub fn valid(ty: IdType, values: &[String]) -> Keys {
        match ty {
            IdType::Text => Keys::Text(values.to_vec()),
            IdType::Uuid => Keys::Uuid(
                values
                    .iter()
                    .filter_map(|v| Uuid::parse_str(v).ok())
                    .collect(),
            ),
        }
    }
}

impl Type<Postgres> for Keys {
    fn type_info() -> PgTypeInfo {
        <Vec<String> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Vec<String> as Type<Postgres>>::compatible(ty)
            || <Vec<Uuid> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Keys {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        match self {
            Keys::Text(v) => <Vec<String> as Encode<Postgres>>::encode_by_ref(v, buf),
            Keys::Uuid(v) => <Vec<Uuid> as Encode<Postgres>>::encode_by_ref(v, buf),
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(match self {
            Keys::Text(_) => <Vec<String> as Type<Postgres>>::type_info(),
            Keys::Uuid(_) => <Vec<Uuid> as Type<Postgres>>::type_info(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_text_form() {
        let id = "3f2b6c1e-8a4d-4c1b-9f7e-2d5a6b7c8d9e";
        assert_eq!(Key::parse(IdType::Uuid, id).unwrap().text(), id);
        assert_eq!(
            Key::parse(IdType::Text, "o-00000001").unwrap().text(),
            "o-00000001"
        );
        assert!(Key::parse(IdType::Uuid, "").unwrap().is_start());
        assert_eq!(Key::start(IdType::Uuid).text(), "");
    }

    #[test]
    fn only_uuids_can_name_uuid_rows() {
        let values = [
            "o-1".to_owned(),
            "3F2B6C1E-8A4D-4C1B-9F7E-2D5A6B7C8D9E".to_owned(),
        ];
        let Keys::Uuid(uuids) = Keys::valid(IdType::Uuid, &values) else {
            panic!("uuid keys expected");
        };
        assert_eq!(uuids.len(), 1);
        assert_eq!(
            Keys::valid(IdType::Text, &values),
            Keys::Text(values.to_vec())
        );
    }

    #[test]
    fn a_text_key_is_not_a_uuid() {
        let err = Key::parse(IdType::Uuid, "o-00000001").unwrap_err();
        assert_eq!(err.to_string(), "\"o-00000001\" is not a valid uuid key");
    }
}
