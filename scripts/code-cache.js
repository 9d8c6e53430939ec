#!/usr/bin/env node
/**
 * Run by `npm run build` last: writes V8 code caches under dist/cache/ for the large files threads load at every
 * start (see dist/capsule-host/code-cache.js). Each cache is made in a fresh Node process doing what the thread does
 * (SES: load it, then lockdown with the capsule workers' options; the daemon's bundle: evaluate its modules and its
 * configuration, as `--print-config` does), so it holds the functions that work compiles.
 */
const { execFileSync } = require("node:child_process");
const path = require("node:path");

const dist = path.join(__dirname, "..", "dist");
const makeSesCache = `
  const { requireCached, writeCodeCache } = require(${JSON.stringify(path.join(dist, "capsule-host", "code-cache.js"))});
  const { LOCKDOWN_OPTIONS } = require(${JSON.stringify(path.join(dist, "capsule-host", "lockdown-options.js"))});
  const file = require.resolve("ses");
  const { script } = requireCached(file);
  lockdown(LOCKDOWN_OPTIONS);
  writeCodeCache(file, script);
`;
const daemonMain = path.join(dist, "bin", "daemon-main.js");
const makeDaemonCache = `
  const { requireCached, writeCodeCache } = require(${JSON.stringify(path.join(dist, "capsule-host", "code-cache.js"))});
  process.argv = [process.argv[0], ${JSON.stringify(daemonMain)}, "--print-config"];
  const { script } = requireCached(${JSON.stringify(daemonMain)});
  process.on("exit", () => writeCodeCache(${JSON.stringify(daemonMain)}, script));
`;
const root = path.join(__dirname, "..");
execFileSync(process.execPath, ["-e", makeSesCache], { cwd: root, stdio: "inherit" });
// The configuration it prints is the build machine's and goes nowhere; a clean environment keeps it valid.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ASTRID_")));
execFileSync(process.execPath, ["-e", makeDaemonCache], { cwd: root, env, stdio: ["ignore", "ignore", "inherit"] });
