#!/usr/bin/env bash
# Builds paytool's npm packages, the way esbuild and biome ship a binary: a launcher package
# `paytool` and one platform package holding the binary (`@paytool/cli-<os>-<cpu>-<libc>`),
# named in the launcher's optionalDependencies. Packs both with `npm pack`.
#
#   scripts/npm-pack.sh [BINARY] [OUT_DIR]
#
# BINARY: the paytool to ship (default: target/dist/paytool, built with the dist profile:
# stripped, LTO). OUT_DIR: where the two tarballs go (default: target/npm). Prints their paths.
# A release builds one platform package per target on its own runner, then publishes them and
# the launcher (whose optionalDependencies then name every platform: PAYTOOL_NPM_PLATFORMS).
set -euo pipefail
cd "$(dirname "$0")/.."

binary="${1:-target/dist/paytool}"
out="${2:-target/npm}"
if [ ! -x "$binary" ]; then
    if [ "$binary" = target/dist/paytool ]; then
        echo "==> cargo build --profile dist" >&2
        cargo build --profile dist --quiet
    else
        echo "npm-pack: $binary is not an executable" >&2
        exit 2
    fi
fi
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"

case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    *) echo "npm-pack: unsupported OS $(uname -s)" >&2; exit 2 ;;
esac
case "$(uname -m)" in
    x86_64 | amd64) cpu=x64 ;;
    aarch64 | arm64) cpu=arm64 ;;
    *) echo "npm-pack: unsupported CPU $(uname -m)" >&2; exit 2 ;;
esac
libc=""
if [ "$os" = linux ]; then
    if ldd --version 2>&1 | grep -qi musl; then libc=musl; else libc=gnu; fi
fi
platform="$os-$cpu${libc:+-$libc}"
platforms="${PAYTOOL_NPM_PLATFORMS:-$platform}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# The platform package: the binary and what npm needs to install it only where it runs.
pkg="$work/cli-$platform"
mkdir -p "$pkg/bin"
cp "$binary" "$pkg/bin/paytool"
chmod 755 "$pkg/bin/paytool"
libc_field=""
if [ -n "$libc" ]; then
    if [ "$libc" = gnu ]; then libc_field=',
  "libc": ["glibc"]'; else libc_field=',
  "libc": ["musl"]'; fi
fi
cat > "$pkg/package.json" <<JSON
{
  "name": "@paytool/cli-$platform",
  "version": "$version",
  "description": "The paytool binary for $platform (installed by the paytool package).",
  "license": "UNLICENSED",
  "os": ["$os"],
  "cpu": ["$cpu"]$libc_field,
  "files": ["bin/paytool"],
  "preferUnplugged": true
}
JSON

# The launcher: its bin finds the platform package.
launcher="$work/paytool"
mkdir -p "$launcher/bin"
cp npm/paytool/bin/paytool.js "$launcher/bin/paytool.js"
cp npm/README.md "$launcher/README.md"
optional=""
for p in $platforms; do
    optional="$optional${optional:+,
    }\"@paytool/cli-$p\": \"$version\""
done
cat > "$launcher/package.json" <<JSON
{
  "name": "paytool",
  "version": "$version",
  "description": "Move a live PostgreSQL payments database onto a robust payment model, and keep it honest.",
  "license": "UNLICENSED",
  "bin": { "paytool": "bin/paytool.js" },
  "files": ["bin/paytool.js", "README.md"],
  "engines": { "node": ">=18" },
  "optionalDependencies": {
    $optional
  }
}
JSON

for dir in "$pkg" "$launcher"; do
    (cd "$dir" && npm pack --silent --pack-destination "$out") | sed "s|^|$out/|"
done
