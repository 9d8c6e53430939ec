/**
 * Fuzzing the TOML files the daemon reads: a capsule's Capsule.toml, `etc/servers.toml`, `etc/profiles/<p>.toml`
 * and `etc/groups.toml`. Texts are random fragments, or valid documents (written by smol-toml from generated
 * values) with a line dropped, doubled or spliced with junk. Each parser returns or throws its one coded error;
 * a valid document reads back as the values it was written from; profiles and groups re-read what they write.
 */
import fc from "fast-check";
import { stringify as stringifyToml } from "smol-toml";
import { fieldLine, parseManifest } from "../../protocol/capsule-manifest";
import { parseServersConfig } from "../../kernel/mcp/servers-config";
import { parseGroupsFile, serializeGroups, type Group } from "../../kernel/principals/groups";
import { parseProfile, serializeProfile, type Profile } from "../../kernel/principals/profiles";
import { FUZZ_TIMEOUT_MS, hostileKey, hostileString, returnsOrThrowsCoded, runs } from "./fuzz-helpers";

/** Lines and pieces TOML parsers and our line finder trip on. */
const FRAGMENTS = [
  "[package]", "[capabilities]", "[[topic]]", "[[interceptor]]", "[[mcp_server]]", "[[component]]", "[servers.a]", "[servers]",
  "[groups.g]", "[groups]", "[quotas]", "[auth]", "[network]", "[process]", "[imports.astrid]", "[env]", "[a.b.c]", "[[ a ]]", "[ \"q.k\" ]",
  'name = "x"', 'version = "1.0.0"', 'version = "1.0"', "name = 1", "agent = true", "event = \"a.b\"", 'action = "go"', "priority = 1.5",
  'command = "npx"', "args = []", 'args = ["-y", 1]', "env = { A = \"b\" }", 'transport = "sse"', 'url = "http://x"', 'restart_policy = { on_failure = { max_retries = 3 } }',
  'capabilities = ["*"]', 'capabilities = ["a:*", "b"]', "unsafe_admin = true", 'grants = ["self:*"]', 'revokes = ["a::b"]', 'groups = ["admin"]',
  "profile_version = 2", "enabled = false", "max_timeout_secs = 0", "max_memory_bytes = 99999999999999999999", 'ipc_publish = ["a..b", "*"]',
  '"""', "'''", 'description = """', 'x = """a', "= 1", "a =", "a.b.c = 1", '"quoted.key" = 1', "a = 1979-05-27T07:32:00Z", "a = inf", "a = nan",
  "a = 0x1F", "a = 1_000", "# comment", "", " ", "\t", "\r", "\u0000", "[", "]", "[[", "]]", "=", "{", "}", "a = { b = 1, b = 2 }", "a = 1\na = 2",
  "[package]\n[package]", "__proto__ = 1", "[__proto__]", "constructor = 1", "[toString]",
];

/** Long lines of brackets, dots, quotes and blanks: a line finder that backtracks badly hangs on them. */
const longLine = fc
  .tuple(fc.constantFrom("[", "[[", "[ a", "a = [", "a .", "a", '"', "'''"), fc.integer({ min: 500, max: 4000 }), fc.constantFrom(" ", " .", "\t", "a", "[ "), fc.constantFrom("", "x", "]", "]]", '"x",', "= 1"))
  .map(([head, n, unit, tail]) => `${head}${unit.repeat(Math.ceil(n / unit.length))}${tail}`);

/** Random texts: fragments, hostile strings and long lines on lines. */
const fragmentText = fc
  .array(fc.oneof({ arbitrary: fc.constantFrom(...FRAGMENTS), weight: 8 }, { arbitrary: hostileString, weight: 2 }, { arbitrary: longLine, weight: 1 }), { maxLength: 14 })
  .map((lines) => lines.join("\n"));

/** A text edited the way a hurried human or a truncated write would: a line dropped, doubled, cut, or spliced. */
function mutated(text: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const edit = fc.tuple(fc.constantFrom("drop", "double", "cut", "splice", "none"), fc.nat(), fc.constantFrom(...FRAGMENTS));
  return fc.tuple(text, fc.array(edit, { maxLength: 3 })).map(([t, edits]) => {
    let lines = t.split("\n");
    for (const [kind, at, fragment] of edits) {
      const i = at % Math.max(1, lines.length);
      if (kind === "drop") lines.splice(i, 1);
      else if (kind === "double") lines.splice(i, 0, lines[i] ?? "");
      else if (kind === "cut") lines = lines.join("\n").slice(0, at % (lines.join("\n").length + 1)).split("\n");
      else if (kind === "splice") lines.splice(i, 0, fragment);
    }
    return lines.join("\n");
  });
}

