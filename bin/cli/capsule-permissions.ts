/**
 * `astrid capsule permissions <name>`: which `[capabilities]` entries a capsule needs, from what it actually did.
 * It reads the audit log (read-only, so it works with the daemon stopped): every denied call is recorded, and a
 * daemon started with `--audit-permissions` records the allowed ones too — in the spirit of Deno's permission
 * prompts, run the capsule once under audit, then copy the entries it printed into its Capsule.toml.
 */
import type { AuditEntry } from "../../protocol/storage-messages";
import type { AstridHome } from "../../kernel/home";
import { capsuleEntries } from "../../storage/audit-chain";
import { openStateDatabaseReadOnly } from "../../storage/database";

/** The manifest lists a check can name, in the order Capsule.toml usually holds them. */
const MANIFEST_LISTS = ["ipc_publish", "ipc_subscribe", "kv", "fs_read", "fs_write", "net", "host_process", "net_connect", "net_bind", "net_tcp_bind", "net_udp"] as const;

/** One manifest entry the capsule needs, and how its checks went. */
export interface NeededEntry {
  list: string;
  target: string;
  allowed: number;
  /** Denied because the manifest lacks it. */
  denied: number;
}

/** A capability a principal lacked when the capsule acted for it. */
export interface PrincipalShortfall {
  principal: string;
  capability: string;
  denied: number;
}

/** What the audit log says the capsule needs. */
export interface PermissionReport {
  capsule: string;
  /** Entries recorded (allowed checks exist only when the daemon ran with --audit-permissions). */
  checks: number;
  entries: NeededEntry[];
  principals: PrincipalShortfall[];
}

/** Builds the report from the capsule's `permission_check` and `denied` audit entries. */
export function permissionReport(capsule: string, entries: readonly AuditEntry[]): PermissionReport {
  const needed = new Map<string, NeededEntry>();
  const shortfalls = new Map<string, PrincipalShortfall>();
  let checks = 0;
  for (const entry of entries) {
    const a = entry.action as Record<string, unknown>;
    const list = typeof a.manifest === "string" ? a.manifest : undefined;
    const target = typeof a.target === "string" ? a.target : undefined;
    if (!list || target === undefined) continue; // a denial from before checks named their list
    checks++;
    const allowed = a.change === "permission_check";
    // A principal's refusal comes after the manifest allowed the call: the entry is needed and present.
    const principalDenied = !allowed && typeof a.capability === "string" && !String(a.detail ?? "").startsWith("not in ");
    const key = `${list}\u0000${target}`;
    const item = needed.get(key) ?? { list, target, allowed: 0, denied: 0 };
    needed.set(key, item);
    if (allowed || principalDenied) item.allowed++;
    else item.denied++;
    if (principalDenied) {
      const principal = String(a.principal ?? entry.principal ?? "default");
      const sKey = `${principal}\u0000${String(a.capability)}`;
      const s = shortfalls.get(sKey) ?? { principal, capability: String(a.capability), denied: 0 };
      shortfalls.set(sKey, s);
      s.denied++;
    }
  }
  const order = (list: string) => (MANIFEST_LISTS as readonly string[]).indexOf(list);
  return {
    capsule,
    checks,
    entries: [...needed.values()].sort((x, y) => order(x.list) - order(y.list) || x.target.localeCompare(y.target)),
    principals: [...shortfalls.values()].sort((x, y) => x.principal.localeCompare(y.principal) || x.capability.localeCompare(y.capability)),
  };
}

/** Reads the report for `capsule` from the home's audit log. */
export function readPermissionReport(home: AstridHome, capsule: string): PermissionReport {
  const db = openStateDatabaseReadOnly(home.stateDbPath);
  try {
    return permissionReport(capsule, capsuleEntries(db, capsule, ["permission_check", "denied"]));
  } finally {
    db.close();
  }
}

/** The report as a person reads it: a `[capabilities]` block to paste, the denials marked. */
export function formatPermissionReport(report: PermissionReport): string {
  if (report.checks === 0) {
    return [
      `No permission checks are recorded for ${report.capsule}.`,
      "Start the daemon with `astrid-daemon --audit-permissions`, use the capsule, then run this again.",
    ].join("\n");
  }
  const lines = [`${report.capsule} made ${report.checks} recorded permission check(s). It needs:`, "", "[capabilities]"];
  for (const list of MANIFEST_LISTS) {
    const items = report.entries.filter((e) => e.list === list);
    if (items.length === 0) continue;
    lines.push(`${list} = [`);
    for (const e of items) lines.push(`  ${JSON.stringify(e.target)},${e.denied > 0 ? `  # missing: denied ${e.denied}×` : ""}`);
    lines.push("]");
  }
  if (report.principals.length > 0) {
    lines.push("", "Principals it acted for lacked capabilities (grant them with `astrid caps grant`, or leave them denied):");
    for (const p of report.principals) lines.push(`  ${p.principal}: ${p.capability} (denied ${p.denied}×)`);
  }
  return lines.join("\n");
}
