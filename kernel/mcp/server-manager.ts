/**
 * The MCP servers the daemon supervises: the operator's (`etc/servers.toml`) and the capsules' own
 * (`[[mcp_server]]`, started and stopped with their capsule). This file decides — state, restart policy with
 * backoff, who the server belongs to, the audit entry of each request — and the MCP host worker does the work, so
 * nothing a server does (crash, hang, flood, a huge answer) holds up the main thread: every request has a deadline.
 */
import { createHash } from "node:crypto";
import { AstridError, isAstridError } from "../../protocol/errors";
import { MAX_MCP_ARGUMENT_BYTES, type McpExit, type McpOperation, type McpServerSpec, type McpTool, type McpTransportKind } from "../../protocol/mcp-host";
import { MCP_TOOLS_CHANGED_TOPIC } from "../../protocol/topics";
import type { AuditLog } from "../audit-log";
import type { EventBus } from "../bus";
import type { Logger } from "../logger";
import { McpHostClient } from "./host-client";
import type { McpServerConfig } from "./servers-config";

/** Longest restart delay. */
export const MCP_RESTART_BACKOFF_MAX_MS = 60_000;
/** A server that ran this long before failing starts its retry count afresh. */
const STABLE_RUN_MS = 30_000;

/** Tunables (kernel/config.ts: ASTRID_MCP_*). */
export interface McpSettings {
  /** Deadline of spawn + `initialize` + the first tool list. */
  startTimeoutMs: number;
  /** Deadline of each request (a tool call, a list, a read). */
  requestTimeoutMs: number;
  /** First restart delay; doubles per consecutive failure up to MCP_RESTART_BACKOFF_MAX_MS. */
  restartBackoffMs: number;
  /** How long a stopping server has between SIGTERM and SIGKILL. */
  stopGraceMs: number;
}

/** Where a server is in its life. */
export type McpServerState = "starting" | "running" | "backoff" | "failed" | "stopped";

/** One server as `astrid mcp list` shows it. */
export interface McpServerStatus {
  name: string;
  /** The capsule that owns it; null for the operator's servers. */
  owner: string | null;
  transport: McpTransportKind;
  state: McpServerState;
  pid: number | null;
  tools: number;
  restarts: number;
  description?: string;
  last_error?: string;
}

/** Who a request runs for (its audit entry says so). */
export interface McpRequester {
  principal: string;
  capsule?: string;
  caller?: string;
}

interface Entry {
  config: McpServerConfig;
  owner: string | null;
  state: McpServerState;
  pid: number | null;
  tools: McpTool[];
  restarts: number;
  /** Consecutive failures, for the restart policy and the backoff. */
  failures: number;
  lastError?: string;
  runningSince?: number;
  /** The start in progress. */
  attempt?: Promise<void>;
  timer?: NodeJS.Timeout;
  /** Bumped by every start and stop: an answer to an older one is stale. */
  generation: number;
  /** `auto_start = false` and never started yet: the first request starts it. */
  onDemand: boolean;
}

/** What the manager needs of the kernel. */
export interface McpServersOptions {
  bus: EventBus;
  logger: Logger;
  audit: AuditLog;
  settings: McpSettings;
  /** source_id of what the manager publishes. */
  sourceId: string;
}

/** Starts, watches, restarts and stops MCP servers, and runs requests on them. */
export class McpServers {
  private readonly entries = new Map<string, Entry>();
  private readonly host: McpHostClient;
  private readonly stopping = new Map<string, Promise<void>>();
  private closing = false;

  constructor(private readonly o: McpServersOptions) {
    this.host = new McpHostClient({
      exited: (name, exit) => this.onExit(name, exit),
      stderr: (name, lines, dropped) => {
        for (const line of lines) this.o.logger.info(String(line), { mcp_server: name, stream: "stderr" });
        if (dropped > 0) this.o.logger.warn("MCP server stderr lines dropped (more than its per-second budget)", { mcp_server: name, dropped });
      },
      toolsChanged: (name, tools) => {
        const entry = this.entries.get(name);
        if (entry && entry.state === "running") this.setTools(entry, tools);
      },
      workerLost: (reason) => {
        this.o.logger.error("the MCP host worker stopped; its servers are gone", { reason });
        for (const entry of this.entries.values()) if (entry.state === "running") this.failed(entry, `the MCP host worker stopped (${reason})`);
      },
    });
  }

