/**
 * The environment variables a capsule may add to a host process's fixed environment (PATH, HOME, TMPDIR, LANG).
 * A capsule already chooses the argv, within `host_process`; the environment must not let it choose more than that.
 * So the variables that change WHAT runs (a loader preload, an interpreter's startup code, a command a tool runs on
 * its own: `GIT_SSH_COMMAND`, `EDITOR`), or how the sandbox and the dynamic loader behave, are refused by name,
 * along with the kernel's own (PATH, HOME, TMPDIR, PWD, `ASTRID_*`). Counts and sizes are bounded.
 */
import { AstridError } from "../../protocol/errors";

/** Variables one process may be given. */
export const MAX_ENV_VARS = 64;
/** Longest variable name. */
export const MAX_ENV_KEY_BYTES = 128;
/** Longest value. */
export const MAX_ENV_VALUE_BYTES = 32 * 1024;
/** Names and values together. */
export const MAX_ENV_TOTAL_BYTES = 128 * 1024;

/** Names refused outright: set by the kernel, or naming code or a command that runs without being in argv. */
const REFUSED = new Set([
  // The kernel's own: a command is looked up on its fixed PATH, HOME and TMPDIR are the sandbox's scratch.
  "PATH", "HOME", "TMPDIR", "PWD",
  // glibc: loads code, or changes the loader (GLIBC_TUNABLES has had loader exploits of its own).
  "GCONV_PATH", "LOCPATH", "GLIBC_TUNABLES", "HOSTALIASES", "RESOLV_HOST_CONF", "MALLOC_CHECK_", "NLSPATH",
  // Interpreters: startup code and option variables that run what argv does not say.
  "NODE_OPTIONS", "NODE_PATH", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONUSERBASE",
  "PERL5OPT", "PERL5LIB", "PERLLIB", "PERL5DB", "RUBYOPT", "RUBYLIB", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS",
  "JDK_JAVA_OPTIONS", "CLASSPATH",
  // Shells: startup files, traced and exported code.
  "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS", "CDPATH",
  // Commands a tool runs on its own (git, ssh, pagers, editors).
  "GIT_EXEC_PATH", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_EDITOR", "GIT_PAGER",
  "GIT_EXTERNAL_DIFF", "GIT_PROXY_COMMAND", "GIT_TEMPLATE_DIR", "GIT_DIR", "GIT_WORK_TREE", "EDITOR", "VISUAL",
  "PAGER", "MANPAGER", "LESSOPEN", "LESSCLOSE", "BROWSER",
  // Build tools: a compiler or wrapper they run, flags that name one.
  "RUSTC", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "RUSTDOC", "RUSTFLAGS", "MFLAGS", "CC", "CXX", "CPP", "LD", "AR",
  "SHELL", "CONFIG_SHELL", "SUDO_ASKPASS",
  // Config files read from where the variable says (curl, wget, TLS trust).
  "CURL_HOME", "WGETRC", "SSL_CERT_FILE", "SSL_CERT_DIR",
]);
/**
 * Name prefixes refused: loader variables (Linux and macOS), the kernel's own, and families where many members load
 * code or a config that names a command: all of git's (GIT_CONFIG*, GIT_TRACE* writing to any file, editors), OpenSSL
 * engines and modules, XDG config homes (git's core.sshCommand and hooks), npm's and cargo's settings, interpreters'
 * option variables, make's flags, bash's exported functions.
 */
const REFUSED_PREFIXES = [
  "LD_", "DYLD_", "ASTRID_", "GIT_", "OPENSSL_", "XDG_", "NPM_CONFIG_", "CARGO_", "RUSTUP_", "NODE_", "PYTHON", "PERL",
  "RUBY", "JAVA", "_JAVA", "JDK_", "LESS", "MAKE", "BASH_FUNC_",
];
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Why `key` may not be set, or null when it may. */
export function refusedEnvKey(key: string): string | null {
  const upper = key.toUpperCase();
  if (REFUSED.has(upper)) return `${key} is set by the kernel or names code the process would run`;
  const prefix = REFUSED_PREFIXES.find((p) => upper.startsWith(p));
  return prefix === undefined ? null : `${prefix}* variables change how the process or its loader runs`;
}

/**
 * The checked variables, or ASTRID_ERR_REQUEST_INVALID naming the first bad key: a name of letters, digits and `_`
 * (not starting with a digit), no NUL in a value, no refused name, within the bounds above.
 */
export function checkEnv(env: unknown, call: string): Record<string, string> {
  if (env === undefined) return {};
  if (env === null || typeof env !== "object" || Array.isArray(env)) {
    throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: env must be an object of string values`);
  }
  const entries = Object.entries(env as Record<string, unknown>);
  if (entries.length > MAX_ENV_VARS) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: env has ${entries.length} variables, more than ${MAX_ENV_VARS}`);
  const out: Record<string, string> = {};
  let total = 0;
  for (const [key, value] of entries) {
    const shown = JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}…` : key);
    if (Buffer.byteLength(key) > MAX_ENV_KEY_BYTES || !NAME.test(key)) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: env key ${shown} is not a variable name (letters, digits and _, at most ${MAX_ENV_KEY_BYTES} bytes)`);
    }
    const refused = refusedEnvKey(key);
    if (refused !== null) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: env key ${shown} is refused: ${refused}`);
    if (typeof value !== "string") throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: env value of ${shown} must be a string`);
    if (value.includes("\0")) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: env value of ${shown} holds a NUL byte`);
    const size = Buffer.byteLength(value);
    if (size > MAX_ENV_VALUE_BYTES) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: env value of ${shown} is larger than ${MAX_ENV_VALUE_BYTES} bytes`);
    total += Buffer.byteLength(key) + size;
    if (total > MAX_ENV_TOTAL_BYTES) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: env is larger than ${MAX_ENV_TOTAL_BYTES} bytes in all (at ${shown})`);
    out[key] = value;
  }
  return out;
}
