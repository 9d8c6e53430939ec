import * as Comlink from "comlink";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { MessageChannel } from "node:worker_threads";
import { BoundedRemote, rpcChannel } from "../../../protocol/rpc-channel";
import { comlinkGuard } from "../../../protocol/rpc-guard";

interface Api {
  echo(x: number): Promise<number>;
  never(): Promise<void>;
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 20));

describe("issue #4: bounded comlink calls", () => {
  it("answers, gives every call a deadline, and rejects pending and later calls once the peer is gone", async () => {
    const { port1, port2 } = new MessageChannel();
    const callee = rpcChannel(port2);
    Comlink.expose({ echo: async (x: number) => x, never: () => new Promise<void>(() => {}) } satisfies Api, callee.callee);
    const remote = new BoundedRemote<Api>(rpcChannel(port1).caller, "test");
    expect(await remote.call((r) => r.echo(42), 1000)).toBe(42);
    await expect(remote.call((r) => r.never(), 50)).rejects.toMatchObject({ code: "ASTRID_ERR_TIMEOUT" });
    const pending = remote.call((r) => r.never(), 10_000);
    remote.close("its worker stopped");
    await expect(pending).rejects.toMatchObject({ code: "ASTRID_ERR_CAPSULE_UNAVAILABLE" });
    await expect(remote.call((r) => r.echo(1), 1000)).rejects.toMatchObject({ code: "ASTRID_ERR_CAPSULE_UNAVAILABLE" });
    port1.close();
    port2.close();
  });
});

describe("issue #8: one channel, both directions, guarded on the untrusted side", () => {
  function pair() {
    const { port1, port2 } = new MessageChannel();
    const invalid: string[] = [];
    const kernelApi = { calls: 0, syscall: async (n: number) => n * 2 };
    const kernel = rpcChannel(port1, comlinkGuard(["syscall"], (reason) => invalid.push(reason)));
    Comlink.expose(kernelApi, kernel.callee);
    const worker = rpcChannel(port2);
    Comlink.expose({ echo: async (x: number) => x }, worker.callee);
    return { port1, port2, kernel, worker, kernelApi, invalid };
  }

  it("carries calls both ways over one port", async () => {
    const { port1, port2, kernel, worker } = pair();
    const toWorker = new BoundedRemote<{ echo(x: number): Promise<number> }>(kernel.caller, "worker");
    const toKernel = new BoundedRemote<{ syscall(n: number): Promise<number> }>(worker.caller, "kernel");
    expect(await toWorker.call((r) => r.echo(7), 1000)).toBe(7);
    expect(await toKernel.call((r) => r.syscall(21), 1000)).toBe(42);
    port1.close();
    port2.close();
  });

  it("drops GET/SET/CONSTRUCT, unknown methods, proxies and stray replies before comlink sees them", async () => {
    const { port1, port2, kernelApi, invalid } = pair();
    port2.postMessage({ id: "s", type: "SET", path: ["syscall"], value: { type: "RAW", value: 1 } });
    port2.postMessage({ id: "g", type: "GET", path: ["constructor", "constructor"] });
    port2.postMessage({ id: "c", type: "CONSTRUCT", path: ["syscall"], argumentList: [] });
    port2.postMessage({ id: "a", type: "APPLY", path: ["calls"], argumentList: [] });
    port2.postMessage({ id: "p", type: "APPLY", path: ["syscall"], argumentList: [{ type: "HANDLER", name: "proxy", value: 1 }] });
    port2.postMessage({ id: "never", type: "RAW", value: 1 });
    port2.postMessage("not a message");
    await tick();
    expect(invalid).toHaveLength(7);
    expect(typeof kernelApi.syscall).toBe("function");
    port1.close();
    port2.close();
  });
});

describe("a closed remote lets its owner go", () => {
  it("releases comlink's proxy, so an owner its endpoint's guard reaches back to can be collected (an ended capsule run)", () => {
    // In a child with --expose-gc: an owner holds the remote, the channel's guard holds the owner (as a capsule run's
    // guard does), the remote is used and closed, then everything is dropped. Without the release, comlink's
    // FinalizationRegistry keeps the endpoint — and through it the owner — for ever.
    const script = `
      const { MessageChannel } = require("node:worker_threads");
      const Comlink = require("comlink");
      const { BoundedRemote, rpcChannel } = require(${JSON.stringify(require.resolve("../../../dist/protocol/rpc-channel.js"))});
      const { comlinkGuard } = require(${JSON.stringify(require.resolve("../../../dist/protocol/rpc-guard.js"))});
      let ref;
      (async () => {
        await (async () => {
          const { port1, port2 } = new MessageChannel();
          Comlink.expose({ echo: async (x) => x }, rpcChannel(port2).callee);
          const owner = { weight: new Array(100000).fill(1) };
          const channel = rpcChannel(port1, comlinkGuard(["echo"], (reason) => { owner.invalid = reason; }));
          owner.remote = new BoundedRemote(channel.caller, "test");
          await owner.remote.call((r) => r.echo(1), 1000);
          owner.remote.close("done");
          channel.close();
          port1.close();
          port2.close();
          ref = new WeakRef(owner);
        })();
        // deref() keeps its target alive to the end of the job it runs in: collect in other jobs, look once at the end.
        for (let i = 0; i < 10; i++) { await new Promise((r) => setTimeout(r, 20)); global.gc(); }
        process.stdout.write(ref.deref() ? "retained" : "collected");
      })();
    `;
    const r = spawnSync(process.execPath, ["--expose-gc", "-e", script], { cwd: path.join(__dirname, "..", "..", ".."), encoding: "utf8", timeout: 20_000 });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("collected");
  });
});
