/**
 * Home resolution and layout (reference §1.1–1.2). Every path under `$ASTRID_HOME` is built here and nowhere else.
 */
import fs from "node:fs";
import path from "node:path";
import { AstridError } from "../protocol/errors";

/** The directories `ensure()` creates, all mode 0700. */
const HOME_DIRS = ["etc", "etc/hooks", "var", "run", "log", "keys", "bin", "wit", "home"] as const;

/** The resolved `$ASTRID_HOME` and every path the daemon and CLI use under it. */
export class AstridHome {
  constructor(readonly root: string) {}

  get runDir(): string {
    return path.join(this.root, "run");
  }
  get socketPath(): string {
    return path.join(this.root, "run", "system.sock");
  }
  get tokenPath(): string {
    return path.join(this.root, "run", "system.token");
  }
  get readyPath(): string {
    return path.join(this.root, "run", "system.ready");
  }
  /** Held by the one daemon that owns this home, from boot to exit (see kernel/home-lock.ts). */
  get lockPath(): string {
    return path.join(this.root, "run", "daemon.lock");
  }
  get logDir(): string {
    return path.join(this.root, "log");
  }
  get keysDir(): string {
    return path.join(this.root, "keys");
  }
  get stateDbPath(): string {
    return path.join(this.root, "var", "state.db");
  }
  /** Frontend credentials, `<name>.toml` each (see docs/frontends.md). */
  get frontendsDir(): string {
    return path.join(this.root, "etc", "frontends");
  }
  /** System configuration (`etc/`, created by `ensure()`). */
  get etcDir(): string {
    return path.join(this.root, "etc");
  }
  /** Custom groups (reference §8.4); a missing file means the built-ins only. */
  get groupsPath(): string {
    return path.join(this.root, "etc", "groups.toml");
  }
  /** Per-principal profiles (reference §8.5), created on the first profile write. */
  get profilesDir(): string {
    return path.join(this.root, "etc", "profiles");
  }
  /** One principal's profile, `etc/profiles/<principal>.toml`. */
  profilePath(principal: string): string {
    return path.join(this.root, "etc", "profiles", `${principal}.toml`);
  }
  /** The principal's home root (`home://`). */
  principalHome(principal: string): string {
    return path.join(this.root, "home", principal);
  }
  /** Where `astrid capsule install` puts a principal's capsules. */
  principalCapsulesDir(principal: string): string {
    return path.join(this.principalHome(principal), ".local", "capsules");
  }

  /**
   * Creates the layout (idempotent) and tightens the root and its directories to 0700. A directory on a read-only
   * mount (or not ours to change) stops the daemon here with ASTRID_ERR_HOME_READONLY, before anything is bound.
   */
  ensure(): void {
    const writable = (dir: string, make: () => void) => {
      try {
        make();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "EROFS" && code !== "EACCES" && code !== "EPERM") throw err;
        throw new AstridError("ASTRID_ERR_HOME_READONLY",
          `${dir} cannot be written (${code}): the daemon needs ASTRID_HOME writable. Remount it read-write or fix its owner; ` +
            "meanwhile `astrid audit verify`, `astrid audit tail` and `astrid logs` read it as it is", { cause: err });
      }
    };
    for (const dir of ["", ...HOME_DIRS]) {
      const full = path.join(this.root, dir);
      writable(full, () => {
        fs.mkdirSync(full, { recursive: true, mode: 0o700 });
        fs.chmodSync(full, 0o700);
      });
    }
    const layoutVersion = path.join(this.root, "etc", "layout-version");
    if (!fs.existsSync(layoutVersion)) writable(layoutVersion, () => fs.writeFileSync(layoutVersion, "1", { mode: 0o600 }));
  }
}

/**
 * Resolves the home from the environment: `ASTRID_HOME`, else `$HOME/.astrid`. Either must be absolute with no
 * `..` component; an empty value counts as relative.
 */
export function resolveHome(env: NodeJS.ProcessEnv = process.env): AstridHome {
  const explicit = env.ASTRID_HOME;
  if (explicit !== undefined) return new AstridHome(checkedAbsolute("ASTRID_HOME", explicit));
  const home = env.HOME;
  if (home === undefined) {
    throw new AstridError("ASTRID_ERR_HOME_INVALID", "neither ASTRID_HOME nor HOME is set; set ASTRID_HOME to an absolute path");
  }
  return new AstridHome(path.join(checkedAbsolute("HOME", home), ".astrid"));
}

function checkedAbsolute(name: string, value: string): string {
  if (!path.isAbsolute(value)) {
    throw new AstridError("ASTRID_ERR_HOME_INVALID", `${name} must be an absolute path (got ${JSON.stringify(value)})`);
  }
  if (value.split("/").includes("..")) {
    throw new AstridError("ASTRID_ERR_HOME_INVALID", `${name} must not contain '..' path components (got ${JSON.stringify(value)})`);
  }
  return path.normalize(value);
}
