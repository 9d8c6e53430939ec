/**
 * Runs a capsule's modules inside one SES Compartment. The capsule loader worker has already read the capsule's
 * module files and turned ES modules into the CommonJS form (`protocol/capsule-loader.ts`), so nothing here touches
 * the filesystem: `require` resolves only among those files (relative specifiers inside the capsule directory), the
 * capsule SDK (`astrid-daemon/capsule`), the host's other named modules (the reference SDK's surface,
 * `@astrid-os/sdk`), and nothing else — a Node built-in, a bare npm package or a path outside the directory fails
 * the load with an error naming the file and the specifier.
 */
import { builtinModules } from "node:module";
import path from "node:path";
import type { CapsuleModules } from "../protocol/capsule-messages";

/** Specifiers that resolve to the capsule SDK. */
const SDK_SPECIFIERS: ReadonlySet<string> = new Set(["astrid-daemon/capsule", "astrid-daemon/capsule.js"]);
/** Extensions tried for a relative specifier without one, in Node's order. */
const EXTENSIONS = ["", ".js", ".cjs", ".mjs", ".json", "/index.js", "/index.cjs", "/index.mjs"];

/** A load that failed for a reason the capsule's author can fix. */
export class CapsuleLoadError extends Error {
  override name = "CapsuleLoadError";
}

interface ModuleRecord {
  exports: unknown;
}

/**
 * Evaluates the capsule's entry module (and what it requires) in a fresh Compartment; returns its exports.
 * `hostModule` resolves further bare specifiers to their exports (undefined: not one of them); it is asked only when
 * the capsule requires such a specifier, so a capsule that never does costs nothing.
 */
export function loadConfined(
  capsule: string, modules: CapsuleModules, globals: Record<string, unknown>, sdk: object,
  hostModule: (specifier: string) => object | undefined = () => undefined,
): unknown {
  const compartment = new Compartment({ globals: harden(globals), __options__: true, name: `capsule ${capsule}` });
  const cache = new Map<string, ModuleRecord>();
  const hardenedSdk = harden(sdk);

  const load = (file: string): unknown => {
    const cached = cache.get(file);
    if (cached) return cached.exports;
    const source = modules.files[file];
    if (source === undefined) throw new CapsuleLoadError(`${file}: no such module in the capsule`);
    const module: ModuleRecord = { exports: {} };
    cache.set(file, module);
    if (file.endsWith(".json")) {
      module.exports = JSON.parse(source);
      return module.exports;
    }
    let wrapper: (...args: unknown[]) => void;
    try {
      wrapper = compartment.evaluate(`(function (exports, require, module, __filename, __dirname) {${source}\n})\n//# sourceURL=capsule://${capsule}/${file}`) as typeof wrapper;
    } catch (err) {
      cache.delete(file);
      throw new CapsuleLoadError(`${file}: ${rejection(err)}`);
    }
    const require = (specifier: unknown) => load(resolve(file, specifier));
    wrapper.call(module.exports, module.exports, harden(require), module, `capsule://${capsule}/${file}`, `capsule://${capsule}/${path.posix.dirname(file)}`);
    return module.exports;
  };

  const resolve = (from: string, specifier: unknown): string => {
    if (typeof specifier !== "string") throw new CapsuleLoadError(`${from}: require() needs a string`);
    if (SDK_SPECIFIERS.has(specifier)) return SDK_MARKER;
    const key = `${SDK_MARKER}:${specifier}`;
    if (cache.has(key)) return key;
    const hosted = hostModule(specifier);
    if (hosted !== undefined) {
      // Hardened when first required: most capsules never import these.
      cache.set(key, { exports: harden(hosted) });
      return key;
    }
    if (specifier.startsWith("./") || specifier.startsWith("../") || specifier === "." || specifier === "..") {
      const base = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
      if (base === ".." || base.startsWith("../") || path.posix.isAbsolute(base)) {
        throw new CapsuleLoadError(`${from}: require(${JSON.stringify(specifier)}) points outside the capsule directory`);
      }
      for (const extension of EXTENSIONS) {
        const candidate = path.posix.normalize(base + extension);
        if (Object.hasOwn(modules.files, candidate)) return candidate;
      }
      throw new CapsuleLoadError(`${from}: require(${JSON.stringify(specifier)}): no such module in the capsule`);
    }
    if (specifier.startsWith("node:") || NODE_BUILTINS.has(specifier.split("/")[0]!)) {
      throw new CapsuleLoadError(
        `${from}: require(${JSON.stringify(specifier)}): Node built-ins are not available inside a capsule; use the capsule API (ipc, kv, log, …)`);
    }
    throw new CapsuleLoadError(
      `${from}: require(${JSON.stringify(specifier)}): packages are not loaded from node_modules; bundle the capsule's dependencies into its directory (e.g. esbuild --bundle)`);
  };

  cache.set(SDK_MARKER, { exports: hardenedSdk });
  return load(modules.entry);
}

/** The cache key of the SDK (not a path a capsule file can have). */
const SDK_MARKER = "\u0000sdk";

/** Node's built-in module names, refused with their own message. */
const NODE_BUILTINS: ReadonlySet<string> = new Set(builtinModules);

/** SES refuses some source text before running it; say what and why in the author's terms. */
function rejection(err: unknown): string {
  const message = (err as Error)?.message ?? String(err);
  if (/SES_IMPORT_REJECTED|import expression/i.test(message)) return `${message} (a dynamic import() cannot load anything inside a capsule)`;
  if (/SES_HTML_COMMENT_REJECTED/.test(message)) return `${message} (remove "<!--" / "-->" from the source, even inside strings)`;
  return message;
}
