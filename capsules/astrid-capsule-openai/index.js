// The model agent (CommonJS, no dependencies). For each prompt of a session it is the agent of, it sends the
// conversation to the operator's model endpoint through the kernel (`api.model`), which streams the answer as
// `agent.v1.stream.delta` chunks on its behalf; it runs the tools the model asks for (a capsule's, published on
// `tool.v1.execute.<name>`, or an MCP server's, through `api.mcp.call`, so the kernel gates and audits them like
// any capsule's call) and feeds their results back, until the model answers or MAX_STEPS model calls were made.
// Every failure ends the turn with a reply that says what happened.

/** Most model calls per prompt (each tool round is one): a model that calls tools forever is stopped here. */
const MAX_STEPS = 8;
/**
 * Characters of past conversation sent with a prompt. Older turns (a prompt with its answer) are dropped first,
 * whole; the current prompt is always sent.
 */
const HISTORY_CHARS = 48_000;
/** Longest prompt taken (characters). */
const MAX_PROMPT_CHARS = 256 * 1024;
/** Sessions whose conversation is kept in memory; the least recently used is forgotten past it. */
const MAX_SESSIONS = 256;
/** How long a tool may take to answer. */
const TOOL_TIMEOUT_MS = 60_000;
/** Longest tool result passed to the model (characters). */
const MAX_TOOL_RESULT_CHARS = 32 * 1024;
/** Tool calls waiting for their result, at most. */
const MAX_PENDING_TOOLS = 256;

const SYSTEM_PROMPT =
  "You are Astrid, a helpful assistant running inside the Astrid daemon. Answer concisely. " +
  "Use the tools you are offered when they help; their results come back to you.";

/** What each failure code tells the user. */
const ADVICE = {
  ASTRID_ERR_MODEL_NOT_CONFIGURED: "No language model is configured. Set OPENAI_BASE_URL (and OPENAI_API_KEY, ASTRID_AGENT_MODEL) in the daemon's environment and restart it.",
  onboarding: "No language model is configured. Answer the questions astrid chat asks (the endpoint, its key, the model), then ask again; or set OPENAI_BASE_URL (and OPENAI_API_KEY, ASTRID_AGENT_MODEL) in the daemon's environment and restart it.",
  ASTRID_ERR_MODEL_AUTH: "The model endpoint refused the API key.",
  ASTRID_ERR_MODEL_RATE_LIMITED: "The model endpoint is rate limiting.",
  ASTRID_ERR_MODEL_UNAVAILABLE: "The model endpoint is not answering.",
  ASTRID_ERR_MODEL_STREAM: "The model's answer broke off.",
  ASTRID_ERR_PERMISSION_DENIED: "You may not use the language model (your principal lacks self:net:http).",
};

/** Conversation per session (principal and session id), most recently used last. */
const sessions = new Map();
/** Tool calls waiting for `tool.v1.execute.<name>.result`, by call id. */
const pendingTools = new Map();
let callCounter = 0;

/** @type {import("astrid-daemon/capsule").CapsuleDefinition} */
module.exports = {
  async setup(api) {
    await api.ipc.subscribe("tool.v1.execute.*", (event) => {
      if (!event.topic.endsWith(".result")) return;
      const { call_id: id, result } = event.payload ?? {};
      const waiting = pendingTools.get(id);
      if (!waiting) return;
      pendingTools.delete(id);
      waiting(result ?? { content: null, is_error: true });
    });
    await api.ipc.subscribe("user.v1.prompt", (event) => {
      const { text, session_id: sessionId = "default", context } = event.payload ?? {};
      if (typeof sessionId !== "string") return;
      const session = sessionFor(`${event.principal ?? "default"}\u0000${sessionId}`);
      if (context && typeof context === "object" && context.action === "cancel_turn") {
        cancel(api, session);
        return;
      }
      if (typeof text !== "string" || text.trim() === "") return;
      const turn = context && typeof context === "object" && typeof context.turn_id === "string" ? { turn_id: context.turn_id.slice(0, 128) } : {};
      // The handler returns at once (the event queue must keep moving: a cancel or a tool result must get through
      // while the model answers); turns of one session run one after the other.
      session.chain = session.chain.then(() => runTurn(api, session, sessionId, turn, text)).catch((err) => {
        api.log.error(`turn failed: ${err && err.stack ? err.stack : String(err)}`);
      });
    });
  },
};

