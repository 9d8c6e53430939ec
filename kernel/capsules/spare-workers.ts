/**
 * Spare capsule workers: threads started ahead of need that have already paid for what every JavaScript capsule
 * pays first — a Node environment, `lockdown()` and the capsule host's modules (~100–150 ms of CPU) — and wait for
 * the capsule they will run. A start or a blue/green reload takes one and sends it its capsule at once; another is
 * started in the background for the next. At boot the first ones are started before the kernel loads its own
 * modules, so that work runs on the other core meanwhile.
 *
 * A spare is generic: it holds no capsule's data, env or ports until assigned, and it has the same resource limits
 * and empty environment as any capsule worker (a start whose heap limit differs starts its own thread).
 */
import { Worker, type MessagePort } from "node:worker_threads";
import type { AssignMessage, CapsuleWorkerData } from "../../protocol/capsule-messages";
import { workerEntry } from "../worker-entry";

/** The worker's young generation, the same for every capsule worker. */
const CAPSULE_YOUNG_GENERATION_MB = 16;

/** The options every capsule worker is created with, spare or not. */
export function capsuleWorkerOptions(maxHeapMb: number): ConstructorParameters<typeof Worker>[1] {
  return {
    resourceLimits: { maxOldGenerationSizeMb: maxHeapMb, maxYoungGenerationSizeMb: CAPSULE_YOUNG_GENERATION_MB },
    // Nothing of the daemon's environment (OPENAI_API_KEY, tokens) reaches a capsule's thread, even one that got
    // past its Compartment: a capsule's [env] comes through the host API.
    env: {},
    stdout: false,
    stderr: false,
  };
}

interface Spare {
  worker: Worker;
  alive: boolean;
}

/** A small pool of waiting capsule workers, all with the same heap limit. */
export class SpareWorkers {
  private readonly spares: Spare[] = [];
  private closed = false;
  /** Until the daemon is ready no spare starts: at boot every core goes to the capsules being started. */
  private held = true;
  /** A take happened while held: fill on release. */
  private wanted = false;

  constructor(
    /** The heap limit of the spares (ASTRID_CAPSULE_MAX_HEAP_MB); a start with another limit starts its own. */
    readonly maxHeapMb: number,
    /** How many to keep waiting. */
    private readonly keep: number,
  ) {}

  /** Lets the pool start spares (once the daemon is ready), and starts the first if a take already asked. */
  release(): void {
    if (!this.held) return;
    this.held = false;
    if (this.wanted) this.refillSoon();
  }

  /** Starts spares until `keep` wait. */
  fill(): void {
    while (!this.closed && this.spares.length < this.keep) this.spares.push(this.spawn());
  }

  /**
   * A worker running the capsule of `data`, or undefined when none waits with the right heap limit. The pool is
   * topped up again after the caller's start has had its head start.
   */
  take(maxHeapMb: number, data: CapsuleWorkerData, transfer: MessagePort[]): Worker | undefined {
    if (this.closed || maxHeapMb !== this.maxHeapMb) return undefined;
    let spare: Spare | undefined;
    while ((spare = this.spares.shift()) && !spare.alive) {
      // died while waiting (it holds nothing): forget it
    }
    if (this.held) this.wanted = true;
    else this.refillSoon();
    if (!spare) return undefined;
    spare.worker.ref();
    spare.worker.postMessage({ t: "assign", data } satisfies AssignMessage, transfer);
    return spare.worker;
  }

  /** Stops the waiting spares (at shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.spares.splice(0).map((s) => s.worker.terminate()));
  }

  private refillSoon(): void {
    setTimeout(() => this.fill(), REFILL_DELAY_MS).unref();
  }

  private spawn(): Spare {
    const worker = new Worker(workerEntry("capsule"), { ...capsuleWorkerOptions(this.maxHeapMb), workerData: { spare: true } });
    const spare: Spare = { worker, alive: true };
    const gone = () => {
      spare.alive = false;
      const i = this.spares.indexOf(spare);
      if (i >= 0) this.spares.splice(i, 1);
    };
    // Until assigned, an error would otherwise be an unhandled 'error' event on the main thread.
    worker.on("error", gone);
    worker.once("exit", gone);
    // A waiting spare never keeps the daemon alive.
    worker.unref();
    return spare;
  }
}

/** How long after a take the pool starts the next spare: the start that took one gets the CPU first. */
const REFILL_DELAY_MS = 250;
