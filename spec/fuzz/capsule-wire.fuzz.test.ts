/**
 * Fuzzing capsule → kernel messages as a hostile worker sends them, at the function level: the guarded comlink
 * channel (protocol/rpc-channel.ts + rpc-guard.ts) with the kernel's syscall object exposed on it, the data-plane
 * and control-plane result schemas (protocol/capsule-messages.ts), and the syscall gate's entry points
 * (kernel/capsules/syscall-gate.ts). What a structured clone can carry is fair game: cycles, BigInt, Map, Date,
 * typed arrays, `__proto__` and `toString` keys.
 */
import { EventEmitter } from "node:events";
import type { MessagePort } from "node:worker_threads";
import * as Comlink from "comlink";
import fc from "fast-check";
import {
  CAPSULE_QUEUE_LIMIT,
  FromCapsuleSchema,
  InterceptResultSchema,
  KERNEL_SYSCALL_METHODS,
  parseFromCapsule,
  SetupOutcomeSchema,
  StepOutcomeSchema,
  SYSCALL_NAMES,
  ToolOutcomeSchema,
  type KernelSyscalls,
  type SyscallResult,
} from "../../protocol/capsule-messages";
import { ERROR_CODES } from "../../protocol/errors";
import { BoundedRemote, rpcChannel } from "../../protocol/rpc-channel";
import { comlinkGuard } from "../../protocol/rpc-guard";
import { gateWithRun } from "./fake-gate";
import { expectCoded, FUZZ_TIMEOUT_MS, hostileJson, hostileKey, hostileString, hostileValue, jsonObject, runs } from "./fuzz-helpers";

/** Values a structured clone carries that JSON cannot: a cycle, a BigInt, deep nesting. */
const cloneOnly = fc.oneof(
  hostileJson.map((v) => {
    const cyclic: Record<string, unknown> = { v };
    cyclic.self = cyclic;
    return cyclic;
  }),
  fc.bigInt().map((n) => ({ n })),
  fc.constant(JSON.parse(`${"[".repeat(5000)}${"]".repeat(5000)}`) as unknown),
);
const workerValue = fc.oneof({ arbitrary: hostileValue, weight: 4 }, { arbitrary: cloneOnly, weight: 1 });

/** A comlink wire value: mostly RAW, sometimes the kinds the guard must refuse. */
const wireValue = fc.oneof(
  { arbitrary: workerValue.map((value) => ({ type: "RAW", value })), weight: 4 },
  { arbitrary: fc.tuple(fc.constantFrom("HANDLER", "PROXY", "raw"), workerValue).map(([type, value]) => ({ type, name: "proxy", value })), weight: 1 },
  { arbitrary: workerValue, weight: 1 },
);

/** Messages a hostile worker sends on the control port: well-formed calls, near misses, and junk. */
const controlMessage = (ids: fc.Arbitrary<string>) =>
  fc.oneof(
    fc.record({ id: ids, type: fc.constant("APPLY"), path: fc.constant(["syscall"]), argumentList: fc.array(wireValue, { maxLength: 4 }) }),
    fc.record({
      id: fc.oneof(ids, hostileValue),
      type: fc.constantFrom("GET", "SET", "APPLY", "CONSTRUCT", "ENDPOINT", "RELEASE", "RAW", "HANDLER"),
      path: fc.oneof(fc.array(fc.oneof(fc.constantFrom("syscall", "constructor", "__proto__", "then", "bind"), hostileString), { maxLength: 3 }), hostileValue),
      argumentList: fc.oneof(fc.array(wireValue, { maxLength: 10 }), hostileValue),
      value: wireValue,
    }, { requiredKeys: ["type"] }),
    // A reply: to a call the kernel made (or not), raw or a thrown value.
    fc.record({ id: ids, type: fc.constantFrom("RAW", "HANDLER"), value: workerValue, name: fc.constantFrom("throw", "proxy") }, { requiredKeys: ["id", "type"] }),
    fc.tuple(fc.array(fc.tuple(hostileKey, workerValue), { maxLength: 4 })).map(([pairs]) => jsonObject(pairs)),
    workerValue,
  );

