/**
 * The control plane to a worker: comlink over a dedicated MessagePort, with what comlink lacks — every call has a
 * deadline, and when the worker exits every pending call rejects with a coded error instead of hanging forever.
 */
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/umd/node-adapter";
import type { MessagePort } from "node:worker_threads";
import { AstridError } from "../protocol/errors";

/** A comlink proxy whose calls are bounded by a deadline and by the worker's life. */
export class BoundedRemote<T extends object> {
  private readonly remote: Comlink.Remote<T>;
  private readonly pending = new Set<(err: Error) => void>();
  private gone: Error | undefined;

  constructor(port: MessagePort, private readonly label: string) {
    this.remote = Comlink.wrap<T>(nodeEndpoint(port));
  }

  /** Calls `method` with `args`; rejects with ASTRID_ERR_TIMEOUT after `timeoutMs`, or at once if the worker is gone. */
  call<R>(invoke: (remote: Comlink.Remote<T>) => Promise<R>, timeoutMs: number): Promise<R> {
    if (this.gone) return Promise.reject(this.gone);
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(onGone);
        reject(new AstridError("ASTRID_ERR_TIMEOUT", `${this.label}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const onGone = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      this.pending.add(onGone);
      invoke(this.remote).then(
        (value) => {
          clearTimeout(timer);
          this.pending.delete(onGone);
          resolve(value);
        },
        (err: unknown) => {
          clearTimeout(timer);
          this.pending.delete(onGone);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  /** The worker is gone: reject everything pending and every later call. */
  close(reason: string): void {
    this.gone = new AstridError("ASTRID_ERR_CAPSULE_UNAVAILABLE", `${this.label}: ${reason}`);
    for (const reject of this.pending) reject(this.gone);
    this.pending.clear();
    this.remote[Comlink.releaseProxy]();
  }
}
