/**
 * Connection counting from `client.v1.*` payload types (reference §2.6): `connect` +1, `disconnect` −1 saturating
 * at 0, per principal (the message's `principal`, else `default`). The idle monitor and GetStatus read it.
 */
import { CLIENT_TOPIC_PATTERN } from "../protocol/topics";
import type { EventBus } from "./bus";

/** Counts connected clients per principal. */
export class ConnectionTracker {
  private readonly counts = new Map<string, number>();
  private readonly unsubscribe: () => void;

  constructor(bus: EventBus) {
    this.unsubscribe = bus.subscribe(CLIENT_TOPIC_PATTERN, ({ message }) => {
      const principal = message.principal ?? "default";
      const current = this.counts.get(principal) ?? 0;
      if (message.payload.type === "connect") this.counts.set(principal, current + 1);
      else if (message.payload.type === "disconnect") {
        if (current <= 1) this.counts.delete(principal);
        else this.counts.set(principal, current - 1);
      }
    });
  }

  /** Connections summed over principals. */
  get total(): number {
    let sum = 0;
    for (const n of this.counts.values()) sum += n;
    return sum;
  }

  /** Stops counting. */
  close(): void {
    this.unsubscribe();
  }
}