/** A stand-in for the kernel's end of the MessageChannel: hostile messages come in by `emit("message")`. */
class FakePort extends EventEmitter {
  readonly sent: Array<{ id?: string; type?: string }> = [];
  postMessage(message: { id?: string; type?: string }): void {
    this.sent.push(message);
  }
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe("fuzz: the guarded control channel, as the kernel exposes it to a capsule worker", () => {
  it("only well-formed syscall APPLYs reach the syscall object; replies settle only calls made; nothing throws", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 3 }), fc.array(fc.nat(), { maxLength: 12 }).chain((picks) => fc.tuple(fc.constant(picks), fc.array(controlMessage(fc.constantFrom("1", "2", "x", "")), { minLength: picks.length, maxLength: picks.length }))), async (kernelCalls, [, messages]) => {
        const port = new FakePort();
        const invalid: string[] = [];
        const channel = rpcChannel(port as unknown as MessagePort, comlinkGuard(KERNEL_SYSCALL_METHODS, (reason) => invalid.push(reason)));
        const calls: unknown[][] = [];
        const syscalls: KernelSyscalls = { syscall: async (...args) => (calls.push(args), { ok: false, code: "ASTRID_ERR_NOT_IMPLEMENTED", message: "fuzz" }) };
        const keysBefore = Object.keys(syscalls);
        Comlink.expose(syscalls, channel.callee);
        // The kernel's own calls into the capsule (load, setup…), each waiting for a reply.
        const remote = new BoundedRemote<{ load(): Promise<unknown> }>(channel.caller, "fuzz");
        const settled: Array<{ ok: boolean; value: unknown }> = [];
        for (let i = 0; i < kernelCalls; i++) {
          remote.call((r) => r.load(), 60_000).then((value) => settled.push({ ok: true, value }), (err: unknown) => settled.push({ ok: false, value: err }));
        }
        const outstanding = port.sent.map((m) => m.id!);
        // The worker answers some of them (by their real ids), then sends the generated messages.
        const forged = [...messages];
        for (const [i, id] of outstanding.entries()) if (i % 2 === 0) forged.splice(i, 0, { id, type: "RAW", value: { ok: true } });
        let validApplies = 0;
        for (const message of forged) {
          const m = message as { type?: unknown; path?: unknown; argumentList?: unknown };
          const apply = m !== null && typeof m === "object" && m.type === "APPLY" && Array.isArray(m.path) && m.path.length === 1 && m.path[0] === "syscall";
          if (apply && Array.isArray(m.argumentList) && m.argumentList.length <= 8 && m.argumentList.every((a) => isRaw(a)) && Object.keys(m).every((k) => ["id", "type", "path", "argumentList"].includes(k)) && isId((m as { id?: unknown }).id)) validApplies++;
          port.emit("message", message); // a throw here would be an exception in the kernel's message handler
        }
        await flush();
        await flush();
        // Every syscall that ran came from a valid APPLY (a RELEASE may unexpose the object before later ones).
        expect(calls.length).toBeLessThanOrEqual(validApplies);
        expect(Object.keys(syscalls)).toEqual(keysBefore);
        // Each kernel call settles at most once, and only with a raw value answering it.
        expect(settled.length).toBeLessThanOrEqual(kernelCalls);
        for (const s of settled) expect(s.ok).toBe(true);
        // The replies the kernel sent back are raw values answering calls the worker made.
        for (const reply of port.sent.slice(kernelCalls)) expect(reply.type).toBe("RAW");
        for (const reason of invalid) expect(typeof reason).toBe("string");
        remote.close("done");
        channel.close();
      }),
      runs(120),
    );
  }, FUZZ_TIMEOUT_MS);
});

function isRaw(value: unknown): boolean {
  return value !== null && typeof value === "object" && (value as { type?: unknown }).type === "RAW" && Object.keys(value).every((k) => k === "type" || k === "value");
}
function isId(value: unknown): boolean {
  return typeof value === "string" && value.length >= 1 && value.length <= 128;
}

