//! Flags, configuration and connection failures: one clear sentence, the right exit code,
//! never a panic, never the password.

use predicates::prelude::*;

use crate::harness::{cluster, paytool};

const SECRET: &str = "Sup3rS3cret";

fn no_panic_no_secret() -> impl Predicate<str> {
    predicate::str::contains("panicked")
        .not()
        .and(predicate::str::contains(SECRET).not())
}

#[test]
fn help_documents_exit_codes_and_examples() {
    paytool()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes: 0 success"));
    paytool()
        .args(["migrate", "--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Examples:").and(predicate::str::contains("migrate plan")),
        );
}

#[test]
fn bad_flags_are_usage_errors() {
    paytool()
        .args(["migrate", "--lock-timeout", "banana"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("500ms"));
    paytool()
        .args(["migrate", "--format", "xml"])
        .assert()
        .code(2);
    paytool().arg("frobnicate").assert().code(2);
}

#[test]
fn missing_database_url_is_a_usage_error() {
    paytool()
        .args(["migrate", "status"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error: no database given: pass --database-url or set DATABASE_URL",
        ));
}

#[test]
fn malformed_url_is_refused_without_echoing_the_password() {
    paytool()
        .args(["migrate", "status", "--database-url"])
        .arg(format!("postgres://app:{SECRET}@db.example:notaport/shop"))
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(
            predicate::str::contains("invalid --database-url: not a valid PostgreSQL URL")
                .and(no_panic_no_secret()),
        );
}

#[test]
fn unreachable_server_is_a_runtime_failure_without_the_password() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    paytool()
        .args(["migrate", "plan"])
        .env(
            "DATABASE_URL",
            format!("postgres://app:{SECRET}@127.0.0.1:{port}/shop"),
        )
        .assert()
        .code(3)
        .stdout(predicate::str::is_empty())
        .stderr(
            predicate::str::contains("cannot reach PostgreSQL at postgres://app:***@127.0.0.1")
                .and(no_panic_no_secret()),
        );
}

#[tokio::test]
async fn wrong_password_is_a_configuration_error_without_the_password() {
    let cluster = cluster();
    let db = cluster.fresh_db().await;
    let mut admin = cluster.admin().await;
    let role = format!("app_{}", db.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'right-one'"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    paytool()
        .args(["migrate", "status"])
        .env("DATABASE_URL", cluster.url(&role, Some(SECRET), &db.name))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("refused the credentials").and(no_panic_no_secret()));
}

#[tokio::test]
async fn missing_database_is_a_configuration_error() {
    let cluster = cluster();
    paytool()
        .args(["migrate", "status"])
        .env("DATABASE_URL", cluster.url("postgres", None, "no_such_db"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not exist"));
}

#[tokio::test]
async fn database_without_the_legacy_schema_is_refused() {
    let db = cluster().fresh_db().await;
    for action in [
        &["migrate"][..],
        &["migrate", "plan"],
        &["migrate", "status"],
    ] {
        db.paytool()
            .args(action)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "does not have the legacy payments schema (missing: machines, order_items, orders",
            ));
    }
}

#[tokio::test]
async fn seed_refuses_a_database_that_has_tables() {
    let db = cluster().fresh_db().await;
    db.paytool()
        .args(["seed", "--orders", "50"])
        .assert()
        .success()
        .stdout(predicate::str::contains("orders"));
    db.paytool()
        .args(["seed", "--orders", "50"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already has tables"));
}

#[test]
fn every_command_help_has_an_example() {
    let command = <paytool::cli::Cli as clap::CommandFactory>::command();
    let mut paths: Vec<Vec<String>> = Vec::new();
    for sub in command.get_subcommands() {
        paths.push(vec![sub.get_name().to_owned()]);
        for nested in sub.get_subcommands() {
            paths.push(vec![
                sub.get_name().to_owned(),
                nested.get_name().to_owned(),
            ]);
        }
    }
    assert!(paths.len() >= 12);
    for path in paths {
        crate::harness::paytool()
            .args(&path)
            .arg("--help")
            .assert()
            .success()
            .stdout(predicates::str::contains("Example"));
    }
}

/// In an 80-column terminal clap wraps what is wider, and a wrapped example comment reads like
/// a command: every line of every help text (examples, exit codes) fits in 80 columns as
/// written.
#[test]
fn every_help_text_fits_80_columns_as_written() {
    fn texts(command: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
        for text in [command.get_after_help(), command.get_after_long_help()]
            .into_iter()
            .flatten()
        {
            out.push((path.to_owned(), text.to_string()));
        }
        for sub in command.get_subcommands() {
            texts(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }
    let command = <paytool::cli::Cli as clap::CommandFactory>::command();
    let mut all = Vec::new();
    texts(&command, "paytool", &mut all);
    assert!(all.len() >= 12);
    let too_wide: Vec<String> = all
        .iter()
        .flat_map(|(path, text)| {
            text.lines()
                .filter(|line| line.chars().count() > 80)
                .map(move |line| format!("{path} --help ({}): {line}", line.chars().count()))
        })
        .collect();
    assert!(too_wide.is_empty(), "{}", too_wide.join("\n"));
}
