/**
 * The bot token's shape, checked before anything is sent to Discord. discord.js only refuses an empty token; a
 * mistyped one would otherwise fail later, over the network, or (without a network) look like an outage. A bot
 * token is three base64url parts joined by dots, the first being the bot's user id (a snowflake) in base64.
 */
import { AstridError } from "../protocol/errors";

const TOKEN_SHAPE = /^([A-Za-z0-9_-]{16,40})\.([A-Za-z0-9_-]{4,16})\.([A-Za-z0-9_-]{20,200})$/;

/**
 * The token without a `Bot ` prefix or surrounding space; throws ASTRID_ERR_DISCORD_TOKEN_INVALID (without
 * quoting the token) when it is missing or cannot be a Discord bot token.
 */
export function checkDiscordToken(raw: string | undefined, source: string): string {
  const token = (raw ?? "").trim().replace(/^Bot\s+/i, "");
  if (token === "") {
    throw new AstridError("ASTRID_ERR_DISCORD_TOKEN_INVALID", `no Discord bot token: set ASTRID_DISCORD_TOKEN or pass --token-file (the bot's token from the Discord developer portal, Bot tab)`);
  }
  const m = TOKEN_SHAPE.exec(token);
  const id = m ? Buffer.from(m[1]!, "base64url").toString("latin1") : "";
  if (!m || !/^[0-9]{17,20}$/.test(id)) {
    throw new AstridError("ASTRID_ERR_DISCORD_TOKEN_INVALID", `${source} is not a Discord bot token (${token.length} characters; expected three dot-separated parts, the first the bot's id in base64)`);
  }
  return token;
}

/** The bot's user id a well-formed token names. */
export function botIdOfToken(token: string): string {
  return Buffer.from(token.split(".")[0]!, "base64url").toString("latin1");
}