describe("fuzz: data-plane and control-plane results from a capsule", () => {
  const dataPlane = fc.oneof(
    workerValue,
    fc.record({
      t: fc.constantFrom("publish", "log", "stats", "ack", "event", "__proto__"),
      topic: fc.oneof(hostileString, fc.constant("x".repeat(1025))), payload: workerValue, seq: fc.oneof(fc.integer(), fc.double(), hostileValue),
      level: fc.constantFrom("debug", "info", "warn", "error", "fatal"), message: fc.oneof(hostileString, fc.constant("m".repeat(70_000))),
      heap_used: fc.oneof(fc.integer({ min: -1, max: 2 ** 40 }), fc.double()), external: fc.oneof(fc.integer({ min: -1, max: 2 ** 40 }), fc.double()),
      n: fc.oneof(fc.integer({ min: -1, max: CAPSULE_QUEUE_LIMIT + 1 }), fc.double()),
    }, { requiredKeys: ["t"] }),
  );

  it("FromCapsuleSchema never throws; what it accepts is exactly one well-typed message", () => {
    fc.assert(
      fc.property(dataPlane, (raw) => {
        const parsed = FromCapsuleSchema.safeParse(raw);
        if (!parsed.success) return;
        const m = parsed.data;
        if (m.t === "publish") expect(typeof m.topic === "string" && m.topic.length <= 1024 && (m.seq === undefined || Number.isInteger(m.seq))).toBe(true);
        else if (m.t === "log") expect(["debug", "info", "warn", "error"]).toContain(m.level);
        else if (m.t === "stats") expect(Number.isInteger(m.heap_used) && m.heap_used >= 0 && Number.isInteger(m.external) && m.external >= 0).toBe(true);
        else expect(Number.isInteger(m.n) && m.n >= 1 && m.n <= CAPSULE_QUEUE_LIMIT).toBe(true);
      }),
      runs(600),
    );
  }, FUZZ_TIMEOUT_MS);

  it("parseFromCapsule (the chat path's fast check) agrees with FromCapsuleSchema on every message", () => {
    fc.assert(
      fc.property(dataPlane, (raw) => {
        const fast = parseFromCapsule(raw);
        const schema = FromCapsuleSchema.safeParse(raw);
        expect(fast.success).toBe(schema.success);
        if (fast.success && schema.success) expect(fast.data).toEqual(schema.data);
      }),
      runs(600),
    );
  }, FUZZ_TIMEOUT_MS);

  it("the control-plane result schemas never throw and accept only their declared shapes", () => {
    const result = fc.oneof(
      workerValue,
      fc.record({
        ok: fc.oneof(fc.boolean(), hostileValue), message: fc.oneof(hostileString, workerValue), action: fc.constantFrom("continue", "final", "deny", "allow"),
        reason: hostileString, data: workerValue, content: workerValue, is_error: fc.oneof(fc.boolean(), hostileValue),
        tools: fc.oneof(fc.array(fc.record({ name: hostileString, description: hostileString, input_schema: workerValue }, { requiredKeys: ["name", "description"] }), { maxLength: 3 }), workerValue),
      }, { requiredKeys: [] }),
    );
    fc.assert(
      fc.property(result, (raw) => {
        const step = StepOutcomeSchema.safeParse(raw);
        if (step.success) expect(typeof step.data.ok).toBe("boolean");
        const setup = SetupOutcomeSchema.safeParse(raw);
        if (setup.success && setup.data.ok) for (const t of setup.data.tools) expect(t.name.length >= 1 && t.name.length <= 128).toBe(true);
        const intercept = InterceptResultSchema.safeParse(raw);
        if (intercept.success) expect(["continue", "final", "deny"]).toContain(intercept.data.action);
        const tool = ToolOutcomeSchema.safeParse(raw);
        if (tool.success) expect(typeof tool.data.is_error).toBe("boolean");
      }),
      runs(600),
    );
  }, FUZZ_TIMEOUT_MS);
});

describe("fuzz: the syscall gate", () => {
  const callName = fc.oneof(fc.constantFrom(...SYSCALL_NAMES), hostileValue, hostileJson.filter((v) => typeof v === "object"), fc.constantFrom("ipc", "kv.get ", "__proto__", "constructor"));
  const topicArg = fc.oneof(fc.constantFrom("a.b", "b.c", "a.b.c", "c.d", "a.*", "a..b"), hostileValue);

  it("a syscall always resolves to a result with a registered code; a malformed one is REQUEST_INVALID", async () => {
    await fc.assert(
      fc.asyncProperty(callName, fc.oneof(fc.array(fc.oneof(topicArg, workerValue), { maxLength: 5 }), workerValue), fc.oneof(fc.integer(), hostileValue), async (call, args, seq) => {
        const { gate, run } = gateWithRun();
        const result: SyscallResult = await gate.forRun(() => run).syscall(call as never, args as unknown[], seq as number);
        const wellFormed = (SYSCALL_NAMES as readonly unknown[]).includes(call) && Array.isArray(args) && args.length <= 4;
        if (!result.ok) {
          expect(Object.prototype.hasOwnProperty.call(ERROR_CODES, result.code)).toBe(true);
          expect(typeof result.message).toBe("string");
          if (!wellFormed) expect(result.code).toBe("ASTRID_ERR_REQUEST_INVALID");
          expect(result.code).not.toBe("ASTRID_ERR_INTERNAL");
        } else expect(wellFormed).toBe(true);
      }),
      runs(300),
    );
  }, FUZZ_TIMEOUT_MS);

  it("a reply-less publish is published or refused with a coded error, never anything else", () => {
    fc.assert(
      fc.property(topicArg, workerValue, (topic, payload) => {
        const { gate, run, published } = gateWithRun();
        let refused = false;
        try {
          gate.publish(run, "ipc.publish", topic, payload, "default");
        } catch (err) {
          expectCoded(err, ["ASTRID_ERR_REQUEST_INVALID", "ASTRID_ERR_CAPABILITY_DENIED", "ASTRID_ERR_RATE_LIMITED"]);
          refused = true;
        }
        expect(published.length).toBe(refused ? 0 : 1);
        if (!refused) expect(() => JSON.stringify(published[0], (_k, v: unknown) => (typeof v === "bigint" ? 0 : v))).not.toThrow();
      }),
      runs(400),
    );
  }, FUZZ_TIMEOUT_MS);
});
