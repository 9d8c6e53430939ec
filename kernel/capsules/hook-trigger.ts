/**
 * `sys.trigger_hook` (the 0.1.0 world's `trigger-hook`): a capsule asks every other ready capsule whose
 * `[[interceptor]]` matches a hook topic (exact-segment matcher) for its answer, synchronously, and gets a JSON
 * array of the non-empty answers; denials, errors and timeouts are left out (reference behaviour).
 *
 * A WebAssembly capsule waits for the answer with its thread blocked, so it cannot answer an interceptor call
 * meanwhile: a capsule already waiting on a fan-out (the caller, anyone up its chain, or a capsule in another
 * fan-out) is skipped, never called, so a hook that reaches back cannot deadlock. Nesting (an interceptor that
 * triggers a hook in turn) is bounded at MAX_HOOK_DEPTH, each capsule's fan-outs per second at
 * MAX_HOOK_TRIGGERS_PER_SEC, and a whole fan-out — its nested ones included — by the caller's handler deadline.
 * Targets are called one after the other by priority, so the answers' order is that order.
 */
import { AstridError, isAstridError } from "../../protocol/errors";
import { InterceptResultSchema, MAX_CAPSULE_PAYLOAD_BYTES } from "../../protocol/capsule-messages";
import { exactSegmentMatches, topicProblem } from "../../protocol/topic-match";
import type { AuditLog } from "../audit-log";
import type { Logger } from "../logger";
import type { CapsuleRun } from "./capsule-run";
import type { HostCall } from "./host-call";

/** Deepest nesting of fan-outs: a fan-out started by an interceptor that a fan-out called is depth 2, and so on. */
export const MAX_HOOK_DEPTH = 4;
/** Most fan-outs one capsule may start per second. */
export const MAX_HOOK_TRIGGERS_PER_SEC = 100;
/** Longest request text (JSON `{"hook", "payload"}`), as a publish's payload. */
const MAX_REQUEST_BYTES = MAX_CAPSULE_PAYLOAD_BYTES;
/** Most answer bytes one fan-out returns; later answers are left out (and logged). */
const MAX_ANSWER_BYTES = MAX_CAPSULE_PAYLOAD_BYTES;

/** One fan-out under way: who is on its chain (outermost first) and when its time is up. */
interface FanOut {
  chain: readonly CapsuleRun[];
  deadlineAt: number;
}

/** What a fan-out needs of the kernel. */
export interface HookTriggerDeps {
  /** The ready capsules' runs (serving ones; a staged or retiring run is not a target). */
  readyRuns(): Iterable<CapsuleRun>;
  /** The handler deadline for a call made for `principal` (its max_timeout_secs applies). */
  deadlineFor(principal: string): number;
  /** A capsule ran past its own full deadline: it is hung and must be restarted. */
  timedOut(run: CapsuleRun, what: string): void;
  /** A capsule answered with something that is not an interceptor decision. */
  malformed(run: CapsuleRun, reason: string): void;
  logger: Logger;
  audit: AuditLog;
}

/** Serves `sys.trigger_hook`. */
export class HookTrigger {
  /** Synthetic message numbers of the interceptor calls fan-outs make (negative: never a bus message's). */
  private nextSeq = -1;
  /** The fan-out behind each such call, so a nested trigger made while answering it knows its chain. */
  private readonly bySeq = new Map<number, FanOut>();
  /** Capsules waiting on their own fan-out (their thread is blocked: they cannot be called). */
  private readonly waiting = new Set<CapsuleRun>();
  private readonly windows = new WeakMap<CapsuleRun, { start: number; count: number }>();

  constructor(private readonly deps: HookTriggerDeps) {}

  /** `sys.trigger_hook(requestJson)` of `call.run`, made while acting on message `seq`. Answers the JSON array text. */
  async trigger(call: HostCall, requestJson: unknown, seq: unknown): Promise<string> {
    const { run } = call;
    const name = run.record.name;
    const { hook, payload } = parseRequest(requestJson);
    const parent = typeof seq === "number" ? this.bySeq.get(seq) : undefined;
    const depth = (parent?.chain.length ?? 0) + 1;
    if (depth > MAX_HOOK_DEPTH) {
      this.deps.audit.capsule("denied", name, { call: call.call, principal: call.principal, target: hook, detail: `hook nesting deeper than ${MAX_HOOK_DEPTH}` });
      throw new AstridError("ASTRID_ERR_HOOK_DEPTH", `${name}: trigger-hook of ${hook} from inside ${depth - 1} nested hook calls (at most ${MAX_HOOK_DEPTH} deep): an interceptor that triggers hooks must not start a chain that deep`);
    }
    this.admit(run, call, hook);
    const deadlineAt = Math.min(performance.now() + this.deps.deadlineFor(call.principal), parent?.deadlineAt ?? Infinity);
    const fanOut: FanOut = { chain: [...(parent?.chain ?? []), run], deadlineAt };
    const targets = this.targets(run, hook);
    const answers: unknown[] = [];
    let bytes = 2;
    let called = 0;
    this.waiting.add(run);
    try {
      for (const target of targets) {
        // Checked when its turn comes: an earlier target's nested fan-out may have made it wait meanwhile.
        if (this.waiting.has(target.run) || target.run.ended || target.run.record.state !== "ready") continue;
        const left = deadlineAt - performance.now();
        if (left <= 0) break;
        called++;
        const answer = await this.ask(target.run, target.action, hook, payload, run, fanOut, left);
        if (answer === undefined) continue;
        const size = Buffer.byteLength(JSON.stringify(answer)) + 1;
        if (bytes + size > MAX_ANSWER_BYTES) {
          this.deps.logger.warn("trigger-hook answers exceed 5 MiB; the rest are left out", { capsule: name, hook });
          break;
        }
        bytes += size;
        answers.push(answer);
      }
    } finally {
      this.waiting.delete(run);
    }
    this.deps.audit.capsule("trigger_hook", name, { principal: call.principal, hook, depth, interceptors: called, answers: answers.length });
    return JSON.stringify(answers);
  }

