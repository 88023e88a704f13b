//! The users' application as a real Prisma Client 6.19 (tests/app, `engineType = "client"` with
//! @prisma/adapter-pg) and 7.10 (tests/app7, the same models and driver) running while paytool
//! changes the schema under it, and the real Prisma CLI 6.19 agreeing with paytool afterwards
//! (Prisma 7's migrate commands cannot run offline: SPEC §7). `scripts/test.sh` installs both
//! (npm ci) and generates their clients before the suite runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqlx::PgConnection;

use crate::harness::{catalog_snapshot, cluster, json, migrate_down, run_json};

/// The Prisma major whose client the application runs.
#[derive(Debug, Clone, Copy)]
enum Prisma {
    V6,
    V7,
}

impl Prisma {
    fn dir(self) -> PathBuf {
        let name = match self {
            Prisma::V6 => "tests/app",
            Prisma::V7 => "tests/app7",
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        assert!(
            dir.join("node_modules/@prisma/client").is_dir()
                && dir.join("generated/legacy/index.js").is_file()
                && dir.join("generated/upgraded/index.js").is_file(),
            "{name} is not installed: run ./scripts/test.sh (npm ci, then {name}/generate.sh)"
        );
        dir
    }
}

fn app_dir() -> PathBuf {
    Prisma::V6.dir()
}

/// `node driver.js ARGS` against `url` with Prisma 6, stdout captured (the driver's JSON summary).
fn driver(url: &str, args: &[&str]) -> Child {
    driver_of(Prisma::V6, url, args)
}

/// The same driver run with `prisma`'s client (from its directory).
fn driver_of(prisma: Prisma, url: &str, args: &[&str]) -> Child {
    Command::new("node")
        .arg(app_dir().join("driver.js"))
        .args(args)
        .current_dir(prisma.dir())
        .env("DATABASE_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts (Node.js 20 is needed for the Prisma tests)")
}

/// Stops a running driver (SIGTERM: it finishes its current operation) and returns its summary.
fn stop(child: Child) -> serde_json::Value {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    summary(child)
}

fn summary(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().expect("driver output");
    assert!(
        out.status.success(),
        "the driver itself failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out.stdout)
}

fn assert_no_failed_operation(summary: &serde_json::Value, phase: &str) {
    assert_eq!(
        summary["failures"], 0,
        "{phase}: the application saw failed operations: {:#}",
        summary["errors"]
    );
    assert!(
        summary["ops"].as_i64().unwrap() > 50,
        "{phase}: too few operations to prove anything: {summary}"
    );
}

/// Every order the driver created is in the database with the status the driver left it in
/// and all its items.
async fn assert_orders_written(conn: &mut PgConnection, summary: &serde_json::Value) {
    let orders = summary["orders"].as_array().unwrap();
    assert!(!orders.is_empty());
    for order in orders {
        let id = order["id"].as_str().unwrap();
        let (status, items): (String, i64) = sqlx::query_as(
            "SELECT o.status::text, (SELECT count(*) FROM order_items i WHERE i.order_id = o.id)
             FROM orders o WHERE o.id = $1",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("order {id} written by the application is missing: {e}"));
        assert_eq!(status, order["status"].as_str().unwrap(), "order {id}");
        assert_eq!(items, order["items"].as_i64().unwrap(), "order {id}");
    }
}

fn assert_carts_were_edited(summary: &serde_json::Value) {
    let edited = &summary["byOperation"]["edit a cart"];
    assert!(
        edited["ok"].as_i64().unwrap_or(0) > 5 && edited["failed"] == 0,
        "{summary}"
    );
}

/// Totals and payments agree with the items: verify's data checks, none failed.
async fn assert_derived_data_true(db: &crate::harness::TestDb) {
    let (code, report) = run_json(db, &["verify", "constraints", "--only", "data"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["summary"]["failed"], 0, "{report:#}");
}

async fn count_orders(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_legacy_prisma_app_never_fails_across_migrate_and_the_upgraded_one_after_it() {
    legacy_then_upgraded_app_across_migrate(Prisma::V6).await;
}

#[tokio::test]
async fn prisma_7_never_fails_across_migrate_and_after_it() {
    legacy_then_upgraded_app_across_migrate(Prisma::V7).await;
}

async fn legacy_then_upgraded_app_across_migrate(prisma: Prisma) {
    let driver = |url: &str, args: &[&str]| driver_of(prisma, url, args);
    let db = cluster().fresh_db().await;
    db.seed(60_000, false).await;
    let mut conn = db.conn().await;

    let legacy = driver(&db.url, &["legacy"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Small batches: the shadow-column phase (trigger + batched copy) lasts seconds.
    let orders_before = count_orders(&mut conn).await;
    let (code, report) = run_json(&db, &["migrate", "--batch-size", "50"]);
    let orders_during = count_orders(&mut conn).await - orders_before;
    assert_eq!((code, report["outcome"].as_str()), (0, Some("applied")));
    let shadow_ms = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "batched")
        .unwrap()["duration_ms"]
        .as_u64()
        .unwrap();
    // Preconditions that make the test mean something, with a wide margin for slow or fast
    // machines (CI measured 993 ms for batches of 100).
    assert!(shadow_ms > 500, "the shadow phase took only {shadow_ms} ms");
    assert!(
        orders_during > 0,
        "the application wrote no order while migrate ran"
    );

    // The legacy application still runs: the cleanup refuses and changes nothing.
    let (code, cleanup) = run_json(&db, &["migrate", "cleanup", "--watch", "2s"]);
    assert_eq!(code, 1, "{cleanup}");
    assert_eq!(cleanup["outcome"], "refused_in_use");
    assert_eq!(
        cleanup["preflight"]["findings"][0]["check"],
        "legacy_clients_connected"
    );
    let legacy = stop(legacy);
    assert_no_failed_operation(&legacy, "legacy app during migrate");
    assert_orders_written(&mut conn, &legacy).await;
    assert_carts_were_edited(&legacy);
    // After the backfill, carts the legacy application edits keep their derived data true.
    let (code, _) = run_json(&db, &["backfill", "payments", "--ignore-autovacuum"]);
    assert_eq!(code, 0);
    let editing = summary(driver(&db.url, &["legacy", "--seconds", "2"]));
    assert_no_failed_operation(&editing, "legacy app editing carts after the backfill");
    assert_carts_were_edited(&editing);
    assert_orders_written(&mut conn, &editing).await;
    assert_derived_data_true(&db).await;

    // The upgraded application from the end of migrate on, then after the cleanup.
    let upgraded = summary(driver(&db.url, &["upgraded", "--seconds", "2"]));
    assert_no_failed_operation(&upgraded, "upgraded app after migrate");
    assert_orders_written(&mut conn, &upgraded).await;
    let (code, cleanup) = run_json(&db, &["migrate", "cleanup", "--watch", "500ms"]);
    assert_eq!((code, cleanup["outcome"].as_str()), (0, Some("applied")));
    let upgraded = summary(driver(&db.url, &["upgraded", "--seconds", "2"]));
    assert_no_failed_operation(&upgraded, "upgraded app after cleanup");
    let paid_without_payment: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders o WHERE o.id = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id AND p.amount_cents = o.amount_total_cents)",
    )
    .bind(
        upgraded["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>(),
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(paid_without_payment, 0);
}

#[tokio::test]
async fn the_legacy_prisma_app_keeps_working_through_migrate_down() {
    legacy_app_through_migrate_down(Prisma::V6).await;
}

#[tokio::test]
async fn prisma_7_keeps_working_through_migrate_down() {
    legacy_app_through_migrate_down(Prisma::V7).await;
}

async fn legacy_app_through_migrate_down(prisma: Prisma) {
    let driver = |url: &str, args: &[&str]| driver_of(prisma, url, args);
    let db = cluster().fresh_db().await;
    db.seed(5_000, false).await;
    let (code, _) = run_json(&db, &["migrate"]);
    assert_eq!(code, 0);
    let legacy = driver(&db.url, &["legacy"]);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    migrate_down(&db);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let legacy = stop(legacy);
    assert_no_failed_operation(&legacy, "legacy app across down");
    let mut conn = db.conn().await;
    assert_orders_written(&mut conn, &legacy).await;
    let status_type: String = sqlx::query_scalar(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
         WHERE attrelid = 'orders'::regclass AND attname = 'status'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(status_type, "order_status");
}

#[tokio::test]
async fn prisma_schema_prints_the_models_the_upgraded_client_was_generated_from() {
    let db = cluster().fresh_db().await;
    db.seed(300, false).await;
    let out = db.paytool().args(["prisma", "schema"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "not migrated yet: refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("run paytool migrate first"));

    assert_eq!(run_json(&db, &["migrate"]).0, 0);
    let out = db.paytool().args(["prisma", "schema"]).output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(app_dir().join("prisma/upgraded.prisma")).unwrap();
    assert!(
        committed.ends_with(&printed),
        "tests/app/prisma/upgraded.prisma no longer holds what paytool prisma schema prints:\n{printed}"
    );

    // The client generated from those models works on every new model and field.
    let crud = summary(driver(&db.url, &["upgraded", "--crud"]));
    for (check, ok) in crud["crud"].as_object().unwrap() {
        assert_eq!(ok, true, "crud {check}: {crud}");
    }
}

#[tokio::test]
async fn prisma_schema_lists_the_applications_own_columns() {
    let db = cluster().fresh_db().await;
    db.seed(100, false).await;
    let mut conn = db.conn().await;
    sqlx::raw_sql("ALTER TABLE orders ADD COLUMN coupon_code TEXT")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(run_json(&db, &["migrate"]).0, 0);
    let (_, report) = run_json(&db, &["prisma", "schema"]);
    assert_eq!(report["unmodelled_columns"][0], "orders.coupon_code text");
    assert!(
        report["schema"]
            .as_str()
            .unwrap()
            .contains("// column coupon_code (text) belongs to the application")
    );
}

/// The Prisma CLI 6.19 offline (SPEC §6): WebAssembly schema engine through prisma.config.ts.
fn prisma_cli(url: &str, migrations: &Path, args: &[&str]) -> (i32, String) {
    let dir = app_dir();
    let out = Command::new(dir.join("node_modules/.bin/prisma"))
        .args(args)
        .current_dir(&dir)
        .env("DATABASE_URL", url)
        .env("PRISMA_SCHEMA", dir.join("prisma/upgraded.prisma"))
        .env("PRISMA_MIGRATIONS", migrations)
        .env("PRISMA_QUERY_ENGINE_LIBRARY", dir.join("package.json"))
        .env("PRISMA_HIDE_UPDATE_MESSAGE", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("the Prisma CLI runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn prisma_baseline_makes_prisma_migrate_status_and_deploy_agree() {
    let db = cluster().fresh_db().await;
    db.seed(500, false).await;
    assert_eq!(run_json(&db, &["migrate"]).0, 0);
    // The backfill builds the last three indexes of the schema (migrate steps 027, 030, 028).
    let (_, backfill) = run_json(&db, &["backfill", "payments"]);
    assert_eq!(backfill["indexes_built"].as_array().unwrap().len(), 3);
    let migrations = tempfile::tempdir().unwrap();
    let dir = migrations.path().to_str().unwrap();

    let (code, _) = prisma_cli(&db.url, migrations.path(), &["migrate", "status"]);
    assert_ne!(
        code, 0,
        "before the baseline Prisma does not manage this database"
    );

    let (code, first) = run_json(&db, &["prisma", "baseline", "--migrations-dir", dir]);
    assert_eq!(code, 0);
    assert_eq!(first["written"], true);
    assert_eq!(first["recorded"], true);
    assert_eq!(first["includes_legacy_schema"], true);
    let name = first["migration_name"].as_str().unwrap();
    assert!(name.ends_with("_payment_system"), "{name}");

    let (code, status) = prisma_cli(&db.url, migrations.path(), &["migrate", "status"]);
    assert_eq!(code, 0, "{status}");
    assert!(status.contains("Database schema is up to date"), "{status}");
    // `migrate deploy` of the offline (WebAssembly) engine stops on prisma/orm#27403 before it
    // applies anything, even on a database without paytool (SPEC §6); where it runs, it must
    // find nothing to apply. Either way the database is left as it was.
    let before = catalog_snapshot(&mut db.conn().await).await;
    let (code, deploy) = prisma_cli(&db.url, migrations.path(), &["migrate", "deploy"]);
    assert!(
        (code == 0 && deploy.contains("No pending migrations to apply"))
            || deploy.contains(PRISMA_27403),
        "{deploy}"
    );
    assert_eq!(catalog_snapshot(&mut db.conn().await).await, before);

    // Again: nothing written, nothing recorded twice.
    let (code, again) = run_json(&db, &["prisma", "baseline", "--migrations-dir", dir]);
    assert_eq!(code, 0);
    assert_eq!(
        (again["written"].as_bool(), again["recorded"].as_bool()),
        (Some(false), Some(false))
    );
    let mut conn = db.conn().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM _prisma_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 1);

    // Prisma itself applies the migration to an empty (shadow) database, as `prisma migrate dev`
    // would, and gets the schema paytool migrate left. (Its diff of the result then stops on
    // prisma/orm#27403 with the offline engine; the tables it built are what is checked here.)
    let shadow = cluster().fresh_db().await;
    let (code, diff) = prisma_cli(
        &shadow.url,
        migrations.path(),
        &[
            "migrate",
            "diff",
            "--from-migrations",
            dir,
            "--to-schema-datamodel",
            "prisma/upgraded.prisma",
            "--exit-code",
        ],
    );
    assert!(code == 0 || diff.contains(PRISMA_27403), "{diff}");
    let without_bookkeeping = |snapshot: String| {
        snapshot
            .lines()
            .filter(|l| !l.contains("_prisma_migrations") && *l != "schema paytool")
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_bookkeeping(catalog_snapshot(&mut shadow.conn().await).await),
        without_bookkeeping(catalog_snapshot(&mut conn).await)
    );
    assert!(migrations.path().join("migration_lock.toml").is_file());
}

/// The offline Prisma CLI's failure to read columns of type `name` (prisma/orm#27403).
const PRISMA_27403: &str = "Column type 'name' could not be deserialized";

#[tokio::test]
async fn prisma_baseline_refuses_an_edited_migration_and_an_unmigrated_database() {
    let db = cluster().fresh_db().await;
    db.seed(100, false).await;
    let migrations = tempfile::tempdir().unwrap();
    let dir = migrations.path().to_str().unwrap();
    let out = db
        .paytool()
        .args(["prisma", "baseline", "--migrations-dir", dir])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        std::fs::read_dir(migrations.path())
            .unwrap()
            .next()
            .is_none()
    );

    assert_eq!(run_json(&db, &["migrate"]).0, 0);
    // An earlier migration of the application's own: the baseline is then the change alone.
    let init = migrations.path().join("20240101000000_init");
    std::fs::create_dir_all(&init).unwrap();
    std::fs::write(init.join("migration.sql"), "-- the legacy tables\n").unwrap();
    let (code, report) = run_json(&db, &["prisma", "baseline", "--migrations-dir", dir]);
    assert_eq!(code, 0);
    assert_eq!(report["includes_legacy_schema"], false);
    let path = report["path"].as_str().unwrap();
    let sql = std::fs::read_to_string(path).unwrap();
    assert!(!sql.contains("CREATE TABLE users"));
    std::fs::write(path, format!("{sql}\n-- edited\n")).unwrap();
    let out = db
        .paytool()
        .args(["prisma", "baseline", "--migrations-dir", dir])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different payment_system migration"));
}

/// `prisma validate` of Prisma 7's CLI (offline: it needs no schema engine) on `models` under
/// a generator with `preview`'s features.
fn prisma_7_validates(models: &str, preview: &str) -> (bool, String) {
    let dir = Prisma::V7.dir();
    let file = tempfile::Builder::new()
        .suffix(".prisma")
        .tempfile()
        .unwrap();
    std::fs::write(
        file.path(),
        format!(
            "generator client {{\n  provider = \"prisma-client-js\"\n  previewFeatures = [{preview}]\n}}\n\n\
             datasource db {{\n  provider = \"postgresql\"\n}}\n\n{models}"
        ),
    )
    .unwrap();
    let out = Command::new(dir.join("node_modules/.bin/prisma"))
        .args(["validate", "--schema"])
        .arg(file.path())
        .current_dir(&dir)
        .env("PRISMA_SCHEMA_ENGINE_BINARY", dir.join("package.json"))
        .env("PRISMA_QUERY_ENGINE_LIBRARY", dir.join("package.json"))
        .env("PRISMA_HIDE_UPDATE_MESSAGE", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("the Prisma 7 CLI runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn prisma_schema_keeps_the_partial_indexes_for_prisma_7() {
    let db = crate::harness::seeded_and_migrated(200).await;
    let (code, _) = run_json(&db, &["backfill", "payments", "--ignore-autovacuum"]);
    assert_eq!(code, 0);
    // With the preview feature, the indexes are attributes Prisma 7 accepts (and so keeps).
    let (code, report) = run_json(&db, &["prisma", "schema", "--partial-indexes"]);
    assert_eq!(code, 0);
    let live = report["schema"].as_str().unwrap();
    for index in [
        "orders_pending_total_idx",
        "order_items_pending_snapshot_idx",
        "order_items_resolvable_snapshot_idx",
    ] {
        assert!(
            live.contains(&format!("\n  @@index([id], map: \"{index}\", where: raw(")),
            "{live}"
        );
    }
    let (valid, output) = prisma_7_validates(live, "\"partialIndexes\"");
    assert!(valid, "{output}");
    // Without it, they are comments saying what to do, and the schema is valid as it is.
    let (_, report) = run_json(&db, &["prisma", "schema"]);
    let commented = report["schema"].as_str().unwrap();
    assert!(commented.contains("  // @@index([id], map: \"orders_pending_total_idx\""));
    let (valid, output) = prisma_7_validates(commented, "");
    assert!(valid, "{output}");
}
