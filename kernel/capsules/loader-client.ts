/**
 * The kernel's side of the capsule loader worker: every call has a deadline, a worker that dies rejects what is
 * pending (and is started again for the next call), and coded errors come back as AstridErrors.
 */
import { Worker } from "node:worker_threads";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/umd/node-adapter";
import type { CapsuleLoaderApi, DiscoveryResult, LoaderEvents, LoaderResult, StagedInstall } from "../../protocol/capsule-loader";
import type { CapsuleModules } from "../../protocol/capsule-messages";
import { AstridError } from "../../protocol/errors";
import { BoundedRemote } from "../../protocol/rpc-channel";
import type { Logger } from "../logger";

/** What the loader logs through (the daemon's logger; the CLI passes a quiet one). */
export type LoaderLogger = Pick<Logger, "log" | "error">;
import { LOADER_WORKER_OPTIONS, takePrespawned } from "../prespawn";
import { workerEntry } from "../worker-entry";

/** Deadline of a discovery pass (it hashes every capsule's files). */
const DISCOVER_TIMEOUT_MS = 120_000;
/** Deadline of an install's copy (a large capsule on a slow disk). */
const INSTALL_TIMEOUT_MS = 600_000;
/** Deadline of the small calls. */
const CALL_TIMEOUT_MS = 30_000;

/** Talks to the capsule loader worker. */
export class CapsuleLoader {
  private worker: Worker | undefined;
  private remote: BoundedRemote<CapsuleLoaderApi> | undefined;
  private closed = false;

  constructor(private readonly logger: LoaderLogger) {}

  discover(roots: string[], envDir: string): Promise<DiscoveryResult> {
    return this.call<DiscoveryResult>((l) => l.discover(roots, envDir), DISCOVER_TIMEOUT_MS);
  }

  compileModules(dir: string, entry: string, cacheFile: string, expected?: { hash: string; envDir: string; name: string }): Promise<CapsuleModules> {
    return this.call<CapsuleModules>((l) => l.compileModules(dir, entry, cacheFile, expected), DISCOVER_TIMEOUT_MS);
  }

  /** The fingerprint of capsule `name`'s files in `dir` as they are now (discovery's `hash`). */
  contentHash(dir: string, envDir: string, name: string): Promise<string> {
    return this.call<string>((l) => l.contentHash(dir, envDir, name), DISCOVER_TIMEOUT_MS);
  }

  storedEnv(envDir: string, name: string, dir: string): Promise<Record<string, string>> {
    return this.call<Record<string, string>>((l) => l.storedEnv(envDir, name, dir), CALL_TIMEOUT_MS);
  }

  stageInstall(source: string, root: string, refuse: Record<string, string>): Promise<StagedInstall> {
    return this.call<StagedInstall>((l) => l.stageInstall(source, root, refuse), INSTALL_TIMEOUT_MS);
  }

  async rollbackInstall(staged: StagedInstall): Promise<void> {
    await this.call((l) => l.rollbackInstall(staged), INSTALL_TIMEOUT_MS);
  }

  async discardBackup(staged: StagedInstall): Promise<void> {
    await this.call((l) => l.discardBackup(staged), INSTALL_TIMEOUT_MS);
  }

  async removeCapsuleDir(dir: string, root: string): Promise<void> {
    await this.call((l) => l.removeCapsuleDir(dir, root), INSTALL_TIMEOUT_MS);
  }

  /** Watches `roots`; `onChange` hears of each settled burst of edits. */
  async watch(roots: string[], onChange: (file: string) => void): Promise<void> {
    // Both return nothing: whatever they returned would be cloned back to the loader (a logger cannot be).
    const events: LoaderEvents = {
      changed: (file) => {
        onChange(String(file));
      },
      log: ({ level, message, fields }) => {
        this.logger.log(level, String(message), fields);
      },
    };
    await this.call((l) => l.watch(roots, Comlink.proxy(events)), CALL_TIMEOUT_MS);
  }

  /** Stops the watcher and the worker; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.remote) await this.remote.call((l) => l.unwatch() as Promise<unknown>, 5000).catch(() => undefined);
    this.remote?.close("the capsule loader stopped");
    await this.worker?.terminate();
    this.worker = undefined;
  }

  private async call<T>(invoke: (loader: Comlink.Remote<CapsuleLoaderApi>) => Promise<unknown>, timeoutMs: number): Promise<T> {
    if (this.closed) throw new AstridError("ASTRID_ERR_SHUTTING_DOWN", "the capsule loader is stopped");
    const result = (await this.ensure().call(invoke, timeoutMs)) as LoaderResult<T>;
    if (result.ok) return result.value;
    throw new AstridError(result.code, result.message);
  }

  private ensure(): BoundedRemote<CapsuleLoaderApi> {
    if (this.remote && this.worker) return this.remote;
    const worker = takePrespawned("capsule-loader") ?? new Worker(workerEntry("capsule-loader"), LOADER_WORKER_OPTIONS);
    const remote = new BoundedRemote<CapsuleLoaderApi>(nodeEndpoint(worker), "capsule loader");
    const gone = (why: string) => {
      if (this.worker !== worker) return;
      remote.close(why);
      this.worker = undefined;
      this.remote = undefined;
      if (!this.closed) this.logger.error("capsule loader worker stopped; it starts again on the next call", { reason: why });
    };
    worker.on("error", (err) => gone(`crashed: ${err.message}`));
    worker.on("exit", (code) => gone(`exited with code ${code}`));
    this.worker = worker;
    this.remote = remote;
    return remote;
  }
}