  /** Registers the operator's servers and starts those with `auto_start` (boot does not wait for them). */
  startConfigured(configs: readonly McpServerConfig[]): void {
    for (const config of configs) {
      const entry = this.register(config, null);
      if (config.autoStart) void this.launch(entry);
    }
  }

  /**
   * Starts the servers a capsule owns and waits for them; throws ASTRID_ERR_MCP_SERVER_UNAVAILABLE (the capsule's
   * start then fails) when one does not come up.
   */
  async startOwned(capsule: string, configs: readonly McpServerConfig[]): Promise<void> {
    const entries: Entry[] = [];
    for (const config of configs) {
      // The previous run's copy may still be stopping (a restart).
      await this.stopping.get(config.name);
      entries.push(this.register(config, capsule));
    }
    await Promise.all(entries.map((entry) => this.launch(entry)));
    const down = entries.find((entry) => entry.state !== "running" && this.entries.get(entry.config.name) === entry);
    if (down) throw new AstridError("ASTRID_ERR_MCP_SERVER_UNAVAILABLE", `its MCP server ${down.config.name} did not start: ${down.lastError ?? down.state}`);
  }

  /** Stops and forgets every server `capsule` owns (its run ended). */
  async stopOwned(capsule: string): Promise<void> {
    const owned = [...this.entries.values()].filter((entry) => entry.owner === capsule);
    await Promise.all(owned.map((entry) => {
      this.entries.delete(entry.config.name);
      return this.stop(entry);
    }));
  }

  /** Every server, the operator's first. */
  list(): McpServerStatus[] {
    return [...this.entries.values()].sort((a, b) => Number(a.owner !== null) - Number(b.owner !== null)).map((entry) => ({
      name: entry.config.name,
      owner: entry.owner,
      transport: entry.config.transport,
      state: entry.state,
      pid: entry.pid,
      tools: entry.tools.length,
      restarts: entry.restarts,
      ...(entry.config.description !== undefined ? { description: entry.config.description } : {}),
      ...(entry.lastError !== undefined ? { last_error: entry.lastError } : {}),
    }));
  }

  /** How many servers there are, run and failed (GetStatus). */
  counts(): { total: number; running: number; failed: number } {
    const all = [...this.entries.values()];
    return { total: all.length, running: all.filter((e) => e.state === "running").length, failed: all.filter((e) => e.state === "failed").length };
  }

  /** The owner of `name`: a capsule name, null for the operator's, undefined when there is no such server. */
  ownerOf(name: string): string | null | undefined {
    return this.entries.get(name)?.owner;
  }

  /** The status of one server, if it exists. */
  status(name: string): McpServerStatus | undefined {
    return this.list().find((s) => s.name === name);
  }

  /** The tools of a running server (kept current by its list-changed notifications). */
  async tools(name: string): Promise<McpTool[]> {
    return (await this.running(name)).tools;
  }

