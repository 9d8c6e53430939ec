/** Issue #9: the daemon's frontend credentials: token matching, malformed files, changes without a restart. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { FrontendCredentials } from "../../../../kernel/frontends/frontend-credentials";
import { addFrontend, frontendFile, removeFrontend } from "../../../../kernel/frontends/frontend-store";

let root: string;
let dir: string;
let clock: number;
let warnings: Array<{ file: string; error: string }>;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "astrid-fc-"));
  dir = path.join(root, "frontends");
  clock = Date.now();
  warnings = [];
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

function credentials(recheckMs?: number): FrontendCredentials {
  return new FrontendCredentials({
    dir,
    ...(recheckMs !== undefined ? { recheckMs } : {}),
    logger: { warn: (_m: string, meta: Record<string, unknown>) => warnings.push(meta as { file: string; error: string }) },
    now: () => clock,
  });
}

async function add(name: string, platforms = ["discord"]): Promise<string> {
  const added = await addFrontend({ dir, name, platforms, unlinked: "restricted" });
  return fs.readFileSync(added.tokenFile, "utf8");
}

describe("issue #9: frontend credentials in the daemon", () => {
  it("matches a frontend's token (trimmed, either case) to its grant, and nothing else", async () => {
    const token = await add("discord-bot", ["discord", "web"]);
    const other = await add("web-bot", ["web"]);
    const creds = credentials();
    await creds.load();
    const grant = { name: "discord-bot", platforms: ["discord", "web"], unlinked: "restricted" };
    expect(await creds.match(token)).toEqual(grant);
    expect(await creds.match(` ${token.toUpperCase()}\n`)).toEqual(grant);
    expect(await creds.match(other)).toMatchObject({ name: "web-bot" });
    expect(await creds.match("0".repeat(64))).toBeUndefined();
    expect(await creds.match(token.slice(0, 63))).toBeUndefined();
    expect(await creds.match("not hex at all")).toBeUndefined();
    expect(creds.list().map((g) => g.name)).toEqual(["discord-bot", "web-bot"]);
  });

  it("a grant cannot be changed by its receiver", async () => {
    const token = await add("bot");
    const creds = credentials();
    (await creds.match(token))!.platforms.push("web");
    expect((await creds.match(token))!.platforms).toEqual(["discord"]);
  });

  it("no directory grants nothing; one created later is picked up", async () => {
    const creds = credentials();
    await creds.load();
    expect(await creds.match("a".repeat(64))).toBeUndefined();
    const token = await add("late");
    clock += 500;
    expect(await creds.match(token)).toMatchObject({ name: "late" });
  });

  it("skips a malformed file with a warning naming the file and line; the others keep working", async () => {
    const token = await add("good");
    const broken = frontendFile(dir, "broken");
    fs.writeFileSync(broken, 'name = "broken"\nplatforms = ["discord"]\nunlinked = "refuse"\ncreated_at = "2025-01-01T00:00:00Z"\ntoken_sha256 = "00"\n');
    fs.writeFileSync(frontendFile(dir, "misnamed"), fs.readFileSync(frontendFile(dir, "good"), "utf8"));
    const creds = credentials();
    await creds.load();
    expect(await creds.match(token)).toMatchObject({ name: "good" });
    expect(warnings).toEqual([
      { file: broken, error: `${broken}:5: field token_sha256: must be 64 lowercase hex characters (the SHA-256 of the token)` },
      { file: frontendFile(dir, "misnamed"), error: expect.stringMatching(/:3: field name: is "good" but the file is named for "misnamed"$/) },
    ]);
  });

  it("a removed credential admits no new handshake at once, without waiting for the recheck interval", async () => {
    const token = await add("bot");
    const creds = credentials();
    await creds.load();
    expect(await creds.match(token)).toMatchObject({ name: "bot" });
    await removeFrontend(dir, "bot");
    // The clock does not move: a hit is re-checked against the directory whatever the interval.
    expect(await creds.match(token)).toBeUndefined();
  });

  it("by default a credential added while running is accepted at once (every miss checks the directory)", async () => {
    await add("first");
    const creds = credentials();
    await creds.load();
    const token = await add("second");
    expect(await creds.match(token)).toMatchObject({ name: "second" });
  });

  it("with a recheck interval, a credential added while running is seen on the first check after it", async () => {
    await add("first");
    const creds = credentials(500);
    await creds.load();
    const token = await add("second");
    // Wrong tokens cost at most one directory check per interval: within it, the view is the one just read.
    clock += 100;
    expect(await creds.match(token)).toBeUndefined();
    clock += 400;
    expect(await creds.match(token)).toMatchObject({ name: "second" });
  });

  it("concurrent lookups share one read and all see the same answer", async () => {
    const tokens = await Promise.all(["a", "b", "c"].map((n) => add(n)));
    const creds = credentials();
    const grants = await Promise.all([...tokens, ...tokens].map((t) => creds.match(t)));
    expect(grants.map((g) => g?.name)).toEqual(["a", "b", "c", "a", "b", "c"]);
  });

  it("two files with the same token: the first by name wins, the other is reported", async () => {
    const token = await add("one");
    fs.writeFileSync(frontendFile(dir, "two"), fs.readFileSync(frontendFile(dir, "one"), "utf8").replace('name = "one"', 'name = "two"'));
    const creds = credentials();
    expect(await creds.match(token)).toMatchObject({ name: "one" });
    expect(warnings).toEqual([{ file: frontendFile(dir, "two"), error: expect.stringContaining('the same token as frontend "one"') }]);
  });

  it("a broken file is reported once, not at every re-read", async () => {
    await add("good");
    fs.writeFileSync(frontendFile(dir, "broken"), "[");
    const creds = credentials();
    await creds.load();
    await add("another");
    clock += 500;
    await creds.match("a".repeat(64));
    expect(warnings).toHaveLength(1);
  });
});
