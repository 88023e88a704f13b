//! PgBouncer between paytool and PostgreSQL (issue 12): Debian's `pgbouncer`, started per test
//! in front of the suite's cluster, in transaction and in session pooling.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;
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
    fn start(pool_mode: &str) -> PgBouncer {
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
                 ignore_startup_parameters = extra_float_digits,options\nlogfile = {dir}/pgbouncer.log\n",
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
    let mut app = PgConnection::connect(&through).await.unwrap();
    sqlx::raw_sql("SELECT 1").execute(&mut app).await.unwrap();
    let mut in_transaction = PgConnection::connect(&through).await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT 1")
        .execute(&mut in_transaction)
        .await
        .unwrap();
    for args in [
        vec!["migrate"],
        vec!["migrate", "plan"],
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
