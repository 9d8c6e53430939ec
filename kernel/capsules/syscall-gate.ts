/**
 * The syscall gate: every call a capsule makes — publish, subscribe, its KV scope — is checked here, in the main
 * thread, against its manifest, the topic rules and its publish budget. Denials are audited and answered with a
 * coded error; the capsule never reaches the bus or storage any other way.
 */
import { AstridError, isAstridError, type ErrorCode } from "../../protocol/errors";
import {
  MAX_CAPSULE_PAYLOAD_BYTES,
  MAX_CAPSULE_PUBLISH_BYTES_PER_SEC,
  SyscallSchema,
  type KernelSyscalls,
  type SyscallResult,
} from "../../protocol/capsule-messages";
import { normalizePayload } from "../../protocol/ipc-message";
import { exactSegmentMatches, topicProblem } from "../../protocol/topic-match";
import type { AuditLog } from "../audit-log";
import type { BusEvent, EventBus } from "../bus";
import type { StorageClient } from "../storage-client";
import type { CapsuleRun } from "./capsule-run";
import type { PrincipalQuotas } from "./principal-quotas";

/** A monotonic clock in ms (a wall-clock step cannot freeze a window). */
const now0 = () => performance.now();

/** Most subscriptions one capsule may hold. */
export const MAX_CAPSULE_SUBSCRIPTIONS = 128;
/** Most syscalls of one capsule the kernel works on at once; more are refused with ASTRID_ERR_RATE_LIMITED. */
export const MAX_INFLIGHT_SYSCALLS = 256;

/** Checks and carries out capsule calls. */
export class SyscallGate {
  constructor(
    private readonly bus: EventBus,
    private readonly storage: StorageClient,
    private readonly audit: AuditLog,
    /** Delivers a subscribed event to a capsule (the dispatcher's queue accounting). */
    private readonly deliver: (run: CapsuleRun, event: BusEvent) => void,
    private readonly quotas: PrincipalQuotas,
    /** Most messages one capsule may publish per second (ASTRID_CAPSULE_MAX_PUBLISHES_PER_SEC). */
    private readonly maxPublishesPerSec: number,
  ) {}

  /** The syscall object a capsule's channel exposes: results, never throws (a thrown value cannot carry a code). */
  forRun(run: () => CapsuleRun | undefined): KernelSyscalls {
    return {
      syscall: async (call, args, seq) => {
        const current = run();
        if (!current || current.ended) return { ok: false, code: "ASTRID_ERR_CAPSULE_UNAVAILABLE", message: "the capsule is stopping" };
        if (current.inflightSyscalls >= MAX_INFLIGHT_SYSCALLS) {
          return { ok: false, code: "ASTRID_ERR_RATE_LIMITED", message: `at most ${MAX_INFLIGHT_SYSCALLS} capsule calls at once` };
        }
        current.inflightSyscalls++;
        try {
          return { ok: true, value: await this.handle(current, call, args, current.principalFor(seq)) };
        } catch (err) {
          const code: ErrorCode = isAstridError(err) ? err.code : "ASTRID_ERR_INTERNAL";
          return { ok: false, code, message: (err as Error).message } satisfies SyscallResult;
        } finally {
          current.inflightSyscalls--;
        }
      },
    };
  }

