import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/umd/node-adapter";
import { MessageChannel } from "node:worker_threads";
import { BoundedRemote } from "../../../kernel/rpc";

interface Api {
  echo(x: number): Promise<number>;
  never(): Promise<void>;
}

function pair() {
  const channel = new MessageChannel();
  Comlink.expose({ echo: async (x: number) => x, never: () => new Promise<void>(() => {}) } satisfies Api, nodeEndpoint(channel.port2));
  return { remote: new BoundedRemote<Api>(channel.port1, "test"), channel };
}

describe("issue #4: bounded comlink calls", () => {
  it("answers, gives every call a deadline, and rejects pending and later calls once the worker is gone", async () => {
    const { remote, channel } = pair();
    expect(await remote.call((r) => r.echo(42), 1000)).toBe(42);
    await expect(remote.call((r) => r.never(), 50)).rejects.toMatchObject({ code: "ASTRID_ERR_TIMEOUT" });
    const pending = remote.call((r) => r.never(), 10_000);
    remote.close("its worker stopped");
    await expect(pending).rejects.toMatchObject({ code: "ASTRID_ERR_CAPSULE_UNAVAILABLE" });
    await expect(remote.call((r) => r.echo(1), 1000)).rejects.toMatchObject({ code: "ASTRID_ERR_CAPSULE_UNAVAILABLE" });
    channel.port1.close();
    channel.port2.close();
  });
});
