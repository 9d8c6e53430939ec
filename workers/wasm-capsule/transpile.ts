/**
 * A short-lived thread that turns a capsule's binary into JavaScript with jco: a core module carrying a
 * `component-type` section is made a component first (no WASI adapter), then transpiled. jco's own WebAssembly
 * tools take tens of megabytes; running them here, in a thread that ends when done, keeps them out of the
 * capsule's worker for the rest of its life.
 */
import { parentPort, workerData } from "node:worker_threads";

/** What the thread is given and answers. */
export interface TranspileJob {
  bytes: Uint8Array;
  /** The binary's name, for messages. */
  file: string;
}
export type TranspileAnswer =
  | { ok: true; files: Record<string, Uint8Array>; imports: string[]; exports: string[] }
  | { ok: false; message: string };

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split("\n")[0]!.slice(0, 500);
}

async function transpile({ bytes, file }: TranspileJob): Promise<TranspileAnswer> {
  const tools = await import("@bytecodealliance/jco");
  let component = bytes;
  if (bytes[4] === 1 && bytes[5] === 0 && bytes[6] === 0 && bytes[7] === 0) {
    try {
      component = await tools.componentNew(bytes);
    } catch (err) {
      return { ok: false, message: `${file}: cannot make a component of this core module: ${firstLine(err)}` };
    }
  }
  try {
    const out = await tools.transpile(component, { name: "capsule", instantiation: "async", noTypescript: true, quiet: true });
    return { ok: true, files: out.files, imports: out.imports.filter((i) => !i.startsWith("#")), exports: out.exports.map(([name]) => name) };
  } catch (err) {
    return { ok: false, message: `${file}: jco cannot transpile this component: ${firstLine(err)}` };
  }
}

if (parentPort) {
  const port = parentPort;
  void transpile(workerData as TranspileJob).then((answer) => port.postMessage(answer), (err: unknown) => port.postMessage({ ok: false, message: firstLine(err) }));
}
