/**
 * `astrid identity link|unlink|list`: which principal a platform user (a Discord account, a web login) acts as.
 * The links live in the daemon's KV store, so these commands are admin requests to the running daemon
 * (`IdentityLink`, `IdentityUnlink`, `IdentityList` on `astrid.v1.admin.identity.*`).
 */
import { randomUUID } from "node:crypto";
import type { Argv, CommandModule } from "yargs";
import type { DaemonClient } from "../../protocol/client";
import { AstridError, isErrorCode } from "../../protocol/errors";
import { isDisplayName, isPlatform, isPlatformUserId, isPrincipalId } from "../../protocol/identity-names";
import { isJsonObject, type IpcMessage, type IpcPayload } from "../../protocol/ipc-message";
import { ADMIN_RESPONSE_TOPIC_PREFIX, ADMIN_TOPIC_PREFIX, CLIENT_ERROR_TOPIC } from "../../protocol/topics";
import { resolveHome, type AstridHome } from "../../kernel/home";
import { connect, daemonState } from "./daemon-control";
import { UsageError } from "./usage";

interface Global {
  json: boolean;
}


/** An identity link as the daemon reports it. */
export interface LinkView {
  platform: string;
  platform_user_id: string;
  principal: string;
  method: string;
  display_name?: string;
  linked_at?: string;
  replaced?: { principal: string; method: string };
}

/** One page of `IdentityList`. */
export interface LinkPageView {
  links: LinkView[];
  next_cursor?: string;
}

/** The identity admin methods and their conventional topics (after `astrid.v1.admin.`). */
const TOPICS = { IdentityLink: "identity.link", IdentityUnlink: "identity.unlink", IdentityList: "identity.list" } as const;
type IdentityMethod = keyof typeof TOPICS;

/**
 * Sends one admin request on `astrid.v1.admin.<suffix>` and resolves with its reply's `data`, matched by a fresh
 * request_id on `astrid.v1.admin.response.<suffix>`. An `Error` reply rejects with its code (a reply without one,
 * as the reference daemon sends, with ASTRID_ERR_INTERNAL); a refusal of the frame itself (`astrid.v1.error`, e.g.
 * ASTRID_ERR_TOPIC_DENIED from a daemon that has no admin API for sockets) rejects at once instead of timing out.
 */
export function sendAdminRequest(
  client: DaemonClient,
  method: string,
  topicSuffix: string,
  params: Record<string, unknown>,
  timeoutMs = 10_000,
): Promise<unknown> {
  const requestId = randomUUID();
  const responseTopic = ADMIN_RESPONSE_TOPIC_PREFIX + topicSuffix;
  return new Promise((resolve, reject) => {
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      client.off("message", onMessage).off("close", onClose);
      settle();
    };
    const onMessage = (message: IpcMessage) => {
      const payload = message.payload;
      if (!isJsonObject(payload)) return;
      if (message.topic === CLIENT_ERROR_TOPIC) {
        const code = isErrorCode(payload.code) ? payload.code : "ASTRID_ERR_INTERNAL";
        return finish(() => reject(new AstridError(code, `the daemon refused the ${method} request: ${String(payload.message ?? "no reason given")}`)));
      }
      if (message.topic !== responseTopic || payload.request_id !== requestId) return;
      if (payload.status === "Error") {
        const code = isErrorCode(payload.code) ? payload.code : "ASTRID_ERR_INTERNAL";
        const text = typeof payload.data === "string" ? payload.data : JSON.stringify(payload.data);
        return finish(() => reject(new AstridError(code, text)));
      }
      finish(() => resolve(payload.data));
    };
    const onClose = () => finish(() => reject(new AstridError("ASTRID_ERR_CONNECTION_CLOSED", "the daemon closed the connection before replying")));
    const timer = setTimeout(() => finish(() => reject(new AstridError("ASTRID_ERR_TIMEOUT", `${method} got no reply within ${timeoutMs} ms`))), timeoutMs);
    client.on("message", onMessage).on("close", onClose);
    try {
      client.publish(ADMIN_TOPIC_PREFIX + topicSuffix, { type: "raw_json", request_id: requestId, method, params } as IpcPayload);
    } catch (err) {
      finish(() => reject(err as Error));
    }
  });
}

