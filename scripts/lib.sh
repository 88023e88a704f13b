# Shared by the scripts: install what is missing, find PostgreSQL, run a throwaway cluster.
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
}

# Starts a throwaway cluster in a temp dir (as the postgres user when root) and sets
# CLUSTER_DIR and CLUSTER_URL. stop_cluster removes it.
start_cluster() {
    CLUSTER_DIR=$(mktemp -d -t paytool-pg-XXXXXX)
    local run=()
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$CLUSTER_DIR"
        run=(runuser -u postgres --)
    fi
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "${run[@]}" "$PG_BIN/initdb" -D "$CLUSTER_DIR/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
    "${run[@]}" "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -w -l "$CLUSTER_DIR/log" \
        -o "-p $port -k $CLUSTER_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" \
        start >/dev/null
    CLUSTER_URL="postgres://postgres@127.0.0.1:$port"
    CLUSTER_RUN=("${run[@]}")
}

stop_cluster() {
    if [ -n "${CLUSTER_DIR:-}" ] && [ -d "$CLUSTER_DIR/data" ]; then
        "${CLUSTER_RUN[@]}" "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast stop >/dev/null 2>&1 || true
        rm -rf "$CLUSTER_DIR"
    fi
}
