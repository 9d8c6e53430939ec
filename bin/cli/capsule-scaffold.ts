/**
 * `astrid capsule new <name> [--ts] [--workspace|--home]`: writes a working capsule (see capsule-templates.ts)
 * into the workspace's `.astrid/capsules/<name>` or the operator's own capsules directory — two of the roots the
 * daemon discovers, so a running daemon with hot reload loads it at once. The files are written under a hidden
 * name (discovery and the watcher skip those) and renamed into place, so a half-written capsule is never loaded.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { transformSync } from "esbuild";
import { AstridError } from "../../protocol/errors";
import { DAEMON_VERSION } from "../../protocol/version";
import { javascriptModule, manifest, packageJson, readme, templateNames, testFile, TSCONFIG, typescriptModule } from "./capsule-templates";
import { UsageError } from "./usage";

/** A capsule name the manifest accepts and a directory can hold: `[a-z0-9-]`, 1–64, starting with a letter or digit. */
const SCAFFOLD_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;

/** What `capsule new` wrote. */
export interface ScaffoldOutcome {
  name: string;
  dir: string;
  language: "javascript" | "typescript";
  files: string[];
  /** The slash command and the tool it offers. */
  command: string;
  tool: string;
}

/** Refuses a name the daemon would not load (a usage error: nothing is written). */
export function checkCapsuleName(name: string): void {
  if (!SCAFFOLD_NAME.test(name)) {
    throw new UsageError(`${JSON.stringify(name)} is not a capsule name: use 1–64 of a-z 0-9 and -, starting with a letter or digit (e.g. my-capsule)`);
  }
}

/** Writes the capsule `name` into `root/<name>`; refuses an existing directory with ASTRID_ERR_CAPSULE_EXISTS. */
export function scaffoldCapsule(name: string, root: string, options: { ts: boolean }): ScaffoldOutcome {
  checkCapsuleName(name);
  const dir = path.join(root, name);
  if (fs.existsSync(dir)) {
    throw new AstridError("ASTRID_ERR_CAPSULE_EXISTS", `${dir} already exists; nothing was written (choose another name, or remove it with \`astrid capsule remove ${name}\`)`);
  }
  const n = templateNames(name);
  const files: Record<string, string> = options.ts
    ? {
        "Capsule.toml": manifest(n, "dist/index.js"),
        "src/index.ts": typescriptModule(n),
        "dist/index.js": buildTypeScript(typescriptModule(n)),
        "test/greet.test.js": testFile(n, true),
        "package.json": packageJson(n, DAEMON_VERSION),
        "tsconfig.json": TSCONFIG,
        ".gitignore": "node_modules/\n",
        "README.md": readme(n, true),
      }
    : {
        "Capsule.toml": manifest(n, "index.js"),
        "index.js": javascriptModule(n),
        "test/greet.test.js": testFile(n, false),
        "README.md": readme(n, false),
      };
  fs.mkdirSync(root, { recursive: true });
  const staging = path.join(root, `.${name}.new-${randomBytes(4).toString("hex")}`);
  try {
    for (const [file, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(staging, file)), { recursive: true });
      fs.writeFileSync(path.join(staging, file), text);
    }
    // An empty directory made meanwhile would be replaced by the rename: checked again just before it.
    if (fs.existsSync(dir)) throw new AstridError("ASTRID_ERR_CAPSULE_EXISTS", `${dir} appeared while the capsule was written; nothing was written`);
    fs.renameSync(staging, dir);
  } catch (err) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw err;
  }
  return { name, dir, language: options.ts ? "typescript" : "javascript", files: Object.keys(files).sort(), command: n.command, tool: n.tool };
}

/**
 * The first `dist/index.js`, so the capsule loads before its author has installed TypeScript: esbuild (the
 * daemon's own dependency) strips the types and lowers the standard decorators to CommonJS, as `tsc` will.
 */
function buildTypeScript(source: string): string {
  return transformSync(source, { loader: "ts", format: "cjs", target: "es2022", sourcefile: "src/index.ts" }).code;
}
