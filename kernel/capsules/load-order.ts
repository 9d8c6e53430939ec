/**
 * Load order (reference §6.3): a topological sort of the discovered capsules on their `[imports]`/`[exports]`
 * (an exporter before every importer its version satisfies), uplinks first. Cycles and unmet imports are
 * reported, never fatal: a cycle falls back to discovery order.
 */
import semver from "semver";
import type { LoadedManifest } from "../../protocol/capsule-manifest";

/** What the sort found worth telling the operator. */
export interface LoadOrderReport<T extends LoadedManifest = LoadedManifest> {
  order: T[];
  /** Names caught in a dependency cycle (empty when none). */
  cycle: string[];
  /** `capsule needs ns/iface@range` lines for required imports nobody exports. */
  unmet: string[];
  /** The same for optional imports. */
  unmetOptional: string[];
  /** Interfaces more than one capsule exports. */
  duplicates: string[];
}

interface Want {
  key: string;
  range: string;
  optional: boolean;
}

function versionOf(spec: unknown): string | undefined {
  if (typeof spec === "string") return spec;
  if (spec && typeof spec === "object" && typeof (spec as { version?: unknown }).version === "string") return (spec as { version: string }).version;
  return undefined;
}

function imports(m: LoadedManifest): Want[] {
  return Object.entries(m.manifest.imports).flatMap(([ns, ifaces]) =>
    Object.entries(ifaces).map(([iface, spec]) => ({
      key: `${ns}/${iface}`,
      range: versionOf(spec) ?? "*",
      optional: Boolean(spec && typeof spec === "object" && (spec as { optional?: unknown }).optional === true),
    })),
  );
}

function exportsOf(m: LoadedManifest): Array<{ key: string; version: string }> {
  return Object.entries(m.manifest.exports).flatMap(([ns, ifaces]) =>
    Object.entries(ifaces).map(([iface, spec]) => ({ key: `${ns}/${iface}`, version: versionOf(spec) ?? "0.0.0" })),
  );
}

/** Sorts `capsules` (in discovery order) for loading. */
export function loadOrder<T extends LoadedManifest>(capsules: readonly T[]): LoadOrderReport<T> {
  const providers = new Map<string, Array<{ index: number; version: string }>>();
  capsules.forEach((m, index) => {
    for (const e of exportsOf(m)) {
      const list = providers.get(e.key) ?? [];
      list.push({ index, version: e.version });
      providers.set(e.key, list);
    }
  });
  const duplicates = [...providers.entries()].filter(([, l]) => l.length > 1).map(([k]) => k);
  const unmet: string[] = [];
  const unmetOptional: string[] = [];
  // Edges exporter → importer; Kahn's algorithm keeps discovery order among ready nodes.
  const dependents = capsules.map(() => new Set<number>());
  const indegree = capsules.map(() => 0);
  capsules.forEach((m, index) => {
    for (const want of imports(m)) {
      const satisfying = (providers.get(want.key) ?? []).filter((p) => p.index !== index && semver.satisfies(p.version, want.range));
      if (satisfying.length === 0) {
        (want.optional ? unmetOptional : unmet).push(`${m.manifest.package.name} needs ${want.key}@${want.range}`);
      }
      for (const p of satisfying) {
        if (!dependents[p.index]!.has(index)) {
          dependents[p.index]!.add(index);
          indegree[index]!++;
        }
      }
    }
  });
  const ready = capsules.map((_, i) => i).filter((i) => indegree[i] === 0);
  const sorted: number[] = [];
  while (ready.length > 0) {
    ready.sort((a, b) => a - b);
    const next = ready.shift()!;
    sorted.push(next);
    for (const d of dependents[next]!) if (--indegree[d]! === 0) ready.push(d);
  }
  let order: T[];
  let cycle: string[] = [];
  if (sorted.length < capsules.length) {
    cycle = capsules.filter((_, i) => indegree[i]! > 0).map((m) => m.manifest.package.name);
    order = [...capsules];
  } else {
    order = sorted.map((i) => capsules[i]!);
  }
  // Uplinks first, each group keeping its sorted order.
  order = [...order.filter((m) => m.manifest.capabilities.uplink), ...order.filter((m) => !m.manifest.capabilities.uplink)];
  return { order, cycle, unmet, unmetOptional, duplicates };
}
