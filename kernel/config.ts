/**
 * The daemon's configuration: every `ASTRID_*` environment variable and every `astrid-daemon` flag, declared once
 * here (name with its unit, default, range), read once at boot by `loadDaemonConfig`, printable with
 * `--print-config`. Nothing else in the daemon reads `process.env`.
 *
 * One rule for a bad value: boot stops with ASTRID_ERR_CONFIG_INVALID, naming the variable, what it was given and
 * what it allows. Numbers are decimal digits only, in range — "", " 5", "abc", "-1", "1.5", "1e3", "1e309",
 * "Infinity" are all refused rather than quietly replaced by a default. ASTRID_HOME follows the rule the CLI
 * applies to it too (kernel/home.ts, ASTRID_ERR_HOME_INVALID). The one exception is ASTRID_IDLE_TIMEOUT_SECS,
 * which keeps the reference's parse: anything but whole seconds means the default.
 */
import net from "node:net";
import path from "node:path";
import { z } from "zod";
import { AstridError } from "../protocol/errors";
import { NIL_UUID } from "../protocol/ipc-message";
import { parseUuid, UUID_FORMAT } from "../protocol/uuid";
import { resolveHome } from "./home";
import { DEFAULT_AGENT_MODEL, SecretValue } from "./model/model-endpoint";

/** setTimeout's longest delay: a longer one fires after 1 ms instead, so no millisecond setting may exceed it. */
export const MAX_TIMER_MS = 2_147_483_647;

/** How a setting is documented: in `--help`, in error messages and (by hand) in the README. */
export interface SettingDoc {
  /** The variable (`ASTRID_…`) or the flag (`--…`). */
  name: string;
  /** What it does, for `--help`. */
  describe: string;
  /** The default, as `--help` shows it. */
  default: string;
  /** What it accepts, completing "<name> must be …". */
  allowed: string;
}

/** The documentation of each setting, attached to its schema. */
export const settingDocs = z.registry<SettingDoc>();

/**
 * A whole number in [min, max], written as decimal digits and nothing else; unset means `fallback`. `unit` is
 * what the number counts ("milliseconds", "clients").
 */
function wholeNumber(name: string, unit: string, min: number, max: number, fallback: number, describe: string, defaultText = String(fallback)) {
  const allowed = `a whole number of ${unit} from ${min} to ${max}`;
  return z
    .string()
    .optional()
    .transform((text, ctx): number => {
      if (text === undefined) return fallback;
      const value = /^[0-9]+$/.test(text) ? Number(text) : NaN;
      if (value >= min && value <= max) return value;
      ctx.addIssue({ code: "custom", message: allowed });
      return z.NEVER;
    })
    .register(settingDocs, { name, describe, default: defaultText, allowed });
}

/** An absolute path; unset means null (the caller's default). A relative one would depend on the spawner's cwd. */
function absolutePath(name: string, fallback: string, describe: string) {
  const allowed = "an absolute path";
  return z
    .string()
    .optional()
    .transform((text, ctx): string | null => {
      if (text === undefined) return null;
      if (path.isAbsolute(text)) return path.normalize(text);
      ctx.addIssue({ code: "custom", message: allowed });
      return z.NEVER;
    })
    .register(settingDocs, { name, describe, default: fallback, allowed });
}

/** A boolean flag (yargs has already parsed it). */
function flag(name: string, fallback: boolean, describe: string) {
  return z.boolean().default(fallback).register(settingDocs, { name, describe, default: fallback ? "on" : "off", allowed: "true or false" });
}

/** Default of ASTRID_IDLE_TIMEOUT_SECS, and what an unparsable value means. */
const IDLE_TIMEOUT_DEFAULT_SECS = 300;

