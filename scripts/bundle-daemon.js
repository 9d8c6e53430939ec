#!/usr/bin/env node
/**
 * Run by `npm run build` after `tsc`: folds the daemon's main-thread code — dist/bin/astrid-daemon.js, everything
 * it imports from this package, and the pure-JS packages zod, semver, smol-toml and comlink — into that one file.
 * Node then resolves, reads and compiles one module at every daemon start instead of ~250 (zod alone is 95 files).
 * Every other package stays an ordinary require (native addons, packages that find files beside themselves, and
 * those loaded only on some paths); worker threads keep their own entry files under dist/workers/. The bundle sits
 * where tsc put the entry, at the depth of every top folder of dist/, so the paths computed from __dirname (worker
 * entries, bundled capsules) resolve as before.
 */
const path = require("node:path");
const esbuild = require("esbuild");

const INLINED = new Set(["zod", "semver", "smol-toml", "comlink"]);
const entry = path.join(__dirname, "..", "dist", "bin", "astrid-daemon.js");

/** Bare specifiers stay requires unless their package is inlined. */
const externalPackages = {
  name: "external-packages",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      const name = args.path.startsWith("@") ? args.path.split("/").slice(0, 2).join("/") : args.path.split("/")[0];
      return INLINED.has(name) ? undefined : { path: args.path, external: true };
    });
  },
};

/**
 * In the bundle every module's __dirname is dist/bin: right for a module one folder deep (dist/kernel/x.js), wrong
 * for a deeper one. Such a module fails the build instead of finding the wrong files at run time.
 */
const dist = path.join(__dirname, "..", "dist");
const fixedDirname = {
  name: "fixed-dirname",
  setup(build) {
    build.onLoad({ filter: /\.js$/ }, async (args) => {
      const rel = path.relative(dist, args.path);
      if (rel.startsWith("..") || rel.split(path.sep).length === 2) return undefined;
      const text = await require("node:fs/promises").readFile(args.path, "utf8");
      if (/\b__(dirname|filename)\b/.test(text)) {
        return { errors: [{ text: `dist/${rel} uses __dirname/__filename, which the daemon bundle cannot keep for a module below a top folder; compute the path in a module one folder deep (as kernel/worker-entry.ts does)` }] };
      }
      return undefined;
    });
  },
};

esbuild.build({
  entryPoints: [entry],
  outfile: entry,
  allowOverwrite: true,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  plugins: [externalPackages, fixedDirname],
  sourcemap: "linked",
  logLevel: "warning",
}).catch(() => process.exit(1));