function sessionFor(key) {
  let session = sessions.get(key);
  if (session) sessions.delete(key);
  else session = { history: [], chain: Promise.resolve(), stream: null, cancelled: false };
  sessions.set(key, session);
  if (sessions.size > MAX_SESSIONS) sessions.delete(sessions.keys().next().value);
  return session;
}

/** Ctrl-C in chat: the turn stops, and its HTTP stream to the endpoint is aborted. */
function cancel(api, session) {
  session.cancelled = true;
  if (session.stream) {
    const id = session.stream;
    session.stream = null;
    api.model.close(id).catch(() => undefined);
  }
}

async function runTurn(api, session, sessionId, turn, prompt) {
  session.cancelled = false;
  const reply = (text) => api.ipc.publish("agent.v1.response", { type: "agent_response", text, is_final: true, session_id: sessionId, ...turn });
  if (prompt.length > MAX_PROMPT_CHARS) {
    await reply(`Your prompt is ${prompt.length} characters; the model agent takes at most ${MAX_PROMPT_CHARS}. Shorten it or attach less.`);
    return;
  }
  const messages = [{ role: "system", content: SYSTEM_PROMPT }, ...trimmed(session.history), { role: "user", content: prompt }];
  // The request goes out at once: the kernel adds the offered tools and publishes the deltas as they arrive (each
  // round trip through this capsule would stand between the prompt and its first token).
  const deltas = { topic: "agent.v1.stream.delta", payload: { type: "agent_response", is_final: false, session_id: sessionId, ...turn } };
  let offered = new Map();
  let answer = "";
  for (let step = 1; step <= MAX_STEPS; step++) {
    let read;
    answer = "";
    try {
      const opened = await api.model.open({ messages, tools: "offered", deltas });
      offered = new Map((opened.tools ?? []).map((t) => [t.name, t]));
      session.stream = opened.id;
      if (session.cancelled) await api.model.close(opened.id);
      for (;;) {
        read = await api.model.read(opened.id);
        answer += read.text;
        if (read.done) break;
      }
      session.stream = null;
    } catch (err) {
      session.stream = null;
      if (session.cancelled) {
        await reply(answer === "" ? "(cancelled)" : `${answer} … (cancelled)`);
        return;
      }
      if (err && err.code === "ASTRID_ERR_MODEL_NOT_CONFIGURED") {
        // Asking for the info asks the operator for the endpoint when the manifest's [env] can configure one.
        const info = await api.model.info().catch(() => null);
        await reply(info && info.onboarding ? ADVICE.onboarding : ADVICE.ASTRID_ERR_MODEL_NOT_CONFIGURED);
        return;
      }
      api.log.warn(`model call failed: ${err && err.code ? `${err.code}: ` : ""}${err && err.message ? err.message : String(err)}`);
      await reply(`${answer === "" ? "" : `${answer}\n\n`}${failureText(err)}`);
      return;
    }
    const calls = read.tool_calls ?? [];
    if (calls.length === 0) {
      await reply(answer);
      remember(session, prompt, answer);
      return;
    }
    messages.push({
      role: "assistant",
      content: answer === "" ? null : answer,
      tool_calls: calls.map((c, i) => ({ id: c.id || `call_${step}_${i}`, type: "function", function: { name: c.name, arguments: c.arguments } })),
    });
    for (const [i, call] of calls.entries()) {
      const content = await runTool(api, offered, call, sessionId);
      messages.push({ role: "tool", tool_call_id: call.id || `call_${step}_${i}`, content });
      if (session.cancelled) {
        await reply("(cancelled)");
        return;
      }
    }
  }
  api.log.warn(`stopped a turn after ${MAX_STEPS} model calls: the model kept calling tools`);
  await reply(`${answer === "" ? "" : `${answer}\n\n`}I stopped after ${MAX_STEPS} steps: the model kept calling tools without answering.`);
}

