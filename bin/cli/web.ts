/**
 * `astrid web`: a frontend process serving the chat page. It connects to the running daemon with a frontend
 * credential (`web` by default, created on first use with platform `web` and unlinked policy `restricted`), so each
 * browser visitor is a platform user of its own; it reconnects when the daemon restarts.
 */
import { spawn } from "node:child_process";
import type { Argv, CommandModule } from "yargs";
import type { AstridClient } from "../../client/astrid-client";
import { resolveHome } from "../../kernel/home";
import { isAstridError } from "../../protocol/errors";
import { isPrincipalId } from "../../protocol/identity-names";
import { isLoopback } from "../../web/loopback";
import { ensureFrontendCredential, grantFrontend } from "./frontend-setup";
import { USAGE_EXIT_CODE } from "./usage";

/** The capabilities the web frontend's principal needs for the side panel (daemon status, capsule list). */
export const WEB_PANEL_CAPABILITIES = ["system:status", "self:capsule:list"];

interface WebArgs {
  host: string;
  port: number;
  open: boolean;
  "allow-remote": boolean;
  credential: string;
  "max-tabs": number;
  "max-prompt-bytes": number;
}

function usage(message: string, code: "ASTRID_ERR_INVALID_ARGUMENT" | "ASTRID_ERR_WEB_REMOTE_REFUSED" = "ASTRID_ERR_INVALID_ARGUMENT"): void {
  process.stderr.write(`astrid: ${message} [${code}]\n`);
  process.exitCode = USAGE_EXIT_CODE;
}

/** Checks the flags; prints the problem and sets exit status 2 when one is bad. */
function checkArgs(a: WebArgs): boolean {
  if (!Number.isInteger(a.port) || a.port < 0 || a.port > 65_535) return usage("--port must be a whole number from 0 to 65535"), false;
  if (!Number.isInteger(a["max-tabs"]) || a["max-tabs"] < 1 || a["max-tabs"] > 4096) return usage("--max-tabs must be a whole number from 1 to 4096"), false;
  const bytes = a["max-prompt-bytes"];
  if (!Number.isInteger(bytes) || bytes < 1024 || bytes > 8 * 1024 * 1024) return usage("--max-prompt-bytes must be a whole number from 1024 to 8388608"), false;
  if (!isPrincipalId(a.credential) || a.credential === "default") return usage("--credential must be a frontend name ([A-Za-z0-9_-]{1,64}, not default)"), false;
  if (typeof a.host !== "string" || a.host === "") return usage("--host must be an address"), false;
  if (!isLoopback(a.host) && !a["allow-remote"]) {
    usage(`--host ${a.host} is reachable from other machines; add --allow-remote if you mean it (anyone who gets a login link can then chat as a visitor)`, "ASTRID_ERR_WEB_REMOTE_REFUSED");
    return false;
  }
  return true;
}



async function run(a: WebArgs): Promise<void> {
  if (!checkArgs(a)) return;
  const home = resolveHome();
  const created = await ensureFrontendCredential(home, a.credential, "web");
  if (created) process.stdout.write(`Created frontend credential ${a.credential} (platform web, unlinked visitors: restricted) in ${home.frontendsDir}.\n`);
  // Loaded here, not at the top: every other `astrid` command would otherwise load fastify too.
  const { connect: sdkConnect } = await import("../../client/index.js");
  const { startWebServer } = await import("../../web/server.js");
  const client: AstridClient = await sdkConnect({
    home: home.root, credential: a.credential, clientName: "astrid web", reconnect: { initialDelayMs: 200, maxDelayMs: 3000 },
  });
  try {
    await client.request("GetStatus", undefined, { timeoutMs: 5000 });
  } catch (err) {
    if (isAstridError(err) && (err.code === "ASTRID_ERR_PERMISSION_DENIED" || err.code === "ASTRID_ERR_PROFILE_INVALID")) {
      const problem = await grantFrontend(home, a.credential, WEB_PANEL_CAPABILITIES, "astrid web setup");
      if (problem) process.stderr.write(`astrid web: the side panel cannot show the daemon's status: ${problem}\n`);
      else process.stdout.write(`Granted ${a.credential} ${WEB_PANEL_CAPABILITIES.join(", ")} so the page can show the daemon's status and capsules.\n`);
    }
  }
  if (!isLoopback(a.host)) {
    process.stderr.write(`astrid web: WARNING: listening on ${a.host}, reachable from other machines, without TLS. Anyone with a login link can chat.\n`);
  }
  const server = await startWebServer({
    client, host: a.host, port: a.port, maxTabs: a["max-tabs"], maxPromptBytes: a["max-prompt-bytes"],
    onLogin: () => process.stdout.write(`A visitor logged in. Next visitor's one-time login URL: ${server.loginUrl()}\n`),
  });
  const url = server.loginUrl();
  process.stdout.write(`astrid web: serving ${server.origin} as frontend ${a.credential}\nOne-time login URL: ${url}\n`);
  if (a.open) {
    const opener = spawn("xdg-open", [url], { stdio: "ignore", detached: true });
    opener.on("error", () => process.stderr.write("astrid web: could not start a browser (xdg-open); open the URL yourself\n"));
    opener.unref();
  }
  client.onConnection((event) => {
    if (event.state === "disconnected") process.stderr.write("astrid web: lost the daemon; reconnecting…\n");
    if (event.state === "reconnected") process.stderr.write("astrid web: reconnected to the daemon\n");
  });
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await server.close();
  await client.close();
}

/** The `astrid web` command. */
export const webCommand: CommandModule<object, WebArgs> = {
  command: "web",
  describe: "Serve a chat page in the browser (a frontend with its own credential; loopback only unless --allow-remote)",
  builder: (y: Argv<object>) =>
    y
      .option("host", { type: "string", default: "127.0.0.1", describe: "address to listen on (loopback unless --allow-remote)" })
      .option("port", { type: "number", default: 8765, describe: "port to listen on (0: any free port)" })
      .option("open", { type: "boolean", default: false, describe: "open the login URL in a browser (xdg-open)" })
      .option("allow-remote", { type: "boolean", default: false, describe: "allow a --host other machines can reach (prints a warning)" })
      .option("credential", { type: "string", default: "web", describe: "the frontend credential to connect with (web is created on first use)" })
      .option("max-tabs", { type: "number", default: 64, describe: "open pages served at once" })
      .option("max-prompt-bytes", { type: "number", default: 1024 * 1024, describe: "largest prompt a page may send (UTF-8 bytes, 1024–8388608)" }) as unknown as Argv<WebArgs>,
  handler: (a) => run(a),
};
