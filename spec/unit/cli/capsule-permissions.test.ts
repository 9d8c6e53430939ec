import type { AuditEntry } from "../../../protocol/storage-messages";
import { formatPermissionReport, permissionReport } from "../../../bin/cli/capsule-permissions";
import { kvEntryCovers } from "../../../kernel/capsules/syscall-gate";

function entry(action: Record<string, unknown>): AuditEntry {
  return {
    seq: 1, id: "x", timestamp: "t", session_id: "s", previous_hash: "", hash: "",
    action: { type: "capsule_lifecycle", capsule: "c", ...action }, authorization: { type: "system", reason: "kernel" },
    outcome: { status: "success", details: null },
  } as AuditEntry;
}

describe("kv manifest entries", () => {
  it.each([
    ["*", "anything", true],
    ["notes", "notes", true],
    ["notes", "notes2", false],
    ["history:*", "history:abc", true],
    ["history:*", "history:*", true],
    ["history:*", "*", false],
    ["history:*", "histor", false],
  ])("%s covers %s: %s", (entryText, target, expected) => {
    expect(kvEntryCovers(entryText, target)).toBe(expected);
  });
});

describe("permission report", () => {
  it("counts allowed and denied checks per list and target; a principal's refusal is not a missing entry", () => {
    const report = permissionReport("c", [
      entry({ change: "permission_check", manifest: "fs_read", target: "cwd://a", capability: "self:fs:read", principal: "default" }),
      entry({ change: "denied", manifest: "fs_read", target: "cwd://b", capability: "self:fs:read", detail: "not in fs_read", principal: "default" }),
      entry({ change: "denied", manifest: "fs_read", target: "cwd://a", capability: "self:fs:read", detail: "permission denied for principal bob: missing capability self:fs:read", principal: "bob" }),
      entry({ change: "denied", manifest: "ipc_publish", target: "x.y", capability: null, detail: "may not publish on x.y (not in ipc_publish)" }),
      // A denial recorded before denials named their list: skipped, not guessed.
      entry({ change: "denied", call: "ipc.publish", detail: "old" }),
    ]);
    expect(report.checks).toBe(4);
    expect(report.entries).toEqual([
      { list: "ipc_publish", target: "x.y", allowed: 0, denied: 1 },
      { list: "fs_read", target: "cwd://a", allowed: 2, denied: 0 },
      { list: "fs_read", target: "cwd://b", allowed: 0, denied: 1 },
    ]);
    expect(report.principals).toEqual([{ principal: "bob", capability: "self:fs:read", denied: 1 }]);
    const text = formatPermissionReport(report);
    expect(text).toContain('fs_read = [\n  "cwd://a",\n  "cwd://b",  # missing: denied 1×\n]');
    expect(text).toContain("bob: self:fs:read (denied 1×)");
  });
});