/** One identity request to the live daemon of `home`; the connection is closed in every case. */
async function identityRequest(home: AstridHome, method: IdentityMethod, params: Record<string, unknown>): Promise<unknown> {
  if ((await daemonState(home)) !== "live") {
    throw new AstridError("ASTRID_ERR_DAEMON_NOT_RUNNING", "No Astrid daemon is running; identity links live in its store: start one with `astrid start`.");
  }
  const client = await connect(home);
  try {
    return await sendAdminRequest(client, method, TOPICS[method], params);
  } finally {
    await client.close();
  }
}

/** A bad argument: a usage error (exit 2), refused before anything is sent. */
function bad(message: string): AstridError {
  return new UsageError(message);
}

/**
 * The CLI's fail handler reports a usage error without stopping yargs, which then runs the handler anyway: a
 * handler checks its required arguments itself, so a missing one never becomes a request.
 */
function required(args: object, names: string[]): void {
  const missing = names.filter((n) => typeof (args as Record<string, unknown>)[n] !== "string");
  if (missing.length > 0) throw bad(`missing ${missing.join(", ")} (see astrid identity --help)`);
}

/** Checks the arguments before anything is sent, with the rules the daemon applies. */
export function checkIdentityArgs(args: { platform?: string; user?: string; principal?: string; displayName?: string; limit?: number }): void {
  if (args.platform !== undefined && !isPlatform(args.platform)) throw bad(`platform ${JSON.stringify(args.platform)} must be 1-32 characters of [a-z0-9_-] (e.g. discord)`);
  if (args.user !== undefined && !isPlatformUserId(args.user)) throw bad(`user id ${JSON.stringify(args.user)} must be 1-256 printable characters (no control characters or line breaks)`);
  if (args.principal !== undefined && !isPrincipalId(args.principal)) throw bad(`principal ${JSON.stringify(args.principal)} must be 1-64 characters of [A-Za-z0-9_-]`);
  if (args.displayName !== undefined && !isDisplayName(args.displayName)) throw bad("--display-name must be 1-256 printable characters (no control characters or line breaks)");
  if (args.limit !== undefined && (!Number.isInteger(args.limit) || args.limit < 1 || args.limit > 1000)) throw bad("--limit must be a whole number from 1 to 1000");
}

/** `discord user 1234 ("Alice")`. */
function who(link: Pick<LinkView, "platform" | "platform_user_id" | "display_name">): string {
  return `${link.platform} user ${link.platform_user_id}${link.display_name ? ` (${JSON.stringify(link.display_name)})` : ""}`;
}

/** What `identity link` prints. */
export function describeLinked(link: LinkView): string {
  const replaced = link.replaced
    ? link.replaced.principal === link.principal ? " (it already was; updated)" : ` (was ${link.replaced.principal}, ${link.replaced.method})`
    : "";
  return `Linked ${who(link)} to principal ${link.principal}${replaced}.`;
}

/** What `identity unlink` prints. */
export function describeUnlinked(link: LinkView): string {
  return `Unlinked ${who(link)} (was principal ${link.principal}, ${link.method}).`;
}

