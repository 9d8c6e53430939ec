/**
 * A capsule's module files, ready for a confined load: every `.js`/`.cjs`/`.mjs`/`.json` file of the capsule
 * directory (dependency folders and dotfiles aside), scripts passed through esbuild (ES modules to the CommonJS
 * form, comments dropped) —
 * once, here in the loader worker, and cached on disk by the capsule's content hash, so no capsule worker pays for
 * a parser. Dynamic `import()` becomes `require()` too, so it meets the same confined resolution.
 */
import fs from "node:fs/promises";
import path from "node:path";
import type { transform as Transform } from "esbuild";
import type { CapsuleModules } from "../../protocol/capsule-messages";
import { AstridError } from "../../protocol/errors";
import { capsuleHash, isIgnoredName } from "./content-hash";

/** Most module files one capsule may have, and their total size. */
const MAX_MODULE_FILES = 2000;
const MAX_MODULE_BYTES = 32 * 1024 * 1024;
/** Bumped when the transform changes, so old cache entries are not reused. */
const CACHE_VERSION = 3;
const MODULE_FILE = /\.(js|cjs|mjs|json)$/;

/** The fingerprint a capsule's modules are expected to be compiled from (discovery's), and the files outside its directory it covers. */
export interface ExpectedContent {
  hash: string;
  extraFiles: readonly string[];
}

/**
 * Reads and prepares the modules of the capsule in `dir` whose entry is `entry` (relative); cached in `cacheFile`.
 * With `expected` (the hash discovery took, which names `cacheFile`), the modules are checked to be that content:
 * once read, the directory is hashed again, each module file compared with the bytes compiled. `hash` says what
 * they were compiled from; it is absent when the files changed while they were read (a save in progress: an editor
 * or a `writeFileSync` truncates, then writes). Only modules of the expected content are cached under its name.
 */
export async function compileModules(dir: string, entry: string, cacheFile: string, expected?: ExpectedContent): Promise<CapsuleModules> {
  const cached = await readCache(cacheFile, entry);
  // The cache is written only for the content its name's hash describes (entries from before that check say nothing).
  if (cached) return expected ? { ...cached, hash: expected.hash } : cached;
  const files: Record<string, string> = {};
  /** The text read of each module file, by its relative path. */
  const read = new Map<string, string>();
  let count = 0;
  let bytes = 0;
  const walk = async (relative: string): Promise<void> => {
    const entries = await fs.readdir(path.join(dir, relative), { withFileTypes: true }).catch(() => []);
    for (const item of entries) {
      if (isIgnoredName(item.name)) continue;
      const child = relative === "" ? item.name : `${relative}/${item.name}`;
      if (item.isDirectory()) {
        await walk(child);
        continue;
      }
      // A symlink is followed only to a file inside the capsule directory.
      if (!MODULE_FILE.test(item.name) || !(item.isFile() || item.isSymbolicLink())) continue;
      const real = await fs.realpath(path.join(dir, child)).catch(() => null);
      const root = await fs.realpath(dir);
      if (real === null || !(real === root || real.startsWith(root + path.sep))) continue;
      if (++count > MAX_MODULE_FILES) throw new AstridError("ASTRID_ERR_MANIFEST_INVALID", `${dir}: more than ${MAX_MODULE_FILES} module files`);
      const source = await fs.readFile(real, "utf8");
      read.set(child, source);
      bytes += Buffer.byteLength(source);
      if (bytes > MAX_MODULE_BYTES) throw new AstridError("ASTRID_ERR_MANIFEST_INVALID", `${dir}: module files over ${MAX_MODULE_BYTES >> 20} MiB`);
      // Every script goes through esbuild: ES modules become CommonJS, and comments go (SES refuses source text such
      // as a JSDoc `import("…")` type even inside a comment).
      files[child] = item.name.endsWith(".json") ? source : await toCommonJs(source, path.join(dir, child));
    }
  };
  await walk("");
  const normalized = path.posix.normalize(entry.split(path.sep).join("/"));
  if (!Object.hasOwn(files, normalized)) {
    throw new AstridError("ASTRID_ERR_MANIFEST_INVALID", `${path.join(dir, entry)}: the component file is not a module the capsule can load (.js, .cjs or .mjs inside its directory)`);
  }
  const modules: CapsuleModules = { entry: normalized, files };
  if (!expected) {
    await writeCache(cacheFile, modules);
    return modules;
  }
  let unchanged = true;
  const now = await capsuleHash(dir, expected.extraFiles, (relative, contents) => {
    const compiled = read.get(relative.split(path.sep).join("/"));
    if (compiled !== undefined && compiled !== contents.toString("utf8")) unchanged = false;
  });
  if (!unchanged) return modules;
  if (now === expected.hash) await writeCache(cacheFile, modules);
  return { ...modules, hash: now };
}