  private async handle(run: CapsuleRun, rawCall: unknown, rawArgs: unknown, principal: string): Promise<unknown> {
    const parsed = SyscallSchema.safeParse([rawCall, rawArgs]);
    if (!parsed.success) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `unknown capsule call ${JSON.stringify(String(rawCall).slice(0, 64))} or bad arguments`);
    }
    const [call, args] = parsed.data;
    const { record } = run;
    const caps = record.manifest.capabilities;
    // Reference KV namespace: `{principal}:capsule:{name}` — each principal the capsule serves has its own data.
    const scope = `${principal}:capsule:${record.name}`;
    const str = (v: unknown, name: string) => {
      if (typeof v !== "string") throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: ${name} must be a string`);
      return v;
    };
    switch (call) {
      case "ipc.publish":
        this.publish(run, call, args[0], args[1], principal);
        return null;
      case "ipc.subscribe": {
        const pattern = str(args[0], "pattern");
        const segments = pattern.split(".");
        if (Buffer.byteLength(pattern) > 256 || segments.length > 8 || segments.some((s, i) => s === "" || (s === "*" && i !== segments.length - 1))) {
          throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "ipc.subscribe: pattern must be ≤ 256 bytes, ≤ 8 non-empty segments, `*` only last");
        }
        if (!caps.ipc_subscribe.some((p) => exactSegmentMatches(p, pattern))) throw this.denied(run, call, `may not subscribe to ${pattern} (not in ipc_subscribe)`);
        if (run.subscriptions >= MAX_CAPSULE_SUBSCRIPTIONS) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "ipc.subscribe: at most 128 subscriptions");
        run.subscriptions++;
        run.unsubscribe.push(this.bus.subscribe(pattern, (event) => {
          // A capsule never receives its own publications back through its subscriptions.
          if (event.message.source_id !== run.sourceId) this.deliver(run, event);
        }));
        return null;
      }
      case "kv.get": {
        const value = await this.storage.get(scope, str(args[0], "key"));
        return value === null ? null : Buffer.from(value).toString("utf8");
      }
      case "kv.set":
        await this.storage.set(scope, str(args[0], "key"), Buffer.from(str(args[1], "value"), "utf8"));
        return null;
      case "kv.delete":
        return this.storage.delete(scope, str(args[0], "key"));
      case "kv.list":
        return this.storage.listKeys(scope, str(args[0] ?? "", "prefix"));
    }
  }

  /** Audits a call the manifest does not allow and returns the coded error for it. */
  private denied(run: CapsuleRun, call: string, what: string): AstridError {
    this.audit.capsule("denied", run.record.name, { call, detail: what });
    return new AstridError("ASTRID_ERR_CAPABILITY_DENIED", `${run.record.name}: ${what}`);
  }

  /** A capsule's publish, checked here whichever way it came (syscall or reply-less): topic, ACL, size, rate. */
  publish(run: CapsuleRun, call: string, topicArg: unknown, raw: unknown, principal: string): void {
    const { record } = run;
    if (typeof topicArg !== "string") throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: topic must be a string`);
    const topic = topicArg;
    const problem = topicProblem(topic);
    if (problem) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `ipc.publish: ${problem}`);
    if (!record.manifest.capabilities.ipc_publish.some((p) => exactSegmentMatches(p, topic))) {
      throw this.denied(run, call, `may not publish on ${topic} (not in ipc_publish)`);
    }
    // A window already spent is refused before the payload is serialised: refusing a flood of large payloads must not
    // cost the main thread their JSON.
    const spent = run.publishWindows.get(principal);
    if (spent && performance.now() - spent.start < 1000 && spent.bytes >= Math.min(MAX_CAPSULE_PUBLISH_BYTES_PER_SEC, this.quotas.get(principal).max_ipc_throughput_bytes)) {
      throw new AstridError("ASTRID_ERR_RATE_LIMITED", `ipc.publish: ${record.name} spent its publish bytes for this second (principal ${principal})`);
    }
    const size = Buffer.byteLength(JSON.stringify(raw ?? null));
    if (size > MAX_CAPSULE_PAYLOAD_BYTES) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `ipc.publish: payload of ${size} bytes exceeds 5 MiB`);
    // A message-rate limit beside the byte limit: many tiny messages cost the bus and every recipient too.
    if (now0() - run.publishCountStart >= 1000) {
      run.publishCountStart = now0();
      run.publishCount = 0;
    }
    if (++run.publishCount > this.maxPublishesPerSec) {
      throw new AstridError("ASTRID_ERR_RATE_LIMITED", `ipc.publish: ${record.name} may publish at most ${this.maxPublishesPerSec} messages per second`);
    }
    // Per (capsule, principal): the principal's max_ipc_throughput_bytes, never above the capsule-wide ceiling.
    const budget = Math.min(MAX_CAPSULE_PUBLISH_BYTES_PER_SEC, this.quotas.get(principal).max_ipc_throughput_bytes);
    const now = performance.now(); // monotonic: a wall-clock step cannot freeze the window
    let window = run.publishWindows.get(principal);
    if (!window || now - window.start >= 1000) {
      window = { start: now, bytes: 0 };
      run.publishWindows.set(principal, window);
      if (run.publishWindows.size > 1024) run.publishWindows.delete(run.publishWindows.keys().next().value!);
    }
    if (window.bytes + size > budget) {
      throw new AstridError("ASTRID_ERR_RATE_LIMITED", `ipc.publish: ${record.name} may publish at most ${budget} bytes per second for principal ${principal}`);
    }
    window.bytes += size;
    const payload = raw !== null && typeof raw === "object" && !Array.isArray(raw) && typeof (raw as { type?: unknown }).type !== "string"
      ? { type: "raw_json", ...(raw as Record<string, unknown>) }
      : normalizePayload(raw);
    this.bus.publish({ topic, payload, source_id: run.sourceId, principal });
  }
}