/** The `identity list` table. */
export function linkTable(links: readonly LinkView[]): string {
  const header = ["PLATFORM", "USER", "PRINCIPAL", "METHOD", "NAME"];
  const rows = links.map((l) => [l.platform, l.platform_user_id, l.principal, l.method, l.display_name ?? ""]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n");
}

/** Reads a page reply, refusing a shape this CLI does not know. */
function asPage(data: unknown): LinkPageView {
  if (!isJsonObject(data) || !Array.isArray(data.links)) throw new AstridError("ASTRID_ERR_INTERNAL", "Unexpected IdentityList reply from the daemon");
  return data as unknown as LinkPageView;
}

async function link(argv: Global & { platform: string; user: string; principal: string; "display-name"?: string }): Promise<void> {
  required(argv, ["platform", "user", "principal"]);
  const displayName = argv["display-name"];
  checkIdentityArgs({ platform: argv.platform, user: argv.user, principal: argv.principal, displayName });
  const params: Record<string, unknown> = { platform: argv.platform, platform_user_id: argv.user, principal: argv.principal };
  if (displayName !== undefined) params.display_name = displayName;
  const data = (await identityRequest(resolveHome(), "IdentityLink", params)) as LinkView;
  process.stdout.write(argv.json ? `${JSON.stringify(data)}\n` : `${describeLinked(data)}\n`);
}

async function unlink(argv: Global & { platform: string; user: string }): Promise<void> {
  required(argv, ["platform", "user"]);
  checkIdentityArgs({ platform: argv.platform, user: argv.user });
  const data = (await identityRequest(resolveHome(), "IdentityUnlink", { platform: argv.platform, platform_user_id: argv.user })) as LinkView;
  process.stdout.write(argv.json ? `${JSON.stringify(data)}\n` : `${describeUnlinked(data)}\n`);
}

async function list(argv: Global & { platform?: string; principal?: string; limit?: number; cursor?: string; all: boolean }): Promise<void> {
  checkIdentityArgs({ platform: argv.platform, principal: argv.principal, limit: argv.limit });
  const home = resolveHome();
  const base: Record<string, unknown> = {};
  if (argv.platform !== undefined) base.platform = argv.platform;
  if (argv.principal !== undefined) base.principal = argv.principal;
  if (argv.limit !== undefined) base.limit = argv.limit;
  const links: LinkView[] = [];
  let cursor = argv.cursor;
  let next: string | undefined;
  do {
    const page = asPage(await identityRequest(home, "IdentityList", cursor === undefined ? base : { ...base, cursor }));
    links.push(...page.links);
    next = page.next_cursor;
    cursor = next;
  } while (argv.all && next !== undefined);
  if (argv.json) {
    process.stdout.write(`${JSON.stringify(next === undefined ? { links } : { links, next_cursor: next })}\n`);
    return;
  }
  if (links.length === 0) process.stderr.write("No identity links.\n");
  else process.stdout.write(`${linkTable(links)}\n`);
  if (next !== undefined) process.stderr.write(`More links follow: add --cursor ${next} (or --all).\n`);
}

/** The `astrid identity` command and its subcommands. */
export const identityCommand: CommandModule<Global, Global> = {
  command: "identity",
  describe: "Link platform users (Discord, web, …) to principals in the running daemon, or list and remove links",
  builder: (y: Argv<Global>) =>
    y
      .command(
        "link <platform> <user> <principal>",
        "Make a platform user act as a principal (replaces any link it had)",
        (a) =>
          a
            .positional("platform", { type: "string", demandOption: true, describe: "e.g. discord, web: [a-z0-9_-]{1,32}" })
            .positional("user", { type: "string", demandOption: true, describe: "the user's id on that platform" })
            .positional("principal", { type: "string", demandOption: true, describe: "the principal it acts as" })
            .option("display-name", { type: "string", describe: "a name to show for the user" })
            .example("$0 identity link discord 80351110224678912 alice --display-name Alice", "Alice's Discord account acts as alice"),
        (a) => link(a as Global & { platform: string; user: string; principal: string; "display-name"?: string }),
      )
      .command(
        "unlink <platform> <user>",
        "Remove a platform user's link",
        (a) =>
          a
            .positional("platform", { type: "string", demandOption: true })
            .positional("user", { type: "string", demandOption: true }),
        (a) => unlink(a as Global & { platform: string; user: string }),
      )
      .command(
        "list [platform]",
        "The links, all or one platform's (a page at a time)",
        (a) =>
          a
            .positional("platform", { type: "string", describe: "only this platform's links" })
            .option("principal", { type: "string", describe: "only the links to this principal" })
            .option("limit", { type: "number", describe: "links per page (1-1000, default 100)" })
            .option("cursor", { type: "string", describe: "continue after the page that printed this cursor" })
            .option("all", { type: "boolean", default: false, describe: "fetch every page" }),
        (a) => list(a as Global & { platform?: string; principal?: string; limit?: number; cursor?: string; all: boolean }),
      )
      .demandCommand(1, "Name an identity command: link, unlink or list."),
  handler: () => undefined,
};
