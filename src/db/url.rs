//! A database URL as libpq and Prisma write it, that never shows its password.
//!
//! Every query parameter is sorted here, by name, into what the driver is given (host, user,
//! password, application_name, a user's own `options`), what paytool does itself (TLS as libpq
//! and Prisma mean it, `schema`, `connect_timeout`), what it refuses (what it cannot honour
//! and the user asked for: channel binding, PKCS#12 identities, several hosts) and what it
//! leaves aside by name (Prisma's pool settings, libpq settings with no meaning here). The
//! driver never sees a parameter it does not know: it would log it with its value.
//!
//! Long on purpose: a third is its tests, one per way libpq and Prisma write a parameter.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// Parameters handed to the driver as they are.
const DRIVER_PARAMETERS: [&str; 8] = [
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    // A user's own startup options (Neon's `endpoint=`, say): theirs to send. paytool never
    // adds any: a stock PgBouncer refuses the parameter.
    "options",
];

/// Prisma's pool settings: they configure Prisma's own client, not a PostgreSQL session.
pub(super) const PRISMA_POOL_PARAMETERS: [&str; 7] = [
    "connection_limit",
    "pool_timeout",
    "pgbouncer",
    "statement_cache_size",
    "socket_timeout",
    "max_connection_lifetime",
    "max_idle_connection_lifetime",
];

/// libpq settings with no effect on what paytool does (it keeps one session per run and
/// checks the server it reached itself).
const LIBPQ_UNUSED_PARAMETERS: [&str; 19] = [
    "target_session_attrs",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "client_encoding",
    "fallback_application_name",
    "gssencmode",
    "krbsrvname",
    "sslcompression",
    "sslsni",
    "sslcrl",
    "sslcrldir",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "sslcertmode",
    "sslkeylogfile",
    "load_balance_hosts",
];

/// Where the CA certificates that verify the server come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// `sslrootcert=FILE`, `PGSSLROOTCERT`, or Prisma's `sslcert=FILE`.
    File(PathBuf),
    /// libpq's `sslrootcert=system`: the trust store paytool ships (Mozilla's roots).
    System,
}

/// TLS as the URL asks for it, in libpq's terms.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// None: the driver's default, `prefer` (or PGSSLMODE), as libpq.
    pub mode: Option<PgSslMode>,
    pub root_cert: Option<RootCert>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// What paytool made of Prisma's TLS parameters, said once with -v.
    pub translated: Vec<String>,
}

/// A validated PostgreSQL URL. `Display` and `Debug` redact the password.
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: String,
    /// scheme, user, password, host, port, database and the driver's parameters.
    driver: String,
    redacted: String,
    host: String,
    schema: Option<String>,
    ignored: Vec<String>,
    pgbouncer_flag: bool,
    tls: Tls,
    connect_timeout: Option<Duration>,
}

impl DatabaseUrl {
    /// Connection options: the driver's part of the URL, then TLS as resolved here. The
    /// driver sends no `extra_float_digits` (a stock PgBouncer refuses it; paytool reads no
    /// floating-point column) and no `options`: `?schema=` is applied once connected, where
    /// it can be checked ([`super::connect`]).
    pub fn connect_options(&self) -> Result<PgConnectOptions, String> {
        let mut options = PgConnectOptions::from_str(&self.driver)
            .map_err(|e| strip_secret(&e.to_string(), &self.raw))?
            .extra_float_digits(None);
        if let Some(mode) = self.tls.mode {
            options = options.ssl_mode(mode);
        }
        if let Some(RootCert::File(path)) = &self.tls.root_cert {
            options = options.ssl_root_cert(path);
        }
        if let (Some(cert), Some(key)) = (&self.tls.client_cert, &self.tls.client_key) {
            options = options.ssl_client_cert(cert).ssl_client_key(key);
        }
        Ok(options)
    }

    /// Whether any password reaches the server: in the URL, PGPASSWORD or a password file.
    pub fn has_password(&self) -> bool {
        self.connect_options()
            .map(|o| o.to_url_lossy().password().is_some())
            .unwrap_or(false)
    }

