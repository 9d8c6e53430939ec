/**
 * `astrid web`'s server: fastify serving the chat page (web/public) and one WebSocket per tab, bridged to the
 * daemon through one SDK connection made with the web frontend's credential. The page is reached through a
 * one-time login URL; after it, an HttpOnly SameSite=Strict cookie names the visitor. Every WebSocket upgrade must
 * carry that cookie and come from the page's own origin; every request must name a host this server answers to,
 * so a DNS-rebinding page gets nothing.
 */
import path from "node:path";
import fastifyStatic from "@fastify/static";
import fastifyWebsocket from "@fastify/websocket";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { AstridClient } from "../client/astrid-client";
import { AstridError } from "../protocol/errors";
import type { IpcMessage } from "../protocol/ipc-message";
import { CAPSULES_LOADED_TOPIC } from "../protocol/topics";
import { LoginGate, type Visitor } from "./login-gate";
import { isLoopback } from "./loopback";
import { Tab, type TabSocket } from "./tab";
import type { PanelInfo } from "./tab-messages";

/** Where the page's files are (web/public beside the compiled web/). */
export const PUBLIC_DIR = path.resolve(__dirname, "..", "..", "web", "public");
/** The side panel is re-read from the daemon at most this often, however many tabs ask. */
const PANEL_REFRESH_MS = 2000;

/** Options of `startWebServer`. */
export interface WebServerOptions {
  client: AstridClient;
  host: string;
  port: number;
  /** Open pages served at once; more are refused with ASTRID_ERR_WEB_TOO_MANY_TABS. */
  maxTabs: number;
  /** Largest prompt a page may send, in UTF-8 bytes. */
  maxPromptBytes: number;
  /** Called after a visitor logged in (e.g. to print the next one-time URL). */
  onLogin?: (visitor: Visitor) => void;
}

/** A running web server. */
export interface WebServer {
  /** `http://host:port` as bound (the port resolved when 0 was asked). */
  readonly origin: string;
  readonly gate: LoginGate;
  /** A fresh one-time login URL. */
  loginUrl(): string;
  /** Open tabs right now. */
  readonly tabs: number;
  /** Stops listening and closes every tab (idempotent). */
  close(): Promise<void>;
}


