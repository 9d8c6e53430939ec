/**
 * The kernel's side of the MCP host worker (`workers/mcp-host.ts`): every call has a deadline, a worker that dies
 * rejects what is pending (and takes its server processes with it: the manager hears `workerLost` and restarts them
 * per policy in a fresh worker), and coded errors come back as AstridErrors.
 */
import { Worker } from "node:worker_threads";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/umd/node-adapter";
import { AstridError } from "../../protocol/errors";
import type { McpExit, McpHostApi, McpHostEvents, McpOperation, McpResult, McpServerInfo, McpServerSpec, McpTool } from "../../protocol/mcp-host";
import { BoundedRemote } from "../../protocol/rpc-channel";
import { workerEntry } from "../worker-entry";

/** Extra time the kernel waits beyond a worker-side deadline (the worker's own timeout answers first). */
const DEADLINE_MARGIN_MS = 2000;
/** Deadline of the small calls. */
const CALL_TIMEOUT_MS = 10_000;

/** What the manager hears from the worker. */
export interface McpHostListener {
  exited(name: string, exit: McpExit): void;
  stderr(name: string, lines: string[], dropped: number): void;
  toolsChanged(name: string, tools: McpTool[]): void;
  /** The worker itself died: every server in it is gone. */
  workerLost(reason: string): void;
}

/** Talks to the MCP host worker, starting it on first use. */
export class McpHostClient {
  private worker: Worker | undefined;
  private remote: BoundedRemote<McpHostApi> | undefined;
  private ready: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly listener: McpHostListener) {}

  start(spec: McpServerSpec): Promise<McpServerInfo> {
    return this.call((h) => h.start(spec), spec.startTimeoutMs + DEADLINE_MARGIN_MS);
  }

  async stop(name: string, graceMs: number): Promise<void> {
    if (!this.remote) return;
    await this.call((h) => h.stop(name, graceMs), graceMs + DEADLINE_MARGIN_MS);
  }

  request(name: string, operation: McpOperation, timeoutMs: number): Promise<unknown> {
    return this.call((h) => h.request(name, operation, timeoutMs), timeoutMs + DEADLINE_MARGIN_MS);
  }

  /** Ends the worker (its servers must have been stopped first); idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.remote?.close("the MCP host stopped");
    const worker = this.worker;
    this.worker = undefined;
    this.remote = undefined;
    await worker?.terminate();
  }

  private async call<T>(invoke: (host: Comlink.Remote<McpHostApi>) => Promise<McpResult<unknown>>, timeoutMs: number): Promise<T> {
    if (this.closed) throw new AstridError("ASTRID_ERR_SHUTTING_DOWN", "the MCP host is stopped");
    const remote = this.ensure();
    await this.ready;
    const result = (await remote.call(invoke, timeoutMs)) as McpResult<T>;
    if (result.ok) return result.value;
    throw new AstridError(result.code, result.message);
  }

  private ensure(): BoundedRemote<McpHostApi> {
    if (this.remote && this.worker) return this.remote;
    const file = workerEntry("mcp-host");
    // The SDK and the server processes' output stay in the worker; its own stdout/stderr are not the daemon's.
    const worker = new Worker(file, { stdout: true, stderr: true });
    worker.stdout.resume();
    worker.stderr.resume();
    const remote = new BoundedRemote<McpHostApi>(nodeEndpoint(worker), "MCP host");
    const gone = (why: string) => {
      if (this.worker !== worker) return;
      remote.close(why);
      this.worker = undefined;
      this.remote = undefined;
      if (!this.closed) this.listener.workerLost(why);
    };
    worker.on("error", (err) => gone(`crashed: ${err.message}`));
    worker.on("exit", (code) => gone(`exited with code ${code}`));
    // Both return nothing: whatever they returned would be cloned back to the worker.
    const events: McpHostEvents = {
      exited: (name, exit) => {
        this.listener.exited(String(name), exit);
      },
      stderr: (name, lines, dropped) => {
        this.listener.stderr(String(name), lines, dropped);
      },
      toolsChanged: (name, tools) => {
        this.listener.toolsChanged(String(name), tools);
      },
    };
    this.ready = remote.call((h) => h.listen(Comlink.proxy(events)) as Promise<unknown>, CALL_TIMEOUT_MS).then(() => undefined);
    this.ready.catch(() => undefined);
    this.worker = worker;
    this.remote = remote;
    return remote;
  }
}
