#!/usr/bin/env node
/**
 * Run by `npm run build` after `tsc`: folds each hot thread entry — the daemon's main thread
 * (dist/bin/astrid-daemon.js) and the capsule loader worker (dist/workers/capsule-loader.js), both on the path from
 * spawn to ready — with everything it imports from this package and the pure-JS packages below, into one file.
 * Node then resolves, reads and compiles one module at every start instead of 120–160 (zod alone is 95 files,
 * winston and its helpers ~90). Every other package stays an ordinary require (native addons, packages that find
 * files beside themselves, and large ones loaded only on some paths). Each bundle sits where tsc put its entry, at
 * the depth of every top folder of dist/, so the paths computed from __dirname (worker entries, bundled capsules)
 * resolve as before.
 */
const path = require("node:path");
const esbuild = require("esbuild");

/** Packages folded in, with the packages they in turn import (unless one of those is in KEPT_EXTERNAL). */
const INLINED = new Set(["zod", "semver", "smol-toml", "comlink", "winston", "winston-daily-rotate-file"]);
/** Never folded in, even when an inlined package imports them: loaded on some paths only, or large. */
const KEPT_EXTERNAL = new Set(["file-stream-rotator", "moment"]);
const dist = path.join(__dirname, "..", "dist");
/** Each bundled entry and where its bundle goes. The daemon's entry becomes a launcher of its bundle (below). */
const ENTRIES = [
  { entry: "bin/astrid-daemon.js", outfile: "bin/daemon-main.js" },
  { entry: "workers/capsule-loader.js", outfile: "workers/capsule-loader.js" },
].map(({ entry, outfile }) => ({ entry: path.join(dist, entry), outfile: path.join(dist, outfile) }));

/**
 * dist/bin/astrid-daemon.js, once its bundle is written: loads the bundle through the V8 code cache that
 * scripts/code-cache.js makes for it, so a start skips most of compiling 1.7 MB of JavaScript.
 */
const LAUNCHER = `#!/usr/bin/env node
"use strict";
// Written by scripts/bundle-daemon.js: the daemon is dist/bin/daemon-main.js, loaded through its code cache.
require("../capsule-host/code-cache.js").requireCached(require.resolve("./daemon-main.js"));
`;

const packageOf = (specifier) =>
  specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0];
/** The package a resolved file belongs to (its last node_modules segment), or undefined for our own files. */
const ownerOf = (file) => {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\/[^]*$/.exec(file.split(path.sep).join("/"));
  return m ? m[1] : undefined;
};

/** Bare specifiers stay requires unless their package is inlined or imported by an inlined package. */
const externalPackages = {
  name: "external-packages",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      const name = packageOf(args.path);
      if (name.startsWith("node:") || KEPT_EXTERNAL.has(name)) return { path: args.path, external: true };
      const importer = ownerOf(args.importer);
      const inline = INLINED.has(name) || (importer !== undefined && INLINED.has(importer)) || (importer !== undefined && transitive.has(importer));
      if (!inline) return { path: args.path, external: true };
      transitive.add(name);
      return undefined;
    });
  },
};
const transitive = new Set();

/**
 * zod's entry loads every one of its ~50 message locales; the daemon uses the default (English) only, so the
 * locales index is replaced by one that exports `en` (a third of zod's load time).
 */
const zodEnglishOnly = {
  name: "zod-english-only",
  setup(build) {
    build.onResolve({ filter: /locales\/index\.c?js$/ }, (args) =>
      ownerOf(args.importer) === "zod" ? { path: path.join(path.dirname(args.importer), args.path), namespace: "zod-locales" } : undefined);
    build.onLoad({ filter: /.*/, namespace: "zod-locales" }, (args) => ({
      contents: `exports.en = require(${JSON.stringify(path.join(path.dirname(args.path), "en.cjs"))}).default;`,
      loader: "js",
      resolveDir: path.dirname(args.path),
    }));
  },
};

/**
 * In a bundle every module's __dirname is the entry's folder: right for a module one folder deep (dist/kernel/x.js),
 * wrong for a deeper one. Such a module fails the build instead of finding the wrong files at run time.
 */
const fixedDirname = {
  name: "fixed-dirname",
  setup(build) {
    build.onLoad({ filter: /\.js$/ }, async (args) => {
      const rel = path.relative(dist, args.path);
      if (rel.startsWith("..") || rel.split(path.sep).length === 2) return undefined;
      const text = await require("node:fs/promises").readFile(args.path, "utf8");
      if (/\b__(dirname|filename)\b/.test(text)) {
        return { errors: [{ text: `dist/${rel} uses __dirname/__filename, which a bundle cannot keep for a module below a top folder; compute the path in a module one folder deep (as kernel/worker-entry.ts does)` }] };
      }
      return undefined;
    });
  },
};

Promise.all(ENTRIES.map(({ entry, outfile }) => esbuild.build({
  entryPoints: [entry],
  outfile,
  allowOverwrite: true,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  plugins: [zodEnglishOnly, externalPackages, fixedDirname],
  sourcemap: "linked",
  logLevel: "warning",
}))).then(
  () => {
    const fs = require("node:fs");
    // A script compiled from a code cache by node:vm has no loader for import(): the launched bundle must not use it.
    const main = fs.readFileSync(ENTRIES[0].outfile, "utf8");
    const line = main.split("\n").findIndex((l) => /(^|[^.\w$])import\(/.test(l) && !/^\s*(\/\/|\*)/.test(l));
    if (line >= 0) {
      console.error(`${path.relative(dist, ENTRIES[0].outfile)}:${line + 1}: dynamic import() in the daemon's bundle, which runs from a code cache; use require()`);
      process.exit(1);
    }
    fs.writeFileSync(ENTRIES[0].entry, LAUNCHER);
    fs.chmodSync(ENTRIES[0].entry, 0o755);
  },
  () => process.exit(1),
);
