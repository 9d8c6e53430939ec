/**
 * `astrid discord`: a frontend process bridging a Discord bot to the running daemon. It connects with a frontend
 * credential (`discord` by default, created on first use with platform `discord` and unlinked policy `restricted`),
 * so each Discord user is a platform user of their own; it reconnects when the daemon restarts. The bot token is
 * read here (ASTRID_DISCORD_TOKEN or --token-file) and checked before anything else happens: the daemon never sees it.
 */
import fs from "node:fs";
import type { Argv, CommandModule } from "yargs";
import type { AstridClient } from "../../client/astrid-client";
import { resolveHome } from "../../kernel/home";
import { AstridError, isAstridError } from "../../protocol/errors";
import { isPrincipalId } from "../../protocol/identity-names";
import { checkDiscordToken } from "../../discord/token";
import { ensureFrontendCredential, grantFrontend } from "./frontend-setup";
import { USAGE_EXIT_CODE } from "./usage";

/** What the bridge's principal needs: the slash commands come from GetCommands. */
export const DISCORD_CAPABILITIES = ["self:capsule:list"];

interface DiscordArgs {
  credential: string;
  channel: string[];
  "token-file"?: string;
}

function usage(message: string): void {
  process.stderr.write(`astrid: ${message} [ASTRID_ERR_INVALID_ARGUMENT]\n`);
  process.exitCode = USAGE_EXIT_CODE;
}

/** The bot token: --token-file's content, else ASTRID_DISCORD_TOKEN; checked for shape (never printed). */
function readToken(a: DiscordArgs): string {
  if (a["token-file"] !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(a["token-file"], "utf8");
    } catch (err) {
      throw new AstridError("ASTRID_ERR_DISCORD_TOKEN_INVALID", `cannot read --token-file ${a["token-file"]}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    return checkDiscordToken(text, `--token-file ${a["token-file"]}`);
  }
  return checkDiscordToken(process.env.ASTRID_DISCORD_TOKEN, "ASTRID_DISCORD_TOKEN");
}



async function run(a: DiscordArgs): Promise<void> {
  if (!isPrincipalId(a.credential) || a.credential === "default") return usage("--credential must be a frontend name ([A-Za-z0-9_-]{1,64}, not default)");
  const channels = (a.channel ?? []).map(String);
  const bad = channels.find((c) => !/^[0-9]{17,20}$/.test(c));
  if (bad !== undefined) return usage(`--channel ${bad} is not a Discord channel id (17–20 digits; Discord: Developer Mode, right-click the channel, Copy Channel ID)`);
  const token = readToken(a);
  const home = resolveHome();
  if (await ensureFrontendCredential(home, a.credential, "discord")) {
    process.stdout.write(`Created frontend credential ${a.credential} (platform discord, unlinked users: restricted) in ${home.frontendsDir}.\n`);
  }
  // Loaded here, not at the top: every other `astrid` command would otherwise load discord.js too.
  const { connect: sdkConnect } = await import("../../client/index.js");
  const { DiscordBridge } = await import("../../discord/bridge.js");
  const { connectDiscord } = await import("../../discord/discord-js-seam.js");
  const client: AstridClient = await sdkConnect({ home: home.root, credential: a.credential, clientName: "astrid discord", reconnect: { initialDelayMs: 200, maxDelayMs: 5000 } });
  try {
    await client.request("GetCommands", undefined, { timeoutMs: 5000, topicSuffix: "get_commands" });
  } catch (err) {
    if (isAstridError(err) && (err.code === "ASTRID_ERR_PERMISSION_DENIED" || err.code === "ASTRID_ERR_PROFILE_INVALID")) {
      const problem = await grantFrontend(home, a.credential, DISCORD_CAPABILITIES, "astrid discord setup");
      if (problem) process.stderr.write(`astrid discord: slash commands will be missing: ${problem}\n`);
      else process.stdout.write(`Granted ${a.credential} ${DISCORD_CAPABILITIES.join(", ")} so the daemon's commands become slash commands.\n`);
    }
  }
  let discord;
  try {
    discord = await connectDiscord(token);
  } catch (err) {
    await client.close();
    throw err;
  }
  const bridge = new DiscordBridge({ client, seam: discord.seam, channels: new Set(channels), log: (line) => process.stderr.write(`astrid discord: ${line}\n`) });
  await bridge.start().catch((err: Error) => process.stderr.write(`astrid discord: slash commands not registered: ${err.message}\n`));
  process.stdout.write(`astrid discord: bridging bot ${discord.seam.botUserId} as frontend ${a.credential}${channels.length ? ` (listening in ${channels.length} channel(s); elsewhere mentions and DMs)` : " (mentions and DMs)"}\n`);
  client.onConnection((event) => {
    if (event.state === "disconnected") process.stderr.write("astrid discord: lost the daemon; reconnecting…\n");
    if (event.state === "reconnected") process.stderr.write("astrid discord: reconnected to the daemon\n");
  });
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  bridge.close();
  await discord.close();
  await client.close();
}

/** The `astrid discord` command. */
export const discordCommand: CommandModule<object, DiscordArgs> = {
  command: "discord",
  describe: "Bridge a Discord bot to the daemon (token from ASTRID_DISCORD_TOKEN; a frontend with its own credential)",
  builder: (y: Argv<object>) =>
    y
      .option("credential", { type: "string", default: "discord", describe: "the frontend credential to connect with (discord is created on first use)" })
      .option("channel", { type: "string", array: true, default: [], describe: "a channel id where every message is a prompt (repeatable; elsewhere only mentions and DMs)" })
      .option("token-file", { type: "string", describe: "read the bot token from this file instead of ASTRID_DISCORD_TOKEN" }) as unknown as Argv<DiscordArgs>,
  handler: (a) => run(a),
};
