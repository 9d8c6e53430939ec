/**
 * The `@astrid-os/sdk` `process` module over a fake capsule API (the kernel's side is driven for real in
 * spec/integration/processes.test.ts and wasm-process.test.ts): which kernel calls each SDK call makes, with what,
 * and how a persistent id the kernel does not know reads as `no-such-process`.
 */
import { createAstridOsSdk } from "../../../capsule-host/astrid-os-sdk";
import type { CapsuleApi } from "../../../capsule-host/sdk";

class Refusal extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

function fakeProcesses() {
  const calls: Array<[string, ...unknown[]]> = [];
  let running = true;
  const record = (name: string, answer: (...args: any[]) => unknown) => async (...args: unknown[]) => {
    calls.push([name, ...args]);
    return answer(...args);
  };
  const process = {
    run: record("run", () => ({ stdout: "hi\n", stderr: "", exit_code: 0, signal: null })),
    spawn: record("spawn", () => ({ id: "bg-1", pid: 42 })),
    logs: record("logs", () => ({ stdout: "out", stderr: "", running, exit_code: running ? null : 0, signal: null })),
    state: record("state", () => ({ running, exit_code: running ? null : 0, signal: null, pid: 42, stdout_end: 3, stderr_end: 0, stdin_open: running })),
    writeStdin: record("writeStdin", (_id: string, data: string) => Buffer.from(data, "base64").length),
    closeStdin: record("closeStdin", () => {
      running = false;
      return true;
    }),
    signal: record("signal", () => running),
    spawnPersistent: record("spawnPersistent", () => ({ id: "p".repeat(52), pid: 43 })),
    list: record("list", () => []),
    status: record("status", () => []),
    drain: record("drain", () => {
      throw new Refusal("ASTRID_ERR_NOT_FOUND", "no persistent process with this id");
    }),
    readSince: record("readSince", () => ({ data: Buffer.from("bytes").toString("base64"), next: "c1", bytes_dropped: 0, drained_eof: false })),
    stop: record("stop", () => ({ exit_code: null, signal: "SIGTERM" })),
    release: record("release", () => true),
  };
  const api = { log: { debug() {}, info() {}, warn() {}, error() {} }, process } as unknown as CapsuleApi;
  const sdk = createAstridOsSdk({ api, env: {}, subscribe: async () => undefined });
  return { proc: (sdk.modules["@astrid-os/sdk"] as Record<string, any>).process as Record<string, any>, calls };
}

describe("@astrid-os/sdk process", () => {
  it("passes env through (the kernel checks it) and keeps a background process's stdin open for writeStdin", async () => {
    const { proc, calls } = fakeProcesses();
    await proc.spawn("echo", ["x"], { env: { GREETING: "hi" } });
    expect(calls[0]).toEqual(["run", ["echo", "x"], { env: { GREETING: "hi" } }]);
    const handle = await proc.spawnBackground("cat", [], { stdin: new TextEncoder().encode("first\n") });
    expect(calls[1]).toEqual(["spawn", ["cat"], { stdin: "first\n", keep_stdin_open: true }]);
    expect(await handle.writeStdin(new Uint8Array([1, 2, 250]))).toBe(3);
    expect(calls[2]).toEqual(["writeStdin", "bg-1", Buffer.from([1, 2, 250]).toString("base64"), "base64"]);
    await handle.signal("usr1");
    expect(calls[3]).toEqual(["signal", "bg-1", "usr1"]);
    await handle.closeStdin();
    expect(await handle.wait(1000)).toEqual({ exitCode: 0, signal: undefined });
    // Exited: a signal has nowhere to go.
    await expect(handle.signal("term")).rejects.toMatchObject({ code: "closed" });
  });

  it("the persistent calls: spawnPersistent's options, readSince's bytes, stop; an unknown id is no-such-process", async () => {
    const { proc, calls } = fakeProcesses();
    const id = await proc.spawnPersistent("cat", [], { keepStdinOpen: true, label: "l", overflow: "backpressure", logRingBytes: 4096, idleTimeoutMs: 500 });
    expect(id).toBe("p".repeat(52));
    expect(calls[0]).toEqual(["spawnPersistent", ["cat"], { keep_stdin_open: true, label: "l", overflow: "backpressure", log_ring_bytes: 4096, idle_timeout_ms: 500 }]);
    const chunk = await proc.readSince(id, "stdout", { token: undefined }, 10);
    expect(new TextDecoder().decode(chunk.data)).toBe("bytes");
    expect(chunk.next).toEqual({ token: "c1" });
    await expect(proc.readLogs(id)).rejects.toMatchObject({ code: "no-such-process", astridCode: "ASTRID_ERR_NOT_FOUND" });
    await expect(proc.status(id)).rejects.toMatchObject({ code: "no-such-process" });
    expect(await proc.stop(id, 100)).toEqual({ exitCode: undefined, signal: 15 });
    expect(() => proc.attach(id)).toThrow(expect.objectContaining({ code: "unsupported" }));
  });
});
