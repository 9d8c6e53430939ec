/**
 * V8's code cache for a large CommonJS file a thread loads at every start (SES, ~0.5 MB, in every capsule worker):
 * the file is compiled from a cache written at build time under dist/cache/, so the thread skips most of parsing and
 * compiling it (about half of SES's load time). The cache is used only when it was made from this very file — its
 * size and modification time are recorded in the cache — and by this Node (V8 itself rejects a cache from another
 * version or other flags); otherwise the file is compiled as usual.
 */
import fs from "node:fs";
import Module from "node:module";
import path from "node:path";
import vm from "node:vm";

/** Where the build keeps code caches: dist/cache/, beside the folders of this module's own (compiled) file. */
export const CODE_CACHE_DIR = path.join(__dirname, "..", "cache");

/** The cache file of `file` for this Node version, in `dir`. */
export function codeCacheFile(file: string, dir = CODE_CACHE_DIR): string {
  return path.join(dir, `${path.basename(file)}.${process.version}.v8`);
}

/** `<size> <mtimeMs>` of the file the cache was made from: the first line of the cache file. */
function stamp(file: string): string {
  const st = fs.statSync(file);
  return `${st.size} ${st.mtimeMs}`;
}

/** The cached data for `file` if the cache was made from this version of it. */
function readCache(file: string, dir: string): Buffer | undefined {
  let data: Buffer;
  try {
    data = fs.readFileSync(codeCacheFile(file, dir));
  } catch {
    return undefined;
  }
  const newline = data.indexOf(10);
  if (newline < 0 || data.subarray(0, newline).toString("latin1") !== stamp(file)) return undefined;
  return data.subarray(newline + 1);
}

/**
 * Loads the CommonJS `file` (as `require` would, and registered in require's cache so that a later `require` of it
 * finds it) through its code cache when there is a valid one. Returns its exports, and the compiled script for
 * `writeCodeCache`.
 */
export function requireCached(file: string, dir = CODE_CACHE_DIR): { exports: unknown; script: vm.Script } {
  const cachedData = readCache(file, dir);
  // The file's text as Node would wrap it; a leading #! line (none in SES) is not valid inside the wrapper.
  const source = Module.wrap(fs.readFileSync(file, "utf8").replace(/^#!.*/, ""));
  // No dynamic import() in such a file: a vm script has no loader for it (the build refuses a bundle with one).
  const script = new vm.Script(source, { filename: file, cachedData });
  const module = new Module(file);
  module.filename = file;
  module.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(path.dirname(file));
  require.cache[file] = module;
  const wrapper = script.runInThisContext() as (...args: unknown[]) => void;
  wrapper.call(module.exports, module.exports, Module.createRequire(file), module, file, path.dirname(file));
  module.loaded = true;
  return { exports: module.exports, script };
}

/** Writes the code cache of a script `requireCached` ran (after the work whose functions it should hold). */
export function writeCodeCache(file: string, script: vm.Script, dir = CODE_CACHE_DIR): string {
  const out = codeCacheFile(file, dir);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, Buffer.concat([Buffer.from(`${stamp(file)}\n`, "latin1"), script.createCachedData()]));
  return out;
}
