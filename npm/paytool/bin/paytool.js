#!/usr/bin/env node
"use strict";
// paytool's launcher, as esbuild's and biome's: the binary is in the package of this platform
// (@paytool/cli-<platform>-<arch>[-<libc>]), which npm installs from optionalDependencies and
// skips on every other platform. This script finds it and runs it with our arguments, stdio
// and exit code.
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");

function libc() {
  if (process.platform !== "linux") return null;
  const report = process.report && process.report.getReport ? process.report.getReport() : null;
  const header = report && (typeof report === "string" ? JSON.parse(report).header : report.header);
  return header && header.glibcVersionRuntime ? "gnu" : "musl";
}

const suffix = [process.platform, process.arch, libc()].filter(Boolean).join("-");
const pkg = `@paytool/cli-${suffix}`;
let binary;
try {
  binary = require.resolve(`${pkg}/bin/paytool`);
} catch {
  console.error(
    `paytool: no binary for ${suffix}: the package ${pkg} is not installed. ` +
      "npm installs it with paytool unless optional dependencies are omitted (--omit=optional, " +
      "--no-optional) or the platform has no package; `cargo install --git <paytool's repository>` " +
      "builds paytool from source instead."
  );
  process.exit(2);
}
try {
  fs.accessSync(binary, fs.constants.X_OK);
} catch {
  // A tarball unpacked without its modes: the binary is ours to make executable.
  fs.chmodSync(binary, 0o755);
}
const result = spawnSync(binary, process.argv.slice(2), { stdio: "inherit" });
if (result.error) {
  console.error(`paytool: cannot run ${binary}: ${result.error.message}`);
  process.exit(3);
}
if (result.signal) {
  // Die of the same signal, as a shell expects of the command it ran.
  process.kill(process.pid, result.signal);
}
process.exit(result.status === null ? 3 : result.status);