  /**
   * Runs one request on `name` for `who`. Tool calls, resource reads and prompts are audited with the server, what
   * ran, the SHA-256 of the arguments, the outcome and the duration.
   */
  async run(name: string, operation: McpOperation, who: McpRequester): Promise<unknown> {
    const audited = operation.op === "call_tool" || operation.op === "read_resource" || operation.op === "get_prompt";
    const started = performance.now();
    const args = operation.op === "call_tool" || operation.op === "get_prompt" ? operation.args : operation.op === "read_resource" ? { uri: operation.uri } : {};
    const json = JSON.stringify(args);
    const record = (error?: AstridError) => {
      if (!audited) return;
      this.o.audit.mcp({
        principal: who.principal,
        server: name,
        operation: operation.op,
        target: (operation.op === "call_tool" ? operation.tool : operation.op === "get_prompt" ? operation.prompt : operation.op === "read_resource" ? operation.uri : "").slice(0, 256),
        args_sha256: createHash("sha256").update(json).digest("hex"),
        duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
        ...(who.capsule !== undefined ? { capsule: who.capsule } : {}),
        ...(who.caller !== undefined ? { caller: who.caller } : {}),
        ...(error ? { error: error.message.slice(0, 1024), code: error.code } : {}),
      });
    };
    try {
      const size = Buffer.byteLength(json);
      if (size > MAX_MCP_ARGUMENT_BYTES) {
        throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `the arguments are ${size} bytes of JSON, more than the ${MAX_MCP_ARGUMENT_BYTES} allowed`);
      }
      await this.running(name);
      const value = await this.host.request(name, operation, this.o.settings.requestTimeoutMs);
      record();
      return value;
    } catch (err) {
      const coded = isAstridError(err) ? err : new AstridError("ASTRID_ERR_INTERNAL", String((err as Error)?.message ?? err));
      record(coded);
      throw coded;
    }
  }

  /** Stops every server (terminate, then kill after the grace) and the worker; idempotent. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const all = [...this.entries.values()];
    await Promise.all(all.map((entry) => this.stop(entry)));
    await Promise.all(this.stopping.values());
    await this.host.close();
  }

  private register(config: McpServerConfig, owner: string | null): Entry {
    const existing = this.entries.get(config.name);
    if (existing) {
      // Only a capsule's own servers are registered again (its restart); the old run's copy is already stopping.
      clearTimeout(existing.timer);
      existing.generation++;
    }
    const entry: Entry = { config, owner, state: "stopped", pid: null, tools: [], restarts: 0, failures: 0, generation: 0, onDemand: !config.autoStart };
    this.entries.set(config.name, entry);
    return entry;
  }

  /** A server that must be running now, waiting for a start in progress. */
  private async running(name: string): Promise<Entry> {
    if (this.closing) throw new AstridError("ASTRID_ERR_SHUTTING_DOWN", "the daemon is shutting down");
    const entry = this.entries.get(name);
    if (!entry) throw new AstridError("ASTRID_ERR_MCP_SERVER_UNAVAILABLE", `no MCP server named ${JSON.stringify(name)} (see astrid mcp list)`);
    if (entry.state === "stopped" && entry.onDemand) void this.launch(entry);
    if (entry.state === "starting") await entry.attempt;
    if (entry.state !== "running") {
      throw new AstridError("ASTRID_ERR_MCP_SERVER_UNAVAILABLE", `MCP server ${name} is ${entry.state}${entry.lastError !== undefined ? `: ${entry.lastError}` : ""}`);
    }
    return entry;
  }

  private spec(config: McpServerConfig): McpServerSpec {
    return {
      name: config.name,
      transport: config.transport,
      ...(config.command !== undefined ? { command: config.command } : {}),
      args: config.args,
      env: config.env,
      ...(config.cwd !== undefined ? { cwd: config.cwd } : {}),
      ...(config.url !== undefined ? { url: config.url } : {}),
      ...(config.binaryHash !== undefined ? { binaryHash: config.binaryHash } : {}),
      startTimeoutMs: this.o.settings.startTimeoutMs,
    };
  }

  /** One start attempt; its outcome lands in the entry (running, or failed per policy). */
  private launch(entry: Entry): Promise<void> {
    clearTimeout(entry.timer);
    entry.onDemand = false;
    const generation = ++entry.generation;
    const current = () => !this.closing && entry.generation === generation && this.entries.get(entry.config.name) === entry;
    entry.state = "starting";
    const attempt = (async () => {
      try {
        const info = await this.host.start(this.spec(entry.config));
        if (!current()) {
          // Stopped or replaced while it started: it must not outlive that.
          await this.host.stop(entry.config.name, this.o.settings.stopGraceMs).catch(() => undefined);
          return;
        }
        entry.state = "running";
        entry.pid = info.pid;
        entry.runningSince = Date.now();
        delete entry.lastError;
        this.o.logger.info("MCP server running", {
          mcp_server: entry.config.name, pid: info.pid, tools: info.tools.length, owner: entry.owner, server: info.server, restarts: entry.restarts,
        });
        this.setTools(entry, info.tools);
      } catch (err) {
        if (!current()) return;
        this.failed(entry, (err as Error).message);
      }
    })();
    entry.attempt = attempt;
    return attempt;
  }

  /** A running server ended without being asked to. */
  private onExit(name: string, exit: McpExit): void {
    const entry = this.entries.get(name);
    if (!entry || entry.state !== "running" || this.closing) return;
    this.o.logger.warn("MCP server exited", { mcp_server: name, code: exit.code, signal: exit.signal, reason: exit.reason });
    if (exit.code === 0 && entry.config.restartPolicy.kind !== "always") {
      entry.state = "stopped";
      entry.pid = null;
      entry.lastError = exit.reason;
      this.setTools(entry, []);
      return;
    }
    this.failed(entry, exit.reason);
  }

  /** A start failed or the server died: restart after the backoff if the policy allows, else failed for good. */
  private failed(entry: Entry, reason: string): void {
    entry.pid = null;
    entry.lastError = reason;
    if (this.closing) {
      entry.state = "stopped";
      return;
    }
    if (entry.runningSince !== undefined && Date.now() - entry.runningSince >= STABLE_RUN_MS) entry.failures = 0;
    delete entry.runningSince;
    this.setTools(entry, []);
    const policy = entry.config.restartPolicy;
    const retry = policy.kind === "always" || (policy.kind === "on_failure" && entry.failures < policy.maxRetries);
    if (!retry) {
      entry.state = "failed";
      if (policy.kind === "on_failure") entry.lastError = `${reason} (gave up after ${entry.restarts} restarts)`;
      this.o.logger.error("MCP server failed", { mcp_server: entry.config.name, owner: entry.owner, reason: entry.lastError });
      return;
    }
    const delay = Math.min(this.o.settings.restartBackoffMs * 2 ** entry.failures, MCP_RESTART_BACKOFF_MAX_MS);
    entry.failures++;
    entry.state = "backoff";
    this.o.logger.warn("MCP server failed; restarting after a backoff", { mcp_server: entry.config.name, reason, delay_ms: delay, attempt: entry.failures });
    const generation = entry.generation;
    entry.timer = setTimeout(() => {
      if (this.closing || entry.generation !== generation || this.entries.get(entry.config.name) !== entry) return;
      entry.restarts++;
      void this.launch(entry);
    }, delay);
    entry.timer.unref();
  }

  /** Stops one server (asked: no restart follows). */
  private stop(entry: Entry): Promise<void> {
    clearTimeout(entry.timer);
    entry.generation++;
    const wasUp = entry.state === "running" || entry.state === "starting";
    entry.state = "stopped";
    entry.pid = null;
    if (!wasUp) return Promise.resolve();
    const name = entry.config.name;
    const done = (async () => {
      // A start in progress finishes first (its result is then stopped by its own stale check).
      await entry.attempt;
      await this.host.stop(name, this.o.settings.stopGraceMs).catch((err: Error) =>
        this.o.logger.warn("MCP server did not stop cleanly", { mcp_server: name, error: err.message }));
    })();
    this.stopping.set(name, done);
    void done.finally(() => {
      if (this.stopping.get(name) === done) this.stopping.delete(name);
    });
    return done;
  }

  /** Records a new tool list and announces it when it changed. */
  private setTools(entry: Entry, tools: McpTool[]): void {
    const before = JSON.stringify(entry.tools);
    entry.tools = tools;
    if (JSON.stringify(tools) === before) return;
    this.o.bus.publish({
      topic: MCP_TOOLS_CHANGED_TOPIC,
      payload: { type: "custom", data: { server: entry.config.name, owner: entry.owner, tools: tools.map((t) => t.name) } },
      source_id: this.o.sourceId,
    });
  }
}
