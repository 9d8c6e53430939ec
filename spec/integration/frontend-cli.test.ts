/**
 * Issue #9: `astrid frontend add|remove|list` as a user runs them, and the file lifecycle as the daemon's
 * credential loader sees it: a token added by the CLI is accepted, and refused the moment it is removed.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { FrontendCredentials } from "../../kernel/frontends/frontend-credentials";
import { CLI_BIN, cleanup, tempHome } from "../helpers/daemon";

afterAll(cleanup);

function astrid(home: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: home }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("exit", (code) => resolve({ code, out, err }));
  });
}

const mode = (p: string) => fs.statSync(p).mode & 0o777;

describe("issue #9: astrid frontend", () => {
  it("add → accepted by the daemon's loader → remove → refused at once", async () => {
    const home = tempHome();
    const warnings: unknown[] = [];
    const creds = new FrontendCredentials({ dir: path.join(home, "etc", "frontends"), logger: { warn: (...a: unknown[]) => warnings.push(a) } });
    await creds.load();

    const added = await astrid(home, ["frontend", "add", "discord-bot", "--platform", "discord", "--unlinked", "agent", "--json"]);
    expect(added.code).toBe(0);
    const info = JSON.parse(added.out) as { name: string; platforms: string[]; unlinked: string; token_file: string; file: string };
    expect(info).toMatchObject({ name: "discord-bot", platforms: ["discord"], unlinked: "agent", token_file: path.join(home, "etc", "frontends", "discord-bot.token") });
    expect(mode(info.file)).toBe(0o600);
    expect(mode(info.token_file)).toBe(0o600);
    expect(added.out).not.toMatch(/[0-9a-f]{64}"/); // the token is never printed, only where it is
    const token = fs.readFileSync(info.token_file, "utf8");

    // The loader's 500 ms recheck interval for unknown tokens.
    await new Promise((r) => setTimeout(r, 550));
    expect(await creds.match(token)).toEqual({ name: "discord-bot", platforms: ["discord"], unlinked: "agent" });

    const removed = await astrid(home, ["frontend", "remove", "discord-bot"]);
    expect(removed).toMatchObject({ code: 0, out: expect.stringMatching(/^Removed frontend discord-bot /) });
    expect(fs.existsSync(info.token_file)).toBe(false);
    expect(await creds.match(token)).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it("a malformed file is skipped by the loader with its file and line, and named by list; the others work", async () => {
    const home = tempHome();
    expect((await astrid(home, ["frontend", "add", "web-bot", "--platform", "web", "--token-file", path.join(home, "web.token")])).code).toBe(0);
    const broken = path.join(home, "etc", "frontends", "broken.toml");
    fs.writeFileSync(broken, 'name = "broken"\nplatforms = ["discord"]\nunlinked = "sometimes"\n');
    const warnings: Array<Record<string, unknown>> = [];
    const creds = new FrontendCredentials({ dir: path.join(home, "etc", "frontends"), logger: { warn: (_m, meta) => warnings.push(meta) } });
    expect(await creds.match(fs.readFileSync(path.join(home, "web.token"), "utf8"))).toMatchObject({ name: "web-bot" });
    expect(warnings).toEqual([{ file: broken, error: expect.stringMatching(new RegExp(`^${broken}:3: field unlinked: `)) }]);

    const list = await astrid(home, ["frontend", "list"]);
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/^NAME +PLATFORMS +UNLINKED +CREATED\nweb-bot +web +refuse +\d{4}-\d\d-\d\dT/);
    expect(list.err).toMatch(new RegExp(`^skipped: ${broken}:3: field unlinked: `));
    expect(JSON.parse((await astrid(home, ["frontend", "list", "--json"])).out)).toMatchObject({ frontends: [{ name: "web-bot", token_file: path.join(home, "web.token") }], problems: [expect.stringContaining(broken)] });
  });

  it("refuses bad input with a code, and writes nothing after a usage error", async () => {
    const home = tempHome();
    // Issue #12: usage errors (a missing option, a bad choice, an unknown option) exit 2; refusals 1.
    const cases: Array<[string[], RegExp, number?]> = [
      [["frontend", "add", "default", "--platform", "web"], /reserved for the operator \[ASTRID_ERR_FRONTEND_INVALID\]/],
      [["frontend", "add", "a.b", "--platform", "web"], /must be 1-64 characters of \[A-Za-z0-9_-\] \(a principal id\) \[ASTRID_ERR_FRONTEND_INVALID\]/],
      [["frontend", "add", "bot"], /needs at least one --platform .*\[ASTRID_ERR_INVALID_ARGUMENT\]/, 2],
      [["frontend", "add", "bot", "--platform", "Web"], /--platform: must be 1-32 characters of \[a-z0-9_-\] \(item 1\) \[ASTRID_ERR_FRONTEND_INVALID\]/],
      [["frontend", "add", "bot", "--platform", "web", "--unlinked", "everyone"], /Invalid values:[\s\S]*\[ASTRID_ERR_INVALID_ARGUMENT\]/, 2],
      [["frontend", "add", "bot", "--platform", "web", "--bogus"], /Unknown argument: bogus .*\[ASTRID_ERR_INVALID_ARGUMENT\]/, 2],
      [["frontend", "remove", "nobody"], /no frontend named "nobody" .*\[ASTRID_ERR_NOT_FOUND\]/],
    ];
    for (const [args, message, code = 1] of cases) {
      const r = await astrid(home, args);
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.err).toMatch(message);
    }
    const dir = path.join(home, "etc", "frontends");
    expect(fs.existsSync(dir) ? fs.readdirSync(dir) : []).toEqual([]);
    expect(await astrid(home, ["frontend", "list"])).toEqual({ code: 0, out: "", err: "No frontends. Add one with `astrid frontend add NAME --platform PLATFORM`.\n" });
  });

  it("adding a name twice keeps the first token", async () => {
    const home = tempHome();
    expect((await astrid(home, ["frontend", "add", "bot", "--platform", "web"])).code).toBe(0);
    const tokenFile = path.join(home, "etc", "frontends", "bot.token");
    const token = fs.readFileSync(tokenFile, "utf8");
    const again = await astrid(home, ["frontend", "add", "bot", "--platform", "discord"]);
    expect(again.err).toMatch(/frontend "bot" already exists .* \[ASTRID_ERR_FRONTEND_INVALID\]/);
    expect(fs.readFileSync(tokenFile, "utf8")).toBe(token);
  });
});
