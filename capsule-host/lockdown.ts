/**
 * Hardened JavaScript for a capsule worker: this module must be the first thing the worker imports, so that every
 * intrinsic is frozen before any other code (ours or the capsule's) runs. Errors keep their stacks (the capsule's
 * log needs them); an uncaught error ends the worker with an `error` event the kernel sees, as without SES.
 * SES is loaded through the code cache the build made (capsule-host/code-cache.ts): it is most of what a capsule
 * worker compiles before its capsule runs.
 */
import type {} from "ses";
import { requireCached } from "./code-cache";
import { LOCKDOWN_OPTIONS } from "./lockdown-options";

requireCached(require.resolve("ses"));
lockdown(LOCKDOWN_OPTIONS);
