/**
 * A local OpenAI-compatible chat-completions server for tests and the agent benchmark (the real service cannot be
 * reached here). It streams SSE chunks the way the service does, and what it does is chosen by the last user
 * message's first word, so one server covers every case:
 * - `add A B`: a tool call `add({"a":A,"b":B})` (arguments split across chunks), then, once the tool's result is in
 *   the conversation, "The sum is <result>.";
 * - `badargs` / `unknowntool`: a tool call with arguments that are not JSON / to a tool named `nope`, then
 *   "Tool said: <result>";
 * - `guarded PATH`: a tool call `guarded_write({"path":PATH})` (a tool that asks for approval), then "Tool said: <result>";
 * - `mcpecho WORDS`: a tool call to the MCP tool `mcp__everything__echo({"message":WORDS})`, then "Tool said: <result>";
 * - `loop`: a tool call on every request, forever;
 * - `e401` (echoes the bearer token in its error, as a careless proxy might), `e429` (Retry-After: 7), `e500`;
 * - `drop`: one chunk, then the connection is destroyed; `malformed`: a chunk that is not JSON;
 * - `slow`: headers, then nothing until the client goes away;
 * - `stream`: "One two three." in three chunks 250 ms apart (whatever `delayMs`), so each arrives on its own;
 * - anything else: "Hello from the fake model." in three chunks, `delayMs` apart.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

/** One request as the server saw it. */
export interface SeenRequest {
  authorization: string | undefined;
  body: { model?: string; messages: Array<{ role: string; content?: unknown; tool_call_id?: string }>; tools?: Array<{ function: { name: string } }>; stream?: boolean };
  /** When the request's body had arrived (`performance.now()` of this process). */
  at: number;
  /** Resolves when the client closed the connection or the response ended. */
  closed: Promise<void>;
}

export interface FakeOpenAi {
  url: string;
  requests: SeenRequest[];
  close(): Promise<void>;
}

/** Starts the server on 127.0.0.1 (an ephemeral port); `delayMs` between streamed chunks. */
export async function startFakeOpenAi(options: { delayMs?: number } = {}): Promise<FakeOpenAi> {
  const delayMs = options.delayMs ?? 20;
  const requests: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    let raw = "";
    req.on("data", (d: Buffer) => (raw += d.toString()));
    req.on("end", () => {
      let done!: () => void;
      const closed = new Promise<void>((resolve) => (done = resolve));
      res.on("close", () => done());
      let body: SeenRequest["body"];
      try {
        body = JSON.parse(raw) as SeenRequest["body"];
      } catch {
        res.writeHead(400).end("bad json");
        return;
      }
      requests.push({ authorization: req.headers.authorization, body, at: performance.now(), closed });
      void answer(req, res, body, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function chunk(delta: Record<string, unknown>, finish: string | null = null): string {
  return `data: ${JSON.stringify({ id: "chatcmpl-fake", object: "chat.completion.chunk", created: 0, model: "fake", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
}

async function stream(res: http.ServerResponse, parts: string[], delayMs: number): Promise<void> {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  for (const part of parts) {
    if (res.destroyed) return;
    res.write(part);
    if (delayMs > 0) await sleep(delayMs);
  }
  res.end("data: [DONE]\n\n");
}

function toolCall(name: string, args: string[]): string[] {
  return [
    chunk({ role: "assistant", tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name, arguments: "" } }] }),
    ...args.map((a) => chunk({ tool_calls: [{ index: 0, function: { arguments: a } }] })),
    chunk({}, "tool_calls"),
  ];
}

function text(words: string[]): string[] {
  return [chunk({ role: "assistant", content: "" }), ...words.map((w) => chunk({ content: w })), chunk({}, "stop")];
}

async function answer(req: http.IncomingMessage, res: http.ServerResponse, body: SeenRequest["body"], delayMs: number): Promise<void> {
  const users = body.messages.filter((m) => m.role === "user");
  const prompt = String(users[users.length - 1]?.content ?? "");
  const [word, ...rest] = prompt.split(" ");
  const lastTool = [...body.messages].reverse().find((m) => m.role === "tool");
  const afterTool = body.messages[body.messages.length - 1]?.role === "tool";
  switch (word) {
    case "add":
      if (afterTool) return stream(res, text(["The sum is ", `${String(lastTool!.content)}.`]), delayMs);
      return stream(res, toolCall("add", [`{"a":${Number(rest[0])},`, `"b":${Number(rest[1])}}`]), delayMs);
    case "badargs":
      if (afterTool) return stream(res, text(["Tool said: ", String(lastTool!.content)]), delayMs);
      return stream(res, toolCall("add", ["{not json"]), delayMs);
    case "guarded":
      if (afterTool) return stream(res, text(["Tool said: ", String(lastTool!.content)]), delayMs);
      return stream(res, toolCall("guarded_write", [JSON.stringify({ path: rest.join(" ") })]), delayMs);
    case "mcpecho":
      if (afterTool) return stream(res, text(["Tool said: ", String(lastTool!.content)]), delayMs);
      return stream(res, toolCall("mcp__everything__echo", [JSON.stringify({ message: rest.join(" ") })]), delayMs);
    case "unknowntool":
      if (afterTool) return stream(res, text(["Tool said: ", String(lastTool!.content)]), delayMs);
      return stream(res, toolCall("nope", ["{}"]), delayMs);
    case "loop":
      return stream(res, toolCall("add", ['{"a":1,"b":1}']), 0);
    case "e401":
      res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: `Incorrect API key provided: ${req.headers.authorization}` } }));
      return;
    case "e429":
      res.writeHead(429, { "content-type": "application/json", "retry-after": "7" }).end(JSON.stringify({ error: { message: "Rate limit reached" } }));
      return;
    case "e500":
      res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "The server had an error" } }));
      return;
    case "drop":
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(chunk({ content: "partial answer" }));
      await sleep(50);
      res.socket?.destroy();
      return;
    case "malformed":
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(chunk({ content: "before " }));
      res.end("data: {not json\n\n");
      return;
    case "slow":
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.flushHeaders();
      return; // nothing more until the client closes
    case "stream":
      return stream(res, text(["One ", "two ", "three."]), 250);
    default:
      return stream(res, text(["Hello ", "from the ", "fake model."]), delayMs);
  }
}
