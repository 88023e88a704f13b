#!/usr/bin/env bash
# The whole test suite: formatting, lints (clippy, squawk on sql/), unit and integration
# tests against a real PostgreSQL the suite starts itself (15, and 13-18 for the version
# matrix) and a real Prisma Client (tests/app, Node). Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ensure_cargo
ensure_postgres
ensure_pgbouncer
ensure_squawk
ensure_metrics_parser
ensure_prisma_app
ensure_test_servers

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "==> import graph (no module circle)"
python3 scripts/import-graph.py src | tail -n 1
echo "==> squawk sql/"
squawk 'sql/**/*.sql'
echo "==> cargo test"
# Benchmarks are built by clippy above and run by scripts/bench.sh, not here.
cargo test --lib --bins --tests
