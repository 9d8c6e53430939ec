/**
 * `astrid:io/poll@1.0.0`: one `pollable` resource for everything a guest can wait on (a subscription's queue, a
 * background process, a socket). jco checks a returned resource with `instanceof` against the class the import object
 * names, so every package hands out this one class, built from a readiness test. Waiting sleeps on the worker's event
 * signal, which the kernel moves whenever it posts something for the capsule (`run.posted()`), never spinning.
 */
import { fail } from "./guest-failure";
import type { GuestHost } from "./guest-host";

/** The most pollables one `poll` takes. */
const MAX_POLLABLES = 256;
/** The longest one sleep between two looks lasts (a readiness the kernel does not announce is still seen). */
const LOOK_INTERVAL_MS = 60_000;

/** A guest's `pollable`: a readiness test, and the host whose event signal it sleeps on while it waits. */
export class Pollable {
  /**
   * @param isReady answers whether the thing is ready now, without blocking
   * @param interval the longest sleep between two looks, for a readiness the kernel does not announce
   */
  constructor(private readonly host: GuestHost, private readonly isReady: () => boolean, readonly interval = LOOK_INTERVAL_MS) {}
  ready(): boolean {
    return this.isReady();
  }
  block(): void {
    for (;;) {
      // The mark comes before the look: an event posted while the look's host call runs still wakes the wait.
      const mark = this.host.eventMark?.();
      if (this.isReady()) return;
      this.host.waitEvents(this.interval, mark);
    }
  }
}

/** The package `astrid:io/poll`: the `pollable` class and `poll` over `host`'s event signal. */
export function pollImports(host: GuestHost) {
  return {
    Pollable,
    poll(pollables: Pollable[]) {
      if (pollables.length === 0) return fail("invalid-input");
      if (pollables.length > MAX_POLLABLES) return fail("too-large");
      for (;;) {
        const mark = host.eventMark?.();
        const ready = pollables.flatMap((p, i) => (p.ready() ? [i] : []));
        if (ready.length > 0) return Uint32Array.from(ready);
        host.waitEvents(Math.min(...pollables.map((p) => p.interval)), mark);
      }
    },
  };
}
