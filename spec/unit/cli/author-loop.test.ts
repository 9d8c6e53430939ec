/**
 * The pure parts of the capsule author's commands: names, `--since`, log filters, `<capsule>.<tool>`, where a
 * load error points, and the reload lines `astrid chat` prints.
 */
import { errorLocation } from "../../../kernel/capsules/reconciler";
import { checkCapsuleName } from "../../../bin/cli/capsule-scaffold";
import { templateNames } from "../../../bin/cli/capsule-templates";
import { formatEntry, matches, parseSince } from "../../../bin/cli/logs";
import { describeReloadEvent } from "../../../bin/cli/reload-events";
import { splitTarget } from "../../../bin/cli/tool";

describe("capsule names", () => {
  it("accepts what the manifest accepts and refuses the rest as usage errors", () => {
    for (const ok of ["a", "greeter", "my-capsule", "9lives", "x".repeat(64)]) expect(() => checkCapsuleName(ok)).not.toThrow();
    for (const bad of ["", "bad name!", "Upper", "-dash", "a_b", "a/b", "..", "x".repeat(65)]) {
      expect(() => checkCapsuleName(bad)).toThrow(expect.objectContaining({ code: "ASTRID_ERR_INVALID_ARGUMENT", exitCode: 2 }));
    }
  });

  it("derives a command, a tool usable as a function name, and a class name", () => {
    expect(templateNames("my-capsule")).toEqual({ name: "my-capsule", command: "my-capsule", tool: "my_capsule_greet", className: "MyCapsule" });
    expect(templateNames("9lives").className).toBe("Capsule9lives");
  });
});

describe("astrid logs filters", () => {
  const now = Date.parse("2026-01-31T12:00:00Z");
  it("--since takes a date/time or a duration back", () => {
    expect(parseSince("10m", now)).toBe(now - 600_000);
    expect(parseSince("2h", now)).toBe(now - 7_200_000);
    expect(parseSince("1d", now)).toBe(now - 86_400_000);
    expect(parseSince("2026-01-01T00:00:00Z", now)).toBe(Date.parse("2026-01-01T00:00:00Z"));
    expect(() => parseSince("soon", now)).toThrow(expect.objectContaining({ exitCode: 2 }));
  });

  it("filters by level (and more severe), capsule and time", () => {
    const entry = { level: "warn", message: "m", timestamp: "2026-01-31T11:00:00Z", capsule: "c" };
    expect(matches(entry, { level: "warn" })).toBe(true);
    expect(matches(entry, { level: "error" })).toBe(false);
    expect(matches(entry, { level: "debug" })).toBe(true);
    expect(matches(entry, { capsule: "c" })).toBe(true);
    expect(matches({ ...entry, capsule: undefined, capsule_id: "c" }, { capsule: "c" })).toBe(true);
    expect(matches(entry, { capsule: "d" })).toBe(false);
    expect(matches(entry, { since: Date.parse("2026-01-31T10:00:00Z") })).toBe(true);
    expect(matches(entry, { since: Date.parse("2026-01-31T11:30:00Z") })).toBe(false);
  });

  it("formats an entry for people", () => {
    expect(formatEntry({ level: "info", message: "hi", timestamp: "2026-01-31T11:00:00.123Z", capsule: "c", n: 1 })).toBe('2026-01-31 11:00:00.123 INFO  [c] hi {"n":1}');
  });
});

describe("tool targets", () => {
  it("splits <capsule>.<tool> at the first dot and refuses anything else", () => {
    expect(splitTarget("greeter.greeter_greet")).toEqual({ capsule: "greeter", tool: "greeter_greet" });
    expect(splitTarget("c.a.b")).toEqual({ capsule: "c", tool: "a.b" });
    for (const bad of [undefined, "greeter", ".x", "x."]) expect(() => splitTarget(bad)).toThrow(expect.objectContaining({ exitCode: 2 }));
  });
});

describe("reload events", () => {
  it("finds the file and line of a syntax or manifest error, else nulls", () => {
    expect(errorLocation("cannot prepare its start: /w/c/index.js:36:8: syntax error: x", "/w/c")).toEqual({ file: "/w/c/index.js", line: 36 });
    expect(errorLocation("/w/c/Capsule.toml:3: field package.name: must match", "/w/c")).toEqual({ file: "/w/c/Capsule.toml", line: 3 });
    expect(errorLocation("index.js:2:1: syntax error", "/w/c")).toEqual({ file: "/w/c/index.js", line: 2 });
    expect(errorLocation("failed to load: boom", "/w/c")).toEqual({ file: null, line: null });
  });

  it("describes them for astrid chat", () => {
    expect(describeReloadEvent("astrid.v1.capsule.reloaded", { name: "c", old_version: "1.0.0", new_version: "1.1.0", ms: 12 })).toBe("astrid: reloaded c 1.0.0 → 1.1.0 in 12 ms");
    expect(describeReloadEvent("astrid.v1.capsule.reload_failed", { name: "c", file: "/c/i.js", line: 3, message: "bad\n  ^" })).toBe("astrid: reload of c failed (/c/i.js:3): bad\n    ^");
    expect(describeReloadEvent("astrid.v1.capsule.reload_failed", { name: "c", file: null, line: null, message: "boom" })).toBe("astrid: reload of c failed: boom");
    expect(describeReloadEvent("agent.v1.response", {})).toBeUndefined();
  });
});
