/**
 * `astrid-daemon/testing`: the harness of a capsule's own tests. `astrid capsule test <dir>` starts a daemon on a
 * temporary home with the capsule loaded and runs the capsule's test files with Node's test runner; each
 * `capsuleTest` gets a client connected to that daemon and helpers aimed at the capsule under test. Outside
 * `astrid capsule test` (a plain `node --test test/`) those tests are skipped and say how to run them.
 */
import { randomUUID } from "node:crypto";
import { after, test } from "node:test";
import { AstridError } from "../protocol/errors";
import { AstridClient } from "./astrid-client";
import { TEST_CAPSULE_ENV } from "./testing-env";

export { TEST_CAPSULE_ENV };

/** What a capsule test is given. */
export interface CapsuleTestContext {
  /** The capsule under test (its package name). */
  readonly capsule: string;
  /** A client connected to the test daemon as the operator. */
  readonly client: AstridClient;
  /** Sends `text` as a prompt in a fresh session; resolves with the final response's text. */
  prompt(text: string, options?: { timeoutMs?: number }): Promise<string>;
  /** Sends a slash command (`/name args`) in a fresh session; resolves with the final response's text. */
  command(text: string, options?: { timeoutMs?: number }): Promise<string>;
  /** Calls one of the capsule's tools as the operator; resolves with its content, rejects when the tool failed. */
  callTool(tool: string, args?: Record<string, unknown>): Promise<unknown>;
  /** The names of the tools the capsule offers. */
  tools(): Promise<string[]>;
}

let shared: Promise<CapsuleTestContext> | undefined;

/**
 * The context of the running test daemon (one connection per test file; `capsuleTest` closes it after the file's
 * last test, other callers close `client` themselves). Throws ASTRID_ERR_INVALID_ARGUMENT outside `astrid capsule test`.
 */
export function capsuleContext(): Promise<CapsuleTestContext> {
  const capsule = process.env[TEST_CAPSULE_ENV];
  if (capsule === undefined || capsule === "") {
    return Promise.reject(new AstridError("ASTRID_ERR_INVALID_ARGUMENT", `no test daemon: run this test with \`astrid capsule test <dir>\` (${TEST_CAPSULE_ENV} is not set)`));
  }
  shared ??= AstridClient.connect({ clientName: `capsule test of ${capsule}` }).then((client) => contextFor(capsule, client));
  return shared;
}

let closing = false;

/** Closes the shared connection after the file's last test (registered at the top level, where `after` means the file). */
function closeAfterFile(): void {
  if (closing) return;
  closing = true;
  after(async () => {
    if (shared) await (await shared.catch(() => undefined))?.client.close();
  });
}

/**
 * A test (Node's `node:test`) that talks to the capsule under test; skipped, with the reason, when not run by
 * `astrid capsule test`.
 */
export function capsuleTest(name: string, fn: (t: CapsuleTestContext) => unknown): void {
  if (!process.env[TEST_CAPSULE_ENV]) {
    test(name, { skip: "needs the test daemon: run `astrid capsule test <dir>`" }, () => undefined);
    return;
  }
  closeAfterFile();
  test(name, async () => {
    await fn(await capsuleContext());
  });
}

function contextFor(capsule: string, client: AstridClient): CapsuleTestContext {
  const turn = async (text: string, command: boolean, timeoutMs = 30_000) => {
    let reply: string | undefined;
    for await (const event of client.prompt(`capsule-test-${randomUUID()}`, text, { command, timeoutMs })) {
      if (event.type === "response") reply = event.text;
    }
    return reply ?? "";
  };
  return {
    capsule,
    client,
    prompt: (text, options = {}) => turn(text, false, options.timeoutMs),
    command: (text, options = {}) => turn(text, true, options.timeoutMs),
    async callTool(tool, args = {}) {
      const reply = await client.request("CallTool", { capsule, tool, arguments: args });
      const outcome = reply.data as { content: unknown; is_error: boolean };
      if (outcome.is_error) throw new AstridError("ASTRID_ERR_TOOL_FAILED", `${capsule}.${tool} failed: ${typeof outcome.content === "string" ? outcome.content : JSON.stringify(outcome.content)}`);
      return outcome.content;
    },
    async tools() {
      const meta = (await client.request("GetCapsuleMetadata")).data as Array<{ name: string; tools?: Array<{ name: string }> }>;
      return (meta.find((m) => m.name === capsule)?.tools ?? []).map((t) => t.name);
    },
  };
}
