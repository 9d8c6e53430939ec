/**
 * The syscall gate: every call a capsule makes — publish, subscribe, its KV scope, the VFS, HTTP, processes,
 * approvals — is checked here, in the main thread, against its manifest, the principal it acts for, the topic rules
 * and its publish budget. Denials are audited and answered with a coded error; the capsule never reaches the bus,
 * storage or the host any other way. The bus and KV are handled here; the other families by their host services.
 */
import { AstridError, isAstridError, type ErrorCode } from "../../protocol/errors";
import {
  MAX_CAPSULE_PAYLOAD_BYTES,
  MAX_CAPSULE_PUBLISH_BYTES_PER_SEC,
  SyscallSchema,
  type KernelSyscalls,
  type SyscallName,
  type SyscallResult,
} from "../../protocol/capsule-messages";
import { normalizePayload } from "../../protocol/ipc-message";
import { exactSegmentMatches, topicProblem } from "../../protocol/topic-match";
import { isAnswerTopic } from "../../protocol/topics";
import { isPrincipalId } from "../../protocol/identity-names";
import type { Attribution, BusEvent, EventBus } from "../bus";
import { IdentityLinks } from "../identity/identity-links";
import type { StorageClient } from "../storage-client";
import type { CapsuleRun } from "./capsule-run";
import type { HostCall, HostService, PermissionGate } from "./host-call";
import type { PrincipalQuotas } from "./principal-quotas";

/** The host services by call family (`fs`, `http`, `process`, `approval`, `elicit`, `mcp`, `model`, `sys`, `identity`, `uplink`). */
export type HostServices = Readonly<Record<"fs" | "http" | "process" | "approval" | "elicit" | "mcp" | "model" | "sys" | "identity" | "uplink" | "net", HostService>>;

/** A monotonic clock in ms (a wall-clock step cannot freeze a window). */
const now0 = () => performance.now();

/** Most subscriptions one capsule may hold. */
export const MAX_CAPSULE_SUBSCRIPTIONS = 128;
/** Most syscalls of one capsule the kernel works on at once; more are refused with ASTRID_ERR_RATE_LIMITED. */
export const MAX_INFLIGHT_SYSCALLS = 256;

/** Checks and carries out capsule calls. */
/** Topics a run remembers as allowed for publishing (beyond these, each publish is checked afresh). */
const MAX_REMEMBERED_PUBLISH_TOPICS = 256;

export class SyscallGate {
  /** Which principals platform users act as: the principals an uplink may claim. */
  private readonly links: IdentityLinks;

