/** Issue #9: groups (reference §8.4): built-ins, etc/groups.toml, and the changes the admin API makes. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { BUILTIN_GROUPS, GroupStore, parseGroupsFile, serializeGroups } from "../../../../kernel/principals/groups";

let dir: string;
let file: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "astrid-groups-"));
  file = path.join(dir, "etc", "groups.toml");
  fs.mkdirSync(path.dirname(file));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const failure = (text: string) => {
  try {
    parseGroupsFile(text, "/h/etc/groups.toml");
  } catch (err) {
    return { code: (err as { code: string }).code, message: (err as Error).message };
  }
  return { code: "no error", message: "" };
};

describe("issue #9: groups", () => {
  it("has the built-ins of the reference", () => {
    expect(Object.fromEntries([...BUILTIN_GROUPS].map(([n, g]) => [n, g.capabilities]))).toEqual({
      admin: ["*"],
      agent: ["self:*", "self:quota:get", "self:agent:list", "delegate:self:*"],
      restricted: [],
    });
  });

  it("a missing file means the built-ins only", async () => {
    const store = await GroupStore.load(file);
    expect(store.snapshot().list().map((g) => [g.name, g.builtin])).toEqual([["admin", true], ["agent", true], ["restricted", true]]);
  });

  it("parses [groups.<name>] with defaults", () => {
    const groups = parseGroupsFile('[groups.ops]\ncapabilities = ["system:status"]\ndescription = "Ops"\n\n[groups.empty]\n', "f");
    expect(groups.get("ops")).toEqual({ name: "ops", capabilities: ["system:status"], description: "Ops", unsafe_admin: false });
    expect(groups.get("empty")).toEqual({ name: "empty", capabilities: [], unsafe_admin: false });
  });

  it("unknown keys are errors naming the file, line and key", () => {
    expect(failure('[groups.ops]\ncapabilities = []\ncolour = "red"\n')).toEqual({
      code: "ASTRID_ERR_GROUPS_INVALID", message: "/h/etc/groups.toml:3: unknown key groups.ops.colour (see docs/principals.md for the fields)",
    });
    expect(failure("[other]\n").message).toMatch(/unknown key other/);
  });

  it("malformed TOML names the line", () => {
    expect(failure('[groups.ops]\ncapabilities = ["a"\n')).toEqual({ code: "ASTRID_ERR_GROUPS_INVALID", message: expect.stringMatching(/^\/h\/etc\/groups\.toml:\d+:\d+: TOML syntax error/) });
  });

  it("built-ins cannot be defined, capabilities must pass the grammar, `*` needs unsafe_admin", () => {
    expect(failure('[groups.admin]\ncapabilities = ["*"]\n').message).toMatch(/\[groups\.admin\]: admin is a built-in group/);
    expect(failure('[groups.g]\ncapabilities = ["a b"]\n').message).toMatch(/capability "a b" rejected/);
    expect(failure('[groups.g]\ncapabilities = ["*"]\n').message).toMatch(/grants everything: set unsafe_admin = true/);
    expect(failure('[groups.g]\ncapabilities = ["*:*"]\n').message).toMatch(/grants everything/);
    expect(failure('[groups.g]\ncapabilities = ["*"]\nunsafe_admin = true\n').code).toBe("no error");
    expect(failure('[groups."bad name"]\ncapabilities = []\n').message).toMatch(/group name "bad name"/);
  });

  it("saves only custom groups, atomically with mode 0600, and round-trips", async () => {
    const store = await GroupStore.load(file);
    await store.create({ name: "ops", capabilities: ["system:status"], description: 'quote " and \u007f', unsafe_admin: false });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const text = fs.readFileSync(file, "utf8");
    expect(text).not.toMatch(/groups\.admin/);
    expect(parseGroupsFile(text, file).get("ops")).toEqual({ name: "ops", capabilities: ["system:status"], description: 'quote " and \u007f', unsafe_admin: false });
    expect(fs.readdirSync(path.dirname(file))).toEqual(["groups.toml"]);
    expect(parseGroupsFile(serializeGroups([]), "f").size).toBe(0);
  });

  it("create refuses built-ins and duplicates; modify and delete refuse built-ins and unknown names", async () => {
    const store = await GroupStore.load(file);
    await store.create({ name: "ops", capabilities: [], unsafe_admin: false });
    await expect(store.create({ name: "ops", capabilities: [], unsafe_admin: false })).rejects.toMatchObject({ code: "ASTRID_ERR_GROUP_REJECTED", message: "group.create rejected: group ops already exists" });
    await expect(store.create({ name: "agent", capabilities: [], unsafe_admin: false })).rejects.toThrow(/^group\.create rejected: agent is a built-in group/);
    for (const name of ["admin", "agent", "restricted"]) {
      await expect(store.modify(name, { capabilities: [] })).rejects.toThrow(/^group\.modify rejected: .* built-in/);
      await expect(store.delete(name)).rejects.toThrow(/^group\.delete rejected: .* built-in/);
    }
    await expect(store.modify("nope", {})).rejects.toThrow(/^group\.modify rejected: no group named "nope"/);
    await expect(store.delete("nope")).rejects.toThrow(/^group\.delete rejected: no group named "nope"/);
  });

  it("issue #9: modify clears the description with null and keeps it when absent", async () => {
    const store = await GroupStore.load(file);
    await store.create({ name: "ops", capabilities: ["a"], description: "Ops", unsafe_admin: false });
    await store.modify("ops", { capabilities: ["b"] });
    expect(store.snapshot().get("ops")).toEqual({ name: "ops", capabilities: ["b"], description: "Ops", unsafe_admin: false });
    await store.modify("ops", { description: null });
    expect(store.snapshot().get("ops")).toEqual({ name: "ops", capabilities: ["b"], unsafe_admin: false });
    expect((await GroupStore.load(file)).snapshot().get("ops")?.description).toBeUndefined();
  });

  it("a snapshot taken before a change stays as it was (a check sees one config)", async () => {
    const store = await GroupStore.load(file);
    const before = store.snapshot();
    await store.create({ name: "ops", capabilities: [], unsafe_admin: false });
    expect(before.get("ops")).toBeUndefined();
    expect(store.snapshot().get("ops")).toBeDefined();
  });

  it("a failed save changes nothing in memory", async () => {
    const store = await GroupStore.load(path.join(dir, "missing-dir", "sub", "groups.toml"));
    fs.writeFileSync(path.join(dir, "missing-dir"), "a file where a directory must be");
    await expect(store.create({ name: "ops", capabilities: [], unsafe_admin: false })).rejects.toThrow();
    expect(store.snapshot().get("ops")).toBeUndefined();
  });
});