/** The environment: every `ASTRID_*` variable the daemon reads (and HOME, ASTRID_HOME's fallback). */
export const envSchema = z.object({
  // Checked by kernel/home.ts's resolveHome, the rule `astrid` applies to it as well.
  ASTRID_HOME: z.string().optional().register(settingDocs, {
    name: "ASTRID_HOME",
    describe: "state directory",
    default: "$HOME/.astrid",
    allowed: "an absolute path without `..` components",
  }),
  HOME: z.string().optional(),
  // The exception to the one rule, kept from the reference (a u64 parse with a fallback): anything but whole
  // seconds (" 7 " is 7) means 300, never an error; 0 means never. Up to 9 digits, so the milliseconds stay exact.
  ASTRID_IDLE_TIMEOUT_SECS: z
    .string()
    .optional()
    .transform((text): number => {
      const trimmed = text?.trim();
      return trimmed !== undefined && /^[0-9]{1,9}$/.test(trimmed) ? Number(trimmed) : IDLE_TIMEOUT_DEFAULT_SECS;
    })
    .register(settingDocs, {
      name: "ASTRID_IDLE_TIMEOUT_SECS",
      describe: "persistent mode: shut down after N seconds without clients; 0 = never",
      default: String(IDLE_TIMEOUT_DEFAULT_SECS),
      allowed: "whole seconds; the one exception to the rule: any other value means 300, as in the reference",
    }),
  // The grace is one setTimeout, hence its bound.
  ASTRID_IDLE_GRACE_SECS: wholeNumber("ASTRID_IDLE_GRACE_SECS", "seconds", 0, Math.floor(MAX_TIMER_MS / 1000), 30,
    "persistent mode: no idle check during the first N seconds"),
  ASTRID_MAX_CLIENTS: wholeNumber("ASTRID_MAX_CLIENTS", "clients", 1, 65_536, 256,
    "most authenticated clients at once (--max-clients wins)"),
  ASTRID_CAPSULE_BOOT_WAIT_MS: wholeNumber("ASTRID_CAPSULE_BOOT_WAIT_MS", "milliseconds", 0, MAX_TIMER_MS, 5000,
    "how long boot waits for its capsules before serving anyway"),
  ASTRID_CAPSULE_READY_TIMEOUT_MS: wholeNumber("ASTRID_CAPSULE_READY_TIMEOUT_MS", "milliseconds", 1, MAX_TIMER_MS, 10_000,
    "how long a capsule may take from worker start to ready, its lifecycle hook aside"),
  ASTRID_CAPSULE_HOOK_TIMEOUT_MS: wholeNumber("ASTRID_CAPSULE_HOOK_TIMEOUT_MS", "milliseconds", 1, MAX_TIMER_MS, 60_000,
    "how long an install/upgrade hook may run"),
  // The hung-capsule watchdog polls at half this (at most every second): below 100 ms it would busy the main thread.
  ASTRID_CAPSULE_HANDLER_TIMEOUT_MS: wholeNumber("ASTRID_CAPSULE_HANDLER_TIMEOUT_MS", "milliseconds", 100, MAX_TIMER_MS, 30_000,
    "how long one event handler, interceptor or tool call may run before the capsule counts as hung"),
  // The upper bound is the supervisor's cap (RESTART_BACKOFF_MAX_MS), which a longer first delay would hit anyway.
  ASTRID_CAPSULE_RESTART_BACKOFF_MS: wholeNumber("ASTRID_CAPSULE_RESTART_BACKOFF_MS", "milliseconds", 1, 120_000, 2000,
    "first restart delay of a failed capsule, doubling up to 120 s"),
  // A V8 isolate needs a few MiB of old space just to start.
  ASTRID_CAPSULE_MAX_HEAP_MB: wholeNumber("ASTRID_CAPSULE_MAX_HEAP_MB", "megabytes", 8, 65_536, 64,
    "V8 old-generation heap limit of each capsule worker"),
  // A client that reads nothing for this long while its messages pile up is disconnected (one that reads is not).
  ASTRID_CLIENT_STALL_TIMEOUT_MS: wholeNumber("ASTRID_CLIENT_STALL_TIMEOUT_MS", "milliseconds", 500, MAX_TIMER_MS, 30_000,
    "a client over its egress budget that takes no byte for this long is disconnected (ASTRID_ERR_SLOW_CONSUMER)"),
  ASTRID_CAPSULE_MAX_PUBLISHES_PER_SEC: wholeNumber("ASTRID_CAPSULE_MAX_PUBLISHES_PER_SEC", "messages", 1, 1_000_000, 50_000,
    "most messages one capsule may publish per second, whatever their size (beside the 10 MiB/s byte limit)"),
  ASTRID_HOT_RELOAD_BURST: wholeNumber("ASTRID_HOT_RELOAD_BURST", "reloads", 1, 10_000, 30,
    "hot reload pauses for a capsule whose files changed more than N times in a minute"),
  // MCP servers (etc/servers.toml and capsules' [[mcp_server]]); tests shorten them.
  ASTRID_MCP_START_TIMEOUT_MS: wholeNumber("ASTRID_MCP_START_TIMEOUT_MS", "milliseconds", 100, MAX_TIMER_MS, 30_000,
    "how long an MCP server may take to start and answer initialize"),
  ASTRID_MCP_REQUEST_TIMEOUT_MS: wholeNumber("ASTRID_MCP_REQUEST_TIMEOUT_MS", "milliseconds", 100, MAX_TIMER_MS, 60_000,
    "deadline of each MCP request (a tool call, a list, a resource read)"),
  // Questions to people (docs/approvals.md); tests shorten them.
  ASTRID_APPROVAL_TIMEOUT_MS: wholeNumber("ASTRID_APPROVAL_TIMEOUT_MS", "milliseconds", 100, MAX_TIMER_MS, 60_000,
    "how long a capsule's approval request waits for a person; no answer is a denial"),
  ASTRID_ELICIT_TIMEOUT_MS: wholeNumber("ASTRID_ELICIT_TIMEOUT_MS", "milliseconds", 100, MAX_TIMER_MS, 120_000,
    "how long elicit.ask waits for the operator's answer"),
  ASTRID_MCP_RESTART_BACKOFF_MS: wholeNumber("ASTRID_MCP_RESTART_BACKOFF_MS", "milliseconds", 1, 60_000, 1000,
    "first restart delay of a failed MCP server, doubling up to 60 s"),
  ASTRID_MCP_STOP_GRACE_MS: wholeNumber("ASTRID_MCP_STOP_GRACE_MS", "milliseconds", 0, 60_000, 5000,
    "how long a stopping MCP server has between SIGTERM and SIGKILL"),
  // Host processes (docs/processes.md): bubblewrap when it works, else (auto only) a plain child process.
  ASTRID_PROCESS_SANDBOX: z
    .enum(["auto", "bwrap", "none"], { error: "auto, bwrap or none" })
    .default("auto")
    .register(settingDocs, {
      name: "ASTRID_PROCESS_SANDBOX",
      describe: "how capsules' host processes are confined: bwrap (bubblewrap), none (a plain child process), auto (bwrap when it works, else none with a warning)",
      default: "auto",
      allowed: "auto, bwrap or none",
    }),
  // The language-model agent (docs/agent.md): the conventional OpenAI variables, read by the daemon only.
  OPENAI_BASE_URL: z
    .string()
    .optional()
    .transform((text, ctx): string | null => {
      if (text === undefined || text === "") return null;
      let url: URL;
      try {
        url = new URL(text);
      } catch {
        ctx.addIssue({ code: "custom", message: "an http:// or https:// URL" });
        return z.NEVER;
      }
      // Credentials in the URL would be printed with it (--print-config, logs): the key belongs in OPENAI_API_KEY.
      if ((url.protocol !== "http:" && url.protocol !== "https:") || url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") {
        ctx.addIssue({ code: "custom", message: "an http:// or https:// URL" });
        return z.NEVER;
      }
      return url.href.replace(/\/+$/, "");
    })
    .register(settingDocs, {
      name: "OPENAI_BASE_URL",
      describe: "the OpenAI-compatible chat-completions endpoint of the model agent (a local Ollama or llama.cpp server is allowed on loopback)",
      default: "(none; https://api.openai.com/v1 when only OPENAI_API_KEY is set)",
      allowed: "an http:// or https:// URL without credentials, query or fragment, e.g. http://127.0.0.1:11434/v1",
    }),
  // Never refused (a refusal message would quote the value): any text is a key; empty means none.
  OPENAI_API_KEY: z
    .string()
    .optional()
    .transform((text): SecretValue | null => (text === undefined || text === "" ? null : new SecretValue(text)))
    .register(settingDocs, {
      name: "OPENAI_API_KEY",
      describe: "the model endpoint's API key, sent as a bearer token; a secret: never logged, audited or printed",
      default: "(none)",
      allowed: "any text",
    }),
  ASTRID_AGENT_MODEL: z
    .string()
    .regex(/^[^\u0000-\u001f\u007f]{1,256}$/, "1 to 256 printable characters")
    .default(DEFAULT_AGENT_MODEL)
    .register(settingDocs, {
      name: "ASTRID_AGENT_MODEL",
      describe: "the model the agent asks the endpoint for (e.g. llama3.2 for Ollama)",
      default: DEFAULT_AGENT_MODEL,
      allowed: "1 to 256 printable characters",
    }),
  ASTRID_DEFAULT_AGENT: z
    .string()
    .regex(/^[a-z0-9-]{1,128}$/, "a capsule name ([a-z0-9-]+)")
    .optional()
    .register(settingDocs, {
      name: "ASTRID_DEFAULT_AGENT",
      describe: "the agent capsule that answers sessions which chose none (else the model agent when an endpoint is configured, else the built-in assistant)",
      default: "(unset)",
      allowed: "a capsule name ([a-z0-9-]+)",
    }),
  ASTRID_AGENT_TIMEOUT_MS: wholeNumber("ASTRID_AGENT_TIMEOUT_MS", "milliseconds", 1000, 600_000, 120_000,
    "longest wait for the model endpoint's first byte, and between two chunks of its streamed answer"),
  ASTRID_BUNDLED_CAPSULES_DIR: absolutePath("ASTRID_BUNDLED_CAPSULES_DIR", "<package>/capsules",
    "where the bundled capsules live (packagers and tests)"),
  ASTRID_TEST_UNCONFINED_CAPSULES: z
    .string()
    .regex(/^[a-z0-9-]+(,[a-z0-9-]+)*$/, "a comma-separated list of capsule names")
    .optional()
    .register(settingDocs, {
      name: "ASTRID_TEST_UNCONFINED_CAPSULES",
      describe: "tests only: these capsules run without their Compartment (to test the kernel's own checks of hostile workers)",
      default: "(none)",
      allowed: "capsule names, comma-separated",
    }),
  ASTRID_TEST_EPHEMERAL_IDLE_SECS: z
    .string()
    .regex(/^[1-9][0-9]{0,3}$/, "a whole number of seconds from 1 to 9999")
    .optional()
    .register(settingDocs, {
      name: "ASTRID_TEST_EPHEMERAL_IDLE_SECS",
      describe: "tests only: an ephemeral daemon shuts down after N idle seconds, with no grace (instead of 5 s + 30 s)",
      default: "(unset)",
      allowed: "a whole number of seconds from 1 to 9999",
    }),
  ASTRID_TEST_FAULTS: z
    .enum(["0", "1"])
    .default("0")
    .register(settingDocs, { name: "ASTRID_TEST_FAULTS", describe: "tests only: 1 lets tests inject faults (run/test-fault + SIGUSR2: the storage worker or a capsule worker crashes, the logger's clock moves)", default: "0", allowed: "0 or 1" }),
  // The network guard's test seams (kernel/net/address-guard.ts); refused below unless ASTRID_TEST_FAULTS=1.
  ASTRID_TEST_DNS: z
    .string()
    .optional()
    .transform((text, ctx): Record<string, string[]> => {
      const answers: Record<string, string[]> = {};
      if (text === undefined) return answers;
      for (const pair of text.split(",")) {
        const [name, address, extra] = pair.split("=");
        if (!name || !address || extra !== undefined || !/^[a-z0-9.-]+$/i.test(name) || net.isIP(address) === 0) {
          ctx.addIssue({ code: "custom", message: "name=address pairs, comma-separated" });
          return z.NEVER;
        }
        (answers[name.toLowerCase()] ??= []).push(address);
      }
      return answers;
    })
    .register(settingDocs, {
      name: "ASTRID_TEST_DNS",
      describe: "tests only (needs ASTRID_TEST_FAULTS=1): these names resolve to these addresses for capsules' http.request",
      default: "(none)",
      allowed: "name=address pairs, comma-separated",
    }),
  ASTRID_TEST_PUBLIC_ADDRESSES: z
    .string()
    .optional()
    .transform((text, ctx): string[] => {
      if (text === undefined) return [];
      const addresses = text.split(",");
      if (addresses.every((a) => net.isIP(a) !== 0)) return addresses;
      ctx.addIssue({ code: "custom", message: "IP addresses, comma-separated" });
      return z.NEVER;
    })
    .register(settingDocs, {
      name: "ASTRID_TEST_PUBLIC_ADDRESSES",
      describe: "tests only (needs ASTRID_TEST_FAULTS=1): the network guard treats these addresses as public",
      default: "(none)",
      allowed: "IP addresses, comma-separated",
    }),
});