    /// Prisma's `pgbouncer=true`: the URL goes through a transaction pooler, by its owner's word.
    pub fn says_transaction_pooler(&self) -> bool {
        self.pgbouncer_flag
    }

    /// The schema of Prisma's `?schema=NAME`, if the URL has one.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The host as written (for messages about certificates).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    /// libpq's and Prisma's `connect_timeout`, in seconds in the URL.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// Parameters that paytool leaves aside, by name (never with their values).
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
        if let Some(hint) = ambiguous_credentials(raw) {
            // Said before any parsing: a parser would guess, take part of the password for a
            // host or a port and look it up in DNS.
            return Err(hint.to_owned());
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
        let params = Parameters::sort(&parsed)?;
        let host = params
            .driver
            .iter()
            .find(|(k, _)| k == "host")
            .map(|(_, v)| v.clone())
            .or_else(|| parsed.host_str().map(str::to_owned))
            .unwrap_or_default();
        if host.contains(',') || parsed.host_str().is_some_and(|h| h.contains(',')) {
            return Err(
                "several hosts are not supported: name the primary's host alone (paytool checks that it is the primary)"
                    .to_owned(),
            );
        }
        let mut driver = parsed.clone();
        if params.driver.is_empty() {
            driver.set_query(None);
        } else {
            driver
                .query_pairs_mut()
                .clear()
                .extend_pairs(params.driver.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        let url = DatabaseUrl {
            raw: raw_for_parsing.to_owned(),
            driver: driver.to_string(),
            redacted,
            host,
            schema: params.schema,
            ignored: params.ignored,
            pgbouncer_flag: params.pgbouncer_flag,
            tls: params.tls,
            connect_timeout: params.connect_timeout,
        };
        url.connect_options()?;
        Ok(url)
    }
}

/// The URL's query parameters, sorted by what becomes of them.
#[derive(Debug, Default)]
struct Parameters {
    driver: Vec<(String, String)>,
    schema: Option<String>,
    ignored: Vec<String>,
    pgbouncer_flag: bool,
    tls: Tls,
    connect_timeout: Option<Duration>,
}

impl Parameters {
    fn sort(parsed: &url::Url) -> Result<Parameters, String> {
        let mut out = Parameters::default();
        let mut tls_params: Vec<(String, String)> = Vec::new();
        for (key, value) in parsed.query_pairs() {
            let (key, value) = (key.into_owned(), value.into_owned());
            match key.as_str() {
                k if DRIVER_PARAMETERS.contains(&k) => out.driver.push((key, value)),
                "schema" if value.is_empty() => {
                    return Err(
                        "?schema= is empty; name the schema of the tables, e.g. ?schema=shop"
                            .to_owned(),
                    );
                }
                "schema" => out.schema = Some(value),
                "connect_timeout" => {
                    let seconds: u64 = value.trim().parse().map_err(|_| {
                        format!("connect_timeout={value:?} is not a number of seconds")
                    })?;
                    // libpq: 0 means wait forever; paytool keeps its own limit then.
                    out.connect_timeout =
                        (seconds > 0).then(|| Duration::from_secs(seconds.max(2)));
                }
                k if k.starts_with("ssl") || k == "channel_binding" || k == "sslnegotiation" => {
                    if LIBPQ_UNUSED_PARAMETERS.contains(&k) {
                        out.ignored.push(key);
                    } else {
                        tls_params.push((key, value));
                    }
                }
                k if PRISMA_POOL_PARAMETERS.contains(&k) => {
                    if k == "pgbouncer" && value.eq_ignore_ascii_case("true") {
                        out.pgbouncer_flag = true;
                    }
                    out.ignored.push(key);
                }
                k if LIBPQ_UNUSED_PARAMETERS.contains(&k) => out.ignored.push(key),
                "passfile" | "service" | "requirepeer" | "replication" => {
                    return Err(format!(
                        "the URL parameter {key} is not supported: {}",
                        match key.as_str() {
                            "passfile" => "set PGPASSFILE instead",
                            "service" =>
                                "write the service's host, port, user and database in the URL",
                            "requirepeer" => "connect over TCP, or without requirepeer",
                            _ => "paytool needs an ordinary session, not a replication connection",
                        }
                    ));
                }
                _ => {
                    tracing::warn!("ignoring the URL parameter {key}, which paytool does not know");
                    out.ignored.push(key);
                }
            }
        }
        out.tls = resolve_tls(
            &tls_params,
            std::env::var_os("PGSSLROOTCERT").map(PathBuf::from),
        )?;
        Ok(out)
    }
}

/// TLS as libpq (`sslmode`, `sslrootcert`, `sslcert`+`sslkey`) and Prisma (`sslaccept`,
/// `sslcert` = the CA file) mean it. `env_root`: PGSSLROOTCERT.
fn resolve_tls(params: &[(String, String)], env_root: Option<PathBuf>) -> Result<Tls, String> {
    let get = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(unknown) = params.iter().map(|(k, _)| k.as_str()).find(|k| {
        !matches!(
            *k,
            "sslmode"
                | "sslrootcert"
                | "sslcert"
                | "sslkey"
                | "sslaccept"
                | "sslidentity"
                | "sslpassword"
                | "channel_binding"
                | "sslnegotiation"
        )
    }) {
        return Err(format!("unknown TLS parameter {unknown} in the URL"));
    }
    if get("channel_binding") == Some("require") {
        return Err(
            "channel_binding=require cannot be honoured: paytool's PostgreSQL driver does not do SCRAM channel binding; remove it and use sslmode=verify-full, which authenticates the server by its certificate"
                .to_owned(),
        );
    }
    if get("sslidentity").is_some() || get("sslpassword").is_some() {
        return Err(
            "a PKCS#12 client identity (sslidentity/sslpassword) is not supported: convert it to PEM (openssl pkcs12 -in identity.p12 -nodes -out client.pem) and pass sslcert=client.pem&sslkey=client.pem"
                .to_owned(),
        );
    }
    if get("sslnegotiation").is_some_and(|v| v != "postgres") {
        return Err("sslnegotiation=direct is not supported: remove it (the standard negotiation works with every server)".to_owned());
    }
    let mode = match get("sslmode") {
        None => None,
        Some(mode) => Some(mode.parse::<PgSslMode>().map_err(|_| {
            format!(
                "sslmode={mode:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            )
        })?),
    };
    let mut tls = Tls {
        mode,
        ..Tls::default()
    };
    let strict = match get("sslaccept") {
        None => None,
        Some("strict") => Some(true),
        Some("accept_invalid_certs") => Some(false),
        Some(other) => {
            return Err(format!(
                "sslaccept={other:?} is not one of Prisma's strict, accept_invalid_certs"
            ));
        }
    };
    let cert = get("sslcert").map(PathBuf::from);
    let key = get("sslkey").map(PathBuf::from);
    let root = get("sslrootcert");
    // Prisma's `sslcert` is the CA certificate; libpq's is a client certificate, which always
    // comes with its key.
    let prisma_ca = match (&cert, &key, root) {
        (Some(cert), None, None) => {
            tls.translated.push(format!(
                "sslcert={} read as Prisma means it: the CA certificate that signs the server's",
                cert.display()
            ));
            Some(cert.clone())
        }
        (Some(_), None, Some(_)) => {
            return Err(
                "sslcert (a client certificate, with sslrootcert present) needs its sslkey"
                    .to_owned(),
            );
        }
        (None, Some(_), _) => return Err("sslkey needs its sslcert".to_owned()),
        _ => None,
    };
    if prisma_ca.is_none()
        && let (Some(cert), Some(key)) = (cert, key)
    {
        tls.client_cert = Some(must_exist("sslcert", cert)?);
        tls.client_key = Some(must_exist("sslkey", key)?);
    }
    tls.root_cert = match (root, prisma_ca) {
        (Some("system"), _) => Some(RootCert::System),
        (Some(file), _) => Some(RootCert::File(must_exist(
            "sslrootcert",
            PathBuf::from(file),
        )?)),
        (None, Some(file)) => Some(RootCert::File(must_exist("sslcert", file)?)),
        (None, None) => match env_root {
            Some(file) if file.as_os_str() == "system" => Some(RootCert::System),
            Some(file) => Some(RootCert::File(must_exist("PGSSLROOTCERT", file)?)),
            None => None,
        },
    };
    let explicit_root = root.is_some() || tls.root_cert.is_some() && strict.is_none();
    match (tls.mode, strict) {
        (Some(PgSslMode::Disable), _) => {}
        (_, Some(true)) => {
            tls.translated
                .push("sslaccept=strict: the server's certificate and host name are verified (verify-full)".to_owned());
            tls.mode = Some(PgSslMode::VerifyFull);
        }
        (_, Some(false)) => {
            tls.translated.push(
                "sslaccept=accept_invalid_certs: the server's certificate is not verified, as Prisma does (sslaccept=strict verifies it)"
                    .to_owned(),
            );
            if !matches!(tls.mode, Some(PgSslMode::Allow | PgSslMode::Prefer)) {
                tls.mode = Some(PgSslMode::Require);
            }
        }
        // libpq: with a root certificate given, `require` verifies the chain as verify-ca does.
        (Some(PgSslMode::Require), None) if explicit_root => tls.mode = Some(PgSslMode::VerifyCa),
        _ => {}
    }
    if tls.root_cert == Some(RootCert::System) {
        match tls.mode {
            None | Some(PgSslMode::VerifyFull) => tls.mode = Some(PgSslMode::VerifyFull),
            Some(_) => {
                return Err(
                    "sslrootcert=system needs sslmode=verify-full (as libpq: weaker modes would not check the host name)"
                        .to_owned(),
                );
            }
        }
    }
    Ok(tls)
}

/// A certificate or key file named in the URL must be there: said now, with its name.
fn must_exist(parameter: &str, path: PathBuf) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{parameter}={}: no such file (paths are relative to the current directory)",
            path.display()
        ))
    }
}

