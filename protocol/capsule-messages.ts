/**
 * Every message between the kernel and one capsule worker, each described once with a zod schema beside its type.
 *
 * Two ways across, both on ports the kernel creates:
 * - the **control plane**: calls that expect a reply — kernel → capsule (`CapsuleControl`: load, lifecycle hook,
 *   setup, interceptors, tools) and capsule → kernel (`KernelSyscalls`: ipc, kv, fs, http, process, approval, elicit) — all comlink over one
 *   `rpc-channel` port, each call with a deadline; results are plain `{ ok, … }` records, never thrown values;
 * - the **data plane**: one-way raw port messages on the worker's parentPort — bus events into the capsule, and
 *   acknowledgements, reply-less publishes and log lines out of it. Comlink per event would double their cost.
 *
 * The kernel trusts nothing a capsule worker sends (it runs the capsule's code): every data-plane message and every
 * control-plane result is parsed with the schemas below on receipt.
 */
import { z } from "zod";
import { CAPSULE_QUEUE_LIMIT, MAX_CAPSULE_TEXT_CHARS } from "./capsule-limits";

export {
  CAPSULE_QUEUE_LIMIT,
  CAPSULE_STATS_INTERVAL_MS,
  MAX_CAPSULE_PAYLOAD_BYTES,
  MAX_CAPSULE_PUBLISH_BYTES_PER_SEC,
  MAX_CAPSULE_TEXT_CHARS,
} from "./capsule-limits";

/**
 * A capsule's module files, as the capsule loader read them: paths relative to the capsule directory (POSIX
 * separators) → CommonJS source (ES modules already transformed). The worker evaluates only these.
 */
export interface CapsuleModules {
  entry: string;
  files: Record<string, string>;
  /**
   * The fingerprint of the capsule's files these were compiled from, when the loader checked it (see
   * `compileModules`); absent when unchecked, or when the files changed while they were read.
   */
  hash?: string;
}

/** What the worker needs to start. */
export interface CapsuleWorkerData {
  name: string;
  /** Absolute path of the capsule's JavaScript module (checked to lie inside the capsule directory). */
  file: string;
  /** Its modules, for the confined load (absent: the worker imports `file` natively — tests of the kernel's own defences only). */
  modules?: CapsuleModules;
  /** Resolved `[env]` values. */
  env: Record<string, string>;
  /** Interceptor actions declared in the manifest, so the host can check the module implements them. */
  actions: string[];
  /** The manifest's `ipc_publish`, so the host can tell which publishes will pass (the kernel checks them all). */
  publishAcl: string[];
  /** Most messages the kernel accepts from the capsule per second (the host's reply-less path stays under half). */
  maxPublishesPerSec: number;
  /** The port of the control plane (comlink, both directions). */
  control: import("node:worker_threads").MessagePort;
}

/** Kernel → a spare capsule worker (started ahead of need), once: the capsule it runs, with its control port. */
export interface AssignMessage {
  t: "assign";
  data: CapsuleWorkerData;
}

/** `install` on a capsule's first load; `upgrade` (with the previously installed version) when its version changed. */
export type LifecycleHook = { hook: "install" } | { hook: "upgrade"; from: string };

const Text = z.string().max(MAX_CAPSULE_TEXT_CHARS);

// ---- control plane, kernel → capsule ----------------------------------------------------------------------------

/** A step of loading that worked, or why it did not. */
export const StepOutcomeSchema = z.discriminatedUnion("ok", [
  z.strictObject({ ok: z.literal(true) }),
  // `deterministic`: the same files fail the same way (a component of another world, say): not retried until they change.
  z.strictObject({ ok: z.literal(false), message: Text, deterministic: z.literal(true).optional() }),
]);
export type StepOutcome = z.infer<typeof StepOutcomeSchema>;

/** A tool a capsule offers, as it describes itself when ready. */
export const ToolDescriptorSchema = z.strictObject({
  name: z.string().min(1).max(128),
  description: z.string().max(4096),
  input_schema: z.unknown().optional(),
});
export type ToolDescriptor = z.infer<typeof ToolDescriptorSchema>;

/** Most tools one capsule may offer. */
export const MAX_CAPSULE_TOOLS = 256;

/** `setup` ran: the capsule is ready and offers these tools; or it failed. */
export const SetupOutcomeSchema = z.discriminatedUnion("ok", [
  z.strictObject({ ok: z.literal(true), tools: z.array(ToolDescriptorSchema).max(MAX_CAPSULE_TOOLS) }),
  z.strictObject({ ok: z.literal(false), message: Text }),
]);
export type SetupOutcome = z.infer<typeof SetupOutcomeSchema>;

