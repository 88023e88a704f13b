//! paytool where the team already works: GitHub Actions annotations and step summaries,
//! markdown for a pull-request comment, GitLab Code Quality, and metrics files read by a real
//! OpenMetrics parser.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::{TestDb, cluster, json, seeded_and_migrated, wait_for};

/// A legacy shop, not migrated: verify fails its schema checks and skips its data checks.
async fn legacy_shop() -> TestDb {
    let db = cluster().fresh_db().await;
    db.seed(1_000, true).await;
    db
}

fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[tokio::test]
async fn under_github_actions_verify_annotates_within_githubs_limits_and_writes_the_summary() {
    let db = legacy_shop().await;
    let (_, report) = crate::harness::run_json(&db, &["verify", "constraints"]);
    let failed = report["summary"]["failed"].as_u64().unwrap() as usize;
    let warned = (report["summary"]["warnings"].as_u64().unwrap()
        + report["summary"]["skipped"].as_u64().unwrap()) as usize;
    assert!(warned > 10, "more warnings than GitHub shows: {report:#}");

    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let out = db
        .paytool()
        .args(["verify", "constraints"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // stdout keeps the table; the workflow commands go to stderr, which the runner reads too.
    assert!(
        stdout.contains(" passed, ") && !stdout.contains("::error"),
        "{stdout}"
    );
    let errors = lines_starting(&stderr, "::error ");
    let warnings = lines_starting(&stderr, "::warning ");
    assert_eq!(errors.len(), failed.min(10), "{stderr}");
    assert_eq!(warnings.len(), 10, "{stderr}");
    assert!(
        errors[0].starts_with("::error title=paytool verify%3A schema."),
        "{}",
        errors[0]
    );
    assert!(
        stderr.contains(&format!(
            "::notice title=paytool::0 more error(s) and {} more warning(s) than GitHub shows per step",
            warned - 10
        )),
        "{stderr}"
    );
    let written = std::fs::read_to_string(&summary).unwrap();
    assert!(
        written.starts_with("earlier step\n"),
        "appended, not replaced"
    );
    assert!(
        written.contains("### paytool verify constraints"),
        "{written}"
    );
    assert!(
        written.contains("| status | check | count | what it means |"),
        "{written}"
    );
    assert!(written.contains("| FAIL | `schema.tables` |"), "{written}");

    // --format github: the commands are the report, on stdout.
    let out = db
        .paytool()
        .args(["verify", "constraints", "--format", "github"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(lines_starting(&stdout, "::error ").len(), failed.min(10));
}

#[tokio::test]
async fn the_markdown_plan_of_the_whole_migration_fits_one_pull_request_comment() {
    let db = legacy_shop().await;
    let out = db
        .paytool()
        .args(["migrate", "plan", "--format", "markdown"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let markdown = String::from_utf8(out.stdout).unwrap();
    assert!(
        markdown.chars().count() <= 65_536,
        "{} characters",
        markdown.chars().count()
    );
    assert!(
        markdown.starts_with("### paytool migrate plan\n"),
        "{markdown}"
    );
    for step in paytool::migrate::steps::STEPS {
        assert!(
            markdown.contains(&format!("| `{}` |", step.name)),
            "{}",
            step.name
        );
    }
    assert!(
        markdown.contains("| **yes** |"),
        "the steps that block writes say so"
    );
    assert!(
        markdown.contains("#### Preflight: data the migration would fail on"),
        "the seeded dirty stock is named: {markdown}"
    );
    // A format a command does not have is refused before it runs, naming the ones it has.
    db.paytool()
        .args(["migrate", "--format", "markdown"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("it has: table, json"));
}

#[tokio::test]
async fn gitlab_code_quality_has_every_field_and_fingerprints_stable_across_runs() {
    let db = legacy_shop().await;
    let run = || {
        let out = db
            .paytool()
            .args(["verify", "constraints", "--format", "gitlab"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        json(&out.stdout)
    };
    let first = run();
    let second = run();
    let issues = first.as_array().unwrap();
    assert!(!issues.is_empty());
    for issue in issues {
        assert!(
            issue["description"]
                .as_str()
                .unwrap()
                .starts_with("paytool verify: ")
        );
        assert!(issue["check_name"].is_string());
        let fingerprint = issue["fingerprint"].as_str().unwrap();
        assert_eq!(fingerprint.len(), 32);
        assert!(fingerprint.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(["major", "minor", "info"].contains(&issue["severity"].as_str().unwrap()));
        assert!(issue["location"]["path"].is_string());
        assert_eq!(issue["location"]["lines"]["begin"], 1);
    }
    let prints = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["fingerprint"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(prints(&first), prints(&second));
}

/// The families of an OpenMetrics file as the reference Python client parses them (strict:
/// it fails on anything OpenMetrics forbids): family → [(labels, value)].
/// Metric families by name, each a list of (labels, value).
type Families = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

fn parse_openmetrics(path: &std::path::Path) -> Families {
    let python = std::env::var("PAYTOOL_METRICS_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/target/tools-venv/bin/python",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    families[family.name] = [[s.labels, s.value] for s in family.samples]
print(json.dumps(families))
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (scripts/test.sh installs prometheus-client)"));
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused {}: {}\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn value(families: &Families, family: &str, labels: &[(&str, &str)]) -> f64 {
    families[family]
        .iter()
        .find(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("{family} {labels:?} in {families:?}"))
        .1
}

#[tokio::test]
async fn metrics_files_parse_and_say_what_each_run_found() {
    let dir = tempfile::tempdir().unwrap();
    // verify on a legacy shop: problems found.
    let legacy = legacy_shop().await;
    let verify = dir.path().join("verify.prom");
    legacy
        .paytool()
        .args(["verify", "constraints", "--metrics-file"])
        .arg(&verify)
        .assert()
        .code(1);
    let families = parse_openmetrics(&verify);
    assert_eq!(
        value(
            &families,
            "paytool_last_run_exit_code",
            &[("command", "verify")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &families,
            "paytool_last_run_completed",
            &[("command", "verify")]
        ),
        1.0
    );
    assert!(value(&families, "paytool_verify_checks", &[("status", "fail")]) >= 1.0);
    assert!(
        value(
            &families,
            "paytool_verify_check_found",
            &[("check", "schema.tables"), ("severity", "error")]
        ) >= 1.0
    );

    // backfill on a migrated shop.
    let db = seeded_and_migrated(1_000).await;
    let backfill = dir.path().join("backfill.prom");
    db.paytool()
        .args(["backfill", "payments", "-q", "--metrics-file"])
        .arg(&backfill)
        .assert()
        .success();
    let families = parse_openmetrics(&backfill);
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&mut db.conn().await)
        .await
        .unwrap();
    assert_eq!(
        value(
            &families,
            "paytool_backfill_rows_changed",
            &[("step", "payments")]
        ),
        payments as f64
    );
    assert!(families.contains_key("paytool_last_run_duration_seconds"));

    // A run that cannot reach its database still says so, for the alert on it.
    let failed = dir.path().join("failed.prom");
    crate::harness::paytool()
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .args(["verify", "constraints", "--metrics-file"])
        .arg(&failed)
        .assert()
        .code(3);
    let families = parse_openmetrics(&failed);
    assert_eq!(
        value(
            &families,
            "paytool_last_run_completed",
            &[("command", "verify")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &families,
            "paytool_last_run_exit_code",
            &[("command", "verify")]
        ),
        3.0
    );
    assert!(!families.contains_key("paytool_verify_checks"));
}

#[tokio::test]
async fn a_killed_run_leaves_the_previous_metrics_file_whole() {
    let db = seeded_and_migrated(3_000).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backfill.prom");
    std::fs::write(&path, "# TYPE paytool_last_run_completed gauge\n# EOF\n").unwrap();
    let before = std::fs::read(&path).unwrap();
    let path_text = path.display().to_string();
    let mut child = db.spawn(&[
        "backfill",
        "payments",
        "--batch-size",
        "100",
        "--pause-ms",
        "100",
        "--metrics-file",
        &path_text,
    ]);
    wait_for(
        &mut db.conn().await,
        "SELECT count(*) > 300 FROM order_items WHERE label IS NOT NULL AND $1 <> ''",
        "x",
        "the backfill is under way",
        Duration::from_secs(60),
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the previous file, whole"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["backfill.prom"], "no temporary file left");
}

#[tokio::test]
async fn reconcile_speaks_markdown_github_gitlab_and_metrics() {
    let db = seeded_and_migrated(300).await;
    sqlx::raw_sql(
        "UPDATE orders SET created_at = '2025-06-01';
         INSERT INTO orders (id, user_id, status, amount_total_cents, currency, stripe_payment_intent_id, created_at)
         SELECT 'o-ci', min(id), 'PENDING', 1000, 'EUR', 'pi_ci', '2026-01-09 10:00' FROM users;",
    )
    .execute(&mut db.conn().await)
    .await
    .unwrap();
    let sim = paytool::stripe_sim::StripeSim::start("sk_test_ci").unwrap();
    // The order's payment succeeded (a missed webhook: an error), and a stranger's did too
    // (an orphan: a warning).
    for (id, order) in [("pi_ci", Some("o-ci")), ("pi_stranger", Some("o-nobody"))] {
        sim.add_payment_intent(paytool::stripe_sim::SimPaymentIntent {
            id: id.into(),
            amount: 1000,
            currency: "eur".into(),
            status: "succeeded".into(),
            created: 1_768_000_000,
            order_id: order.map(Into::into),
            charge: Some((format!("ch_{id}"), 1_768_000_060)),
            last_error: None,
        });
    }
    let base = sim.base_url();
    let reconcile = |extra: &[&str]| {
        db.paytool()
            .env("STRIPE_SECRET_KEY", "sk_test_ci")
            .args([
                "reconcile",
                "--since",
                "2026-01-01",
                "--until",
                "2026-01-31",
            ])
            .args(["--stripe-base-url", &base])
            .args(extra)
            .output()
            .unwrap()
    };

    let out = reconcile(&["--format", "markdown"]);
    assert_eq!(out.status.code(), Some(1));
    let markdown = String::from_utf8(out.stdout).unwrap();
    assert!(
        markdown.starts_with("### paytool reconcile\n"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| `status_mismatch` | o-ci | pi_ci |"),
        "{markdown}"
    );
    let status_row = markdown.find("`status_mismatch`").unwrap();
    let orphan_row = markdown.find("`orphan_payment_intent`").unwrap();
    assert!(
        status_row < orphan_row,
        "errors before warnings: {markdown}"
    );

    let out = reconcile(&["--format", "gitlab"]);
    let issues = json(&out.stdout);
    let severities: BTreeMap<String, String> = issues
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["check_name"].as_str().unwrap().to_owned(),
                i["severity"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(severities["status_mismatch"], "major");
    assert_eq!(severities["orphan_payment_intent"], "minor");

    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    let metrics = dir.path().join("reconcile.prom");
    let out = db
        .paytool()
        .env("STRIPE_SECRET_KEY", "sk_test_ci")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args([
            "reconcile",
            "--since",
            "2026-01-01",
            "--until",
            "2026-01-31",
        ])
        .args([
            "--stripe-base-url",
            &base,
            "--format",
            "json",
            "--metrics-file",
        ])
        .arg(&metrics)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out.stdout);
    assert_eq!(
        report["findings"].as_array().unwrap().len(),
        2,
        "stdout is the JSON alone"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        lines_starting(
            &stderr,
            "::error title=paytool reconcile%3A status_mismatch order o-ci (pi_ci)::"
        )
        .len(),
        1,
        "{stderr}"
    );
    assert_eq!(lines_starting(&stderr, "::warning ").len(), 1, "{stderr}");
    assert!(
        std::fs::read_to_string(&summary)
            .unwrap()
            .contains("### paytool reconcile")
    );
    let families = parse_openmetrics(&metrics);
    let findings = |kind: &str| value(&families, "paytool_reconcile_findings", &[("kind", kind)]);
    assert_eq!(findings("status_mismatch"), 1.0);
    assert_eq!(findings("orphan_payment_intent"), 1.0);
    assert_eq!(
        findings("amount_mismatch"),
        0.0,
        "every kind listed, 0 included"
    );
    assert_eq!(families["paytool_reconcile_findings"].len(), 12);
    assert_eq!(sim.mutations(), 0);
}

#[tokio::test]
async fn migrate_status_annotates_the_steps_that_fail_it() {
    let db = legacy_shop().await;
    let out = db
        .paytool()
        .args(["migrate", "status", "--format", "github"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "steps are pending");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pending =
        paytool::migrate::steps::steps_of(paytool::migrate::steps::Phase::Migrate).count();
    assert_eq!(lines_starting(&stdout, "::error ").len(), 10, "{stdout}");
    assert!(
        stdout.contains("::error title=paytool migrate status%3A 001_users_stripe_customer_id pending::not applied: run paytool migrate"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "::notice title=paytool::{} more error(s)",
            pending - 10
        )),
        "{stdout}"
    );
}
