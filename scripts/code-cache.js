#!/usr/bin/env node
/**
 * Run by `npm run build` last: writes V8 code caches under dist/cache/ for the large files threads load at every
 * start (see dist/capsule-host/code-cache.js). Each cache is made in a fresh Node process doing what the thread does
 * (SES: load it, then lockdown with the capsule workers' options), so it holds the functions that work compiles.
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
execFileSync(process.execPath, ["-e", makeSesCache], { cwd: path.join(__dirname, ".."), stdio: "inherit" });
