/**
 * What `connect()` accepts, checked where it enters, and where the handshake token comes from. The token is read
 * fresh at every (re)connect: the session token changes at every daemon boot.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { resolveHome } from "../kernel/home";
import { AstridError } from "../protocol/errors";
import { isPrincipalId } from "../protocol/identity-names";

/** Reconnection with exponential backoff (delays double from `initialDelayMs` up to `maxDelayMs`). */
export interface ReconnectOptions {
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Give up after this many failed attempts in a row (default: never). */
  maxAttempts?: number;
}

/** Options of `connect()`. */
export interface ClientOptions {
  /** `$ASTRID_HOME` (default: `ASTRID_HOME`, else `~/.astrid`); the socket and token files are found under it. */
  home?: string;
  /** The daemon's socket, instead of `<home>/run/system.sock`. */
  socketPath?: string;
  /** The handshake token itself (64 hex). Default: the session token in `<home>/run/system.token`. */
  token?: string;
  /** A frontend credential's name: its token is read from `<home>/etc/frontends/<name>.token`. */
  credential?: string;
  /** A file holding the token (`astrid frontend add --token-file`). */
  tokenFile?: string;
  /** Shown in `astrid status`. */
  clientName?: string;
  /** Deadline of connect + handshake, and the default deadline of `request` (ms, default 10 000). */
  timeoutMs?: number;
  /** Reconnect after the daemon goes away (restart, crash), re-joining sessions. Default: off. */
  reconnect?: boolean | ReconnectOptions;
}

/** The options after checking, with defaults. */
export interface ResolvedOptions {
  socketPath: string;
  readToken: () => Promise<string>;
  clientName?: string;
  timeoutMs: number;
  reconnect: Required<ReconnectOptions> | null;
}

const KNOWN = new Set(["home", "socketPath", "token", "credential", "tokenFile", "clientName", "timeoutMs", "reconnect"]);

function invalid(message: string): AstridError {
  return new AstridError("ASTRID_ERR_INVALID_ARGUMENT", `connect(): ${message}`);
}

function positive(name: string, value: unknown, fallback: number, max = 2_147_483_647): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > max) throw invalid(`${name} must be a whole number of milliseconds from 1 to ${max}`);
  return value;
}

/** Checks `options`; throws ASTRID_ERR_INVALID_ARGUMENT naming the first bad one. */
export function resolveOptions(options: ClientOptions = {}): ResolvedOptions {
  if (options === null || typeof options !== "object") throw invalid("options must be an object");
  for (const key of Object.keys(options)) if (!KNOWN.has(key)) throw invalid(`unknown option ${JSON.stringify(key)} (known: ${[...KNOWN].join(", ")})`);
  const sources = [options.token, options.credential, options.tokenFile].filter((v) => v !== undefined);
  if (sources.length > 1) throw invalid("give at most one of token, credential and tokenFile");
  if (options.home !== undefined && (typeof options.home !== "string" || !path.isAbsolute(options.home))) throw invalid("home must be an absolute path");
  if (options.socketPath !== undefined && typeof options.socketPath !== "string") throw invalid("socketPath must be a string");
  if (options.token !== undefined && (typeof options.token !== "string" || !/^[0-9a-f]{64}$/i.test(options.token))) throw invalid("token must be 64 hexadecimal characters");
  if (options.credential !== undefined && (typeof options.credential !== "string" || !isPrincipalId(options.credential))) {
    throw invalid("credential must be a frontend name ([A-Za-z0-9_-]{1,64})");
  }
  if (options.clientName !== undefined && (typeof options.clientName !== "string" || options.clientName.length > 64)) throw invalid("clientName must be a string of at most 64 characters");
  const timeoutMs = positive("timeoutMs", options.timeoutMs, 10_000);
  let reconnect: Required<ReconnectOptions> | null = null;
  if (options.reconnect !== undefined && options.reconnect !== false) {
    const r: ReconnectOptions = options.reconnect === true ? {} : options.reconnect;
    if (r === null || typeof r !== "object") throw invalid("reconnect must be true, false or {initialDelayMs, maxDelayMs, maxAttempts}");
    const initialDelayMs = positive("reconnect.initialDelayMs", r.initialDelayMs, 100, 60_000);
    reconnect = {
      initialDelayMs,
      maxDelayMs: Math.max(initialDelayMs, positive("reconnect.maxDelayMs", r.maxDelayMs, 5000, 600_000)),
      maxAttempts: r.maxAttempts === undefined ? Number.POSITIVE_INFINITY : positive("reconnect.maxAttempts", r.maxAttempts, 1, 1_000_000),
    };
  }
  // The home is only resolved when something is read from it (a socketPath and a token need none).
  const home = () => (options.home !== undefined ? options.home : resolveHome().root);
  const socketPath = options.socketPath ?? path.join(home(), "run", "system.sock");
  let readToken: () => Promise<string>;
  if (options.token !== undefined) {
    const token = options.token;
    readToken = async () => token;
  } else {
    const file = options.tokenFile ?? (options.credential !== undefined ? path.join(home(), "etc", "frontends", `${options.credential}.token`) : path.join(home(), "run", "system.token"));
    readToken = async () => {
      try {
        return (await fs.readFile(file, "utf8")).trim();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (options.credential === undefined && options.tokenFile === undefined) {
          throw new AstridError("ASTRID_ERR_DAEMON_NOT_RUNNING", `no session token at ${file} (${code ?? "unreadable"}): is the daemon running? (astrid start)`, { cause: err });
        }
        throw new AstridError("ASTRID_ERR_AUTH_FAILED", `cannot read the token file ${file} (${code ?? "unreadable"})`, { cause: err });
      }
    };
  }
  return { socketPath, readToken, ...(options.clientName === undefined ? {} : { clientName: options.clientName }), timeoutMs, reconnect };
}