/** The `astrid-daemon` flags, as yargs hands them over (values still text, so one rule can check them). */
export interface DaemonFlags {
  session?: string;
  workspace?: string;
  ephemeral?: boolean;
  verbose?: boolean;
  watch?: boolean;
  maxClients?: string;
  auditPermissions?: boolean;
  quiet?: boolean;
  logFormat?: string;
}

/** The flags' schema. */
export const flagsSchema = z.object({
  session: z
    .string()
    .optional()
    .transform((text, ctx): string => {
      const id = parseUuid(text ?? NIL_UUID);
      if (id !== null) return id;
      ctx.addIssue({ code: "custom", message: UUID_FORMAT });
      return z.NEVER;
    })
    .register(settingDocs, { name: "--session", describe: "kernel session id (a UUID, hyphens optional); the source_id of kernel messages", default: NIL_UUID, allowed: UUID_FORMAT }),
  workspace: z
    .string()
    .optional()
    .transform((text, ctx): string => {
      if (text === undefined) return process.cwd();
      if (text !== "") return path.resolve(text);
      ctx.addIssue({ code: "custom", message: "a directory path" });
      return z.NEVER;
    })
    .register(settingDocs, { name: "--workspace", describe: "workspace root; its .astrid/capsules/ are loaded", default: "the current directory", allowed: "a directory path" }),
  ephemeral: flag("--ephemeral", false, "shut down after 5 s grace + 30 s without clients (what `astrid chat` spawns)"),
  verbose: flag("--verbose", false, "log at debug level"),
  watch: flag("--watch", true, "hot reload: reload a capsule when its files change (--no-watch: only on ReloadCapsules)"),
  auditPermissions: flag("--audit-permissions", false, "record every permission check a capsule makes, allowed or not (see `astrid capsule permissions`)"),
  quiet: flag("--quiet", false, "print no log lines on stderr (the log file is written either way)"),
  logFormat: z
    .enum(["pretty", "json"])
    .default("pretty")
    .register(settingDocs, { name: "--log-format", describe: "log lines on stderr: pretty (readable; coloured on a terminal) or json (one object a line)", default: "pretty", allowed: "pretty or json" }),
  // Unset, it defers to ASTRID_MAX_CLIENTS (loadDaemonConfig); the fallback here is never used.
  maxClients: wholeNumber("--max-clients", "clients", 1, 65_536, 256, "most authenticated clients at once", "$ASTRID_MAX_CLIENTS, else 256"),
});

