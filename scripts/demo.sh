#!/usr/bin/env bash
# The main job on an embedded default, offline: `paytool demo` starts a throwaway PostgreSQL
# with a dirty legacy shop and a Stripe simulator, then walks migrate plan → migrate
# (preflight refuses) → fix → migrate → backfill → verify → reconcile → reconcile --apply →
# verify. Everything is removed at the end (Ctrl-C included). Installs PostgreSQL if missing.
# Usage: ./scripts/demo.sh [paytool demo flags, e.g. --orders 500 or --keep]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ensure_cargo
ensure_postgres
export PG_BIN
if [ ! -x target/release/paytool ]; then
    echo "==> building paytool (release; the first build takes about 5 minutes on 2 cores)" >&2
fi
cargo build --release
exec ./target/release/paytool demo "$@"
