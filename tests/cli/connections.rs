//! Connections as managed services and Prisma write them: a TLS-only server with the suite's
//! own throwaway CA, SCRAM passwords full of URL-special characters (in the URL, PGPASSWORD
//! and an escaped .pgpass), and every failure worded with its cause and exit code. No output
//! ever holds the password.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sqlx::{Connection, PgConnection};

use crate::harness::{cluster, paytool, spawn_watchdog};

/// Every character a URL gives a meaning to, and the two .pgpass escapes.
const PASSWORD: &str = r"s3cr:et@/?#%&=+ é\x";

/// A server that accepts TCP connections over TLS only (SCRAM), its certificate signed by the
/// suite's CA for the name `localhost` only.
struct TlsServer {
    port: u16,
    socket_dir: PathBuf,
    certs: PathBuf,
}

fn tls_server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut pg = paytool::demo::cluster::TempCluster::start("paytool-test-tls-", &[])
            .expect("TLS test cluster starts");
        pg.keep();
        spawn_watchdog(pg.bin(), pg.dir(), &pg.data_dir());
        let certs = tempfile::Builder::new()
            .prefix("paytool-test-certs-")
            .tempdir()
            .unwrap()
            .keep();
        make_certificates(&certs);
        let data = pg.data_dir();
        std::fs::copy(certs.join("server.crt"), data.join("server.crt")).unwrap();
        std::fs::copy(certs.join("server.key"), data.join("server.key")).unwrap();
        sh(&format!(
            "chown postgres: {d}/server.crt {d}/server.key && chmod 600 {d}/server.key",
            d = data.display()
        ));
        // TLS only over TCP: a plain connection finds no pg_hba line ("no encryption").
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        let server = TlsServer {
            port: pg.port(),
            socket_dir: pg.dir().to_owned(),
            certs,
        };
        // On a thread of its own: the caller may be inside a runtime already.
        let setup = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut admin = server.admin("postgres").await;
                    for statement in [
                        "ALTER SYSTEM SET ssl = on",
                        "SELECT pg_reload_conf()",
                        "CREATE ROLE app LOGIN PASSWORD 's3cr:et@/?#%&=+ é\\x'",
                        "CREATE DATABASE shop OWNER app",
                    ] {
                        sqlx::raw_sql(statement).execute(&mut admin).await.unwrap();
                    }
                    let mut shop = server.admin("shop").await;
                    sqlx::raw_sql("SET ROLE app")
                        .execute(&mut shop)
                        .await
                        .unwrap();
                    paytool::seed::seed(
                        &mut shop,
                        "shop".to_owned(),
                        paytool::seed::SeedOptions {
                            orders: 20,
                            stock_anomalies: false,
                        },
                    )
                    .await
                    .unwrap();
                });
        };
        std::thread::scope(|scope| scope.spawn(setup).join().unwrap());
        server
    })
}

impl TlsServer {
    /// The superuser over the Unix socket (trust).
    async fn admin(&self, database: &str) -> PgConnection {
        PgConnection::connect(&format!(
            "postgres://postgres@localhost:{}/{database}?host={}",
            self.port,
            self.socket_dir.display()
        ))
        .await
        .unwrap()
    }

