/**
 * The single admin write lock (reference §5.4): mutating admin handlers, and `Principals.ensure`, run one at a time,
 * so two writers never interleave a read-modify-write of a profile or of `etc/groups.toml`. The queue is bounded.
 */
import { AstridError } from "../../protocol/errors";

/** Writers that may wait at once; one more is refused (a client flooding admin writes). */
export const ADMIN_LOCK_QUEUE_LIMIT = 256;

/** A FIFO mutex over promises. */
export class AdminLock {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;

  /** Runs `fn` once every earlier holder has finished; its result (or error) is passed through. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.waiting >= ADMIN_LOCK_QUEUE_LIMIT) {
      return Promise.reject(new AstridError("ASTRID_ERR_RATE_LIMITED", `too many admin changes are waiting (${ADMIN_LOCK_QUEUE_LIMIT}); retry when they are done`));
    }
    this.waiting++;
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => this.waiting--,
      () => this.waiting--,
    );
    return result;
  }
}
