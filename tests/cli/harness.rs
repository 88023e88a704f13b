//! One throwaway PostgreSQL cluster per test binary, a fresh database per test.
//!
//! The cluster lives in a temp dir, runs as the `postgres` user when the suite runs as root
//! (PostgreSQL refuses to run as root), with durability off for speed. A watchdog process
//! stops it and removes the directory when the test process exits, however it exits.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{Connection, PgConnection};

pub struct Cluster {
    pub port: u16,
    /// Where the server's Unix socket is (`-k`).
    pub socket_dir: std::path::PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        Cluster::start().unwrap_or_else(|e| panic!("cannot start the test PostgreSQL: {e}"))
    })
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        let mut pg = paytool::demo::cluster::TempCluster::start(
            "paytool-test-pg-",
            &[
                "full_page_writes=off",
                "max_connections=300",
                "shared_buffers=256MB",
            ],
        )
        .map_err(|e| e.to_string())?;
        // The cluster lives as long as the test process: the watchdog removes it after.
        pg.keep();
        spawn_watchdog(pg.bin(), pg.dir(), &pg.data_dir());
        Ok(Cluster {
            port: pg.port(),
            socket_dir: pg.dir().to_owned(),
        })
    }

    pub fn url(&self, user: &str, password: Option<&str>, database: &str) -> String {
        match password {
            Some(pw) => format!("postgres://{user}:{pw}@127.0.0.1:{}/{database}", self.port),
            None => format!("postgres://{user}@127.0.0.1:{}/{database}", self.port),
        }
    }

    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.url("postgres", None, "postgres"))
            .await
            .expect("admin connection")
    }

    /// A new empty database.
    pub async fn fresh_db(&self) -> TestDb {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = self.admin().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE template0"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        TestDb {
            name: name.clone(),
            url: self.url("postgres", None, &name),
        }
    }
}

/// Seeded with `orders` orders (no stock anomalies) and migrated, once per size; every caller
/// gets its own copy. The one "migrated legacy shop" fixture of the suite.
pub async fn seeded_and_migrated(orders: i64) -> TestDb {
    static TEMPLATES: tokio::sync::Mutex<Vec<(i64, TestDb)>> =
        tokio::sync::Mutex::const_new(Vec::new());
    static COPIES: AtomicUsize = AtomicUsize::new(0);
    let mut templates = TEMPLATES.lock().await;
    if !templates.iter().any(|(n, _)| *n == orders) {
        let db = cluster().fresh_db().await;
        db.seed(orders, false).await;
        db.paytool().args(["migrate", "-q"]).assert().success();
        templates.push((orders, db));
    }
    let template = &templates
        .iter()
        .find(|(n, _)| *n == orders)
        .expect("just made")
        .1;
    let n = COPIES.fetch_add(1, Ordering::SeqCst);
    cluster().copy_of(template, &format!("m{n}")).await
}

impl Cluster {
    /// A new database that starts as a copy of `template` (which must have no open connection).
    pub async fn copy_of(&self, template: &TestDb, suffix: &str) -> TestDb {
        let name = format!("{}_{suffix}", template.name);
        let mut admin = self.admin().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE {}",
            template.name
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        TestDb {
            url: self.url("postgres", None, &name),
            name,
        }
    }
}

/// Stops the cluster and removes its directory once the test process is gone.
pub fn spawn_watchdog(bin: &Path, dir: &Path, data: &Path) {
    let pg_ctl = bin.join("pg_ctl");
    let stop = if nix::unistd::Uid::effective().is_root() {
        format!(
            "runuser -u postgres -- {} -D {} -m immediate stop",
            pg_ctl.display(),
            data.display()
        )
    } else {
        format!(
            "{} -D {} -m immediate stop",
            pg_ctl.display(),
            data.display()
        )
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("test database connection")
    }

    /// `paytool` with DATABASE_URL pointing at this database.
    pub fn paytool(&self) -> assert_cmd::Command {
        let mut cmd = paytool();
        cmd.env("DATABASE_URL", &self.url);
        cmd
    }

    pub fn paytool_std(&self) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("paytool"));
        cmd.env("DATABASE_URL", &self.url)
            .env_remove("PAYTOOL_LOG")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_STEP_SUMMARY")
            .env("CI", "true");
        cmd
    }

    /// `paytool ARGS` in the background, stdout and stderr captured for `wait_with_output`.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.paytool_std()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("paytool starts")
    }

    /// `paytool ARGS` in the background, its output thrown away (runs that get killed).
    pub fn spawn_quiet(&self, args: &[&str]) -> std::process::Child {
        self.paytool_std()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("paytool starts")
    }

    /// The legacy schema filled with `orders` orders (about two items each).
    pub async fn seed(&self, orders: i64, stock_anomalies: bool) {
        let mut conn = self.conn().await;
        paytool::seed::seed(
            &mut conn,
            self.name.clone(),
            paytool::seed::SeedOptions {
                orders,
                stock_anomalies,
            },
        )
        .await
        .expect("seed");
    }
}

