/**
 * The rooms' import rules (docs: the architecture's "Rooms" table) checked over the source: which folder may import
 * which, and no import cycles. Every relative import, `export … from`, `require()` and `import()` of every .ts file
 * counts, `import type` too: a type-only edge ties two rooms together just the same.
 */
import fs from "node:fs";
import path from "node:path";
import ts from "typescript";

const root = path.resolve(__dirname, "..", "..", "..");

/** The folders whose files are checked. */
const ROOMS = ["protocol", "kernel", "workers", "capsule-host", "storage", "bin"];

/** Each file (path from the package root, `/`-separated) and the files of ours it imports. */
type ImportGraph = Map<string, string[]>;

function sourceFiles(dir: string): string[] {
  if (!fs.existsSync(path.join(root, dir))) return [];
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const rel = path.posix.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(rel);
    return entry.name.endsWith(".ts") ? [rel] : [];
  });
}

/** `spec`, imported from `file`, as a path from the root: the .ts file, a folder's index.ts, or the path as written. */
function resolve(file: string, spec: string): string {
  const base = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec)).replace(/\.js$/, "");
  return [`${base}.ts`, `${base}/index.ts`].find((c) => fs.existsSync(path.join(root, c))) ?? base;
}

/** Reads the imports with TypeScript's own pre-parser, so comments and strings that look like imports do not count. */
function importGraph(): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const file of ROOMS.flatMap(sourceFiles)) {
    const { importedFiles } = ts.preProcessFile(fs.readFileSync(path.join(root, file), "utf8"), true, true);
    graph.set(file, importedFiles.map((f) => f.fileName).filter((spec) => spec.startsWith(".")).map((spec) => resolve(file, spec)));
  }
  return graph;
}

const roomOf = (file: string) => file.split("/")[0]!;

/** What each room may import of ours besides itself; a room not listed here is checked against FORBIDDEN only. */
const ONLY: Record<string, string[]> = {
  protocol: [],
  storage: ["protocol"],
  "capsule-host": ["protocol"],
};

/** Rooms that must never import another room. */
const FORBIDDEN: Record<string, string[]> = {
  kernel: ["workers"],
  bin: ["workers"],
};

/** `from -> to` for every import that breaks a rule. */
function violations(graph: ImportGraph): string[] {
  const found: string[] = [];
  for (const [file, deps] of graph) {
    const room = roomOf(file);
    for (const dep of deps) {
      const target = roomOf(dep);
      if (target === room) continue;
      const only = ONLY[room];
      if ((only && !only.includes(target)) || FORBIDDEN[room]?.includes(target)) found.push(`${file} -> ${dep}`);
    }
  }
  return found.sort();
}

/** One cycle per back edge of a depth-first walk, each printed `a -> b -> a`. */
function cycles(graph: ImportGraph): string[] {
  const found: string[] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, "open");
    stack.push(file);
    for (const dep of graph.get(file) ?? []) {
      if (state.get(dep) === "open") found.push([...stack.slice(stack.indexOf(dep)), dep].join(" -> "));
      else if (!state.has(dep) && graph.has(dep)) visit(dep);
    }
    stack.pop();
    state.set(file, "done");
  };
  for (const file of [...graph.keys()].sort()) if (!state.has(file)) visit(file);
  return found;
}

describe("import graph", () => {
  const graph = importGraph();

  it("reads the imports of the real source", () => {
    // A reader that found nothing would let every rule below pass.
    expect(graph.size).toBeGreaterThan(40);
    expect(graph.get("kernel/storage-client.ts")).toEqual(expect.arrayContaining(["protocol/errors.ts", "protocol/storage-messages.ts"]));
  });

  it("keeps every room to the rooms it may import", () => {
    expect(violations(graph)).toEqual([]);
  });

  it("has no import cycles", () => {
    expect(cycles(graph)).toEqual([]);
  });

  it("flags a forbidden import and prints a cycle (the checks themselves)", () => {
    const fake: ImportGraph = new Map([
      ["kernel/a.ts", ["workers/b.ts", "protocol/c.ts"]],
      ["workers/b.ts", ["storage/d.ts"]],
      ["storage/d.ts", ["kernel/a.ts", "protocol/c.ts"]],
      ["protocol/c.ts", []],
      ["capsule-host/e.ts", ["capsule-host/f.ts", "kernel/a.ts"]],
      ["capsule-host/f.ts", ["protocol/c.ts"]],
    ]);
    expect(violations(fake)).toEqual(["capsule-host/e.ts -> kernel/a.ts", "kernel/a.ts -> workers/b.ts", "storage/d.ts -> kernel/a.ts"]);
    expect(cycles(fake)).toEqual(["kernel/a.ts -> workers/b.ts -> storage/d.ts -> kernel/a.ts"]);
  });
});
