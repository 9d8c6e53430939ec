/**
 * Where a worker thread's compiled entry point lives. Workers always run from dist/ (never through a TS loader),
 * also when the kernel module itself runs from source under jest.
 */
import path from "node:path";

const DIST = path.extname(__filename) === ".ts" ? path.resolve(__dirname, "..", "dist") : path.resolve(__dirname, "..");

/** The absolute path of `dist/workers/<name>.js`. */
export function workerEntry(name: "storage" | "capsule" | "wasm-capsule" | "capsule-loader" | "mcp-host" | "audit-verifier"): string {
  return path.join(DIST, "workers", `${name}.js`);
}
