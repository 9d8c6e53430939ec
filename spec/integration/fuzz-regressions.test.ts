/**
 * Issue #16: counterexamples from fuzzing (spec/fuzz/) replayed against the real daemon, where the bug showed
 * beyond a unit: a payload whose `type` names a member of Object.prototype threw a TypeError out of the socket
 * server's frame handler, taking the daemon down.
 */
import { encodeFrame } from "../../protocol/framing";
import { cleanup, RawClient, spawnDaemon, type RunningDaemon } from "../helpers/daemon";

let d: RunningDaemon;
beforeAll(async () => (d = await spawnDaemon()));
afterAll(async () => {
  d.child.kill("SIGTERM");
  await d.exited;
  await cleanup();
});

describe("issue #16: fuzz counterexamples against the daemon", () => {
  it('a payload typed "__proto__", "toString" or "constructor" is an ordinary custom payload; the daemon keeps serving', async () => {
    const c = await RawClient.authenticated(d);
    for (const type of ["__proto__", "toString", "constructor", "hasOwnProperty"]) c.publish("user.v1.prompt", { type, text: "x" });
    c.send(encodeFrame({ topic: "astrid.v1.request.status", payload: { type: "raw_json", method: "GetStatus", request_id: "alive" } }));
    const reply = await c.nextOn("astrid.v1.response.status");
    expect(reply.payload).toMatchObject({ request_id: "alive", status: "Status" });
    expect(d.child.exitCode).toBeNull();
    c.destroy();
  });
});
