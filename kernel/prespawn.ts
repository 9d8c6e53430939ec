/**
 * Worker threads the daemon starts before it loads its own modules (`bin/daemon-prespawn.ts`, imported first by
 * `astrid-daemon`): the capsule loader worker then loads its modules (zod, semver, esbuild's client) on the second
 * core while the main thread loads the kernel's, instead of after. A worker that dies before it is taken is never
 * handed out; in any other process nothing is prespawned and the client starts its own.
 */
import { Worker } from "node:worker_threads";
import { CAPSULE_MAX_HEAP_MB_DEFAULT, SpareWorkers } from "./capsules/spare-workers";
import { workerEntry } from "./worker-entry";

type Prespawnable = "capsule-loader";

const waiting = new Map<Prespawnable, Worker>();

export function prespawn(name: Prespawnable, options: ConstructorParameters<typeof Worker>[1]): void {
  const worker = new Worker(workerEntry(name), options);
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

/** Options the loader client creates its worker with (kept in one place so a prespawned one is the same). */
export const LOADER_WORKER_OPTIONS = { stdout: false, stderr: false } as const;

let bootSpares: SpareWorkers | undefined;

/**
 * Starts `count` spare capsule workers (kernel/capsules/spare-workers.ts) with the heap limit the environment asks
 * for (a value the config later refuses fails the boot anyway).
 */
export function prespawnCapsuleSpares(count: number, env: NodeJS.ProcessEnv): void {
  const raw = env.ASTRID_CAPSULE_MAX_HEAP_MB?.trim();
  bootSpares = new SpareWorkers(raw && /^\d+$/.test(raw) ? Number(raw) : CAPSULE_MAX_HEAP_MB_DEFAULT, 1);
  bootSpares.fill(count);
}

/** The spares started at boot when their heap limit is `maxHeapMb` (else they are stopped); the caller owns them. */
export function takePrespawnedSpares(maxHeapMb: number): SpareWorkers | undefined {
  const spares = bootSpares;
  bootSpares = undefined;
  if (spares && spares.maxHeapMb !== maxHeapMb) {
    void spares.close();
    return undefined;
  }
  return spares;
}