/** Runs one tool call through the kernel; the text the model gets back (an error says what went wrong). */
async function runTool(api, offered, call, sessionId) {
  if (!offered.has(call.name)) {
    api.log.warn(`the model called a tool that does not exist: ${JSON.stringify(call.name.slice(0, 64))}`);
    return `error: there is no tool named ${JSON.stringify(call.name)}; available: ${[...offered.keys()].join(", ") || "none"}`;
  }
  let args;
  try {
    args = call.arguments.trim() === "" ? {} : JSON.parse(call.arguments);
  } catch {
    api.log.warn(`the model called ${call.name} with arguments that are not JSON`);
    return `error: the arguments for ${call.name} are not valid JSON: ${JSON.stringify(call.arguments.slice(0, 200))}`;
  }
  const mcp = offered.get(call.name).mcp;
  if (mcp) return mcpResult(api, mcp, args);
  if (pendingTools.size >= MAX_PENDING_TOOLS) return "error: too many tool calls are waiting; try again";
  const id = `openai-${Date.now().toString(36)}-${(++callCounter).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const result = await new Promise((resolve) => {
    const timer = setTimeout(() => {
      pendingTools.delete(id);
      resolve({ content: `the tool did not answer within ${TOOL_TIMEOUT_MS / 1000} s`, is_error: true });
    }, TOOL_TIMEOUT_MS);
    pendingTools.set(id, (outcome) => {
      clearTimeout(timer);
      resolve(outcome);
    });
    api.ipc.publish(`tool.v1.execute.${call.name}`, { type: "tool_execute_request", call_id: id, tool_name: call.name, arguments: args, session_id: sessionId }).catch((err) => {
      clearTimeout(timer);
      pendingTools.delete(id);
      resolve({ content: `the tool call was refused: ${err && err.message ? err.message : String(err)}`, is_error: true });
    });
  });
  const text = typeof result.content === "string" ? result.content : JSON.stringify(result.content ?? null);
  const cut = text.length > MAX_TOOL_RESULT_CHARS ? `${text.slice(0, MAX_TOOL_RESULT_CHARS)}… (${text.length} characters)` : text;
  return result.is_error ? `error: ${cut}` : cut;
}

/** Runs an MCP server's tool through the kernel (`mcp.call`: gated and audited); its text content for the model. */
async function mcpResult(api, mcp, args) {
  let result;
  try {
    result = await api.mcp.call(mcp.server, mcp.tool, args && typeof args === "object" && !Array.isArray(args) ? args : {});
  } catch (err) {
    return `error: ${err && err.message ? err.message : String(err)}${err && err.code ? ` [${err.code}]` : ""}`;
  }
  const parts = Array.isArray(result && result.content) ? result.content : [];
  const text = parts.map((p) => (p && p.type === "text" && typeof p.text === "string" ? p.text : JSON.stringify(p))).join("\n");
  const cut = text.length > MAX_TOOL_RESULT_CHARS ? `${text.slice(0, MAX_TOOL_RESULT_CHARS)}… (${text.length} characters)` : text;
  return result && result.isError ? `error: ${cut}` : cut;
}

/** The history that fits HISTORY_CHARS, newest kept, whole turns only. */
function trimmed(history) {
  let total = 0;
  let start = history.length;
  while (start >= 2) {
    const size = history[start - 2].content.length + history[start - 1].content.length;
    if (total + size > HISTORY_CHARS) break;
    total += size;
    start -= 2;
  }
  return history.slice(start);
}

function remember(session, prompt, answer) {
  session.history.push({ role: "user", content: prompt }, { role: "assistant", content: answer });
  // Kept a little over the budget sent (trimmed() decides what goes out); older turns are dropped here.
  session.history = trimmed(session.history);
}

function failureText(err) {
  const code = err && typeof err.code === "string" ? err.code : "";
  const message = err && err.message ? String(err.message) : String(err);
  const advice = ADVICE[code];
  return `${advice ? `${advice} ` : ""}${message}${code ? ` [${code}]` : ""}`;
}
