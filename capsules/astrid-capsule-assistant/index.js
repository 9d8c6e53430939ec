// The built-in assistant (CommonJS, no dependencies). Every reply is streamed as `agent.v1.stream.delta` chunks,
// then sent whole as the final `agent.v1.response`; both sides of each exchange are kept per session in KV.

/** Most messages kept per session, and most bytes of them; older ones are dropped first. */
const HISTORY_LIMIT = 200;
const HISTORY_BYTES = 1024 * 1024;
/** Longest message text kept in the history (a longer one is stored cut, with its length). */
const STORED_TEXT_LIMIT = 4000;
/** Longest arithmetic expression evaluated. */
const EXPRESSION_LIMIT = 1000;
/** Deltas are cut at word boundaries into chunks of about this many characters. */
const DELTA_CHARS = 64;
/** Most notes kept. */
const NOTES_LIMIT = 100;
/** Longest part of a prompt quoted back. */
const QUOTE_LIMIT = 200;
/** A correlation id must be usable as one topic segment. */
const CORRELATION_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** @type {import("astrid-daemon/capsule").CapsuleDefinition} */
module.exports = {
  async setup(api) {
    await api.ipc.subscribe("user.v1.prompt", async (event) => {
      const { text, session_id: session = "default", context } = event.payload ?? {};
      if (typeof text !== "string" || text.trim() === "") return; // an empty prompt is a cancel: nothing to answer
      await answer(api, session, turnOf(context), text, reply(text.trim()));
    });
    await api.ipc.subscribe("cli.v1.command.execute", async (event) => {
      const { text, session_id: session = "default", context } = event.payload ?? {};
      if (typeof text !== "string") return;
      const answered = await command(api, text.trim());
      if (answered !== undefined) await answer(api, session, turnOf(context), text, answered);
    });
    await api.ipc.subscribe("session.v1.request.get_messages", async (event) => {
      const { session_id: session, correlation_id: id } = event.payload ?? {};
      if (typeof session !== "string" || typeof id !== "string" || !CORRELATION_ID.test(id)) {
        api.log.warn("get_messages needs a session_id and a correlation_id of [A-Za-z0-9_-]");
        return;
      }
      await api.ipc.publish(`session.v1.response.get_messages.${id}`, { type: "custom", data: { session_id: session, messages: await history(api, session) } });
    });
  },
};

/** The `turn_id` a frontend put in the prompt's context, echoed in every reply so it can match them to the turn. */
function turnOf(context) {
  return context !== null && typeof context === "object" && typeof context.turn_id === "string" ? { turn_id: context.turn_id.slice(0, 128) } : {};
}

/** Streams `text` to the session in chunks, sends it whole, and records the exchange. */
async function answer(api, session, turn, prompt, text) {
  for (const chunk of text.match(new RegExp(`[\\s\\S]{1,${DELTA_CHARS}}(?:\\S*\\s*)`, "g")) ?? []) {
    await api.ipc.publish("agent.v1.stream.delta", { type: "agent_response", text: chunk, is_final: false, session_id: session, ...turn });
  }
  await api.ipc.publish("agent.v1.response", { type: "agent_response", text, is_final: true, session_id: session, ...turn });
  const now = new Date().toISOString();
  const kept = [...(await history(api, session)), { role: "user", content: cut(prompt), timestamp: now }, { role: "assistant", content: cut(text), timestamp: now }].slice(-HISTORY_LIMIT);
  let encoded = JSON.stringify(kept);
  while (kept.length > 2 && new TextEncoder().encode(encoded).length > HISTORY_BYTES) {
    kept.splice(0, 2);
    encoded = JSON.stringify(kept);
  }
  await api.kv.set(`history:${session}`, encoded);
}

function cut(text) {
  return text.length > STORED_TEXT_LIMIT ? `${text.slice(0, STORED_TEXT_LIMIT)}… (${text.length} characters)` : text;
}

async function history(api, session) {
  try {
    const stored = JSON.parse((await api.kv.get(`history:${session}`)) ?? "[]");
    return Array.isArray(stored) ? stored : [];
  } catch {
    return [];
  }
}

