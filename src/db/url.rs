//! A database URL that never shows its password.

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

/// Query parameters that Prisma's DATABASE_URL carries and PostgreSQL does not know. `schema`
/// is honoured (it becomes the search_path); the others only concern Prisma's own pool.
const PRISMA_PARAMETERS: [&str; 7] = [
    "schema",
    "connection_limit",
    "pool_timeout",
    "pgbouncer",
    "statement_cache_size",
    "socket_timeout",
    "sslaccept",
];

/// A validated PostgreSQL URL. `Display` and `Debug` redact the password.
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: String,
    /// The URL without Prisma's parameters, as PostgreSQL clients understand it.
    postgres: String,
    redacted: String,
    schema: Option<String>,
    ignored: Vec<String>,
}

impl DatabaseUrl {
    /// Connection options; with Prisma's `?schema=NAME`, every statement resolves names in that
    /// schema first (search_path), so paytool's SQL needs no schema of its own.
    pub fn connect_options(&self) -> Result<PgConnectOptions, String> {
        let options = PgConnectOptions::from_str(&self.postgres)
            .map_err(|e| strip_secret(&e.to_string(), &self.raw))?;
        Ok(match &self.schema {
            Some(schema) => options.options([("search_path", quote_identifier(schema))]),
            None => options,
        })
    }

    /// The schema of Prisma's `?schema=NAME`, if the URL has one.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Prisma's parameters that paytool leaves aside (`schema` is not one: it is honoured).
    pub fn ignored_parameters(&self) -> &[String] {
        &self.ignored
    }

    /// The URL with the password replaced, for messages and logs.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The URL itself, with its password: only for handing to a child process or connection.
    pub fn expose(&self) -> &str {
        &self.raw
    }
}

/// The `--database-url` / `DATABASE_URL` value as given. It is parsed later, by
/// [`DatabaseUrl::from_str`], because clap would echo an invalid value, password included.
#[derive(Clone)]
pub struct DatabaseUrlArg(String);

impl FromStr for DatabaseUrlArg {
    type Err = std::convert::Infallible;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrlArg(raw.to_owned()))
    }
}

impl DatabaseUrlArg {
    pub fn parse(&self) -> Result<DatabaseUrl, super::DbError> {
        self.0.parse().map_err(super::DbError::InvalidUrl)
    }
}

impl fmt::Debug for DatabaseUrlArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parse() {
            Ok(url) => write!(f, "{url:?}"),
            Err(_) => f.write_str("DatabaseUrlArg(<invalid>)"),
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let parsed = url::Url::parse(raw).map_err(|e| {
            format!("not a valid PostgreSQL URL ({e}); expected postgres://user:password@host:port/database")
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "unsupported URL scheme {:?}; expected postgres://user:password@host:port/database",
                parsed.scheme()
            ));
        }
        let redacted = redact(parsed.clone());
        let (postgres, schema, ignored) = split_prisma_parameters(parsed);
        if schema.as_deref() == Some("") {
            return Err(
                "?schema= is empty; name the schema of the tables, e.g. ?schema=shop".to_owned(),
            );
        }
        let url = DatabaseUrl {
            raw: raw.to_owned(),
            postgres,
            redacted,
            schema,
            ignored,
        };
        url.connect_options()?;
        Ok(url)
    }
}

/// The URL without Prisma's parameters, the `schema` value, and the names of the others.
fn split_prisma_parameters(mut parsed: url::Url) -> (String, Option<String>, Vec<String>) {
    let mut schema = None;
    let mut ignored = Vec::new();
    let mut kept: Vec<(String, String)> = Vec::new();
    for (key, value) in parsed.query_pairs() {
        if key == "schema" {
            schema = Some(value.into_owned());
        } else if PRISMA_PARAMETERS.contains(&key.as_ref()) {
            ignored.push(key.into_owned());
        } else {
            kept.push((key.into_owned(), value.into_owned()));
        }
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    (parsed.to_string(), schema, ignored)
}

/// A schema name as search_path takes it: always quoted, so case and any character survive.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn redact(mut parsed: url::Url) -> String {
    if parsed.password().is_some() {
        // set_password only fails for URLs that cannot have credentials; ours can.
        let _ = parsed.set_password(Some("***"));
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let secret =
                k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword");
            (
                k.into_owned(),
                if secret {
                    "***".to_owned()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect();
    if !pairs.is_empty() {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// Belt and braces: a library error message must not echo the URL with its password.
fn strip_secret(message: &str, raw: &str) -> String {
    let mut out = message.replace(raw, "<database url>");
    if let Ok(parsed) = url::Url::parse(raw)
        && let Some(password) = parsed.password()
        && !password.is_empty()
    {
        out = out.replace(password, "***");
    }
    out
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_redacted_everywhere() {
        let url: DatabaseUrl = "postgres://app:s3cret@db.example:5432/shop?sslmode=require"
            .parse()
            .unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db.example:5432/shop?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
    }

    #[test]
    fn password_in_query_is_redacted() {
        let url: DatabaseUrl = "postgres://db.example/shop?user=app&password=s3cret"
            .parse()
            .unwrap();
        assert!(!url.to_string().contains("s3cret"));
    }

    #[test]
    fn prisma_parameters_are_taken_apart() {
        let url: DatabaseUrl =
            "postgresql://app:pw@db:5432/shop?schema=Sales&connection_limit=5&pgbouncer=true&sslmode=disable"
                .parse()
                .unwrap();
        assert_eq!(url.schema(), Some("Sales"));
        assert_eq!(url.ignored_parameters(), ["connection_limit", "pgbouncer"]);
        assert_eq!(
            url.postgres,
            "postgresql://app:pw@db:5432/shop?sslmode=disable"
        );
        assert_eq!(quote_identifier("Sa\"les"), "\"Sa\"\"les\"");
        assert!(
            "postgres://db/shop?schema="
                .parse::<DatabaseUrl>()
                .unwrap_err()
                .contains("schema")
        );
    }

    #[test]
    fn malformed_urls_are_refused_without_echoing_them() {
        let err = "postgres://app:s3cret@db.example:notaport/shop"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(
            "mysql://x@y/z"
                .parse::<DatabaseUrl>()
                .unwrap_err()
                .contains("scheme")
        );
        assert!("just some words".parse::<DatabaseUrl>().is_err());
    }
}
