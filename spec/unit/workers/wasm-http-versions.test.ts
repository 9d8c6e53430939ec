/**
 * Which `astrid:http/host` a component gets: jco's glue looks packages up by their unversioned name, so that name
 * must carry the version the component was built against (read from the glue's full interface names).
 */
import type { GuestHost } from "../../../workers/wasm-capsule/guest-host";
import { hostImports, versionedImports } from "../../../workers/wasm-capsule/host-imports";

const host = {} as GuestHost;

describe("astrid:http/host versions", () => {
  it("versionedImports reads each imported interface's full name once from jco's glue", () => {
    const glue = "_trampoline0.fnName = 'astrid:io/poll@1.0.0#ready';\n_trampoline1.fnName = 'astrid:http/host@1.1.0#httpRequestOpts';\n" +
      "_trampoline2.fnName = 'astrid:http/host@1.1.0#httpUploadStart';\nconst { poll } = imports['astrid:io/poll'];";
    expect(versionedImports(glue).sort()).toEqual(["astrid:http/host@1.1.0", "astrid:io/poll@1.0.0"]);
  });

  it("a component importing 1.1.0 finds 1.1.0 under the unversioned name; any other finds 1.0.0; both stay under their versions", () => {
    const newer = hostImports(host, ["astrid:http/host@1.1.0", "astrid:io/poll@1.0.0"]);
    expect(Object.keys(newer["astrid:http/host"]!)).toEqual(expect.arrayContaining(["httpRequestOpts", "httpStreamStartOpts", "httpUploadStart", "HttpUpload"]));
    const older = hostImports(host, ["astrid:http/host@1.0.0"]);
    expect(Object.keys(older["astrid:http/host"]!).sort()).toEqual(["HttpStream", "httpRequest", "httpStreamStart"]);
    expect(older["astrid:http/host@1.0.0"]).toBe(older["astrid:http/host"]);
    expect(Object.keys(older["astrid:http/host@1.1.0"]!)).toContain("httpRequestOpts");
    // One stream class for both: jco checks a returned resource with instanceof against the class it was given.
    expect(older["astrid:http/host@1.1.0"]!.HttpStream).toBe(older["astrid:http/host"]!.HttpStream);
  });
});