/** What an interceptor decided (reference §6.7): go on (optionally with a new payload), stop, or refuse. */
export const InterceptResultSchema = z.discriminatedUnion("action", [
  z.strictObject({ action: z.literal("continue"), data: z.unknown().optional() }),
  z.strictObject({ action: z.literal("final"), data: z.unknown().optional() }),
  z.strictObject({ action: z.literal("deny"), reason: Text }),
]);
export type InterceptResult = z.infer<typeof InterceptResultSchema>;

/** What a tool run produced: `content` is the tool's return value (or the error message). */
export const ToolOutcomeSchema = z.strictObject({ content: z.unknown(), is_error: z.boolean() });
export type ToolOutcome = z.infer<typeof ToolOutcomeSchema>;

/** The event an interceptor is called with. */
export interface InterceptEvent {
  topic: string;
  payload: unknown;
  source_id: string;
  principal?: string;
  seq: number;
}

/** The control plane a capsule worker exposes to the kernel. Every result is validated on receipt. */
export interface CapsuleControl {
  /** Imports the capsule's module and checks it implements what the manifest declares. */
  load(): Promise<StepOutcome>;
  /** Runs the install or upgrade hook (only after a successful `load`). */
  runHook(lifecycle: LifecycleHook): Promise<StepOutcome>;
  /** Runs the capsule's `setup` and reports its tools; after this, events are delivered. */
  setup(): Promise<SetupOutcome>;
  /** Runs the interceptor `action` on an event and reports its decision. */
  intercept(action: string, event: InterceptEvent): Promise<InterceptResult>;
  /** Runs tool `name` with `args` for message `seq` (the request); a throw becomes `is_error: true` with its message. */
  executeTool(name: string, args: unknown, seq: number): Promise<ToolOutcome>;
}

// ---- control plane, capsule → kernel ----------------------------------------------------------------------------

/** Calls a capsule can make; every one is checked in the main thread. */
export const SYSCALL_NAMES = [
  "ipc.publish", "ipc.subscribe",
  // A publish on behalf of a principal, attributed `claimed`: uplink capsules only (`[capabilities] uplink = true`).
  "ipc.publish_as",
  "kv.get", "kv.set", "kv.delete", "kv.list",
  // The VFS (reference §6.9 paths): reads and writes checked against fs_read / fs_write; workspace writes are staged.
  "fs.read", "fs.write", "fs.exists", "fs.stat", "fs.readdir", "fs.mkdir", "fs.unlink", "fs.commit", "fs.discard",
  "fs.remove_dir_all", "fs.canonicalize", "fs.read_link", "fs.hard_link",
  // Outbound HTTP, checked against `net` and the address guard; a stream hands its body out as it arrives.
  "http.request", "http.stream_open", "http.stream_read", "http.stream_ready", "http.stream_close",
  // A request body written piece by piece (astrid:http@1.1.0 http-upload), then sent: it becomes a stream.
  "http.upload_open", "http.upload_write", "http.upload_finish",
  // Host processes, checked against host_process: argv arrays, never a shell.
  "process.run", "process.spawn", "process.logs", "process.kill",
  "process.state", "process.write_stdin", "process.close_stdin", "process.signal",
  // The persistent tier: processes that outlive the capsule's run (not the daemon), found again by an opaque id.
  "process.spawn_persistent", "process.list", "process.status", "process.drain", "process.read_since", "process.stop", "process.release",
  // Sockets (kernel/capsules/host-net.ts): outbound TCP and lookups (net_connect), the capsule's Unix listener
  // (net_bind), TCP listeners (net_tcp_bind), UDP (net_udp); every socket is owned by the capsule's run.
  "net.connect_tcp", "net.lookup", "net.bind_unix", "net.bind_tcp", "net.accept", "net.read", "net.write", "net.ready",
  "net.shutdown", "net.option", "net.close", "net.udp_bind", "net.udp_send", "net.udp_recv", "net.udp_connect",
  // Asking the people behind a session: approvals (any time) and elicitation (install/upgrade hooks only).
  "approval.request", "elicit.ask", "elicit.has_secret", "elicit.secret",
  // MCP servers the capsule owns ([[mcp_server]]) or names ([capabilities] mcp): tools, resources, prompts.
  "mcp.servers", "mcp.tools", "mcp.call", "mcp.resources", "mcp.read_resource", "mcp.prompts", "mcp.get_prompt",
  // The operator's language-model endpoint ([capabilities] model): the kernel holds the key and makes the HTTP call.
  "model.info", "model.tools", "model.stream_open", "model.stream_read", "model.stream_close",
  // Capability introspection, ungated: the capsule's own declared capabilities, and another capsule's flag by source id.
  "sys.capabilities", "sys.check_capability",
  // A synchronous fan-out to other capsules' interceptors of a hook topic (kernel/capsules/hook-trigger.ts).
  "sys.trigger_hook",
  // Platform identity links ([capabilities] identity: resolve < link < admin, and the principal's identity:* capability).
  "identity.resolve", "identity.list_links", "identity.link", "identity.unlink",
  // Creating a principal as `astrid agent create` does: manifest level `admin` and the principal's `agent:create`.
  "identity.create_user",
  // Uplinks ([capabilities] uplink = true): a platform user's message becomes their linked principal's prompt.
  "uplink.register", "uplink.send",
] as const;
export type SyscallName = (typeof SYSCALL_NAMES)[number];

