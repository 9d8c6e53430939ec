/**
 * Where the WebAssembly transpile thread's entry is (workers/wasm-capsule/transpile.ts, compiled). Computed here,
 * one folder below dist/, because the WebAssembly capsule worker runs from a bundle at that depth: a module deeper
 * down would see the bundle's folder as its own.
 */
import path from "node:path";

/** dist/workers/wasm-capsule/transpile.js. */
export const WASM_TRANSPILE_ENTRY = path.join(__dirname, "wasm-capsule", "transpile.js");
