/**
 * The kernel's model stream (the `openai` client under it) against the fake endpoint, for what the integration test
 * cannot afford with a real daemon: an endpoint that is down, one that goes silent (ASTRID_AGENT_TIMEOUT_MS), one
 * without a key, and the coded error of each of the endpoint's failures.
 */
import net from "node:net";
import { startFakeOpenAi, type FakeOpenAi } from "../../../bench/fake-openai-server";
import { SecretValue, type ModelEndpointSettings } from "../../../kernel/model/model-endpoint";
import { endpointClient, ModelStream, retrySeconds, type EndpointClient } from "../../../kernel/model/model-stream";
import { isAstridError } from "../../../protocol/errors";

let fake: FakeOpenAi;
const clients: EndpointClient[] = [];

function settings(overrides: Partial<ModelEndpointSettings> = {}): ModelEndpointSettings {
  return { baseUrl: fake.url, apiKey: new SecretValue("sk-unit-secret-77"), model: "m", defaultAgent: null, timeoutMs: 5000, ...overrides };
}

/** Reads a whole answer; the outcome as text, or the error's code and message. */
async function answer(prompt: string, s = settings()): Promise<{ text: string; code?: string; message?: string; calls?: unknown; ms: number }> {
  const endpoint = endpointClient(s);
  clients.push(endpoint);
  const stream = new ModelStream(s, endpoint.client, { model: s.model, messages: [{ role: "user", content: prompt }] });
  const started = Date.now();
  let text = "";
  try {
    for (;;) {
      const read = await stream.read(5000);
      text += read.text;
      if (read.done) return { text, calls: read.tool_calls, ms: Date.now() - started };
    }
  } catch (err) {
    if (!isAstridError(err)) throw err;
    return { text, code: err.code, message: err.message, ms: Date.now() - started };
  }
}

beforeAll(async () => {
  fake = await startFakeOpenAi({ delayMs: 2 });
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.agent.close()));
  await fake.close();
});

describe("ModelStream", () => {
  it("assembles text and tool calls whose arguments arrive in pieces", async () => {
    expect(await answer("hello")).toMatchObject({ text: "Hello from the fake model.", calls: [] });
    expect(await answer("add 4 5")).toMatchObject({ text: "", calls: [{ id: "call_1", name: "add", arguments: '{"a":4,"b":5}' }] });
  });

  it("hands each piece of text to its relay as it arrives, before any read, and still to the reads", async () => {
    const s = settings();
    const endpoint = endpointClient(s);
    clients.push(endpoint);
    const relayed: string[] = [];
    let firstPiece!: () => void;
    const arrived = new Promise<void>((resolve) => (firstPiece = resolve));
    const stream = new ModelStream(s, endpoint.client, { model: s.model, messages: [{ role: "user", content: "stream" }] }, (text) => {
      relayed.push(text);
      firstPiece();
    });
    // Nobody reads yet: the relay alone sees the first words (the capsule's read is not on their way).
    await arrived;
    expect(relayed).toEqual(["One "]);
    let text = "";
    for (;;) {
      const read = await stream.read(5000);
      text += read.text;
      if (read.done) break;
    }
    expect(relayed).toEqual(["One ", "two ", "three."]);
    expect(text).toBe("One two three.");
  });

  it("sends the key as a bearer token, and no Authorization header at all without one", async () => {
    await answer("hello");
    expect(fake.requests.at(-1)!.authorization).toBe("Bearer sk-unit-secret-77");
    await answer("hello", settings({ apiKey: null }));
    expect(fake.requests.at(-1)!.authorization).toBeUndefined();
  });

  it("maps each failure of the endpoint to a coded error, with the key scrubbed from what it echoed", async () => {
    const e401 = await answer("e401");
    expect(e401).toMatchObject({ code: "ASTRID_ERR_MODEL_AUTH", message: expect.stringContaining("Bearer (hidden)") });
    expect(e401.message).not.toContain("sk-unit-secret-77");
    expect(await answer("e429")).toMatchObject({ code: "ASTRID_ERR_MODEL_RATE_LIMITED", message: expect.stringContaining("retry after 7 s") });
    expect(await answer("e500")).toMatchObject({ code: "ASTRID_ERR_MODEL_UNAVAILABLE", message: expect.stringContaining("HTTP 500") });
    expect(await answer("drop")).toMatchObject({ text: "partial answer", code: "ASTRID_ERR_MODEL_STREAM", message: expect.stringContaining("dropped mid-answer") });
    expect(await answer("malformed")).toMatchObject({ text: "before ", code: "ASTRID_ERR_MODEL_STREAM", message: expect.stringContaining("a chunk is not JSON") });
  });

  it("an endpoint that goes silent after its headers fails after the timeout, not never", async () => {
    const slow = await answer("slow", settings({ timeoutMs: 400 }));
    expect(slow).toMatchObject({ code: "ASTRID_ERR_MODEL_UNAVAILABLE", message: expect.stringContaining("sent nothing for 400 ms") });
    expect(slow.ms).toBeLessThan(3000);
  });

  it("an endpoint that is down is a clear error at once", async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const down = await answer("hello", settings({ baseUrl: `http://127.0.0.1:${port}/v1` }));
    expect(down).toMatchObject({ code: "ASTRID_ERR_MODEL_UNAVAILABLE", message: expect.stringMatching(/cannot reach the model endpoint .*ECONNREFUSED/) });
  });

  it("close aborts the request: the endpoint sees the connection go", async () => {
    const s = settings({ timeoutMs: 10_000 });
    const endpoint = endpointClient(s);
    clients.push(endpoint);
    const before = fake.requests.length;
    const stream = new ModelStream(s, endpoint.client, { model: "m", messages: [{ role: "user", content: "slow" }] });
    const reading = stream.read(5000).then(() => "read", (err: Error) => err.message);
    const deadline = Date.now() + 3000;
    while (fake.requests.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    stream.close();
    await fake.requests[before]!.closed;
    expect(await reading).toBe("the model stream was closed");
  });

  it("reads Retry-After as seconds or as a date", () => {
    expect(retrySeconds("7")).toBe(7);
    expect(retrySeconds(new Date(Date.now() + 30_000).toUTCString())).toBeGreaterThanOrEqual(29);
    expect(retrySeconds("soon")).toBeNull();
    expect(retrySeconds(undefined)).toBeNull();
  });
});