  /** Every other ready capsule's interceptors matching `hook`, by ascending priority. */
  private targets(caller: CapsuleRun, hook: string): Array<{ run: CapsuleRun; action: string; priority: number }> {
    const found: Array<{ run: CapsuleRun; action: string; priority: number }> = [];
    for (const run of this.deps.readyRuns()) {
      if (run === caller || run.ended || run.record.state !== "ready") continue;
      // A run-loop capsule's thread is its loop: the reference answers NotSupported for it, so it is no target.
      if (run.record.wasm?.exports.includes("run")) continue;
      for (const i of run.record.manifest.interceptor) if (exactSegmentMatches(i.event, hook)) found.push({ run, action: i.action, priority: i.priority });
    }
    return found.sort((a, b) => a.priority - b.priority);
  }

  /** One interceptor call: its JSON answer, or undefined (no data, a denial, an error, a timeout). */
  private async ask(target: CapsuleRun, action: string, hook: string, payload: unknown, caller: CapsuleRun, fanOut: FanOut, leftMs: number): Promise<unknown> {
    const seq = this.nextSeq--;
    if (this.nextSeq < -Number.MAX_SAFE_INTEGER) this.nextSeq = -1;
    this.bySeq.set(seq, fanOut);
    const full = this.deps.deadlineFor(target.owner);
    const ms = Math.max(1, Math.min(full, leftMs));
    try {
      const raw = await target.remote.call((r) => r.intercept(action, { topic: hook, payload, source_id: caller.sourceId, seq }) as Promise<unknown>, ms);
      const parsed = InterceptResultSchema.safeParse(raw);
      if (!parsed.success) {
        this.deps.malformed(target, `interceptor ${action} answered with a malformed decision`);
        return undefined;
      }
      if (parsed.data.action === "deny") {
        this.deps.logger.info("interceptor denied during trigger-hook", { capsule: target.record.name, action, hook, reason: parsed.data.reason });
        return undefined;
      }
      return parsed.data.data;
    } catch (err) {
      this.deps.logger.warn("interceptor failed during trigger-hook", { capsule: target.record.name, action, hook, error: (err as Error).message });
      // Hung only if it had its whole deadline: a call cut short by the caller's remaining time says nothing.
      if (isAstridError(err) && err.code === "ASTRID_ERR_TIMEOUT" && ms === full) this.deps.timedOut(target, `interceptor ${action}`);
      return undefined;
    } finally {
      this.bySeq.delete(seq);
    }
  }

  /** Counts one fan-out of `run` against its per-second budget, or refuses it (audited). */
  private admit(run: CapsuleRun, call: HostCall, hook: string): void {
    const now = performance.now();
    let window = this.windows.get(run);
    if (!window || now - window.start >= 1000) this.windows.set(run, (window = { start: now, count: 0 }));
    if (++window.count > MAX_HOOK_TRIGGERS_PER_SEC) {
      if (window.count === MAX_HOOK_TRIGGERS_PER_SEC + 1) {
        this.deps.audit.capsule("denied", run.record.name, { call: call.call, principal: call.principal, target: hook, detail: "trigger-hook rate limit" });
      }
      throw new AstridError("ASTRID_ERR_RATE_LIMITED", `${run.record.name}: trigger-hook may run at most ${MAX_HOOK_TRIGGERS_PER_SEC} times per second`);
    }
  }
}

/** The request `{"hook": topic, "payload": any JSON}`, checked. */
function parseRequest(requestJson: unknown): { hook: string; payload: unknown } {
  const bad = (why: string) => new AstridError("ASTRID_ERR_REQUEST_INVALID", `trigger-hook: ${why}`);
  if (typeof requestJson !== "string") throw bad("the request must be JSON text");
  if (Buffer.byteLength(requestJson) > MAX_REQUEST_BYTES) throw bad("the request is larger than 5 MiB");
  let request: unknown;
  try {
    request = JSON.parse(requestJson);
  } catch {
    throw bad("the request is not JSON (expected an object with a hook topic and a payload)");
  }
  const hook = (request as { hook?: unknown } | null)?.hook;
  if (request === null || typeof request !== "object" || Array.isArray(request) || typeof hook !== "string") {
    throw bad("the request must be an object with a string hook (a topic) and a payload");
  }
  const problem = topicProblem(hook);
  if (problem) throw bad(`hook ${JSON.stringify(hook.slice(0, 256))}: ${problem}`);
  return { hook, payload: (request as { payload?: unknown }).payload ?? null };
}
