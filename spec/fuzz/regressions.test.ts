/**
 * Counterexamples the fuzz tests found (shrunk by fast-check), kept as plain tests so they run whatever the seed.
 */
import { assertCapability } from "../../protocol/capability";
import { fieldLine } from "../../protocol/capsule-manifest";
import { parseFrameJson } from "../../protocol/framing";
import { normalizePayload } from "../../protocol/ipc-message";
import { parseServersConfig } from "../../kernel/mcp/servers-config";
import { groupProblem, parseGroupsFile, serializeGroups } from "../../kernel/principals/groups";
import { parseProfile } from "../../kernel/principals/profiles";
import { gateWithRun } from "./fake-gate";

const codeOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code ?? `uncoded ${String((err as Error).name)}`;
  }
  return "no error";
};

describe("fuzz regressions", () => {
  it("issue #16: a frame body that is JSON but not UTF-8 is refused, not read with U+FFFD in it", () => {
    // {"<0x80>_proto__":null}: a lone continuation byte inside a string.
    const body = Buffer.from([123, 34, 128, 95, 112, 114, 111, 116, 111, 95, 95, 34, 58, 110, 117, 108, 108, 125]);
    expect(codeOf(() => parseFrameJson(body))).toBe("ASTRID_ERR_FRAME_INVALID_JSON");
    expect(parseFrameJson(Buffer.from('{"é":"✓"}'))).toEqual({ "é": "✓" });
  });

  it("issue #16: a payload whose type names an Object.prototype member is custom, not a TypeError", () => {
    for (const type of ["__proto__", "toString", "constructor", "hasOwnProperty"]) {
      expect(normalizePayload(JSON.parse(`{"type":${JSON.stringify(type)}}`))).toEqual({ type: "custom", data: { type } });
    }
  });

  it("issue #16: assertCapability of an object without a usable toString is a coded refusal", () => {
    expect(codeOf(() => assertCapability(Object.create(null)))).toBe("ASTRID_ERR_CAPABILITY_INVALID");
    expect(codeOf(() => assertCapability(JSON.parse('{"toString":1}')))).toBe("ASTRID_ERR_CAPABILITY_INVALID");
    expect(() => assertCapability(5)).toThrow('capability 5 rejected');
  });

  it("issue #16: a capsule publish whose payload JSON cannot hold (BigInt, a cycle) is REQUEST_INVALID", () => {
    const { gate, run, published } = gateWithRun();
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(codeOf(() => gate.publish(run, "ipc.publish", "a.b", [0n], "default"))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(codeOf(() => gate.publish(run, "ipc.publish", "a.b", cyclic, "default"))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(published).toEqual([]);
  });

  it("issue #16: a capsule call named by an object with a bad toString is REQUEST_INVALID, not INTERNAL", async () => {
    const { gate, run } = gateWithRun();
    const result = await gate.forRun(() => run).syscall(JSON.parse('{"toString":1}') as never, [], null);
    expect(result).toEqual({ ok: false, code: "ASTRID_ERR_REQUEST_INVALID", message: "unknown capsule call (object) or bad arguments" });
  });

  it("issue #16: the TOML line finder is linear on a long line of `[` and blanks (it backtracked cubically)", () => {
    // Valid TOML: a nested array whose first line has no `]`. 1000 blanks took 2 s; 20 000 would take hours.
    const text = `[groups.g]\ncapabilities = [\n[${" ".repeat(20_000)}"x",\n"y"],\n]\n`;
    const started = performance.now();
    expect(fieldLine(text, ["groups", "g", "capabilities", "0"])).toBe(2);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(codeOf(() => parseGroupsFile(text, "groups.toml"))).toBe("ASTRID_ERR_GROUPS_INVALID");
    expect(fieldLine("[ package ]\nname = 1\n[[ topic ]]\nname = 2\n", ["topic", "0", "name"])).toBe(4);
  });

  it("issue #16: a `__proto__` table name is refused with the file's code, not dropped silently", () => {
    expect(codeOf(() => parseServersConfig('[servers.__proto__]\ncommand = "a"\n', "servers.toml"))).toBe("ASTRID_ERR_MCP_CONFIG_INVALID");
    expect(() => parseServersConfig('[servers.__proto__]\ncommand = "a"\n', "servers.toml")).toThrow("servers.toml:1: servers.__proto__");
    expect(codeOf(() => parseGroupsFile("[groups.__proto__]\ncapabilities = []\n", "groups.toml"))).toBe("ASTRID_ERR_GROUPS_INVALID");
    expect(codeOf(() => parseProfile("[quotas.__proto__]\n", "p.toml"))).toBe("ASTRID_ERR_PROFILE_INVALID");
    // GroupCreate's check: the writer's table could not hold the group, so it would be gone after a restart.
    const group = { name: "__proto__", capabilities: [], unsafe_admin: false };
    expect(groupProblem(group)).toMatch(/reserved/);
    expect(serializeGroups([{ ...group, name: "ok" }])).toContain("[groups.ok]");
  });
});