  constructor(
    private readonly bus: EventBus,
    private readonly storage: StorageClient,
    /** Delivers a subscribed event to a capsule (the dispatcher's queue accounting). */
    private readonly deliver: (run: CapsuleRun, event: BusEvent) => void,
    private readonly quotas: PrincipalQuotas,
    /** Most messages one capsule may publish per second (ASTRID_CAPSULE_MAX_PUBLISHES_PER_SEC). */
    private readonly maxPublishesPerSec: number,
    private readonly permissions: PermissionGate,
    private readonly services: HostServices,
  ) {
    this.links = new IdentityLinks(storage);
  }

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
          return { ok: true, value: await this.handle(current, call, args, seq) };
        } catch (err) {
          const code: ErrorCode = isAstridError(err) ? err.code : "ASTRID_ERR_INTERNAL";
          return { ok: false, code, message: (err as Error).message } satisfies SyscallResult;
        } finally {
          current.inflightSyscalls--;
        }
      },
    };
  }

  private async handle(run: CapsuleRun, rawCall: unknown, rawArgs: unknown, seq: unknown): Promise<unknown> {
    const parsed = SyscallSchema.safeParse([rawCall, rawArgs]);
    if (!parsed.success) {
      // Not String(rawCall): a cloned `{ toString: 1 }` makes that throw, turning a bad call into an internal error.
      const shown = typeof rawCall === "string" ? JSON.stringify(rawCall.slice(0, 64)) : `(${typeof rawCall})`;
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `unknown capsule call ${shown} or bad arguments`);
    }
    const [call, args] = parsed.data;
    const host = this.permissions.callFor(run, call, seq);
    const { principal } = host;
    const family = call.slice(0, call.indexOf("."));
    if (family !== "ipc" && family !== "kv") return this.services[family as keyof HostServices].handle(host, args);
    const caps = run.record.manifest.capabilities;
    const str = (v: unknown, name: string) => {
      if (typeof v !== "string") throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: ${name} must be a string`);
      return v;
    };
    switch (call) {
      case "ipc.publish":
        this.publish(run, call, args[0], args[1], principal);
        return null;
      case "ipc.publish_as":
        await this.publishAs(run, args[0], args[1], args[2], principal);
        return null;
      case "ipc.subscribe": {
        const pattern = str(args[0], "pattern");
        const segments = pattern.split(".");
        if (Buffer.byteLength(pattern) > 256 || segments.length > 8 || segments.some((s, i) => s === "" || (s === "*" && i !== segments.length - 1))) {
          throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "ipc.subscribe: pattern must be ≤ 256 bytes, ≤ 8 non-empty segments, `*` only last");
        }
        if (!caps.ipc_subscribe.some((p) => exactSegmentMatches(p, pattern))) {
          throw this.denied(run, call, principal, "ipc_subscribe", pattern, `may not subscribe to ${pattern} (not in ipc_subscribe)`);
        }
        this.permissions.allowed(run, { call, principal, capability: null, manifest: "ipc_subscribe", target: pattern }, "manifest");
        if (run.subscriptions >= MAX_CAPSULE_SUBSCRIPTIONS) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "ipc.subscribe: at most 128 subscriptions");
        run.subscriptions++;
        run.unsubscribe.push(this.bus.subscribe(pattern, (event) => {
          // A capsule never receives its own publications back through its subscriptions, nor a person's answer
          // to an approval or elicitation (it could read a secret typed for another capsule).
          if (event.message.source_id !== run.sourceId && !isAnswerTopic(event.message.topic)) this.deliver(run, event);
        }));
        return null;
      }
      default:
        return this.kv(host, call, args, str);
    }
  }

  /**
   * The capsule's KV scope — reference namespace `{principal}:capsule:{name}`, so each principal the capsule serves
   * has its own data. Each key must match an entry of the manifest's `kv` list (`*`, an exact key, or a prefix
   * ending in `*`; the reference never enforced it). No principal capability is needed: the scope is the principal's
   * own data in this capsule, so a `restricted` user still has a conversation history.
   */
  private async kv(host: HostCall, call: SyscallName, args: unknown[], str: (v: unknown, name: string) => string): Promise<unknown> {
    const scope = `${host.principal}:capsule:${host.run.record.name}`;
    const key = call === "kv.list" ? str(args[0] ?? "", "prefix") : str(args[0], "key");
    // A listing needs an entry covering the whole prefix: `notes:*` allows list("notes:"), not list("").
    const target = call === "kv.list" ? `${key}*` : key;
    await host.permit({
      kind: "kv",
      target,
      allowedByManifest: host.run.record.manifest.capabilities.kv.some((entry) => kvEntryCovers(entry, target)),
      capability: null,
    });
    switch (call) {
      case "kv.get": {
        const value = await this.storage.get(scope, key);
        return value === null ? null : Buffer.from(value).toString("utf8");
      }
      case "kv.set":
        await this.storage.set(scope, key, Buffer.from(str(args[1], "value"), "utf8"));
        return null;
      case "kv.delete":
        return this.storage.delete(scope, key);
      default:
        return this.storage.listKeys(scope, key);
    }
  }

  /** Audits a call the manifest does not allow and returns the coded error for it. */
  private denied(run: CapsuleRun, call: string, principal: string, manifest: string, target: string, what: string): AstridError {
    this.permissions.denied(run, { call, principal, capability: null, manifest, target }, what);
    return new AstridError("ASTRID_ERR_CAPABILITY_DENIED", `${run.record.name}: ${what}`);
  }

  /**
   * An uplink capsule's publish for a principal it speaks for: only a capsule whose manifest sets
   * `[capabilities] uplink = true`, and only for a principal some platform user is linked to (`astrid identity
   * link`) — what a frontend may claim too, so an uplink can never speak as the operator or an unlinked agent.
   * Subscribers see the principal as `claimed`. The topic ACL, size and rate limits are a publish's, counted against
   * the claimed principal; each one is audited with both principals.
   */
  private async publishAs(run: CapsuleRun, topic: unknown, raw: unknown, claimedArg: unknown, acting: string): Promise<void> {
    const call = "ipc.publish_as";
    if (!isPrincipalId(claimedArg)) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: principal must be a principal id (1-64 characters of A-Z a-z 0-9 _ -)`);
    const claimed = claimedArg;
    const target = typeof topic === "string" ? topic.slice(0, 256) : "";
    if (!run.record.manifest.capabilities.uplink) {
      throw this.denied(run, call, acting, "uplink", target, `may not publish as another principal (${claimed}): only an uplink capsule ([capabilities] uplink = true) may`);
    }
    if ((await this.links.list({ principal: claimed, limit: 1 })).links.length === 0) {
      this.permissions.denied(run, { call, principal: acting, capability: null, manifest: "uplink", target }, `no platform user is linked to ${claimed}`);
      throw new AstridError("ASTRID_ERR_IDENTITY_UNLINKED", `${run.record.name}: ${call}: no platform user is linked to principal ${claimed}; link one with \`astrid identity link\``);
    }
    this.publish(run, call, topic, raw, claimed, "claimed");
    this.permissions.claimed(run, { call, principal: acting, claimed, topic: target });
  }

  /**
   * A capsule's publish, checked here whichever way it came (syscall or reply-less): topic, ACL, size, rate.
   * `grantedBy`: the manifest flag that allows this topic instead of `ipc_publish` (an uplink's prompts).
   */
  publish(run: CapsuleRun, call: string, topicArg: unknown, raw: unknown, principal: string, attribution?: Attribution, grantedBy?: "uplink"): void {
    const { record } = run;
    if (typeof topicArg !== "string") throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: topic must be a string`);
    const topic = topicArg;
    // A run's manifest never changes: a topic it was allowed once is allowed again (a chat capsule publishes on a
    // handful of topics, each check costing more than the rest of a small publish).
    if (!run.publishTopicsAllowed.has(topic)) {
      const problem = topicProblem(topic);
      if (problem) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `ipc.publish: ${problem}`);
      if (grantedBy !== undefined) {
        if (record.manifest.capabilities[grantedBy] !== true) throw this.denied(run, call, principal, grantedBy, topic, `may not publish on ${topic} (not an ${grantedBy} capsule)`);
      } else {
        if (!record.manifest.capabilities.ipc_publish.some((p) => exactSegmentMatches(p, topic))) {
          throw this.denied(run, call, principal, "ipc_publish", topic, `may not publish on ${topic} (not in ipc_publish)`);
        }
        if (run.publishTopicsAllowed.size < MAX_REMEMBERED_PUBLISH_TOPICS) run.publishTopicsAllowed.add(topic);
      }
    }
    this.permissions.allowed(run, { call, principal, capability: null, manifest: grantedBy ?? "ipc_publish", target: topic }, "manifest");
    // A window already spent is refused before the payload is serialised: refusing a flood of large payloads must not
    // cost the main thread their JSON.
    const spent = run.publishWindows.get(principal);
    if (spent && performance.now() - spent.start < 1000 && spent.bytes >= Math.min(MAX_CAPSULE_PUBLISH_BYTES_PER_SEC, this.quotas.get(principal).max_ipc_throughput_bytes)) {
      throw new AstridError("ASTRID_ERR_RATE_LIMITED", `ipc.publish: ${record.name} spent its publish bytes for this second (principal ${principal})`);
    }
    const size = Buffer.byteLength(jsonOf(raw));
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
    this.bus.publish({ topic, payload, source_id: run.sourceId, principal, ...(attribution ? { attribution } : {}) });
  }
}

/**
 * The JSON text of a capsule's payload. A structured clone can carry what JSON cannot (a cycle, a BigInt, nesting
 * deeper than the stack): that is the capsule's malformed request, not an internal error.
 */
function jsonOf(raw: unknown): string {
  try {
    return JSON.stringify(raw ?? null);
  } catch (err) {
    throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `ipc.publish: payload is not JSON (${(err as Error).message.split("\n")[0]})`, { cause: err });
  }
}

/** Whether a manifest `kv` entry covers `target` (a key, or a listed prefix ending in `*`). */
export function kvEntryCovers(entry: string, target: string): boolean {
  if (entry === "*") return true;
  if (entry.endsWith("*")) return target.startsWith(entry.slice(0, -1));
  return entry === target;
}
