#!/usr/bin/env bash
# Generates the two Prisma Clients of the test application offline (engineType = "client":
# no native engine is downloaded). The CLI still looks for engine files it will not use, so
# PRISMA_QUERY_ENGINE_LIBRARY and PRISMA_SCHEMA_ENGINE_BINARY point at any existing file.
set -euo pipefail
cd "$(dirname "$0")"
export PRISMA_QUERY_ENGINE_LIBRARY="$PWD/package.json" PRISMA_SCHEMA_ENGINE_BINARY="$PWD/package.json"
export PRISMA_HIDE_UPDATE_MESSAGE=1 CHECKPOINT_DISABLE=1 DATABASE_URL="${DATABASE_URL:-postgres://localhost/unused}"
for variant in legacy upgraded; do
    if [ ! -f "generated/$variant/index.js" ] || [ "prisma/$variant.prisma" -nt "generated/$variant/index.js" ]; then
        echo "==> prisma generate ($variant)" >&2
        npx --no-install prisma generate --schema "prisma/$variant.prisma" >/dev/null
    fi
done
