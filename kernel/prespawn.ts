/**
 * Worker threads the daemon starts before it loads its own modules (`bin/daemon-prespawn.ts`, imported first by
 * `astrid-daemon`): the capsule loader worker then loads its modules (zod, semver, esbuild's client) on the second
 * core while the main thread loads the kernel's, instead of after. A worker that dies before it is taken is never
 * handed out; in any other process nothing is prespawned and the client starts its own.
 */
import { Worker } from "node:worker_threads";
import { workerEntry } from "./worker-entry";

type Prespawnable = "capsule-loader";

/** Options the loader client creates its worker with (kept in one place so a prespawned one is the same). */
export const LOADER_WORKER_OPTIONS = { stdout: false, stderr: false } as const;

const waiting = new Map<Prespawnable, Worker>();

/** Starts the worker of that name, with the options its client would start it with. */
export function prespawn(name: Prespawnable): void {
  const worker = new Worker(workerEntry(name), LOADER_WORKER_OPTIONS);
  const drop = () => {
    if (waiting.get(name) === worker) waiting.delete(name);
  };
  // Until taken, an error would otherwise be an unhandled 'error' event on the main thread.
  worker.once("error", drop);
  worker.once("exit", drop);
  waiting.set(name, worker);
  // Not taken (a boot that fails before discovery): it must not keep the process alive.
  worker.unref();
}

/** The started worker of that name, if one is waiting and alive; the caller owns it from now on. */
export function takePrespawned(name: Prespawnable): Worker | undefined {
  const worker = waiting.get(name);
  waiting.delete(name);
  worker?.ref();
  return worker;
}
