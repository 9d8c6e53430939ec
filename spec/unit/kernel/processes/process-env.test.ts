/**
 * The variables a capsule may add to a host process (kernel/processes/process-env.ts): the refused names, in any
 * case, and the bounds on count and size, each refusal naming the key.
 */
import { checkEnv, MAX_ENV_VARS, MAX_ENV_VALUE_BYTES, refusedEnvKey } from "../../../../kernel/processes/process-env";

describe("checkEnv", () => {
  it("passes ordinary variables through", () => {
    expect(checkEnv({ GREETING: "hi", lc_all: "C", _X1: "" }, "process.run")).toEqual({ GREETING: "hi", lc_all: "C", _X1: "" });
    expect(checkEnv(undefined, "process.run")).toEqual({});
  });

  it("refuses the loader's, interpreters', tools' and the kernel's variables in any case, naming the key", () => {
    for (const key of ["LD_PRELOAD", "ld_preload", "Ld_Audit", "DYLD_INSERT_LIBRARIES", "NODE_OPTIONS", "PATH", "Path", "HOME", "TMPDIR",
      "BASH_ENV", "PYTHONPATH", "PERL5OPT", "GIT_SSH_COMMAND", "GIT_CONFIG_COUNT", "git_config_key_0", "ASTRID_TOKEN", "GLIBC_TUNABLES", "EDITOR",
      "OPENSSL_CONF", "XDG_CONFIG_HOME", "npm_config_script_shell", "RUSTC_WRAPPER", "CARGO_BUILD_RUSTC", "MAKEFLAGS", "CC", "SHELL",
      "GIT_TRACE", "GIT_SEQUENCE_EDITOR", "BASH_FUNC_ls%%"]) {
      expect(refusedEnvKey(key)).not.toBeNull();
      expect(() => checkEnv({ [key]: "x" }, "process.run")).toThrow(expect.objectContaining({ code: "ASTRID_ERR_REQUEST_INVALID", message: expect.stringContaining(key) }));
    }
  });

  it("refuses what is not a variable name, a NUL in a value, a non-string value, and a non-object", () => {
    for (const env of [{ "A=B": "1" }, { "1A": "1" }, { "": "1" }, { "A B": "1" }, { A: "x\0y" }, { A: 1 }, ["A=1"], "A=1", null]) {
      expect(() => checkEnv(env, "process.run")).toThrow(expect.objectContaining({ code: "ASTRID_ERR_REQUEST_INVALID" }));
    }
  });

  it("bounds the count, a value's size and the total", () => {
    const at = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`V${i}`, "x"]));
    expect(Object.keys(checkEnv(at(MAX_ENV_VARS), "c"))).toHaveLength(MAX_ENV_VARS);
    expect(() => checkEnv(at(MAX_ENV_VARS + 1), "c")).toThrow(/more than 64/);
    expect(() => checkEnv({ BIG: "x".repeat(MAX_ENV_VALUE_BYTES + 1) }, "c")).toThrow(/BIG.*larger than/);
    expect(() => checkEnv(Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`W${i}`, "y".repeat(MAX_ENV_VALUE_BYTES)])), "c")).toThrow(/in all/);
  });
});
