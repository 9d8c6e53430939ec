/** Issue #9: adding, removing and listing frontend credentials on disk. */
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { addFrontend, defaultTokenFile, frontendFile, listFrontends, removeFrontend } from "../../../../kernel/frontends/frontend-store";

let root: string;
let dir: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "astrid-fe-"));
  dir = path.join(root, "etc", "frontends");
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const mode = (p: string) => fs.statSync(p).mode & 0o777;
const code = (p: Promise<unknown>) => p.then(() => "resolved", (e: { code: string }) => e.code);

describe("issue #9: frontend credentials on disk", () => {
  it("add writes a 0600 credential holding only the token's digest, and a 0600 token file", async () => {
    const added = await addFrontend({ dir, name: "discord-bot", platforms: ["discord", "discord", "web"], now: new Date("2025-01-01T00:00:00Z") });
    expect(mode(dir)).toBe(0o700);
    expect(added.file).toBe(frontendFile(dir, "discord-bot"));
    expect(added.tokenFile).toBe(defaultTokenFile(dir, "discord-bot"));
    expect(mode(added.file)).toBe(0o600);
    expect(mode(added.tokenFile)).toBe(0o600);
    const token = fs.readFileSync(added.tokenFile, "utf8");
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    const text = fs.readFileSync(added.file, "utf8");
    expect(text).not.toContain(token);
    expect(added.record).toEqual({
      name: "discord-bot",
      platforms: ["discord", "web"],
      unlinked: "refuse",
      created_at: "2025-01-01T00:00:00.000Z",
      token_sha256: createHash("sha256").update(Buffer.from(token, "hex")).digest("hex"),
    });
    // No temp file is left beside them.
    expect(fs.readdirSync(dir).sort()).toEqual(["discord-bot.token", "discord-bot.toml"]);
  });

  it("two adds make two different tokens", async () => {
    const a = await addFrontend({ dir, name: "a", platforms: ["web"] });
    const b = await addFrontend({ dir, name: "b", platforms: ["web"] });
    expect(fs.readFileSync(a.tokenFile, "utf8")).not.toBe(fs.readFileSync(b.tokenFile, "utf8"));
  });

  it("refuses a bad name, platform or policy, and a name already taken, leaving the existing files alone", async () => {
    await expect(addFrontend({ dir, name: "default", platforms: ["web"] })).rejects.toMatchObject({ code: "ASTRID_ERR_FRONTEND_INVALID", message: expect.stringContaining("reserved") });
    await expect(addFrontend({ dir, name: "../x", platforms: ["web"] })).rejects.toMatchObject({ code: "ASTRID_ERR_FRONTEND_INVALID" });
    await expect(addFrontend({ dir, name: "x", platforms: ["Web"] })).rejects.toMatchObject({ code: "ASTRID_ERR_FRONTEND_INVALID", message: expect.stringMatching(/^--platform: must be 1-32 characters .* \(item 1\)$/) });
    await expect(addFrontend({ dir, name: "x", platforms: ["web"], unlinked: "all" as never })).rejects.toMatchObject({ code: "ASTRID_ERR_FRONTEND_INVALID", message: expect.stringMatching(/^--unlinked:/) });
    const first = await addFrontend({ dir, name: "bot", platforms: ["web"] });
    const token = fs.readFileSync(first.tokenFile, "utf8");
    await expect(addFrontend({ dir, name: "bot", platforms: ["discord"] })).rejects.toMatchObject({ code: "ASTRID_ERR_FRONTEND_INVALID", message: expect.stringContaining("already exists") });
    expect(fs.readFileSync(first.tokenFile, "utf8")).toBe(token);
    expect((await listFrontends(dir)).frontends.map((f) => f.platforms)).toEqual([["web"]]);
  });

  it("--token-file writes there, never over an existing file, and remove deletes it too", async () => {
    const custom = path.join(root, "bot.secret");
    const added = await addFrontend({ dir, name: "bot", platforms: ["web"], tokenFile: custom });
    expect(added.tokenFile).toBe(custom);
    expect(mode(custom)).toBe(0o600);
    expect(added.record.token_file).toBe(custom);
    expect(fs.existsSync(defaultTokenFile(dir, "bot"))).toBe(false);

    const taken = path.join(root, "taken");
    fs.writeFileSync(taken, "precious");
    await expect(addFrontend({ dir, name: "other", platforms: ["web"], tokenFile: taken })).rejects.toMatchObject({ code: "ASTRID_ERR_FRONTEND_INVALID", message: expect.stringContaining("already exists") });
    expect(fs.readFileSync(taken, "utf8")).toBe("precious");
    expect(fs.existsSync(frontendFile(dir, "other"))).toBe(false);

    expect(await removeFrontend(dir, "bot")).toEqual({ name: "bot", file: frontendFile(dir, "bot"), tokenFilesRemoved: [custom] });
    expect(fs.existsSync(custom)).toBe(false);
  });

  it("remove deletes the credential and its token; a second remove is NOT_FOUND", async () => {
    const added = await addFrontend({ dir, name: "bot", platforms: ["web"] });
    const removed = await removeFrontend(dir, "bot");
    expect(removed.tokenFilesRemoved).toEqual([added.tokenFile]);
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(await code(removeFrontend(dir, "bot"))).toBe("ASTRID_ERR_NOT_FOUND");
    expect(await code(removeFrontend(dir, "../../etc/passwd"))).toBe("ASTRID_ERR_FRONTEND_INVALID");
  });

  it("remove deletes a malformed credential too", async () => {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(frontendFile(dir, "broken"), "this is not toml [");
    await expect(removeFrontend(dir, "broken")).resolves.toMatchObject({ name: "broken" });
    expect(fs.existsSync(frontendFile(dir, "broken"))).toBe(false);
  });

  it("list is sorted and names each malformed file with its line; no directory lists nothing", async () => {
    expect(await listFrontends(dir)).toEqual({ frontends: [], problems: [] });
    await addFrontend({ dir, name: "zeta", platforms: ["web"] });
    await addFrontend({ dir, name: "alpha", platforms: ["discord"], unlinked: "agent" });
    fs.writeFileSync(frontendFile(dir, "broken"), 'name = "broken"\nplatforms = ["web"]\nsurprise = 1\n');
    const listing = await listFrontends(dir);
    expect(listing.frontends.map((f) => [f.name, f.unlinked])).toEqual([["alpha", "agent"], ["zeta", "refuse"]]);
    expect(listing.problems).toEqual([`${frontendFile(dir, "broken")}:3: field surprise: unknown key (not allowed in a frontend credential)`]);
  });
});