const word = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/);
const safeText = fc.string({ unit: "grapheme-ascii", maxLength: 16 });
const topic = fc.array(fc.constantFrom("a", "b", "v1", "*"), { minLength: 1, maxLength: 4 }).map((s) => s.join("."));
const capability = fc.array(fc.constantFrom("self", "capsule", "a", "b-c", "*"), { minLength: 1, maxLength: 3 }).map((s) => s.join(":"));
const principal = fc.stringMatching(/^[A-Za-z0-9_-]{1,16}$/);
/** Names of tables keyed by name (`__proto__` is refused there: see protoKeyPath). */
const tableName = principal.filter((n) => n !== "__proto__");
/** A TOML value of any type, for putting the wrong type under a known key. */
const tomlScalar = fc.oneof(fc.integer(), fc.boolean(), safeText, fc.array(fc.oneof(safeText, fc.integer()), { maxLength: 3 }), fc.double({ noNaN: true, noDefaultInfinity: true }));

/** A document built by smol-toml from `value` (tables and arrays of tables included). */
const toml = (value: fc.Arbitrary<Record<string, unknown>>) => value.map((v) => stringifyToml(v));

/** Every parser: a text gives a value, or throws `code` and nothing else. */
function fuzzParser(name: string, texts: fc.Arbitrary<string>, code: string, parse: (text: string) => unknown, numRuns: number): void {
  it(`${name}: any text parses or is ${code}; fieldLine never throws and names a real line`, () => {
    fc.assert(
      fc.property(texts, fc.array(fc.oneof(hostileKey, fc.nat(3).map(String)), { maxLength: 4 }), (text, field) => {
        returnsOrThrowsCoded(() => parse(text), [code]);
        const line = fieldLine(text, field);
        if (line !== undefined) expect(line >= 1 && line <= text.split(/\r?\n/).length).toBe(true);
      }),
      runs(numRuns),
    );
  }, FUZZ_TIMEOUT_MS);
}

// ---- Capsule.toml ---------------------------------------------------------------------------------------------

const validManifest = fc.record({
  package: fc.record({ name: word, version: fc.constantFrom("0.1.0", "1.2.3-beta.1", "10.0.0+build"), description: safeText, agent: fc.boolean() }, { requiredKeys: ["name", "version"] }),
  capabilities: fc.record({
    uplink: fc.boolean(), net: fc.array(safeText, { maxLength: 2 }), kv: fc.array(safeText, { maxLength: 2 }),
    ipc_publish: fc.array(topic, { maxLength: 3 }), ipc_subscribe: fc.array(topic, { maxLength: 3 }), model: fc.boolean(),
    mcp: fc.array(fc.stringMatching(/^[A-Za-z0-9_-]{1,10}$/), { maxLength: 2 }),
  }, { requiredKeys: [] }),
  command: fc.array(fc.record({ name: word, description: safeText }), { maxLength: 2 }),
  interceptor: fc.array(fc.record({ event: topic, action: word, priority: fc.integer({ min: -5, max: 500 }) }), { maxLength: 2 }),
  mcp_server: fc.uniqueArray(fc.record({ id: fc.stringMatching(/^[a-z0-9_-]{1,10}$/), command: word, args: fc.array(safeText, { maxLength: 2 }) }), { selector: (s) => s.id, maxLength: 2 }),
  component: fc.constantFrom([], [{ id: "main", file: "index.js" }], [{ id: "", entrypoint: "lib/main.js" }]),
  env: fc.dictionary(word, safeText, { maxKeys: 2 }),
});

/** Valid structures with one wrong-typed or hostile value dropped in somewhere. */
const damagedManifest = fc.tuple(validManifest, fc.constantFrom("package", "capabilities", "command", "interceptor", "mcp_server", "topic", "imports", "component"), hostileKey, tomlScalar)
  .map(([m, table, key, value]) => {
    const copy = JSON.parse(JSON.stringify(m)) as Record<string, unknown>;
    const target = copy[table];
    if (Array.isArray(target) && target.length > 0) Object.defineProperty(target[0] as object, key, { value, enumerable: true });
    else if (target && typeof target === "object" && !Array.isArray(target)) Object.defineProperty(target, key, { value, enumerable: true });
    else copy[table] = value;
    return copy;
  });