/// A cluster of the test's own (to restart it, or of another major: `bin`, else the suite's
/// PostgreSQL), removed when the test process ends, with a database `shop` of `orders` legacy
/// orders.
pub async fn own_cluster_with_shop(
    bin: Option<std::path::PathBuf>,
    prefix: &str,
    orders: i64,
) -> (paytool::demo::cluster::TempCluster, TestDb) {
    use paytool::demo::cluster::TempCluster;
    let started = match bin {
        Some(bin) => TempCluster::start_with(bin, prefix, &["max_connections=100"]),
        None => TempCluster::start(prefix, &["max_connections=100"]),
    };
    let mut pg = started.unwrap_or_else(|e| panic!("{prefix} cluster starts: {e}"));
    pg.keep();
    spawn_watchdog(pg.bin(), pg.dir(), &pg.data_dir());
    let mut admin = PgConnection::connect(&pg.url("postgres", None, "postgres"))
        .await
        .unwrap();
    sqlx::raw_sql("CREATE DATABASE shop")
        .execute(&mut admin)
        .await
        .unwrap();
    let db = TestDb {
        name: "shop".to_owned(),
        url: pg.url("postgres", None, "shop"),
    };
    db.seed(orders, false).await;
    (pg, db)
}

/// A fresh database whose legacy shop of `orders` orders lives in the schema "Shop", as with
/// Prisma's `?schema=Shop`; nothing in public. Returns it and a connection whose search_path is
/// "Shop".
pub async fn shop_in_schema_shop(orders: i64) -> (TestDb, PgConnection) {
    let db = cluster().fresh_db().await;
    let mut conn = db.conn().await;
    sqlx::raw_sql("CREATE SCHEMA \"Shop\"; SET search_path TO \"Shop\"")
        .execute(&mut conn)
        .await
        .unwrap();
    paytool::seed::seed(
        &mut conn,
        db.name.clone(),
        paytool::seed::SeedOptions {
            orders,
            stock_anomalies: false,
        },
    )
    .await
    .unwrap();
    (db, conn)
}

pub fn paytool() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("paytool").expect("paytool binary");
    cmd.env_remove("DATABASE_URL")
        .env_remove("PAYTOOL_LOG")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env("CI", "true")
        .timeout(std::time::Duration::from_secs(300));
    cmd
}

/// Everything the schema of `public` is made of, one line per fact, sorted: columns
/// (type, nullability, default), constraints (definition, validated), indexes (definition,
/// valid), triggers, functions, operators and enum types. Column order is left out on purpose.
pub async fn catalog_snapshot(conn: &mut PgConnection) -> String {
    let queries = [
        "SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END
                || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped",
        "SELECT 'constraint ' || conrelid::regclass::text || '.' || conname || ' ' || pg_get_constraintdef(oid)
                || CASE WHEN convalidated THEN '' ELSE ' NOT VALIDATED' END
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
        "SELECT 'index ' || pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = 'public'::regnamespace",
        "SELECT 'trigger ' || pg_get_triggerdef(t.oid)
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace",
        "SELECT 'function ' || p.proname FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace",
        "SELECT 'operator ' || o.oprname || '(' || format_type(o.oprleft, NULL) || ', '
                || format_type(o.oprright, NULL) || ') ' || o.oprcode::text
         FROM pg_operator o WHERE o.oprnamespace = 'public'::regnamespace",
        "SELECT 'type ' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
         FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
         WHERE t.typnamespace = 'public'::regnamespace GROUP BY t.typname",
        "SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', 'public')",
    ];
    let mut lines = Vec::new();
    for sql in queries {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut *conn)
            .await
            .expect("catalog query");
        lines.extend(rows);
    }
    lines.sort();
    lines.join("\n")
}

