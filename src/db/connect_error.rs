//! Why a connection failed, in one sentence that names the cause and the fix: exit 2 for what
//! the user must change (credentials, privileges, TLS settings, certificate files, an unknown
//! database, a pooler's settings), exit 3 for what may pass by itself (a host that does not
//! answer, a server starting or shutting down, too many connections).
//!
//! PgBouncer answers every error with SQLSTATE 08P01: its message text is all there is to go
//! by, so its known messages are matched here.

use super::{DatabaseUrl, DbError, sqlstate, url::RootCert};

/// What went wrong, before it is worded for a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cause {
    /// Exit 2: the user must change something.
    Config(String),
    Auth(String),
    DatabaseMissing(String),
    /// Exit 3: may pass by itself.
    Transient(String),
}

pub(super) fn classify(url: &DatabaseUrl, err: sqlx::Error) -> DbError {
    let redacted = url.redacted().to_owned();
    let facts = Facts::of(url);
    let cause = match &err {
        sqlx::Error::Database(db) => from_server(db.code().as_deref(), db.message(), &facts),
        sqlx::Error::Tls(tls) => from_tls(&tls.to_string(), &facts),
        // rustls' verdicts on the certificate arrive as I/O errors.
        sqlx::Error::Io(io) if looks_like_tls(&io.to_string()) => from_tls(&io.to_string(), &facts),
        sqlx::Error::Io(io) => from_io(io),
        other => Cause::Transient(other.to_string()),
    };
    let scrub = |s: String| s.replace(url.expose(), "<database url>");
    match cause {
        Cause::Config(reason) => DbError::ConnectRefused {
            url: redacted,
            reason: scrub(reason),
        },
        Cause::Auth(reason) => DbError::AuthFailed {
            url: redacted,
            reason: scrub(reason),
        },
        Cause::DatabaseMissing(reason) => DbError::DatabaseMissing {
            url: redacted,
            reason: scrub(reason),
        },
        Cause::Transient(reason) => DbError::Unreachable {
            url: redacted,
            reason: scrub(reason),
        },
    }
}

/// What the URL says, for the wording.
#[derive(Debug, Clone, Default)]
pub(super) struct Facts {
    pub has_password: bool,
    pub host: String,
    pub root_cert: Option<String>,
}

impl Facts {
    fn of(url: &DatabaseUrl) -> Facts {
        Facts {
            has_password: url.has_password(),
            host: url.host().to_owned(),
            root_cert: url.tls().root_cert.as_ref().map(|r| match r {
                RootCert::File(path) => path.display().to_string(),
                RootCert::System => "the system's trust store".to_owned(),
            }),
        }
    }
}

const NO_PASSWORD: &str = "the server asks for a password and none was given: put it in the URL (percent-encoded), \
                           in PGPASSWORD, or in ~/.pgpass";

pub(super) fn from_server(code: Option<&str>, message: &str, facts: &Facts) -> Cause {
    let wrong_password = || {
        if facts.has_password {
            Cause::Auth(format!(
                "{message} (check the password; in a URL, percent-encode its special characters)"
            ))
        } else {
            Cause::Auth(NO_PASSWORD.to_owned())
        }
    };
    match code {
        Some(sqlstate::INVALID_PASSWORD) => wrong_password(),
        Some(sqlstate::INVALID_AUTHORIZATION) if message.contains("no pg_hba.conf entry") => {
            if message.contains("no encryption") {
                Cause::Config(format!(
                    "the server accepts this user only over TLS ({message}): add sslmode=require, or better verify-full \
                     with sslrootcert, to the URL"
                ))
            } else {
                Cause::Config(format!(
                    "the server's pg_hba.conf allows no connection from here for this user and database ({message}): \
                     its administrator must add one; no credentials were checked"
                ))
            }
        }
        Some(sqlstate::INVALID_AUTHORIZATION) => Cause::Auth(message.to_owned()),
        Some(sqlstate::INVALID_CATALOG_NAME) => Cause::DatabaseMissing(message.to_owned()),
        Some("42501") if message.contains("permission denied for database") => {
            Cause::Config(format!(
                "{message}: the role lacks the CONNECT privilege (GRANT CONNECT ON DATABASE <database> TO <role>)"
            ))
        }
        Some("57P03") => Cause::Transient(format!(
            "{message} (the server is starting, shutting down or recovering)"
        )),
        Some("53300") => Cause::Transient(format!("{message} (every connection slot is taken)")),
        Some("08P01") => from_pgbouncer(message, wrong_password),
        _ => Cause::Transient(message.to_owned()),
    }
}

