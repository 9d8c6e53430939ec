import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fieldLine, MANIFEST_FILE, parseManifest } from "../../../protocol/capsule-manifest";
import { discoverCapsules } from "../../../workers/capsule-loader/discovery";

/** The parser over a manifest on disk (the loader worker reads it the same way, asynchronously). */
const loadManifest = (dir: string) => parseManifest(fs.readFileSync(path.join(dir, MANIFEST_FILE), "utf8"), dir, fs.existsSync);

let root: string;
beforeEach(() => (root = fs.mkdtempSync(path.join(os.tmpdir(), "astrid-manifest-"))));
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

function capsule(dir: string, toml: string): string {
  const full = path.join(root, dir);
  fs.mkdirSync(full, { recursive: true });
  fs.writeFileSync(path.join(full, "Capsule.toml"), toml);
  return full;
}

const err = (dir: string) => {
  try {
    loadManifest(dir);
  } catch (e) {
    return e as { code: string; message: string };
  }
  throw new Error("expected an error");
};

describe("Capsule.toml", () => {
  it("parses the bundled CLI policy capsule", () => {
    const loaded = loadManifest(path.resolve(__dirname, "../../../capsules/astrid-capsule-cli"));
    expect(loaded.manifest.package.name).toBe("astrid-capsule-cli");
    expect(loaded.manifest.capabilities.ipc_publish).toContain("astrid.v1.request.*");
    expect(loaded.warnings).toEqual([]);
  });

  it("names the file and line of a TOML syntax error", () => {
    const e = err(capsule("bad", '[package]\nname = "x"\nversion = \n'));
    expect(e.code).toBe("ASTRID_ERR_MANIFEST_INVALID");
    expect(e.message).toMatch(/bad\/Capsule\.toml:3:\d+: TOML syntax error/);
  });

  it.each([
    ["missing name", '[package]\nversion = "1.0.0"\n', /Capsule\.toml:1: field package\.name/],
    ["bad semver", '[package]\nname = "x"\nversion = "1.0"\n', /Capsule\.toml:3: field package\.version: must be a semantic version/],
    ["bad name", '[package]\nname = "X_Y"\nversion = "1.0.0"\n', /Capsule\.toml:2: field package\.name/],
    ["bad topic", '[package]\nname = "x"\nversion = "1.0.0"\n[capabilities]\nipc_publish = ["a..b"]\n', /Capsule\.toml:5: field capabilities\.ipc_publish\.0: topic has an empty segment/],
    ["an astrid-version this runtime does not satisfy", '[package]\nname = "x"\nversion = "1.0.0"\nastrid-version = ">=0.5"\n', /Capsule\.toml:4: field package\.astrid-version: requires astrid >=0\.5; this runtime is 0\.1\.0/],
    ["an astrid-version that is no semver range", '[package]\nname = "x"\nversion = "1.0.0"\nastrid-version = "soon"\n', /field package\.astrid-version: must be a semver range/],
    ["a second [[interceptor]] without action", '[package]\nname = "x"\nversion = "1.0.0"\n[[interceptor]]\nevent = "a.b"\naction = "go"\n\n[[interceptor]]\nevent = "a.c"\n', /Capsule\.toml:8: field interceptor\.1\.action/],
    ["a bad import name", '[package]\nname = "x"\nversion = "1.0.0"\n[imports.Astrid]\nllm = "^1"\n', /field imports\.Astrid: must match/],
    ["a [[topic]] with an inner *", '[package]\nname = "x"\nversion = "1.0.0"\n[[topic]]\nname = "a.*.b"\ndirection = "publish"\n', /field topic\.0\.name/],
    ["a bare * [[topic]]", '[package]\nname = "x"\nversion = "1.0.0"\n[[topic]]\nname = "*"\ndirection = "subscribe"\n', /field topic\.0\.name/],
    ["a [[topic]] schema outside the capsule", '[package]\nname = "x"\nversion = "1.0.0"\n[[topic]]\nname = "a.b"\ndirection = "publish"\nschema = "../s.json"\n', /field topic\.0\.schema/],
    ["a duplicated [[topic]]", '[package]\nname = "x"\nversion = "1.0.0"\n[[topic]]\nname = "a.b"\ndirection = "publish"\n[[topic]]\nname = "a.b"\ndirection = "publish"\n', /declared twice/],
    ["uplink with imports", '[package]\nname = "x"\nversion = "1.0.0"\n[capabilities]\nuplink = true\n[imports.astrid]\nllm = "^1"\n', /uplink.*imports/],
  ])("rejects a manifest with %s, naming the field", (_name, toml, pattern) => {
    const e = err(capsule("c", toml));
    expect(e.code).toBe("ASTRID_ERR_MANIFEST_INVALID");
    expect(e.message).toMatch(pattern);
  });

  it("accepts an astrid-version this runtime satisfies", () => {
    expect(loadManifest(capsule("v", '[package]\nname = "x"\nversion = "1.0.0"\nastrid-version = "^0.1"\n')).manifest.package["astrid-version"]).toBe("^0.1");
  });

  it("locates fields in the TOML text: keys, dotted keys, array tables, a missing key at its table", () => {
    const text = '# c\n[package]\nname = "x"\n\n[[topic]]\nname = "a"\n[[topic]]\n  name = "b"\n[capabilities]\nipc.publish = 1\n';
    expect(fieldLine(text, ["package", "name"])).toBe(3);
    expect(fieldLine(text, ["package", "version"])).toBe(2);
    expect(fieldLine(text, ["topic", 1, "name"])).toBe(8);
    expect(fieldLine(text, ["topic", 0, "direction"])).toBe(5);
    expect(fieldLine(text, ["capabilities", "ipc", "publish"])).toBe(10);
    expect(fieldLine(text, ["env"])).toBeUndefined();
  });

  it("does not read TOML inside a multi-line string", () => {
    const text = '[package]\nname = "x"\ndescription = """\nSee\n[Docs](https://example.org)\nversion = 1\n"""\nversion = "1"\n';
    expect(fieldLine(text, ["package", "version"])).toBe(8);
    expect(fieldLine(text, ["package", "description"])).toBe(3);
  });

  it("accepts a trailing .* [[topic]] and the same name in both directions", () => {
    const ok = loadManifest(capsule("t", '[package]\nname = "x"\nversion = "1.0.0"\n[[topic]]\nname = "a.b.*"\ndirection = "subscribe"\n[[topic]]\nname = "a.b.*"\ndirection = "publish"\n'));
    expect(ok.warnings).toEqual([]);
  });

  it("warns about unknown keys instead of ignoring them silently", () => {
    const loaded = loadManifest(capsule("w", '[package]\nname = "x"\nversion = "1.0.0"\nfoo = 1\n[publish]\na = 1\n[capabilities]\nipc_pub = []\n'));
    expect(loaded.warnings).toEqual([
      expect.stringMatching(/unknown key publish/),
      expect.stringMatching(/unknown key package\.foo/),
      expect.stringMatching(/unknown key capabilities\.ipc_pub/),
    ]);
  });
});

describe("discovery", () => {
  it("lets the first root win a name, skips invalid manifests with the file named, fingerprints each capsule", async () => {
    capsule("a/one", '[package]\nname = "one"\nversion = "1.0.0"\n');
    capsule("b/one", '[package]\nname = "one"\nversion = "2.0.0"\n');
    capsule("b/broken", "[package\n");
    const result = await discoverCapsules([path.join(root, "a"), path.join(root, "missing"), path.join(root, "b")], path.join(root, "env"));
    expect(result.capsules[0]!.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(result.capsules.map((c) => `${c.manifest.package.name}@${c.manifest.package.version}`)).toEqual(["one@1.0.0"]);
    expect(result.shadowed).toHaveLength(1);
    expect(result.problems).toEqual([expect.objectContaining({ file: path.join(root, "b", "broken", "Capsule.toml") })]);
  });
});