const manifestTexts = fc.oneof(fragmentText, mutated(toml(validManifest)), toml(damagedManifest), mutated(toml(damagedManifest)));
const parseAnyManifest = (text: string) => parseManifest(text, "/capsules/c", (file) => !file.endsWith("missing.js"));

describe("fuzz: Capsule.toml", () => {
  fuzzParser("manifest", manifestTexts, "ASTRID_ERR_MANIFEST_INVALID", parseAnyManifest, 500);

  it("a valid manifest reads back as written, without warnings", () => {
    fc.assert(
      fc.property(validManifest, (m) => {
        const loaded = parseAnyManifest(stringifyToml(m));
        expect(loaded.manifest).toMatchObject(m);
        expect(loaded.warnings).toEqual([]);
      }),
      runs(200),
    );
  }, FUZZ_TIMEOUT_MS);
});

// ---- servers.toml ----------------------------------------------------------------------------------------------

const restart = fc.oneof(fc.constantFrom("never", "always", "on_failure"), fc.integer({ min: 0, max: 1000 }).map((n) => ({ on_failure: { max_retries: n } })));
const validServer = fc.oneof(
  fc.record({
    command: word, args: fc.array(safeText, { maxLength: 3 }), env: fc.dictionary(fc.stringMatching(/^[A-Z_]{1,6}$/), safeText, { maxKeys: 2 }),
    cwd: fc.constantFrom("/srv", "/tmp/x"), auto_start: fc.boolean(), description: safeText, binary_hash: fc.hexaString({ minLength: 64, maxLength: 64 }), restart_policy: restart,
  }, { requiredKeys: ["command"] }),
  fc.record({ transport: fc.constantFrom("sse", "http"), url: fc.constantFrom("http://127.0.0.1:9/mcp", "https://example.com/sse"), auto_start: fc.boolean() }, { requiredKeys: ["transport", "url"] }),
);
const validServers = fc.dictionary(fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/).filter((n) => n !== "__proto__"), validServer, { maxKeys: 3 }).map((servers) => ({ servers }));
const damagedServers = fc.tuple(validServers, hostileKey, tomlScalar).map(([doc, key, value]) => {
  const first = Object.values(doc.servers)[0] as object | undefined;
  if (first) Object.defineProperty(first, key, { value, enumerable: true });
  else Object.defineProperty(doc, key, { value, enumerable: true });
  return doc;
});

describe("fuzz: servers.toml", () => {
  fuzzParser("servers.toml", fc.oneof(fragmentText, mutated(toml(validServers)), toml(damagedServers)), "ASTRID_ERR_MCP_CONFIG_INVALID", (t) => parseServersConfig(t, "/home/etc/servers.toml"), 400);

  it("valid servers read back as written", () => {
    fc.assert(
      fc.property(validServers, (doc) => {
        const parsed = parseServersConfig(stringifyToml(doc), "servers.toml");
        expect(parsed.map((s) => s.name).sort()).toEqual(Object.keys(doc.servers).sort());
        for (const s of parsed) {
          const w = doc.servers[s.name] as Record<string, unknown>;
          expect(s.transport).toBe(w.transport ?? "stdio");
          expect(s.command).toBe(w.command);
          expect(s.args).toEqual(w.args ?? []);
          expect(s.env).toEqual(w.env ?? {});
          expect(s.autoStart).toBe(w.auto_start ?? true);
          expect(s.binaryHash).toBe((w.binary_hash as string | undefined)?.toLowerCase());
          const policy = w.restart_policy ?? "on_failure";
          expect(s.restartPolicy).toEqual(typeof policy === "object" ? { kind: "on_failure", maxRetries: (policy as { on_failure: { max_retries: number } }).on_failure.max_retries }
            : policy === "on_failure" ? { kind: "on_failure", maxRetries: 3 } : { kind: policy });
        }
      }),
      runs(150),
    );
  }, FUZZ_TIMEOUT_MS);
});

// ---- profiles and groups ---------------------------------------------------------------------------------------

