//! `npx paytool`: the npm packages (a launcher and the platform package holding the binary, as
//! esbuild and biome ship theirs) built by scripts/npm-pack.sh from this build's binary,
//! installed from their tarballs into a fresh Node project, offline, run, and removed.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::cluster;

fn npm(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("npm")
        .current_dir(dir)
        .args(args)
        .args(["--offline", "--no-audit", "--no-fund", "--loglevel=error"])
        .output()
        .expect("npm runs (scripts/test.sh installs Node and npm)");
    assert!(
        out.status.success(),
        "npm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn npx(dir: &Path, database_url: &str, args: &[&str]) -> Output {
    Command::new("npx")
        .current_dir(dir)
        .args(["--offline", "paytool"])
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("CI", "true")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .expect("npx runs")
}

#[tokio::test]
async fn npx_paytool_runs_the_binary_from_the_platform_package() {
    let db = cluster().fresh_db().await;
    db.seed(300, false).await;
    let work = tempfile::tempdir().unwrap();
    let packed = work.path().join("packed");
    // This build's binary, without its debug info (a tenth of the size: packing and installing
    // it takes seconds, not half a minute); releases ship the dist profile's.
    let binary = work.path().join("paytool");
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(&binary)
        .arg(assert_cmd::cargo::cargo_bin("paytool"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !stripped {
        std::fs::copy(assert_cmd::cargo::cargo_bin("paytool"), &binary).unwrap();
    }
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/npm-pack.sh"))
        .arg(&binary)
        .arg(&packed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tarballs: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(tarballs.len(), 2, "{tarballs:?}");
    assert!(tarballs[0].contains("paytool-cli-linux-"), "{tarballs:?}");
    assert!(tarballs[1].ends_with("/paytool-0.1.0.tgz"), "{tarballs:?}");

    let project = work.path().join("shop");
    std::fs::create_dir(&project).unwrap();
    npm(&project, &["init", "-y"]);
    let mut install = vec!["install"];
    install.extend(tarballs.iter().map(String::as_str));
    npm(&project, &install);

    let version = npx(&project, &db.url, &["--version"]);
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("paytool {}", env!("CARGO_PKG_VERSION"))
    );
    let plan = npx(&project, &db.url, &["migrate", "plan", "--format", "json"]);
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan = crate::harness::json(&plan.stdout);
    assert_eq!(
        plan["pending"].as_array().unwrap().len(),
        paytool::migrate::steps::steps_of(paytool::migrate::steps::Phase::Migrate).count()
    );
    // The exit code comes through the launcher.
    let status = npx(&project, &db.url, &["migrate", "status"]);
    assert_eq!(status.status.code(), Some(1), "steps are pending");
    let usage = npx(&project, &db.url, &["migrate", "--format", "csv"]);
    assert_eq!(usage.status.code(), Some(2));

    npm(
        &project,
        &["uninstall", "paytool", "@paytool/cli-linux-x64-gnu"],
    );
    assert!(!project.join("node_modules/paytool").exists());
    assert!(!project.join("node_modules/.bin/paytool").exists());
}