fn from_pgbouncer(message: &str, wrong_password: impl Fn() -> Cause) -> Cause {
    let m = message.to_ascii_lowercase();
    if m.contains("password authentication failed")
        || m.contains("sasl authentication failed")
        || m.contains("no such user")
    {
        return wrong_password();
    }
    if m.contains("no such database") || m.contains("database") && m.contains("does not exist") {
        return Cause::DatabaseMissing(format!(
            "PgBouncer: {message} (its [databases] section has no such entry)"
        ));
    }
    if let Some(parameter) = m.strip_prefix("unsupported startup parameter: ") {
        return Cause::Config(format!(
            "PgBouncer refuses the startup parameter {parameter}: remove it from the URL, or list it in PgBouncer's \
             ignore_startup_parameters"
        ));
    }
    if m.contains("ssl required") || m.contains("ssl is required") {
        return Cause::Config(format!(
            "PgBouncer: {message}: add sslmode=require (or verify-full with sslrootcert) to the URL"
        ));
    }
    if m.contains("server does not support ssl") || m.contains("client_tls_sslmode") {
        return Cause::Config(format!("PgBouncer: {message}"));
    }
    if m.contains("server login has been failing") {
        return Cause::Transient(format!(
            "PgBouncer: {message} (PgBouncer itself cannot log in to PostgreSQL: check its own credentials for the server)"
        ));
    }
    Cause::Transient(format!("PgBouncer: {message}"))
}

fn looks_like_tls(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("certificate") || m.contains("tls") || m.contains("handshake")
}

pub(super) fn from_tls(message: &str, facts: &Facts) -> Cause {
    let roots = facts
        .root_cert
        .clone()
        .unwrap_or_else(|| "the trust store paytool ships (Mozilla's roots)".to_owned());
    let lower = message.to_ascii_lowercase();
    if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        Cause::Config(format!(
            "the server's certificate is not signed by a CA in {roots}: set sslrootcert to the CA certificate that \
             signed it (your provider publishes it)"
        ))
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        Cause::Config(format!(
            "the server's certificate is not valid for the host name {:?}: connect by a name the certificate lists, \
             or use sslmode=verify-ca, which checks the chain but not the name",
            facts.host
        ))
    } else if message.contains("server does not support TLS") {
        Cause::Config(
            "the server does not accept TLS and the URL's sslmode requires it: enable ssl on the server, or use \
             sslmode=prefer"
                .to_owned(),
        )
    } else if lower.contains("expired") || lower.contains("notvalidyet") {
        Cause::Config(format!(
            "the server's certificate is not valid now ({message})"
        ))
    } else {
        Cause::Config(format!("TLS failed: {message}"))
    }
}

fn from_io(io: &std::io::Error) -> Cause {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::ConnectionRefused => Cause::Transient(format!(
            "{io} (nothing listens there: is the server running, on this host and port?)"
        )),
        ErrorKind::NotFound => Cause::Transient(format!("{io} (no server socket there)")),
        ErrorKind::PermissionDenied => Cause::Config(format!("{io}")),
        _ => Cause::Transient(io.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(has_password: bool) -> Facts {
        Facts {
            has_password,
            host: "127.0.0.1".to_owned(),
            root_cert: Some("ca.pem".to_owned()),
        }
    }

    #[test]
    fn postgresql_failures_say_cause_and_fix() {
        let none = from_server(
            Some("28P01"),
            "password authentication failed for user \"app\"",
            &facts(false),
        );
        assert_eq!(none, Cause::Auth(NO_PASSWORD.to_owned()));
        assert!(matches!(
            from_server(Some("28P01"), "password authentication failed", &facts(true)),
            Cause::Auth(m) if m.contains("check the password")
        ));
        let hba = from_server(
            Some("28000"),
            "no pg_hba.conf entry for host \"127.0.0.1\", user \"app\", database \"shop\", no encryption",
            &facts(true),
        );
        assert!(matches!(hba, Cause::Config(m) if m.contains("sslmode=require")));
        assert!(matches!(
            from_server(Some("42501"), "permission denied for database shop", &facts(true)),
            Cause::Config(m) if m.contains("GRANT CONNECT")
        ));
        assert!(matches!(
            from_server(
                Some("57P03"),
                "the database system is shutting down",
                &facts(true)
            ),
            Cause::Transient(_)
        ));
    }

    #[test]
    fn pgbouncer_failures_are_told_apart_by_their_text() {
        let f = facts(true);
        assert!(matches!(
            from_server(Some("08P01"), "password authentication failed", &f),
            Cause::Auth(_)
        ));
        assert!(matches!(
            from_server(Some("08P01"), "no such database: nope", &f),
            Cause::DatabaseMissing(_)
        ));
        assert!(matches!(
            from_server(Some("08P01"), "unsupported startup parameter: options", &f),
            Cause::Config(m) if m.contains("ignore_startup_parameters")
        ));
        assert!(matches!(
            from_server(Some("08P01"), "pgbouncer cannot connect to server", &f),
            Cause::Transient(_)
        ));
    }

    #[test]
    fn tls_failures_name_the_certificate_problem() {
        let f = facts(true);
        assert!(matches!(
            from_tls("invalid peer certificate: UnknownIssuer", &f),
            Cause::Config(m) if m.contains("ca.pem")
        ));
        assert!(matches!(
            from_tls("invalid peer certificate: NotValidForNameContext { expected: .. }", &f),
            Cause::Config(m) if m.contains("verify-ca")
        ));
        assert!(matches!(
            from_tls("server does not support TLS", &f),
            Cause::Config(_)
        ));
    }
}