const validProfile = fc.record({
  profile_version: fc.constant(1),
  enabled: fc.boolean(),
  groups: fc.array(principal, { maxLength: 3 }),
  grants: fc.array(capability, { maxLength: 3 }),
  revokes: fc.array(capability, { maxLength: 2 }),
  auth: fc.record({ methods: fc.uniqueArray(fc.constantFrom("keypair", "passkey", "system"), { maxLength: 3 }), public_keys: fc.array(fc.stringMatching(/^[A-Za-z0-9+/]{1,20}$/), { maxLength: 2 }) }),
  network: fc.record({ egress: fc.array(fc.constantFrom("example.com", "*.x.org:443", "*"), { maxLength: 2 }) }),
  process: fc.record({ allow: fc.array(fc.constantFrom("git", "ls -la"), { maxLength: 2 }) }),
  quotas: fc.record({
    max_memory_bytes: fc.integer({ min: 1, max: 2 ** 40 }), max_timeout_secs: fc.integer({ min: 1, max: 86_400 }), max_ipc_throughput_bytes: fc.integer({ min: 1, max: 2 ** 40 }),
    max_background_processes: fc.integer({ min: 0, max: 256 }), max_storage_bytes: fc.integer({ min: 1, max: 2 ** 50 }),
  }),
}) as fc.Arbitrary<Profile>;
const damagedProfile = fc.tuple(validProfile, fc.constantFrom("", "auth", "network", "process", "quotas"), hostileKey, tomlScalar).map(([p, table, key, value]) => {
  const copy = JSON.parse(JSON.stringify(p)) as Record<string, Record<string, unknown>>;
  Object.defineProperty(table === "" ? copy : copy[table]!, key, { value, enumerable: true, writable: true });
  return copy;
});

const groupName = fc.oneof(principal.filter((n) => !["admin", "agent", "restricted"].includes(n)), fc.constantFrom("admin", "a b", "", "x".repeat(65)));
const validGroups = fc.uniqueArray(
  fc.record({ name: tableName.filter((n) => !["admin", "agent", "restricted"].includes(n)), capabilities: fc.array(capability.filter((c) => !c.split(":").every((s) => s === "*")), { maxLength: 3 }), description: safeText, unsafe_admin: fc.boolean() }, { requiredKeys: ["name", "capabilities", "unsafe_admin"] }),
  { selector: (g) => g.name, maxLength: 3 },
) as fc.Arbitrary<Group[]>;
const damagedGroups = fc.tuple(fc.dictionary(groupName, fc.record({ capabilities: fc.array(fc.oneof(capability, hostileString), { maxLength: 2 }), unsafe_admin: fc.boolean() }), { maxKeys: 2 }), hostileKey, tomlScalar)
  .map(([groups, key, value]) => {
    const first = Object.values(groups)[0];
    if (first) Object.defineProperty(first, key, { value, enumerable: true });
    return { groups };
  });

describe("fuzz: principal profiles and groups", () => {
  const profileFile = "/home/etc/profiles/p.toml";
  fuzzParser("profile", fc.oneof(fragmentText, mutated(toml(validProfile as unknown as fc.Arbitrary<Record<string, unknown>>)), toml(damagedProfile)), "ASTRID_ERR_PROFILE_INVALID", (t) => parseProfile(t, profileFile), 400);
  fuzzParser("groups.toml", fc.oneof(fragmentText, mutated(validGroups.map((g) => serializeGroups(g))), toml(damagedGroups)), "ASTRID_ERR_GROUPS_INVALID", (t) => parseGroupsFile(t, "/home/etc/groups.toml"), 400);

  it("a valid profile round-trips through the daemon's writer, and whatever parses re-reads as itself", () => {
    fc.assert(
      fc.property(validProfile, mutated(toml(validProfile as unknown as fc.Arbitrary<Record<string, unknown>>)), (profile, text) => {
        expect(parseProfile(serializeProfile(profile), profileFile)).toEqual(profile);
        const parsed = returnsOrThrowsCoded(() => parseProfile(text, profileFile), ["ASTRID_ERR_PROFILE_INVALID"]);
        if (parsed.ok) expect(parseProfile(serializeProfile(parsed.value), profileFile)).toEqual(parsed.value);
      }),
      runs(150),
    );
  }, FUZZ_TIMEOUT_MS);

  it("valid groups round-trip through the daemon's writer, and whatever parses re-reads as itself", () => {
    fc.assert(
      fc.property(validGroups, mutated(validGroups.map((g) => serializeGroups(g))), (groups, text) => {
        const back = parseGroupsFile(serializeGroups(groups), "groups.toml");
        expect([...back.values()].sort((a, b) => (a.name < b.name ? -1 : 1))).toEqual([...groups].sort((a, b) => (a.name < b.name ? -1 : 1)));
        const parsed = returnsOrThrowsCoded(() => parseGroupsFile(text, "groups.toml"), ["ASTRID_ERR_GROUPS_INVALID"]);
        if (parsed.ok) expect(parseGroupsFile(serializeGroups(parsed.value.values()), "groups.toml")).toEqual(parsed.value);
      }),
      runs(150),
    );
  }, FUZZ_TIMEOUT_MS);
});
