/**
 * The globals a confined capsule gets besides the language itself: a clock, host-cancellable timers, text codecs,
 * URL, a console that writes to the capsule's log — and nothing that reaches Node (`process`, `require`, `Buffer`,
 * `fetch`), shared memory (`SharedArrayBuffer`, `Atomics`) or the host's objects. Everything is hardened, so a
 * capsule can neither change what it was given nor pass a changed copy to anyone else.
 */

/** What the endowments report to the host. */
export interface EndowmentHooks {
  log(level: "debug" | "info" | "warn" | "error", message: string): void;
}

/** Timers a capsule may have pending at once; more are refused (a capsule cannot fill the host's timer heap). */
const MAX_TIMERS = 4096;

/** The globals of a capsule's Compartment. */
export function capsuleGlobals(hooks: EndowmentHooks): Record<string, unknown> {
  const timers = new Map<number, NodeJS.Timeout>();
  let nextTimer = 1;
  const schedule = (repeat: boolean) => (callback: unknown, ms?: unknown, ...args: unknown[]): number => {
    if (typeof callback !== "function") throw new TypeError("a timer's callback must be a function (strings are not evaluated)");
    if (timers.size >= MAX_TIMERS) throw new RangeError(`at most ${MAX_TIMERS} timers may be pending`);
    const id = nextTimer++;
    const delay = Math.max(0, Math.min(Number(ms) || 0, 2_147_483_647));
    const run = () => {
      if (!repeat) timers.delete(id);
      (callback as (...a: unknown[]) => unknown)(...args);
    };
    timers.set(id, repeat ? setInterval(run, delay) : setTimeout(run, delay));
    return id;
  };
  const cancel = (id: unknown): void => {
    const timer = timers.get(Number(id));
    if (timer === undefined) return;
    clearTimeout(timer);
    timers.delete(Number(id));
  };
  const write = (level: "debug" | "info" | "warn" | "error") => (...args: unknown[]): void =>
    hooks.log(level, args.map((a) => (typeof a === "string" ? a : inspect(a))).join(" "));
  const random = Math.random.bind(Math);
  return {
    // The real clock and randomness: a capsule is confined, not made deterministic.
    Date,
    Math: Object.create(Math, { random: { value: () => random(), enumerable: false } }),
    setTimeout: schedule(false),
    setInterval: schedule(true),
    clearTimeout: cancel,
    clearInterval: cancel,
    queueMicrotask: (callback: unknown) => {
      if (typeof callback !== "function") throw new TypeError("queueMicrotask needs a function");
      queueMicrotask(callback as () => void);
    },
    structuredClone: (value: unknown) => structuredClone(value),
    TextEncoder,
    TextDecoder,
    URL,
    URLSearchParams,
    console: { log: write("info"), info: write("info"), debug: write("debug"), warn: write("warn"), error: write("error") },
  };
}

function inspect(value: unknown): string {
  if (value instanceof Error) return value.stack ?? `${value.name}: ${value.message}`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
