/**
 * Thread entry point of the capsule loader: the filesystem work about capsules (discovery, manifests, hashing, env
 * files, install copies, the hot-reload watcher), served to the kernel over comlink so none of it runs on the
 * thread that owns the socket.
 */
import { parentPort } from "node:worker_threads";
import * as Comlink from "comlink";
import nodeEndpoint from "comlink/dist/umd/node-adapter";
import type { CapsuleLoaderApi, LoaderEvents, LoaderResult } from "../protocol/capsule-loader";
import { isAstridError } from "../protocol/errors";
import { discoverCapsules } from "./capsule-loader/discovery";
import { capsuleHash } from "./capsule-loader/content-hash";
import { operatorEnvFile, storedEnv } from "./capsule-loader/env-files";
import { compileModules } from "./capsule-loader/module-compiler";
import { discardBackup, removeCapsuleDir, rollbackInstall, stageInstall } from "./capsule-loader/install-files";
import { CapsuleWatcher } from "./capsule-loader/watcher";

if (!parentPort) throw new Error("workers/capsule-loader must run in a worker thread");

/** Runs `work`, turning a throw into a coded result (comlink would keep only the message). */
async function result<T>(work: () => Promise<T>): Promise<LoaderResult<T>> {
  try {
    return { ok: true, value: await work() };
  } catch (err) {
    return { ok: false, code: isAstridError(err) ? err.code : "ASTRID_ERR_INTERNAL", message: (err as Error)?.message ?? String(err) };
  }
}

let watcher: CapsuleWatcher | undefined;

const api: CapsuleLoaderApi = {
  discover: (roots, envDir) => result(() => discoverCapsules(roots, envDir)),
  storedEnv: (envDir, name, dir) => result(() => storedEnv(envDir, name, dir)),
  compileModules: (dir, entry, cacheFile, expected) => result(() => compileModules(dir, entry, cacheFile,
    expected && { hash: expected.hash, extraFiles: [operatorEnvFile(expected.envDir, expected.name)] })),
  contentHash: (dir, envDir, name) => result(() => capsuleHash(dir, [operatorEnvFile(envDir, name)])),
  stageInstall: (source, root, refuse) => result(() => stageInstall(source, root, refuse)),
  rollbackInstall: (staged) => result(async () => (await rollbackInstall(staged), null)),
  discardBackup: (staged) => result(async () => (await discardBackup(staged), null)),
  removeCapsuleDir: (dir, root) => result(async () => (await removeCapsuleDir(dir, root), null)),
  watch: (roots, events: Comlink.Remote<LoaderEvents>) =>
    result(async () => {
      await watcher?.close();
      // A kernel that stopped listening (shutting down) must not turn a lost notification into a crash here.
      const ignore = () => undefined;
      const next = new CapsuleWatcher(
        roots,
        (file) => void events.changed(file).catch(ignore),
        (level, message, fields) => void events.log({ level, message, fields }).catch(ignore),
      );
      watcher = next;
      await next.ready();
      return null;
    }),
  unwatch: () =>
    result(async () => {
      await watcher?.close();
      watcher = undefined;
      return null;
    }),
};

Comlink.expose(api, nodeEndpoint(parentPort));
