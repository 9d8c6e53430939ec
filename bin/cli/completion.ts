/**
 * Shell completion for `astrid` (yargs' `completion` command prints the bash/zsh script). Beyond yargs' own
 * commands and options it completes what only the running daemon knows: capsule names (`capsule info|remove|
 * permissions`), `<capsule>.<tool>` (`tool call`) and the built-in assistant's sessions (`chat -s`). Each of those
 * asks the daemon with a short deadline; no daemon, or a slow one, just means no such suggestions.
 */
import { OPERATOR_KV_SCOPE } from "../../protocol/operator-scope";
import { resolveHome } from "../../kernel/home";
import { daemonRequest } from "./daemon-request";

/** How long a completion waits for the daemon: a shell's Tab must not hang. */
const COMPLETION_TIMEOUT_MS = 1000;
/** The KV scope where the built-in assistant keeps each session's history (`history:<session>`). */
const ASSISTANT_SCOPE = "default:capsule:astrid-capsule-assistant";

/** The words on the command line being completed (after the program), the word under the cursor last. */
function typedWords(): string[] {
  const at = process.argv.indexOf("--get-yargs-completions");
  return at === -1 ? [] : process.argv.slice(at + 1);
}

async function ask(method: "GetCapsuleMetadata" | "KvList", params?: Record<string, unknown>): Promise<unknown> {
  return (await daemonRequest(resolveHome(), method, params, { topicSuffix: "completion", timeoutMs: COMPLETION_TIMEOUT_MS })).data;
}

/** Suggestions from the daemon for the word under the cursor, or undefined to let yargs complete it. */
export async function daemonSuggestions(words: readonly string[]): Promise<string[] | undefined> {
  const before = words.slice(0, -1).filter((w) => !w.startsWith("-") || w === "-s" || w === "--session");
  const last = before[before.length - 1];
  const [command, action] = before;
  if (command === "capsule" && before.length === 2 && (action === "info" || action === "remove" || action === "permissions")) {
    return ((await ask("GetCapsuleMetadata")) as Array<{ name: string }>).map((c) => c.name);
  }
  if (command === "tool" && action === "call" && before.length === 2) {
    const capsules = (await ask("GetCapsuleMetadata")) as Array<{ name: string; tools?: Array<{ name: string }> }>;
    return capsules.flatMap((c) => (c.tools ?? []).map((t) => `${c.name}.${t.name}`));
  }
  if (command === "chat" && (last === "-s" || last === "--session")) {
    const keys = (await ask("KvList", { scope: ASSISTANT_SCOPE, prefix: "history:" })) as string[];
    return keys.map((k) => k.slice("history:".length));
  }
  if (command === "kv" && (action === "get" || action === "delete") && before.length === 2) {
    return (await ask("KvList", { scope: OPERATOR_KV_SCOPE, prefix: "" })) as string[];
  }
  return undefined;
}

/** yargs' completion function (the four-argument form: `defaults` runs yargs' own completion). */
export function completeAstrid(
  current: string,
  _argv: unknown,
  defaults: (onCompleted?: (err: Error | null, completions: string[] | undefined) => void) => void,
  done: (completions: string[]) => void,
): void {
  daemonSuggestions(typedWords()).then(
    (names) => (names === undefined ? defaults() : done(names.filter((n) => n.startsWith(current)))),
    () => defaults(),
  );
}
