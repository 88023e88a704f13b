#!/usr/bin/env bash
# The main job on an embedded default, offline: a throwaway PostgreSQL with realistic dirty
# legacy data, then paytool migrate walked through plan → preflight refusal → fix → apply →
# status → re-run → backfill → verify. Everything is removed at the end (Ctrl-C included).
# Usage: ./scripts/demo.sh [ORDERS]   (default 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

orders=${1:-5000}
ensure_cargo
ensure_postgres
echo "==> building paytool (release)"
cargo build --release --quiet
paytool=target/release/paytool

trap stop_cluster EXIT INT TERM
start_cluster
"$PG_BIN/psql" -q "$CLUSTER_URL/postgres" -c "CREATE DATABASE shop"
export DATABASE_URL="$CLUSTER_URL/shop"
export CI=${CI:-}

step() { printf '\n== %s\n$ %s\n' "$1" "${*:2}"; }

step "Seed a legacy database ($orders orders, dirty)" paytool seed --orders "$orders"
$paytool seed --orders "$orders"

step "See every step before it happens" paytool migrate plan --no-sql
$paytool migrate plan --no-sql

step "Apply: the preflight refuses dirty data and changes nothing" paytool migrate
$paytool migrate || echo "(exit code $? — as expected)"

step "Fix the data the way the preflight says" psql ...
"$PG_BIN/psql" -q "$DATABASE_URL" <<'SQL'
UPDATE stocks SET quantity = 0 WHERE quantity < 0;
DELETE FROM stocks s USING stocks t
WHERE s.machine_id = t.machine_id AND s.slot_number = t.slot_number AND s.id > t.id;
SQL
echo "set negative quantities to 0 and kept one stocks row per machine slot"

step "Apply online" paytool migrate
$paytool migrate

step "Status" paytool migrate status
$paytool migrate status

step "Run again: nothing to do" paytool migrate
$paytool migrate

step "Backfill, dry run: what each step would change" paytool backfill payments --dry-run
$paytool backfill payments --dry-run

step "Backfill: snapshots, totals, payment rows, in checkpointed batches" paytool backfill payments
$paytool backfill payments

step "Run again: nothing left to change" paytool backfill payments
$paytool backfill payments

step "Verify the schema and the data invariants" paytool verify constraints
$paytool verify constraints