/** Starts the server; resolves once it listens. */
export async function startWebServer(options: WebServerOptions): Promise<WebServer> {
  const { client } = options;
  const gate = new LoginGate();
  const tabs = new Set<Tab>();
  let daemonUp = client.connected;
  let panel: PanelInfo = { daemon: daemonUp ? "up" : "down" };
  let panelReadAt = 0;
  let panelReading: Promise<void> | undefined;
  // Set once listening: Host values this server answers to (loopback only; a remote bind answers any).
  let allowedHosts: Set<string> | null = null;

  const app: FastifyInstance = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
  // ws closes a message over maxPayload with 1009; the tab's own check gives the readable error below it.
  await app.register(fastifyWebsocket, { options: { maxPayload: options.maxPromptBytes * 2 + 64 * 1024 } });

  app.addHook("onRequest", async (req, reply) => {
    if (allowedHosts && !allowedHosts.has(String(req.headers.host ?? "").toLowerCase())) {
      return reply.code(421).type("text/plain").send("unknown host\n");
    }
    reply.header("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
    reply.header("X-Content-Type-Options", "nosniff");
    reply.header("Referrer-Policy", "no-referrer");
    reply.header("Cache-Control", "no-store");
  });

  await app.register(fastifyStatic, { root: PUBLIC_DIR, prefix: "/static/", index: false, serve: true });
  await app.register(fastifyStatic, {
    root: [path.dirname(require.resolve("marked")), path.dirname(require.resolve("dompurify"))],
    prefix: "/vendor/",
    decorateReply: false,
    allowedPath: (pathName) => pathName === "/marked.umd.js" || pathName === "/purify.min.js",
  });

  const visitorOf = (req: FastifyRequest): Visitor | null => gate.visitorOf(req.headers.cookie);

  app.get("/favicon.ico", async (_req, reply) => reply.code(204).send());

  app.get("/", async (req: FastifyRequest<{ Querystring: { token?: string } }>, reply: FastifyReply) => {
    if (req.query.token !== undefined) {
      const login = gate.redeem(req.query.token);
      if (!login) {
        return reply.code(403).type("text/html; charset=utf-8").send(page("This login link was already used or is not valid. Ask for a new one: <code>astrid web</code> prints one for each visitor."));
      }
      options.onLogin?.(login.visitor);
      return reply.header("Set-Cookie", LoginGate.setCookie(login.cookie)).redirect("/", 302);
    }
    if (!visitorOf(req)) {
      return reply.code(401).type("text/html; charset=utf-8").send(page("Open the login link that <code>astrid web</code> printed."));
    }
    return reply.sendFile("index.html", PUBLIC_DIR);
  });

  app.register(async (ws) => {
    ws.addHook("preValidation", async (req, reply) => {
      const origin = req.headers.origin;
      const own = `http://${String(req.headers.host ?? "")}`;
      if (origin !== own) return reply.code(403).send({ code: "ASTRID_ERR_AUTH_FAILED", message: "WebSocket from another origin" });
      const visitor = visitorOf(req);
      if (!visitor) return reply.code(401).send({ code: "ASTRID_ERR_AUTH_FAILED", message: "not logged in" });
      (req as FastifyRequest & { visitor?: Visitor }).visitor = visitor;
    });
    ws.get("/ws", { websocket: true }, (socket: unknown, req: FastifyRequest) => {
      const visitor = (req as FastifyRequest & { visitor?: Visitor }).visitor!;
      const s = socket as TabSocket;
      if (tabs.size >= options.maxTabs) {
        s.send(JSON.stringify({ type: "error", code: "ASTRID_ERR_WEB_TOO_MANY_TABS", message: `this server serves at most ${options.maxTabs} open pages; close one and reload` }));
        s.close(1013, "too many tabs");
        return;
      }
      const tab = new Tab(s, visitor, {
        client: () => client,
        maxPromptBytes: options.maxPromptBytes,
        daemonUp: () => daemonUp,
        onHello: (t) => void refreshPanel().then(() => t.send({ type: "panel", panel })),
      });
      tabs.add(tab);
      s.on("close", () => tabs.delete(tab));
    });
  });

  /** Re-reads the daemon's status and capsule list (at most every PANEL_REFRESH_MS, one read at a time). */
  async function refreshPanel(force = false): Promise<void> {
    if (!force && Date.now() - panelReadAt < PANEL_REFRESH_MS) return;
    panelReading ??= (async () => {
      const next: PanelInfo = { daemon: daemonUp ? "up" : "down" };
      if (daemonUp) {
        const problems: string[] = [];
        try {
          const status = (await client.request("GetStatus", undefined, { timeoutMs: 3000 })).data as Record<string, unknown>;
          next.version = String(status.version ?? "");
          next.uptime_secs = Number(status.uptime_secs ?? 0);
          next.connected_clients = Number(status.connected_clients ?? 0);
        } catch (err) {
          problems.push((err as Error).message);
        }
        try {
          const capsules = (await client.request("ListCapsules", undefined, { timeoutMs: 3000, topicSuffix: "list_capsules" })).data;
          next.capsules = Array.isArray(capsules) ? capsules.map((c) => (typeof c === "string" ? c : String((c as { name?: unknown }).name))).sort() : [];
        } catch (err) {
          problems.push((err as Error).message);
        }
        if (problems.length) next.problem = problems.join("; ");
      }
      panel = next;
      panelReadAt = Date.now();
    })().finally(() => (panelReading = undefined));
    await panelReading;
  }

  const broadcastPanel = () => void refreshPanel(true).then(() => {
    for (const tab of tabs) tab.send({ type: "panel", panel });
  });

  const offConnection = client.onConnection((event) => {
    if (event.state === "disconnected" || event.state === "closed") {
      daemonUp = false;
      panel = { daemon: "down" };
      for (const tab of tabs) tab.daemonLost();
    } else {
      daemonUp = true;
      for (const tab of tabs) tab.send({ type: "daemon", state: "up" });
      broadcastPanel();
    }
  });
  const offLoaded = client.on(CAPSULES_LOADED_TOPIC, () => broadcastPanel());

  /** The tabs an approval or elicitation is for: its session's tab, or every tab of the visitor it acts for. */
  const tabsFor = (message: IpcMessage): Tab[] => {
    const session = (message.payload as { session_id?: unknown }).session_id;
    if (typeof session === "string") return [...tabs].filter((t) => t.session === session);
    const principal = message.principal ?? "";
    return [...tabs].filter((t) => principal.startsWith(`web-${t.visitor.id}-`));
  };
  const offApproval = client.on("astrid.v1.approval", (message) => {
    const p = message.payload as Record<string, unknown>;
    if (p.type !== "approval_required" || typeof p.request_id !== "string") return;
    const options = Array.isArray(p.options) ? p.options.map(String) : ["approve", "approve_session", "approve_always", "deny"];
    for (const tab of tabsFor(message)) {
      tab.ask({
        type: "approval_required", request_id: p.request_id, action: String(p.action ?? ""), resource: String(p.resource ?? ""),
        reason: String(p.reason ?? ""), ...(typeof p.capsule === "string" ? { capsule: p.capsule } : {}), options,
      });
    }
  });
  const offElicit = client.on("astrid.v1.elicit", (message) => {
    const p = message.payload as Record<string, unknown>;
    if (p.type !== "elicit_request" || typeof p.request_id !== "string") return;
    for (const tab of tabsFor(message)) tab.ask({ type: "elicit_request", request_id: p.request_id, capsule_id: String(p.capsule_id ?? ""), field: p.field });
  });

  try {
    await app.listen({ host: options.host, port: options.port });
  } catch (err) {
    await app.close();
    const code = (err as NodeJS.ErrnoException).code;
    throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", `cannot listen on ${options.host}:${options.port}: ${code ?? (err as Error).message}`, { cause: err });
  }
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  const hostPart = options.host.includes(":") ? `[${options.host}]` : options.host;
  const origin = `http://${hostPart}:${port}`;
  if (isLoopback(options.host)) allowedHosts = new Set([`${hostPart}:${port}`, `localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`].map((h) => h.toLowerCase()));

  let closing: Promise<void> | undefined;
  return {
    origin,
    gate,
    loginUrl: () => `${origin}/?token=${gate.issueToken()}`,
    get tabs() {
      return tabs.size;
    },
    close: () => {
      closing ??= (async () => {
        offConnection();
        offLoaded();
        offApproval();
        offElicit();
        await app.close();
      })();
      return closing;
    },
  };
}

/** A minimal page for the login answers (no scripts). */
function page(body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Astrid</title><link rel="stylesheet" href="/static/style.css"></head><body><main class="notice"><h1>Astrid</h1><p>${body}</p></main></body></html>`;
}
