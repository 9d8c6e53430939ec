/**
 * The raw baseline for bench/status-roundtrip and bench/chat-path: a plain socket server that answers the same
 * frames on its main
 * thread with the same framing and timestamp code and the same reply shape, and nothing else (no bus, no policy,
 * no router).
 * Usage: node dist/bench/raw-server.js <socket path> [--ports] [--audit]; prints "ready" once listening. With
 * `--ports` a prompt makes one round trip through a worker thread (postMessage there and back) before the reply:
 * the structural ceiling of any design that runs capsule code off the main thread. With `--audit` each management
 * request is also recorded exactly as the daemon records it (the kernel's AuditLog → StorageClient → storage
 * worker, chained, signed, in a state.db beside the socket): the floor of any server that keeps issue #3's audit.
 */
import { randomBytes, randomUUID } from "node:crypto";
import net from "node:net";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { AuditLog } from "../kernel/audit-log";
import { StorageClient } from "../kernel/storage-client";
import { encodeFrame, FrameDecoder, MAX_CLIENT_FRAME_BYTES, parseFrameJson } from "../protocol/framing";
import { nowRfc3339 } from "../protocol/timestamp";

const socketPath = process.argv[2]!;
const viaWorker = process.argv.includes("--ports");
const echoWorker = viaWorker ? new Worker('require("node:worker_threads").parentPort.on("message", (m) => require("node:worker_threads").parentPort.postMessage(m));', { eval: true }) : undefined;
echoWorker?.on("message", (m: { connection: number; payload: PromptPayload }) => reply(m.connection, m.payload));
const silent = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} } as never;
const storage = process.argv.includes("--audit")
  ? StorageClient.open({ dbPath: path.join(path.dirname(socketPath), "raw-audit.db"), seed: randomBytes(32), logger: silent })
  : undefined;
let audit: AuditLog | undefined;
const startedAt = Date.now();
const connections = new Map<number, net.Socket>();
let replySeq = 0;
interface PromptPayload { text?: string; session_id?: string }
/** Answers the asker only, as the daemon's session routing does: a floor that broadcast would handicap. */
function reply(connection: number, payload: PromptPayload): void {
  connections.get(connection)?.write(encodeFrame({
    topic: "agent.v1.response",
    payload: { type: "agent_response", text: `echo: ${payload.text}`, is_final: true, session_id: payload.session_id },
    signature: null,
    source_id: "00000000-0000-0000-0000-000000000000",
    timestamp: nowRfc3339(),
    seq: ++replySeq,
    principal: "default",
  }));
}

let nextConnection = 0;
const server = net.createServer((socket) => {
  const connection = ++nextConnection;
  connections.set(connection, socket);
  socket.on("close", () => connections.delete(connection));
  socket.setNoDelay(true);
  const decoder = new FrameDecoder(MAX_CLIENT_FRAME_BYTES);
  let authed = false;
  let seq = 0;
  socket.on("data", (chunk: Buffer) => {
    decoder.push(chunk);
    for (let body = decoder.next(); body !== null; body = decoder.next()) {
      const value = parseFrameJson(body) as { topic: string; payload: { request_id?: string; text?: string; session_id?: string } };
      if (!authed) {
        authed = true;
        socket.write(encodeFrame({ status: "ok", protocol_version: 1, server_version: "raw" }));
        continue;
      }
      if (value.topic === "user.v1.prompt") {
        // The chat floor: answer a prompt on the main thread (or after a hop through a worker, with --ports) and
        // send the reply to the asker.
        if (echoWorker) echoWorker.postMessage({ connection, payload: value.payload });
        else reply(connection, value.payload);
        continue;
      }
      audit?.request({
        method: "GetStatus", caller: `conn:${connection}`, principal: "default", capability: "system:status",
        authorization: { type: "system", reason: "policy allow: default holds system:status", via: "group admin (\"*\")" },
      });
      socket.write(
        encodeFrame({
          topic: value.topic.replace("astrid.v1.request.", "astrid.v1.response."),
          payload: {
            type: "raw_json",
            request_id: value.payload.request_id,
            status: "Status",
            data: {
              pid: process.pid,
              uptime_secs: Math.floor((Date.now() - startedAt) / 1000),
              version: "raw",
              ephemeral: false,
              connected_clients: 1,
              loaded_capsules: ["astrid-capsule-cli"],
            },
          },
          signature: null,
          source_id: "00000000-0000-0000-0000-000000000000",
          timestamp: nowRfc3339(),
          seq: ++seq,
        }),
      );
    }
  });
  socket.on("error", () => {});
});
void (async () => {
  const opened = await storage;
  if (opened) audit = new AuditLog(opened, randomUUID());
  server.listen(socketPath, () => process.stdout.write("ready\n"));
})();
process.on("SIGTERM", () => server.close(() => void (async () => {
  await (await storage)?.close();
  process.exit(0);
})()));