/// A digest of every legacy row and value, to prove a command changed none of them.
pub async fn legacy_data_digest(conn: &mut PgConnection) -> String {
    let sql = "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
        SELECT 'u' || id || email || coalesce(name, '~') || created_at::text AS x FROM users
        UNION ALL SELECT 'm' || id || name || coalesce(location, '~') FROM machines
        UNION ALL SELECT 'p' || id || name || price::text || active::text FROM products
        UNION ALL SELECT 's' || id || machine_id || product_id || slot_number || ':' || quantity || updated_at::text FROM stocks
        UNION ALL SELECT 'o' || id || user_id || coalesce(machine_id, '~') || status::text || created_at::text || updated_at::text FROM orders
        UNION ALL SELECT 'i' || id || order_id || coalesce(product_id, '~') || quantity FROM order_items) AS rows";
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .expect("digest")
}

pub fn json(output: &[u8]) -> serde_json::Value {
    serde_json::from_slice(output).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(output)
        )
    })
}

/// The exit code and JSON report of a command that must have run (exit 0 or 1).
pub fn json_run(out: std::process::Output) -> (i32, serde_json::Value) {
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "the command could not run ({code}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, json(&out.stdout))
}

/// Polls `condition` (SQL returning one boolean; `$1` is `arg`) until it holds, failing the
/// test with "never happened: {what}" after `within`.
pub async fn wait_for(
    conn: &mut PgConnection,
    condition: &str,
    arg: &str,
    what: &str,
    within: std::time::Duration,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let holds: Option<bool> = sqlx::query_scalar(sqlx::AssertSqlSafe(condition.to_owned()))
            .bind(arg)
            .fetch_optional(&mut *conn)
            .await
            .unwrap_or(None);
        if holds == Some(true) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// `paytool ARGS --format json` on `db`: its exit code (0 or 1) and JSON report.
pub fn run_json(db: &TestDb, args: &[&str]) -> (i32, serde_json::Value) {
    json_run(
        db.paytool()
            .args(args)
            .args(["--format", "json"])
            .output()
            .expect("paytool runs"),
    )
}

/// `paytool migrate down` with its confirmation flag, which must succeed.
pub fn migrate_down(db: &TestDb) {
    let out = db
        .paytool()
        .args([
            "migrate",
            "down",
            "--i-understand-this-destroys-payment-data",
        ])
        .output()
        .expect("paytool runs");
    assert!(
        out.status.success(),
        "migrate down failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One check of a verify report, by id.
pub fn verify_check<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

/// Every value the backfill writes, row by row (payments' own ids are random, so left out).
pub async fn backfilled_digest(conn: &mut PgConnection) -> String {
    sqlx::query_scalar(
        "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
            SELECT 'i' || (i.*)::TEXT AS x FROM order_items AS i
            UNION ALL SELECT 'o' || (o.*)::TEXT FROM orders AS o
            UNION ALL SELECT 'p' || (p.order_id, p.stripe_payment_intent_id, p.amount_cents, p.currency,
                                     p.status, p.succeeded_at, p.created_at, p.updated_at)::TEXT
                      FROM payments AS p
            UNION ALL SELECT 'q' || q.order_id FROM paytool.backfill_payment_queue AS q) AS rows",
    )
    .fetch_one(conn)
    .await
    .expect("digest")
}

/// Rows the backfill has committed so far: snapshots taken plus payments made.
pub async fn committed(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM order_items WHERE label IS NOT NULL)
              + (SELECT count(*) FROM payments)",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

/// The held run ended by itself with every payment made; returns how many.
pub async fn assert_finished_by_itself(conn: &mut PgConnection, report: &serde_json::Value) -> i64 {
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(conn)
        .await
        .unwrap();
    assert_eq!(
        report["steps"][2]["changed"].as_i64().unwrap(),
        payments,
        "it finished by itself: {report:#}"
    );
    payments
}
