//! PgBouncer between paytool and PostgreSQL: Debian's `pgbouncer`, started per test in front of
//! the suite's cluster, in transaction and in session pooling, configured as it comes (no
//! `ignore_startup_parameters`: it refuses any startup parameter it does not track).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::harness::{TestDb, cluster, paytool, seeded_and_migrated};

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// A PgBouncer of its own in a temp dir, stopped and removed on drop.
struct PgBouncer {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl PgBouncer {
    /// A stock PgBouncer: refuses every startup parameter it does not track.
    fn start(pool_mode: &str) -> PgBouncer {
        PgBouncer::start_ignoring(pool_mode, "")
    }

    /// One that drops the startup parameters `ignore` lists, as some installations do.
    fn start_ignoring(pool_mode: &str, ignore: &str) -> PgBouncer {
        assert!(
            Path::new(PGBOUNCER).is_file(),
            "Debian's pgbouncer is not installed (scripts/test.sh installs it)"
        );
        let dir = tempfile::Builder::new()
            .prefix("paytool-test-pgbouncer-")
            .tempdir()
            .unwrap()
            .keep();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host=127.0.0.1 port={pg}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
                 listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {dir}/users.txt\n\
                 pool_mode = {pool_mode}\ndefault_pool_size = 4\nmax_client_conn = 200\n\
                 ignore_startup_parameters = {ignore}\nlogfile = {dir}/pgbouncer.log\n",
                pg = cluster().port,
                dir = dir.display(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(PGBOUNCER);
        if is_root() {
            // PgBouncer refuses to run as root; -u drops to the user after reading its files.
            Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&dir)
                .status()
                .unwrap();
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer starts");
        let bouncer = PgBouncer { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pgbouncer did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    fn url(&self, db: &TestDb) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, db.name)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The application's connection through the pooler: a driver that sends no startup parameter a
/// stock PgBouncer refuses (libpq's, Prisma's pg adapter).
async fn app_connection(url: &str) -> PgConnection {
    let options = PgConnectOptions::from_str(url)
        .unwrap()
        .extra_float_digits(None);
    PgConnection::connect_with(&options).await.unwrap()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Advisory locks held by any session of the database: what a refused run must not leave.
async fn advisory_locks(db: &TestDb) -> i64 {
    let mut conn = db.conn().await;
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

const REFUSAL: &str = "goes through a transaction-pooling proxy";

#[tokio::test]
async fn a_transaction_pooler_is_refused_before_anything_is_left_on_it() {
    let db = cluster().fresh_db().await;
    db.seed(30, false).await;
    let bouncer = PgBouncer::start("transaction");
    let through = bouncer.url(&db);
    // Busy pooled server connections, as in production: the other clients' transactions.
    let mut app = app_connection(&through).await;
    sqlx::raw_sql("SELECT 1").execute(&mut app).await.unwrap();
    let mut in_transaction = app_connection(&through).await;
    sqlx::raw_sql("BEGIN; SELECT 1")
        .execute(&mut in_transaction)
        .await
        .unwrap();
    for args in [
        vec!["migrate"],
        vec!["migrate", "plan"],
        vec!["migrate", "status"],
        vec!["backfill", "payments"],
        vec!["verify", "constraints"],
    ] {
        paytool()
            .env("DATABASE_URL", &through)
            .args(&args)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains(REFUSAL)
                    .and(predicate::str::contains("--migrate-url"))
                    .and(predicate::str::contains("prepared statement").not()),
            );
    }
    sqlx::raw_sql("COMMIT")
        .execute(&mut in_transaction)
        .await
        .unwrap();
    assert_eq!(
        advisory_locks(&db).await,
        0,
        "no lock left on a pooled connection"
    );
    let mut direct = db.conn().await;
    let paytool_schema: bool = sqlx::query_scalar("SELECT to_regnamespace('paytool') IS NOT NULL")
        .fetch_one(&mut direct)
        .await
        .unwrap();
    assert!(!paytool_schema, "nothing was created through the pooler");
    // A direct migrate afterwards is not told that another one holds the lock.
    paytool()
        .env("DATABASE_URL", db.url.as_str())
        .args(["migrate", "-q"])
        .assert()
        .success();
    // With the application's pooled DATABASE_URL and --migrate-url, paytool goes direct.
    paytool()
        .env("DATABASE_URL", &through)
        .args([
            "backfill",
            "payments",
            "-q",
            "--migrate-url",
            db.url.as_str(),
        ])
        .assert()
        .success();
    paytool()
        .env("DATABASE_URL", &through)
        .env("PAYTOOL_MIGRATE_URL", &db.url)
        .args(["verify", "constraints", "-q"])
        .assert()
        .success();
    sqlx::raw_sql("SELECT 1").execute(&mut app).await.unwrap();
}

#[tokio::test]
async fn prismas_pgbouncer_flag_is_refused_without_connecting() {
    // Nothing listens on port 1: a refusal that connected would say "cannot reach".
    paytool()
        .env(
            "DATABASE_URL",
            "postgresql://app:secret@127.0.0.1:1/shop?pgbouncer=true&connection_limit=1",
        )
        .args(["migrate", "plan"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains(REFUSAL)
                .and(predicate::str::contains("pgbouncer=true"))
                .and(predicate::str::contains("secret").not()),
        );
}

#[tokio::test]
async fn session_pooling_runs_the_whole_flow() {
    let db = seeded_and_migrated(60).await;
    let bouncer = PgBouncer::start("session");
    let through = bouncer.url(&db);
    for args in [
        vec!["migrate", "-q"],
        vec!["backfill", "payments", "-q"],
        vec!["verify", "constraints", "-q"],
    ] {
        paytool()
            .env("DATABASE_URL", &through)
            .args(&args)
            .assert()
            .success();
    }
    let mut conn = db.conn().await;
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(payments > 0);
}

/// A legacy shop in schema "Shop", nothing in public: through a pooler that lost `?schema=`,
/// every command would find no legacy tables.
async fn shop_in_its_own_schema() -> TestDb {
    crate::harness::shop_in_schema_shop(50).await.0
}

#[tokio::test]
async fn prismas_schema_is_the_one_acted_on_through_any_pooler() {
    // Stock, and one that silently drops `options` (where a startup search_path would be lost).
    for bouncer in [
        PgBouncer::start("session"),
        PgBouncer::start_ignoring("session", "extra_float_digits,options"),
    ] {
        let db = shop_in_its_own_schema().await;
        let through = format!("{}?schema=Shop", bouncer.url(&db));
        for args in [
            vec!["migrate", "-q"],
            vec!["backfill", "payments", "-q"],
            vec!["verify", "constraints", "-q"],
            vec!["migrate", "status", "-q"],
        ] {
            paytool()
                .env("DATABASE_URL", &through)
                .args(&args)
                .assert()
                .success();
        }
        let mut conn = db.conn().await;
        let (in_shop, in_public): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM \"Shop\".payments),
                    (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace)",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(in_shop > 0, "payments made in \"Shop\"");
        assert_eq!(in_public, 0, "nothing made in public");
        paytool()
            .env(
                "DATABASE_URL",
                format!("{}?schema=Nowhere", bouncer.url(&db)),
            )
            .args(["migrate", "status"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "\"Nowhere\" of ?schema= does not exist",
            ));
    }
    // In transaction pooling the refusal comes first, with ?schema= too.
    let db = shop_in_its_own_schema().await;
    let bouncer = PgBouncer::start("transaction");
    paytool()
        .env("DATABASE_URL", format!("{}?schema=Shop", bouncer.url(&db)))
        .args(["migrate", "status"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(REFUSAL));
}

#[tokio::test]
async fn pgbouncers_errors_are_told_apart() {
    let db = cluster().fresh_db().await;
    let bouncer = PgBouncer::start("session");
    // PgBouncer answers 08P01 for all; paytool reads which.
    let unknown_db = format!("postgres://postgres@127.0.0.1:{}/nope", bouncer.port);
    paytool()
        .env("DATABASE_URL", unknown_db)
        .args(["migrate", "status"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not exist"));
    let with_options = format!("{}?options=-c%20work_mem%3D64MB", bouncer.url(&db));
    paytool()
        .env("DATABASE_URL", with_options)
        .args(["migrate", "status"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("refuses the startup parameter options")
                .and(predicate::str::contains("ignore_startup_parameters")),
        );
}
