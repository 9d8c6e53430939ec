/**
 * Thread entry point of the MCP host: the Model Context Protocol servers' SDK clients and child processes live
 * here, served to the kernel over comlink. A server that floods stderr, answers with 50 MB or never answers costs
 * this thread; the kernel's only waits on a port, each with a deadline. Decisions (which server may start, when it
 * restarts, who may call it) stay in the kernel.
 */
import { parentPort } from "node:worker_threads";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/umd/node-adapter";
import { AstridError, isAstridError } from "../protocol/errors";
import type { McpHostApi, McpHostEvents, McpResult } from "../protocol/mcp-host";
import { ServerConnection } from "./mcp-host/server-connection";

if (!parentPort) throw new Error("workers/mcp-host must run in a worker thread");

/** Runs `work`, turning a throw into a coded result (comlink would keep only the message). */
async function result<T>(work: () => Promise<T>): Promise<McpResult<T>> {
  try {
    return { ok: true, value: await work() };
  } catch (err) {
    return { ok: false, code: isAstridError(err) ? err.code : "ASTRID_ERR_INTERNAL", message: (err as Error)?.message ?? String(err) };
  }
}

const servers = new Map<string, ServerConnection>();
/** Names being started: a second start of one name while the first runs is refused. */
const starting = new Set<string>();
let events: Comlink.Remote<McpHostEvents> | undefined;
// A kernel that stopped listening (shutting down) must not turn a lost notification into a crash here.
const ignore = () => undefined;

const api: McpHostApi = {
  listen: (remote) =>
    result(async () => {
      events = remote as unknown as Comlink.Remote<McpHostEvents>;
      return null;
    }),
  start: (spec) =>
    result(async () => {
      if (servers.has(spec.name) || starting.has(spec.name)) {
        throw new AstridError("ASTRID_ERR_INTERNAL", `MCP server ${spec.name} is already running`);
      }
      starting.add(spec.name);
      try {
        // Declared first: a server that dies during its start reports it before start() returns.
        let connection: ServerConnection | undefined;
        const started = await ServerConnection.start(spec, {
          exited: (exit) => {
            if (servers.get(spec.name) === connection) servers.delete(spec.name);
            void events?.exited(spec.name, exit).catch(ignore);
          },
          stderr: (lines, dropped) => void events?.stderr(spec.name, lines, dropped).catch(ignore),
          toolsChanged: (tools) => void events?.toolsChanged(spec.name, tools).catch(ignore),
        });
        connection = started.connection;
        servers.set(spec.name, connection);
        return started.info;
      } finally {
        starting.delete(spec.name);
      }
    }),
  stop: (name, graceMs) =>
    result(async () => {
      const connection = servers.get(name);
      servers.delete(name);
      await connection?.stop(graceMs);
      return null;
    }),
  request: (name, operation, timeoutMs) =>
    result(async () => {
      const connection = servers.get(name);
      if (!connection) throw new AstridError("ASTRID_ERR_MCP_SERVER_UNAVAILABLE", `MCP server ${name} is not running`);
      return connection.request(operation, timeoutMs);
    }),
};

Comlink.expose(api, nodeEndpoint(parentPort));