async function notes(api) {
  try {
    const stored = JSON.parse((await api.kv.get("notes")) ?? "[]");
    return Array.isArray(stored) ? stored : [];
  } catch {
    return [];
  }
}

/** `/remember`, `/notes`, `/forget`; undefined for commands that belong to another capsule. */
async function command(api, text) {
  const [name, ...rest] = text.replace(/^\//, "").split(/\s+/);
  const argument = rest.join(" ").trim();
  if (name === "remember") {
    if (argument === "") return "Usage: /remember <text>";
    const kept = [...(await notes(api)), argument].slice(-NOTES_LIMIT);
    await api.kv.set("notes", JSON.stringify(kept));
    return `Noted (${kept.length} note${kept.length === 1 ? "" : "s"}).`;
  }
  if (name === "notes") {
    const kept = await notes(api);
    return kept.length === 0 ? "No notes yet. Add one with /remember <text>." : kept.map((n, i) => `${i + 1}. ${n}`).join("\n");
  }
  if (name === "forget") {
    await api.kv.delete("notes");
    return "All notes deleted.";
  }
  return undefined;
}

const HELP =
  "I am Astrid's built-in assistant; no language model is configured, so my skills are small: " +
  "arithmetic (try 12 * (3 + 4)), the time, and notes (/remember <text>, /notes, /forget). " +
  "To talk to a language model, set OPENAI_BASE_URL (and OPENAI_API_KEY, ASTRID_AGENT_MODEL) in the daemon's environment and restart it, " +
  "or, in astrid chat at a terminal, type /agent astrid-capsule-openai and send a prompt: it asks for them.";

/** The answer to a prompt. */
function reply(text) {
  if (/^(hi|hello|hey)\b/i.test(text)) return `Hello! ${HELP}`;
  if (/^(help|\?)$/i.test(text)) return HELP;
  const expression = text.replace(/^(what is|what's|calculate|compute)\s+/i, "").replace(/[?=\s]+$/, "");
  if (/\d/.test(expression) && /^[\d\s.+\-*/%^()]+$/.test(expression)) {
    if (expression.length > EXPRESSION_LIMIT) return `That expression is too long for me (${expression.length} characters; I take ${EXPRESSION_LIMIT}).`;
    try {
      return `${expression} = ${format(evaluate(expression))}`;
    } catch (err) {
      return `I cannot calculate that: ${err.message}.`;
    }
  }
  if (/\b(time|date|day)\b/i.test(text)) return `It is ${new Date().toUTCString()}.`;
  const quoted = text.length > QUOTE_LIMIT ? `${text.slice(0, QUOTE_LIMIT)}… (${text.length} characters)` : text;
  return `You said: “${quoted}”. ${HELP}`;
}

function format(n) {
  return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(12)));
}

/** Evaluates + - * / % ^ and parentheses over decimal numbers (no eval): a small recursive-descent parser. */
function evaluate(source) {
  const tokens = source.match(/\d+(?:\.\d+)?|\.\d+|[-+*/%^()]/g) ?? [];
  let i = 0;
  const peek = () => tokens[i];
  const take = () => tokens[i++];
  const primary = () => {
    const token = take();
    if (token === "(") {
      const value = sum();
      if (take() !== ")") throw new Error("a parenthesis is not closed");
      return value;
    }
    if (token === "-") return -primary();
    if (token === "+") return primary();
    if (token === undefined || !/^[\d.]/.test(token)) throw new Error(`unexpected ${token === undefined ? "end" : `"${token}"`}`);
    return Number(token);
  };
  const power = () => {
    const base = primary();
    return peek() === "^" ? (take(), base ** power()) : base;
  };
  const product = () => {
    let value = power();
    while (["*", "/", "%"].includes(peek())) {
      const op = take();
      const right = power();
      if (op !== "*" && right === 0) throw new Error("it divides by zero");
      value = op === "*" ? value * right : op === "/" ? value / right : value % right;
    }
    return value;
  };
  const sum = () => {
    let value = product();
    while (peek() === "+" || peek() === "-") value = take() === "+" ? value + product() : value - product();
    return value;
  };
  const value = sum();
  if (i < tokens.length) throw new Error(`unexpected "${tokens[i]}"`);
  if (!Number.isFinite(value)) throw new Error("the result is not a finite number");
  return value;
}