    /// `app`'s URL to `host` with the password percent-encoded, and `query`.
    fn url(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://app:{}@{host}:{}/shop?{query}",
            percent_encode(PASSWORD),
            self.port
        )
    }

    fn cert(&self, name: &str) -> String {
        self.certs.join(name).display().to_string()
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn sh(script: &str) {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate it signs for `localhost` only, and an unrelated CA.
fn make_certificates(dir: &Path) {
    sh(&format!(
        "cd {} && \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3 \
           -keyout ca.key -out ca.crt -subj '/CN=paytool test CA' 2>/dev/null && \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3 \
           -keyout other-ca.key -out other-ca.crt -subj '/CN=someone else' 2>/dev/null && \
         openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
           -keyout server.key -out server.csr -subj '/CN=localhost' 2>/dev/null && \
         printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\nkeyUsage=digitalSignature\\nextendedKeyUsage=serverAuth\\n' > server.ext && \
         openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3 \
           -extfile server.ext -out server.crt 2>/dev/null",
        dir.display()
    ));
}

/// `migrate status` on the unmigrated shop: exit 1 (steps left) means it connected and read.
const CONNECTED: i32 = 1;

/// Runs `paytool -vvv migrate status` with `env`, in a HOME without a .pgpass; returns the
/// exit code and stderr, having checked that nothing printed holds the password.
fn status(url: &str, env: &[(&str, &str)]) -> (i32, String) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = paytool();
    cmd.env("DATABASE_URL", url)
        .env("HOME", home.path())
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env_remove("PGSSLROOTCERT")
        .env_remove("PGSSLMODE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(["-vvv", "migrate", "status"]).output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in [PASSWORD, "s3cr:et", &percent_encode(PASSWORD), "hunter2"] {
        assert!(!printed.contains(secret), "{secret:?} printed: {printed}");
    }
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tls_modes_as_libpq_means_them() {
    let s = tls_server();
    let ca = s.cert("ca.crt");
    let ok = |url: String| {
        let (code, stderr) = status(&url, &[]);
        assert_eq!(code, CONNECTED, "{url}: {stderr}");
    };
    ok(s.url("localhost", "sslmode=require"));
    ok(s.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    // verify-ca checks the chain, not the name: 127.0.0.1 is not in the certificate.
    ok(s.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")));
    // PGSSLROOTCERT as libpq reads it.
    let (code, stderr) = status(
        &s.url("localhost", "sslmode=verify-full"),
        &[("PGSSLROOTCERT", &ca)],
    );
    assert_eq!(code, CONNECTED, "{stderr}");

    let refused = |url: String, says: &str| {
        let (code, stderr) = status(&url, &[]);
        assert_eq!(code, 2, "{url}: {stderr}");
        assert!(
            stderr.contains(says),
            "{url}: expected {says:?} in {stderr}"
        );
    };
    refused(
        s.url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        "not valid for the host name \"127.0.0.1\"",
    );
    // libpq: require with a root certificate verifies the chain.
    refused(
        s.url(
            "localhost",
            &format!("sslmode=require&sslrootcert={}", s.cert("other-ca.crt")),
        ),
        "not signed by a CA in",
    );
    refused(
        s.url(
            "localhost",
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        ),
        "sslrootcert=/nonexistent/ca.pem: no such file",
    );
    refused(
        s.url("localhost", "sslmode=disable"),
        "accepts this user only over TLS",
    );
    refused(
        s.url("localhost", "sslmode=require&channel_binding=require"),
        "channel binding",
    );
    refused(
        s.url("localhost", "sslidentity=id.p12&sslpassword=hunter2"),
        "PKCS#12",
    );
}

#[test]
fn prismas_tls_parameters_verify_when_asked() {
    let s = tls_server();
    let ca = s.cert("ca.crt");
    // Prisma: sslcert is the CA; sslaccept=strict verifies the certificate and the name.
    let strict = format!("sslmode=require&sslcert={ca}&sslaccept=strict&connection_limit=3");
    let (code, stderr) = status(&s.url("localhost", &strict), &[]);
    assert_eq!(code, CONNECTED, "{stderr}");
    // -v says what paytool made of Prisma's parameters.
    assert!(
        stderr.contains("sslaccept=strict: the server's certificate and host name are verified")
            && stderr.contains("read as Prisma means it")
            && stderr.contains("ignoring Prisma's own URL parameters: connection_limit"),
        "{stderr}"
    );
    let (code, stderr) = status(&s.url("127.0.0.1", &strict), &[]);
    assert_eq!(code, 2, "strict verification is on: {stderr}");
    assert!(stderr.contains("not valid for the host name"), "{stderr}");
    let lax = format!(
        "sslmode=require&sslcert={}&sslaccept=accept_invalid_certs",
        s.cert("other-ca.crt")
    );
    let (code, stderr) = status(&s.url("127.0.0.1", &lax), &[]);
    assert_eq!(code, CONNECTED, "as Prisma, no verification: {stderr}");
}

#[test]
fn scram_passwords_from_the_url_pgpassword_and_an_escaped_pgpass() {
    let s = tls_server();
    let (code, stderr) = status(&s.url("localhost", "sslmode=require"), &[]);
    assert_eq!(code, CONNECTED, "percent-encoded in the URL: {stderr}");
    let bare = format!("postgres://app@localhost:{}/shop?sslmode=require", s.port);
    let (code, stderr) = status(&bare, &[("PGPASSWORD", PASSWORD)]);
    assert_eq!(code, CONNECTED, "PGPASSWORD: {stderr}");
    // .pgpass escapes : and \ with a backslash.
    let pgpass = tempfile::NamedTempFile::new().unwrap();
    let escaped = PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
    std::fs::write(
        pgpass.path(),
        format!("localhost:{}:shop:app:{escaped}\n", s.port),
    )
    .unwrap();
    sh(&format!("chmod 600 {}", pgpass.path().display()));
    let (code, stderr) = status(&bare, &[("PGPASSFILE", pgpass.path().to_str().unwrap())]);
    assert_eq!(code, CONNECTED, ".pgpass: {stderr}");

    let (code, stderr) = status(&bare, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("none was given"), "{stderr}");
    let wrong = format!(
        "postgres://app:wrong@localhost:{}/shop?sslmode=require",
        s.port
    );
    let (code, stderr) = status(&wrong, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("check the password"), "{stderr}");
}

#[tokio::test]
async fn missing_privileges_and_servers_without_tls_are_named() {
    let s = tls_server();
    let mut admin = s.admin("postgres").await;
    for statement in [
        "CREATE ROLE outsider LOGIN PASSWORD 'pw'",
        "CREATE DATABASE closed",
        "REVOKE CONNECT ON DATABASE closed FROM PUBLIC",
    ] {
        sqlx::raw_sql(statement).execute(&mut admin).await.unwrap();
    }
    let url = format!(
        "postgres://outsider:pw@localhost:{}/closed?sslmode=require",
        s.port
    );
    let (code, stderr) = status(&url, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("GRANT CONNECT ON DATABASE"), "{stderr}");
    let url = format!(
        "postgres://outsider:pw@localhost:{}/nope?sslmode=require",
        s.port
    );
    let (code, stderr) = status(&url, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");

    // The suite's main cluster has no TLS.
    let plain = format!(
        "{}?sslmode=require",
        cluster().url("postgres", None, "postgres")
    );
    let (code, stderr) = status(&plain, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("does not accept TLS"), "{stderr}");
    // Nothing listens: may pass by itself, exit 3.
    let (code, stderr) = status("postgres://app@127.0.0.1:1/shop", &[]);
    assert_eq!(code, 3, "{stderr}");
}

#[test]
fn no_command_prints_the_password_at_any_verbosity() {
    let s = tls_server();
    let url = s.url(
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}&connection_limit=2",
            s.cert("ca.crt")
        ),
    );
    let secrets = [
        PASSWORD.to_owned(),
        percent_encode(PASSWORD),
        "s3cr:et".to_owned(),
    ];
    for verbosity in ["-q", "-v", "-vvv"] {
        for args in [
            vec!["migrate", "plan"],
            vec!["migrate", "status"],
            vec!["verify", "constraints"],
            vec!["backfill", "payments", "--dry-run"],
            vec!["backfill", "status"],
            vec!["prisma", "schema"],
        ] {
            let out = paytool()
                .env("DATABASE_URL", &url)
                .arg(verbosity)
                .args(&args)
                .output()
                .unwrap();
            let printed = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!printed.contains("panicked"), "{args:?}: {printed}");
            // They reached the server: a URL refused before connecting would prove nothing.
            if args == ["migrate", "status"] {
                assert_eq!(out.status.code(), Some(CONNECTED), "{printed}");
            }
            for secret in &secrets {
                assert!(
                    !printed.contains(secret.as_str()),
                    "{verbosity} {args:?} printed it: {printed}"
                );
            }
        }
    }
}