/** esbuild, loaded on the first compile: a boot whose capsules are all in the cache never needs it. */
let esbuild: Promise<{ transform: typeof Transform }> | undefined;

async function toCommonJs(source: string, file: string): Promise<string> {
  try {
    const { transform } = await (esbuild ??= import("esbuild"));
    const out = await transform(source, {
      format: "cjs",
      loader: "js",
      target: "es2022",
      sourcefile: file,
      supported: { "dynamic-import": false },
    });
    return out.code;
  } catch (err) {
    throw syntaxError(err, file);
  }
}

/** esbuild's report of a parse failure: its text and where it is. */
interface EsbuildMessage {
  text: string;
  location?: { line: number; column: number; lineText: string } | null;
}

/**
 * A parse failure as `node --check` shows it: `file:line:column: what`, then the offending line and a caret under
 * the column (esbuild's columns count from 0, in UTF-8 bytes of the line).
 */
export function syntaxError(err: unknown, file: string): AstridError {
  const first = (err as { errors?: EsbuildMessage[] }).errors?.[0];
  const where = first?.location;
  if (!first || !where) {
    return new AstridError("ASTRID_ERR_CAPSULE_SYNTAX", `${file}: syntax error: ${String((err as Error)?.message ?? err).split("\n")[0]}`);
  }
  const before = Buffer.from(where.lineText, "utf8").subarray(0, where.column).toString("utf8");
  const column = before.length + 1;
  // Tabs stay tabs so the caret lines up under the same character in a terminal.
  const pad = before.replace(/[^\t]/g, " ");
  return new AstridError("ASTRID_ERR_CAPSULE_SYNTAX",
    `${file}:${where.line}:${column}: syntax error: ${first.text}\n    ${where.lineText}\n    ${pad}^`);
}

async function readCache(cacheFile: string, entry: string): Promise<CapsuleModules | undefined> {
  try {
    const parsed = JSON.parse(await fs.readFile(cacheFile, "utf8")) as { version?: number; modules?: CapsuleModules };
    if (parsed.version !== CACHE_VERSION || !parsed.modules || typeof parsed.modules.files !== "object") return undefined;
    if (parsed.modules.entry !== path.posix.normalize(entry.split(path.sep).join("/"))) return undefined;
    return parsed.modules;
  } catch {
    return undefined;
  }
}

async function writeCache(cacheFile: string, modules: CapsuleModules): Promise<void> {
  try {
    await fs.mkdir(path.dirname(cacheFile), { recursive: true, mode: 0o700 });
    const temp = `${cacheFile}.${process.pid}.tmp`;
    await fs.writeFile(temp, JSON.stringify({ version: CACHE_VERSION, modules }), { mode: 0o600 });
    await fs.rename(temp, cacheFile);
    // Earlier versions of the same capsule (`<name>-<hash>.json`) are not needed any more.
    const base = path.basename(cacheFile);
    const prefix = base.slice(0, base.lastIndexOf("-") + 1);
    for (const other of await fs.readdir(path.dirname(cacheFile))) {
      if (other !== base && other.startsWith(prefix) && other.endsWith(".json") && !other.slice(prefix.length, -5).includes("-")) {
        await fs.rm(path.join(path.dirname(cacheFile), other), { force: true });
      }
    }
  } catch {
    // A cache that cannot be written only costs the next load a transform.
  }
}