/** The resolved configuration, read once at boot; every duration and size carries its unit in its name. */
export interface DaemonConfig {
  /** `$ASTRID_HOME`, else `$HOME/.astrid`: absolute and normalised. */
  readonly home: string;
  /** `--session`, canonical form. */
  readonly sessionId: string;
  /** `--workspace`, absolute. */
  readonly workspace: string;
  readonly ephemeral: boolean;
  readonly verbose: boolean;
  /** Hot reload on (`--no-watch` turns it off). */
  readonly watch: boolean;
  /** `--audit-permissions`: every capsule permission check is audited, allowed or not. */
  readonly auditPermissions: boolean;
  /** `--quiet`: no log lines on stderr. */
  readonly quiet: boolean;
  /** `--log-format`: how log lines on stderr look. */
  readonly logFormat: "pretty" | "json";
  /** `--max-clients`, else `ASTRID_MAX_CLIENTS`. */
  readonly maxClients: number;
  /** Persistent mode's idle timeout; 0 = never. */
  readonly idleTimeoutSecs: number;
  readonly idleGraceSecs: number;
  readonly capsuleBootWaitMs: number;
  readonly capsuleReadyTimeoutMs: number;
  readonly capsuleHookTimeoutMs: number;
  readonly capsuleHandlerTimeoutMs: number;
  readonly capsuleRestartBackoffMs: number;
  readonly capsuleMaxHeapMb: number;
  /** Most messages one capsule may publish per second. */
  readonly capsuleMaxPublishesPerSec: number;
  readonly hotReloadBurst: number;
  /** How long a client over its egress budget may take no byte before it is disconnected. */
  readonly clientStallTimeoutMs: number;
  /** MCP servers: start and request deadlines, first restart delay, SIGTERM-to-SIGKILL grace. */
  readonly mcpStartTimeoutMs: number;
  readonly mcpRequestTimeoutMs: number;
  readonly mcpRestartBackoffMs: number;
  readonly mcpStopGraceMs: number;
  /** How long an approval request waits for a person (then: denied, decision `timeout`). */
  readonly approvalTimeoutMs: number;
  /** How long `elicit.ask` waits for the operator (then: ASTRID_ERR_TIMEOUT). */
  readonly elicitTimeoutMs: number;
  /** ASTRID_PROCESS_SANDBOX: how host processes are confined. */
  readonly processSandbox: "auto" | "bwrap" | "none";
  /** `OPENAI_BASE_URL` (normalised, no trailing slash); null: unset. */
  readonly agentBaseUrl: string | null;
  /** `OPENAI_API_KEY`, wrapped: it prints as "(set, hidden)" everywhere. */
  readonly agentApiKey: SecretValue | null;
  /** `ASTRID_AGENT_MODEL`. */
  readonly agentModel: string;
  /** `ASTRID_DEFAULT_AGENT`; null: the built-in rule. */
  readonly defaultAgent: string | null;
  /** `ASTRID_AGENT_TIMEOUT_MS`. */
  readonly agentTimeoutMs: number;
  /** `ASTRID_BUNDLED_CAPSULES_DIR`; null: the capsules shipped with the package. */
  readonly bundledCapsulesDir: string | null;
  /** `ASTRID_TEST_EPHEMERAL_IDLE_SECS`: ephemeral mode's idle timeout for tests; null: the fixed 5 s + 30 s. */
  readonly testEphemeralIdleSecs: number | null;
  /** `ASTRID_TEST_FAULTS=1`: the storage worker obeys fault-injection requests (tests only). */
  readonly testFaults: boolean;
  /** `ASTRID_TEST_UNCONFINED_CAPSULES`: capsules that run without confinement (tests of the kernel's own defences). */
  readonly testUnconfinedCapsules: readonly string[];
  /** `ASTRID_TEST_DNS` (only with testFaults): static answers for capsules' HTTP, by lower-case name. */
  readonly testDns: Readonly<Record<string, readonly string[]>>;
  /** `ASTRID_TEST_PUBLIC_ADDRESSES` (only with testFaults): addresses the network guard treats as public. */
  readonly testPublicAddresses: readonly string[];
}

