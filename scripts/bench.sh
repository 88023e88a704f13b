#!/usr/bin/env bash
# Benchmarks (numbers on stdout, see docs/performance.md). BENCH_ORDERS sets the size
# (default 1,000,000 orders).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
ensure_cargo
ensure_postgres
cargo bench --bench migrate
cargo bench --bench backfill
cargo bench --bench reconcile
