#!/usr/bin/env bash
# Benchmarks (numbers on stdout, see docs/performance.md). BENCH_ORDERS sets the size
# (default 1,000,000 orders); BENCH_SHAPES_ORDERS the size of the data-shape benchmark (200,000),
# BENCH_REPEATS how many times it runs each job on a fresh copy (2: the ratio is best against best).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
ensure_cargo
ensure_postgres
cargo bench --bench migrate
cargo bench --bench backfill
BENCH_ORDERS=${BENCH_SHAPES_ORDERS:-200000} cargo bench --bench shapes
cargo bench --bench reconcile
cargo bench --bench workers
cargo bench --bench payouts