/**
 * Reads and checks the environment and the flags once; throws ASTRID_ERR_CONFIG_INVALID naming every bad value
 * (or ASTRID_ERR_HOME_INVALID for the home). The result is frozen.
 */
export function loadDaemonConfig(env: NodeJS.ProcessEnv, flags: DaemonFlags = {}): DaemonConfig {
  const home = resolveHome({ ASTRID_HOME: env.ASTRID_HOME, HOME: env.HOME }).root;
  const fromEnv = envSchema.safeParse(pick(env, Object.keys(envSchema.shape)));
  const fromFlags = flagsSchema.safeParse(flags);
  const problems = [
    ...(fromEnv.success ? [] : describeIssues(fromEnv.error.issues, envSchema.shape, env)),
    ...(fromFlags.success ? [] : describeIssues(fromFlags.error.issues, flagsSchema.shape, flags)),
  ];
  if (!fromEnv.success || !fromFlags.success) {
    throw new AstridError("ASTRID_ERR_CONFIG_INVALID", `${problems.join("; ")} (see astrid-daemon --help)`);
  }
  const e = fromEnv.data;
  const f = fromFlags.data;
  // The network seams weaken a security check: a daemon not started for tests refuses to boot with them.
  const seams = (["ASTRID_TEST_DNS", "ASTRID_TEST_PUBLIC_ADDRESSES"] as const).filter((name) => env[name] !== undefined);
  if (seams.length > 0 && e.ASTRID_TEST_FAULTS !== "1") {
    throw new AstridError("ASTRID_ERR_CONFIG_INVALID", `${seams.map((name) => `${name} must be unset unless ASTRID_TEST_FAULTS=1 (a test seam; got ${JSON.stringify(env[name])})`).join("; ")} (see astrid-daemon --help)`);
  }
  return Object.freeze({
    home,
    sessionId: f.session,
    workspace: f.workspace,
    ephemeral: f.ephemeral,
    verbose: f.verbose,
    watch: f.watch,
    auditPermissions: f.auditPermissions,
    quiet: f.quiet,
    logFormat: f.logFormat,
    maxClients: flags.maxClients !== undefined ? f.maxClients : e.ASTRID_MAX_CLIENTS,
    idleTimeoutSecs: e.ASTRID_IDLE_TIMEOUT_SECS,
    idleGraceSecs: e.ASTRID_IDLE_GRACE_SECS,
    capsuleBootWaitMs: e.ASTRID_CAPSULE_BOOT_WAIT_MS,
    capsuleReadyTimeoutMs: e.ASTRID_CAPSULE_READY_TIMEOUT_MS,
    capsuleHookTimeoutMs: e.ASTRID_CAPSULE_HOOK_TIMEOUT_MS,
    capsuleHandlerTimeoutMs: e.ASTRID_CAPSULE_HANDLER_TIMEOUT_MS,
    capsuleRestartBackoffMs: e.ASTRID_CAPSULE_RESTART_BACKOFF_MS,
    capsuleMaxHeapMb: e.ASTRID_CAPSULE_MAX_HEAP_MB,
    capsuleMaxPublishesPerSec: e.ASTRID_CAPSULE_MAX_PUBLISHES_PER_SEC,
    hotReloadBurst: e.ASTRID_HOT_RELOAD_BURST,
    clientStallTimeoutMs: e.ASTRID_CLIENT_STALL_TIMEOUT_MS,
    mcpStartTimeoutMs: e.ASTRID_MCP_START_TIMEOUT_MS,
    mcpRequestTimeoutMs: e.ASTRID_MCP_REQUEST_TIMEOUT_MS,
    mcpRestartBackoffMs: e.ASTRID_MCP_RESTART_BACKOFF_MS,
    mcpStopGraceMs: e.ASTRID_MCP_STOP_GRACE_MS,
    approvalTimeoutMs: e.ASTRID_APPROVAL_TIMEOUT_MS,
    elicitTimeoutMs: e.ASTRID_ELICIT_TIMEOUT_MS,
    processSandbox: e.ASTRID_PROCESS_SANDBOX,
    agentBaseUrl: e.OPENAI_BASE_URL,
    agentApiKey: e.OPENAI_API_KEY,
    agentModel: e.ASTRID_AGENT_MODEL,
    defaultAgent: e.ASTRID_DEFAULT_AGENT ?? null,
    agentTimeoutMs: e.ASTRID_AGENT_TIMEOUT_MS,
    bundledCapsulesDir: e.ASTRID_BUNDLED_CAPSULES_DIR,
    testEphemeralIdleSecs: e.ASTRID_TEST_EPHEMERAL_IDLE_SECS === undefined ? null : Number(e.ASTRID_TEST_EPHEMERAL_IDLE_SECS),
    testFaults: e.ASTRID_TEST_FAULTS === "1",
    testUnconfinedCapsules: e.ASTRID_TEST_UNCONFINED_CAPSULES?.split(",") ?? [],
    testDns: e.ASTRID_TEST_DNS,
    testPublicAddresses: e.ASTRID_TEST_PUBLIC_ADDRESSES,
  });
}

