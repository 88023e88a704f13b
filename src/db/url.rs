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
    pgbouncer_flag: bool,
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

    /// Prisma's `pgbouncer=true`: the URL goes through a transaction pooler, by its owner's word.
    pub fn says_transaction_pooler(&self) -> bool {
        self.pgbouncer_flag
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
        if credentials_are_ambiguous(raw) {
            // Said before any parsing: a parser would guess, take part of the password for a
            // host and look it up in DNS.
            return Err(
                "the user name or password is ambiguous: percent-encode @, / and : in them (@ as %40, / as %2F, : as %3A)"
                    .to_owned(),
            );
        }
        let socket_form = with_placeholder_host(raw);
        let raw_for_parsing = socket_form.as_deref().unwrap_or(raw);
        let parsed = url::Url::parse(raw_for_parsing).map_err(|e| {
            format!("not a valid PostgreSQL URL ({e}); expected postgres://user:password@host:port/database")
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "unsupported URL scheme {:?}; expected postgres://user:password@host:port/database",
                parsed.scheme()
            ));
        }
        let redacted = redact(parsed.clone());
        let pgbouncer_flag = parsed
            .query_pairs()
            .any(|(key, value)| key == "pgbouncer" && value.eq_ignore_ascii_case("true"));
        let (postgres, schema, ignored) = split_prisma_parameters(parsed);
        if schema.as_deref() == Some("") {
            return Err(
                "?schema= is empty; name the schema of the tables, e.g. ?schema=shop".to_owned(),
            );
        }
        let url = DatabaseUrl {
            raw: raw_for_parsing.to_owned(),
            postgres,
            redacted,
            schema,
            ignored,
            pgbouncer_flag,
        };
        url.connect_options()?;
        Ok(url)
    }
}

/// The part between `scheme://` and the query.
fn before_query(raw: &str) -> Option<&str> {
    let rest = raw.split_once("://")?.1;
    Some(rest.split('?').next().unwrap_or(rest))
}

/// An `@` more than once, or after a `/`, before the query: a raw `@`, `/` or `:` in a
/// password, which no parser reads the same way as the person who wrote it.
fn credentials_are_ambiguous(raw: &str) -> bool {
    let Some(rest) = before_query(raw) else {
        return false;
    };
    let Some(last_at) = rest.rfind('@') else {
        return false;
    };
    rest.matches('@').count() > 1 || rest[..last_at].contains('/')
}

/// `postgres://user@/db?host=/run/postgresql`: libpq's form for a Unix socket directory, with
/// no host before the path. URL parsers refuse an empty host, so `localhost` stands in for
/// it; `?host=` decides where the connection goes.
fn with_placeholder_host(raw: &str) -> Option<String> {
    let (scheme, rest) = raw.split_once("://")?;
    let query_has_host = rest
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("host=")));
    if !query_has_host {
        return None;
    }
    let (userinfo, after) = match rest.split_once('@') {
        Some((userinfo, after)) => (format!("{userinfo}@"), after),
        None => (String::new(), rest),
    };
    after
        .starts_with('/')
        .then(|| format!("{scheme}://{userinfo}localhost{after}"))
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
        assert!(url.says_transaction_pooler());
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
    fn a_raw_at_sign_slash_or_colon_in_the_password_is_refused_without_echoing_it() {
        for raw in [
            "postgres://pwuser:Pw0rd@XY/Z:1@host/db",
            "postgres://pwuser:p@ss@host/db",
            "postgres://pwuser:12/ss@host/db",
        ] {
            let err = raw.parse::<DatabaseUrl>().unwrap_err();
            assert!(err.contains("percent-encode"), "{raw}: {err}");
            assert!(!err.contains("Pw0rd") && !err.contains("ss@"), "{err}");
        }
        let encoded: DatabaseUrl = "postgres://pwuser:Pw0rd%40XY%2FZ%3A1@host/db"
            .parse()
            .unwrap();
        assert_eq!(encoded.to_string(), "postgres://pwuser:***@host/db");
    }

    #[test]
    fn a_socket_directory_needs_no_host() {
        let url: DatabaseUrl = "postgres://shop@/shop?host=/run/postgresql"
            .parse()
            .unwrap();
        let options = url.connect_options().unwrap();
        assert_eq!(
            options.get_socket().map(|p| p.display().to_string()),
            Some("/run/postgresql".to_owned())
        );
        assert!("postgres:///shop?host=/tmp".parse::<DatabaseUrl>().is_ok());
        assert!("postgres://shop@/shop".parse::<DatabaseUrl>().is_err());
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