/// The part between `scheme://` and the query.
fn before_query(raw: &str) -> Option<&str> {
    let rest = raw.split_once("://")?.1;
    Some(rest.split('?').next().unwrap_or(rest))
}

/// A raw `@`, `/`, `:`, `?` or `#` in the user name or password, which no parser reads the
/// way the person who wrote it meant: the hint to give, if so.
fn ambiguous_credentials(raw: &str) -> Option<&'static str> {
    const HINT: &str = "the user name or password is ambiguous: percent-encode @ / : ? # in them \
                        (@ as %40, / as %2F, : as %3A, ? as %3F, # as %23)";
    let rest = raw.split_once("://")?.1;
    if let Some(before) = before_query(raw)
        && let Some(last_at) = before.rfind('@')
        && (before.matches('@').count() > 1 || before[..last_at].contains('/'))
    {
        return Some(HINT);
    }
    // `user:pa?ss@host/db`: the authority ends at the `?` or `#`, and the rest of the
    // password, up to an `@`, looks like a query or a fragment.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let cut_by_query = matches!(rest[end..].chars().next(), Some('?' | '#'));
    let port_is_not_a_number = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && !port.chars().all(|c| c.is_ascii_digit()));
    let at_after = rest[end..]
        .split('/')
        .next()
        .is_some_and(|s| s.contains('@'));
    (cut_by_query && !authority.contains('@') && port_is_not_a_number && at_after).then_some(HINT)
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

