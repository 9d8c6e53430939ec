/**
 * From a capsule's `.wasm` to JavaScript it can instantiate, in the capsule's own worker (never the main thread):
 * verify the binary against meta.json's `wasm_hash` (BLAKE3, as the reference does; no hash, no load), turn a core
 * module carrying a `component-type` section into a component (no WASI adapter: the guest sees only astrid host
 * packages), and transpile it with jco once per content hash into `var/cache/wasm/<hash>/` (ES modules, `.mjs`).
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { Worker } from "node:worker_threads";
import type { TranspileAnswer, TranspileJob } from "./transpile";

/** The JavaScript entry of a transpiled component inside its cache directory. */
export const ENTRY = "capsule.mjs";
const DESCRIPTION = "component.json";

/** A component ready to instantiate. */
export interface PreparedComponent {
  hash: string;
  source: "capsule" | "bin";
  /** The cache directory holding ENTRY and its core modules. */
  dir: string;
  imports: string[];
  exports: string[];
  transpiled: boolean;
}

/** A load refusal the operator should read as is (the supervisor shows it in `astrid capsule info`). */
export class WasmLoadError extends Error {}

/** Reads meta.json's `wasm_hash`; refuses to go on without one (reference wording). */
async function expectedHash(dir: string, name: string): Promise<string> {
  let meta: unknown;
  try {
    meta = JSON.parse(await fs.readFile(path.join(dir, "meta.json"), "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new WasmLoadError(`meta.json of ${name} is not valid JSON: ${(err as Error).message}`);
  }
  const hash = (meta as { wasm_hash?: unknown } | undefined)?.wasm_hash;
  if (typeof hash !== "string" || hash === "") {
    throw new WasmLoadError(`Refusing to load unverified binary: ${name} has no wasm_hash in meta.json`);
  }
  if (!/^[0-9a-fA-F]{64}$/.test(hash)) throw new WasmLoadError(`meta.json of ${name}: wasm_hash must be 64 hex digits (BLAKE3)`);
  return hash.toLowerCase();
}

/** The binary beside the manifest, else `$ASTRID_HOME/bin/<hash>.wasm`. */
async function readBinary(dir: string, file: string, binDir: string, hash: string): Promise<{ bytes: Uint8Array; source: "capsule" | "bin" }> {
  try {
    return { bytes: await fs.readFile(path.resolve(dir, file)), source: "capsule" };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  try {
    return { bytes: await fs.readFile(path.join(binDir, `${hash}.wasm`)), source: "bin" };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    throw new WasmLoadError(`${file} is missing and so is bin/${hash}.wasm`);
  }
}

/** Whether a core module has a custom section whose name starts with `component-type`. */
function hasComponentType(bytes: Uint8Array): boolean {
  let at = 8;
  const leb = (): number => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[at++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0 || at >= bytes.length) return value;
      shift += 7;
    }
  };
  while (at < bytes.length) {
    const id = bytes[at++]!;
    const size = leb();
    const end = at + size;
    if (id === 0) {
      const nameLength = leb();
      if (Buffer.from(bytes.subarray(at, at + nameLength)).toString("utf8").startsWith("component-type")) return true;
    }
    at = end;
  }
  return false;
}

/** Runs jco in a thread of its own (transpile.ts), which ends once it answered. */
function transpileInThread(job: TranspileJob): Promise<TranspileAnswer> {
  return new Promise((resolve) => {
    const thread = new Worker(path.join(__dirname, "transpile.js"), { workerData: job, stdout: false, stderr: false });
    thread.once("message", (answer: TranspileAnswer) => {
      resolve(answer);
      void thread.terminate();
    });
    thread.once("error", (err) => resolve({ ok: false, message: `the transpiler thread crashed: ${err.message}` }));
    thread.once("exit", (code) => resolve({ ok: false, message: `the transpiler thread exited with code ${code}` }));
  });
}

/** Verifies, componentizes and transpiles (or finds in the cache) the capsule's component. */
export async function prepareComponent(options: { name: string; dir: string; file: string; binDir: string; cacheDir: string }): Promise<PreparedComponent> {
  const { name, dir, file, binDir, cacheDir } = options;
  const hash = await expectedHash(dir, name);
  const { bytes, source } = await readBinary(dir, file, binDir, hash);
  // @noble/hashes is ES modules only: imported, not required, from this CommonJS worker.
  const [{ blake3 }, { bytesToHex }] = await Promise.all([import("@noble/hashes/blake3.js"), import("@noble/hashes/utils.js")]);
  const actual = bytesToHex(blake3(bytes));
  if (actual !== hash) {
    throw new WasmLoadError(`Refusing to load ${file}: its BLAKE3 hash ${actual} does not match meta.json's wasm_hash ${hash}`);
  }
  const target = path.join(cacheDir, hash);
  try {
    const described = JSON.parse(await fs.readFile(path.join(target, DESCRIPTION), "utf8")) as { imports: string[]; exports: string[] };
    return { hash, source, dir: target, imports: described.imports, exports: described.exports, transpiled: false };
  } catch {
    // not cached yet (or a half-written entry from a crash): transpile below
  }
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new WasmLoadError(`${file} is not a WebAssembly binary`);
  }
  // A core module (what the Rust SDK builds) is a component only if it says which world it implements.
  if (bytes[4] === 1 && !hasComponentType(bytes)) {
    throw new WasmLoadError(`${file} is a core WebAssembly module without a component-type section (build it against the astrid WIT packages)`);
  }
  const out = await transpileInThread({ bytes, file });
  if (!out.ok) throw new WasmLoadError(out.message);
  const { imports, exports: guestExports } = out;
  // Written beside the target and renamed into place: two workers of the same hash never see half an entry, and a
  // complete entry (one with its description) is never removed — another capsule of the same binary may be loading
  // from it. Only a directory without a description (no entry at all) is replaced.
  const staging = path.join(cacheDir, `.${hash}-${randomUUID()}`);
  const complete = () => fs.stat(path.join(target, DESCRIPTION)).then(() => true, () => false);
  await fs.mkdir(staging, { recursive: true });
  try {
    for (const [written, content] of Object.entries(out.files)) {
      if (written.endsWith(".d.ts")) continue;
      const into = path.join(staging, written === "capsule.js" ? ENTRY : written);
      await fs.mkdir(path.dirname(into), { recursive: true });
      await fs.writeFile(into, content);
    }
    await fs.writeFile(path.join(staging, DESCRIPTION), JSON.stringify({ imports, exports: guestExports }));
    try {
      await fs.rename(staging, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== "ENOTEMPTY" && code !== "EEXIST") || (await complete())) throw err;
      await fs.rm(target, { recursive: true, force: true });
      await fs.rename(staging, target);
    }
  } catch (err) {
    // Another worker of the same component got there first: its entry is as good as ours.
    if (!(await complete())) throw err;
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
  return { hash, source, dir: target, imports, exports: guestExports, transpiled: true };
}
