/**
 * A syscall gate (kernel/capsules/syscall-gate.ts) over fakes, for calling its entry points directly: the bus
 * records publishes, storage is empty, every permission passes, every host service answers NOT_IMPLEMENTED. The
 * capsule may publish on `a.*` and `b.c`.
 */
import { SyscallGate, type HostServices } from "../../kernel/capsules/syscall-gate";
import type { CapsuleRun } from "../../kernel/capsules/capsule-run";
import { AstridError } from "../../protocol/errors";

/** A fresh gate and capsule run. */
export function gateWithRun(): { gate: SyscallGate; run: CapsuleRun; published: unknown[] } {
  const published: unknown[] = [];
  const bus = { publish: (m: unknown) => published.push(m), subscribe: () => () => {} };
  const storage = { get: async () => null, set: async () => {}, delete: async () => false, listKeys: async () => [] };
  const quotas = { get: () => ({ max_ipc_throughput_bytes: 10_485_760 }) };
  const permissions = {
    callFor: (run: CapsuleRun, call: string) => ({ run, call, principal: "default", permit: async () => {} }),
    allowed: () => {},
    denied: () => {},
  };
  const service = { handle: async () => { throw new AstridError("ASTRID_ERR_NOT_IMPLEMENTED", "fuzz"); } };
  const services = Object.fromEntries(["fs", "http", "process", "approval", "elicit", "mcp", "model", "sys", "identity", "uplink", "net"].map((f) => [f, service])) as unknown as HostServices;
  const gate = new SyscallGate(bus as never, storage as never, () => {}, quotas as never, 1_000_000, permissions as never, services);
  const run = {
    ended: false, inflightSyscalls: 0, subscriptions: 0, unsubscribe: [], sourceId: "capsule-src", publishWindows: new Map(), publishTopicsAllowed: new Set(), publishCount: 0, publishCountStart: 0,
    record: { name: "c", manifest: { capabilities: { ipc_publish: ["a.*", "b.c"], ipc_subscribe: ["a.*"], kv: ["*"] } } },
    principalFor: () => "default",
  } as unknown as CapsuleRun;
  return { gate, run, published };
}

