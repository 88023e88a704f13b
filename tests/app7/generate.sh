#!/usr/bin/env bash
# Generates the two Prisma 7 Clients of the test application offline, from tests/app's own
# schema files: Prisma 7 takes the connection from prisma.config.ts, so the copies here are
# made without their `url` line, and never drift from the Prisma 6 ones. Every Prisma 7 CLI
# call looks for its native schema engine and would download it: PRISMA_SCHEMA_ENGINE_BINARY
# points at any existing file instead.
set -euo pipefail
cd "$(dirname "$0")"
export PRISMA_QUERY_ENGINE_LIBRARY="$PWD/package.json" PRISMA_SCHEMA_ENGINE_BINARY="$PWD/package.json"
export PRISMA_HIDE_UPDATE_MESSAGE=1 CHECKPOINT_DISABLE=1
mkdir -p prisma
for variant in legacy upgraded; do
    source="../app/prisma/$variant.prisma"
    if [ ! -f "generated/$variant/index.js" ] || [ "$source" -nt "generated/$variant/index.js" ]; then
        echo "==> prisma generate ($variant, Prisma 7)" >&2
        sed '/^  url *= env("DATABASE_URL")$/d' "$source" > "prisma/$variant.prisma"
        if ! out=$(npx --no-install prisma generate --schema "prisma/$variant.prisma" 2>&1); then
            echo "$out" >&2
            exit 1
        fi
    fi
done