/** A syscall as the kernel accepts it: a known name and at most four arguments. */
export const SyscallSchema = z.tuple([z.enum(SYSCALL_NAMES), z.array(z.unknown()).max(4)]);

/** A syscall's answer: its value, or a coded refusal. */
export type SyscallResult = { ok: true; value: unknown } | { ok: false; code: string; message: string };

/** The kernel's side of the control plane, as a capsule worker sees it (the only method it may call). */
export interface KernelSyscalls {
  /** `seq`: the message the capsule acts on (its principal's scope and quotas apply), or null for none. */
  syscall(call: SyscallName, args: unknown[], seq: number | null): Promise<SyscallResult>;
}
/** The methods of `KernelSyscalls`, for the channel guard. */
export const KERNEL_SYSCALL_METHODS = ["syscall"] as const;

// ---- data plane ----------------------------------------------------------------------------------------------

/** Kernel → worker: a bus event (or one interceptor's delivery, with `action`). */
export interface CapsuleEventMessage {
  t: "event";
  topic: string;
  payload: unknown;
  source_id: string;
  principal?: string;
  /** For a client's message: `verified` (its connection's credential) or `claimed` (a frontend's platform user). */
  attribution?: "verified" | "claimed";
  seq: number;
  action?: string;
}
export type ToCapsule = CapsuleEventMessage;

/** Worker → kernel, one-way. */
export const FromCapsuleSchema = z.discriminatedUnion("t", [
  /**
   * A publish the host expects to pass (topic valid, in `ipc_publish`, within the size and rate limits): sent
   * without an id and never answered, which saves a message per publish. The kernel checks it like the syscall;
   * a refusal (a host that lied, or a rate window that drifted) is dropped, audited when denied, and logged.
   */
  z.strictObject({
    t: z.literal("publish"), topic: z.string().max(1024), payload: z.unknown(), seq: z.number().int().optional(),
    /** Events handled since the last ack, acknowledged with this publish (as an `ack` message would). */
    ack: z.number().int().min(1).max(CAPSULE_QUEUE_LIMIT).optional(),
  }),
  z.strictObject({ t: z.literal("log"), level: z.enum(["debug", "info", "warn", "error"]), message: Text }),
  /** The worker's memory, reported by the host every CAPSULE_STATS_INTERVAL_MS (bytes). */
  z.strictObject({ t: z.literal("stats"), heap_used: z.number().int().min(0), external: z.number().int().min(0) }),
  /** `n` events handled since the last ack (never more than the queue limit: a larger count cannot be honest). */
  z.strictObject({ t: z.literal("ack"), n: z.number().int().min(1).max(CAPSULE_QUEUE_LIMIT) }),
]);
export type FromCapsule = z.infer<typeof FromCapsuleSchema>;

/**
 * `FromCapsuleSchema.safeParse` with a fast path for the two messages of every prompt, a publish and an ack: the
 * schema's checks written out (a strict subset of what it accepts), several times cheaper than the schema itself on
 * the chat path. Anything else, and anything the fast path does not accept, goes through the schema, whose verdict
 * and error are the ones that count.
 */
export function parseFromCapsule(raw: unknown): ReturnType<typeof FromCapsuleSchema.safeParse> {
  if (typeof raw === "object" && raw !== null && Object.getPrototypeOf(raw) === Object.prototype) {
    const m = raw as Record<string, unknown>;
    if (m.t === "publish" && typeof m.topic === "string" && m.topic.length <= 1024 && onlyKeys(m, PUBLISH_KEYS) &&
        (m.seq === undefined || Number.isSafeInteger(m.seq)) && (m.ack === undefined || isAckCount(m.ack))) {
      return { success: true, data: m as FromCapsule };
    }
    if (m.t === "ack" && isAckCount(m.n) && onlyKeys(m, ACK_KEYS)) {
      return { success: true, data: m as FromCapsule };
    }
  }
  return FromCapsuleSchema.safeParse(raw);
}

const PUBLISH_KEYS = new Set(["t", "topic", "payload", "seq", "ack"]);

function isAckCount(n: unknown): boolean {
  return Number.isSafeInteger(n) && (n as number) >= 1 && (n as number) <= CAPSULE_QUEUE_LIMIT;
}
const ACK_KEYS = new Set(["t", "n"]);

function onlyKeys(m: Record<string, unknown>, allowed: ReadonlySet<string>): boolean {
  for (const key in m) if (!allowed.has(key)) return false;
  return true;
}