/** The configuration as `--print-config` shows it: one JSON object, keys in a fixed order. */
export function renderDaemonConfig(config: DaemonConfig): string {
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** The `Environment:` block of `astrid-daemon --help`, generated from the schema. */
export function environmentHelp(width = 110): string {
  const docs = Object.values(envSchema.shape).flatMap((schema) => settingDocs.get(schema) ?? []);
  const column = Math.max(...docs.map((d) => d.name.length)) + 4;
  const lines = ["Environment (a bad value stops the boot with ASTRID_ERR_CONFIG_INVALID; --print-config shows the result):"];
  for (const doc of docs) {
    const words = `${doc.describe} (default ${doc.default}; ${doc.allowed})`.split(" ");
    let line = `  ${doc.name}`.padEnd(column);
    let filled = false;
    for (const word of words) {
      if (filled && line.length + 1 + word.length > width) {
        lines.push(line);
        line = "".padEnd(column);
        filled = false;
      }
      line += filled ? ` ${word}` : word;
      filled = true;
    }
    lines.push(line);
  }
  return lines.join("\n");
}

/** The flag's `--help` line, from its schema. */
export function flagHelp(key: keyof typeof flagsSchema.shape): string {
  const doc = settingDocs.get(flagsSchema.shape[key])!;
  return `${doc.describe[0]!.toUpperCase()}${doc.describe.slice(1)} (default ${doc.default})`;
}

function pick(env: NodeJS.ProcessEnv, keys: string[]): Record<string, string | undefined> {
  return Object.fromEntries(keys.filter((k) => env[k] !== undefined).map((k) => [k, env[k]]));
}

/** "<name> must be <allowed> (got <value>)", one per bad setting. */
function describeIssues(issues: z.ZodError["issues"], shape: Record<string, z.ZodType>, input: object): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const issue of issues) {
    const key = String(issue.path[0]);
    if (seen.has(key)) continue;
    seen.add(key);
    const doc = shape[key] ? settingDocs.get(shape[key]) : undefined;
    const given = (input as Record<string, unknown>)[key];
    out.push(`${doc?.name ?? key} must be ${doc?.allowed ?? issue.message} (got ${JSON.stringify(given)})`);
  }
  return out;
}