/// A schema name as search_path takes it: always quoted, so case and any character survive.
pub(super) fn quote_identifier(name: &str) -> String {
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
        assert_eq!(url.driver, "postgresql://app:pw@db:5432/shop");
        assert!(matches!(url.tls().mode, Some(PgSslMode::Disable)));
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
        for raw in [
            "postgres://pwuser:pa?ss@host/db",
            "postgres://pwuser:pa#ss@host:5432/db",
            "postgres://pwuser:pa?ss@host",
        ] {
            let err = raw.parse::<DatabaseUrl>().unwrap_err();
            assert!(err.contains("? as %3F"), "{raw}: {err}");
        }
        // A query value with an @ is no password.
        assert!(
            "postgres://host:5432?user=me@corp"
                .parse::<DatabaseUrl>()
                .is_ok()
        );
        assert!(
            "postgres://host/db?application_name=a@b"
                .parse::<DatabaseUrl>()
                .is_ok()
        );
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

    fn tls_of(query: &[(&str, &str)]) -> Result<Tls, String> {
        let params: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve_tls(&params, None)
    }

    #[test]
    fn tls_modes_are_libpqs() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let ca_path = ca.path().to_str().unwrap();
        assert!(tls_of(&[]).unwrap().mode.is_none());
        assert!(matches!(
            tls_of(&[("sslmode", "verify-ca")]).unwrap().mode,
            Some(PgSslMode::VerifyCa)
        ));
        // libpq: require with a root certificate verifies the chain.
        let tls = tls_of(&[("sslmode", "require"), ("sslrootcert", ca_path)]).unwrap();
        assert!(matches!(tls.mode, Some(PgSslMode::VerifyCa)));
        assert_eq!(tls.root_cert, Some(RootCert::File(ca.path().to_owned())));
        assert!(matches!(
            tls_of(&[("sslrootcert", "system")]).unwrap().mode,
            Some(PgSslMode::VerifyFull)
        ));
        assert!(tls_of(&[("sslrootcert", "system"), ("sslmode", "require")]).is_err());
        let missing =
            tls_of(&[("sslmode", "verify-full"), ("sslrootcert", "/nope/ca.pem")]).unwrap_err();
        assert!(
            missing.contains("sslrootcert=/nope/ca.pem: no such file"),
            "{missing}"
        );
        assert!(
            tls_of(&[("sslmode", "sometimes")])
                .unwrap_err()
                .contains("verify-full")
        );
    }

    #[test]
    fn prisma_tls_parameters_are_translated() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let ca_path = ca.path().to_str().unwrap();
        let strict = tls_of(&[
            ("sslmode", "require"),
            ("sslcert", ca_path),
            ("sslaccept", "strict"),
        ])
        .unwrap();
        assert!(matches!(strict.mode, Some(PgSslMode::VerifyFull)));
        assert_eq!(strict.root_cert, Some(RootCert::File(ca.path().to_owned())));
        assert_eq!(strict.client_cert, None);
        let lax = tls_of(&[
            ("sslmode", "require"),
            ("sslaccept", "accept_invalid_certs"),
        ])
        .unwrap();
        assert!(matches!(lax.mode, Some(PgSslMode::Require)));
        // Prisma's CA without sslaccept: libpq's rule, a root certificate verifies the chain.
        let ca_only = tls_of(&[("sslmode", "require"), ("sslcert", ca_path)]).unwrap();
        assert!(matches!(ca_only.mode, Some(PgSslMode::VerifyCa)));
        let ca_lax = tls_of(&[
            ("sslmode", "require"),
            ("sslcert", ca_path),
            ("sslaccept", "accept_invalid_certs"),
        ])
        .unwrap();
        assert!(matches!(ca_lax.mode, Some(PgSslMode::Require)));
        assert!(tls_of(&[("sslaccept", "maybe")]).is_err());
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        assert!(
            tls_of(&[("channel_binding", "require")])
                .unwrap_err()
                .contains("channel binding")
        );
        assert!(tls_of(&[("channel_binding", "prefer")]).is_ok());
        assert!(
            tls_of(&[("sslidentity", "id.p12"), ("sslpassword", "hunter2")])
                .unwrap_err()
                .contains("PKCS#12")
        );
        let err = "postgres://u@h/db?sslpassword=hunter2"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(!err.contains("hunter2"));
        assert!("postgres://u@a,b/db".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn the_driver_gets_only_what_it_knows() {
        let url: DatabaseUrl =
            "postgres://u:pw@h/db?application_name=shop&connect_timeout=5&keepalives=1&schema=s"
                .parse()
                .unwrap();
        assert_eq!(url.driver, "postgres://u:pw@h/db?application_name=shop");
        assert_eq!(url.connect_timeout(), Some(Duration::from_secs(5)));
        assert_eq!(url.ignored_parameters(), ["keepalives"]);
    }
}
