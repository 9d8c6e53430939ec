/**
 * Source compatibility with the reference daemon's JS SDK (`@astrid-os/sdk`, since renamed
 * `@unicity-astrid/sdk`): a capsule written against it runs here as a confined JS capsule, no WASM build. Its
 * `import`/`require` of the package resolves to the module built here — one per capsule worker — whose
 * namespaces map onto the capsule's own gated API, and whose decorators (`@capsule`, `@tool`, `@interceptor`,
 * `@command`, `@install`, `@upgrade`, `@run`) become the host's `CapsuleDefinition`, dispatched as the
 * reference's bridge does: a fresh instance per call, `__state` in KV around mutable handlers, a tool's result
 * (JSON text) published by the kernel on `tool.v1.execute.<name>.result`, a throw denying an interceptor.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { SyscallName } from "../protocol/capsule-messages";
import type { CapsuleApi, CapsuleDefinition, CapsuleEvent } from "./sdk";
import { SysError, unsupported } from "./astrid-os-sdk-errors";
import { httpModule } from "./astrid-os-sdk-http";
import { fsModule, kvModule, localModules, peopleModules, processModule } from "./astrid-os-sdk-io";
import { ipcModule, type SdkContext } from "./astrid-os-sdk-ipc";

import { ASTRID_OS_SDK_SPECIFIERS } from "./astrid-os-sdk-names";

/** The KV key of a mutable capsule's instance state, as the reference names it. */
const STATE_KEY = "__state";
/** How long `setup` waits for a `@run` loop's `runtime.signalReady()` (the reference's readiness wait). */
const RUN_READY_WAIT_MS = 500;

/** What the capsule host provides the SDK. */
export interface AstridOsHost {
  api: CapsuleApi;
  env: Readonly<Record<string, string>>;
  /** Subscribes `pattern` with the kernel; matching events reach `sink` as they arrive (not behind handlers). */
  subscribe(pattern: string, sink: (event: CapsuleEvent) => void): Promise<void>;
  /** A kernel call the capsule's own API has no method for, in the calling handler's context (absent: refused). */
  syscall?(name: SyscallName, ...args: unknown[]): Promise<unknown>;
}

/** The surface built for one capsule worker. */
export interface AstridOsSdk {
  /** Module exports by specifier, for the capsule's module resolution. */
  modules: Record<string, object>;
  /** The `@capsule` class's definition once the capsule's module ran, or undefined when it declared none. */
  definition(): CapsuleDefinition | undefined;
}

type Handler = { method: string; mutable: boolean };
type ToolEntry = Handler & { name: string; description?: string; inputSchema?: Record<string, unknown> };

interface Registration {
  ctor: new () => object;
  tools: Map<string, ToolEntry>;
  interceptors: Map<string, Handler>;
  commands: Map<string, Handler>;
  install?: string;
  upgrade?: string;
  run?: string;
}

/** Builds the surface for the capsule whose API is `host.api`. */
export function createAstridOsSdk(host: AstridOsHost): AstridOsSdk {
  const callers = new AsyncLocalStorage<{ principal?: string; sourceId: string }>();
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const ctx: SdkContext = {
    api: host.api,
    env: host.env,
    subscribe: host.subscribe,
    caller: () => callers.getStore(),
    signalReady: () => markReady(),
    log: (level, message) => host.api.log[level](message),
    syscall: host.syscall ?? (async (name) => {
      throw unsupported(name, "this host offers no kernel calls beyond the capsule API");
    }),
  };
  const local = localModules(ctx);
  const kv = kvModule(ctx);
  const { ipc, interceptors, registered } = ipcModule(ctx);
  const people = peopleModules(ctx);

  // Member decorators run before their class's decorator: they queue here until `@capsule` adopts them.
  let pending: Array<(r: Registration) => void> = [];
  let registration: Registration | undefined;

  const member = (decorator: string, context: unknown, add: (r: Registration, method: string) => void): void => {
    const c = context as ClassMethodDecoratorContext | string | undefined;
    if (typeof c !== "object" || c === null) {
      throw new TypeError(`${decorator} needs standard decorators (TypeScript ≥ 5.2 without "experimentalDecorators", or esbuild)`);
    }
    if (c.kind !== "method" || c.static || c.private) throw new TypeError(`${decorator} must be applied to a public instance method.`);
    pending.push((r) => add(r, String(c.name)));
  };
  const named = (kind: string, name: unknown): string => {
    if (typeof name !== "string" || name.length === 0) throw new TypeError(`@${kind} requires a non-empty name (got ${JSON.stringify(name)})`);
    return name;
  };
  const once = (r: Registration, hook: "install" | "upgrade" | "run", method: string) => {
    if (r[hook] !== undefined) throw new Error(`Only one @${hook} method allowed on ${r.ctor.name}.`);
    r[hook] = method;
  };
  const into = <T>(map: Map<string, T>, key: string, entry: T, what: string, ctor: Function) => {
    if (map.has(key)) throw new Error(`${what} declared twice on ${ctor.name}.`);
    map.set(key, entry);
  };

  const decorators = {
    /** The capsule's class (one per capsule); constructed with no arguments for each call. */
    capsule<T extends new () => object>(target: T, context?: ClassDecoratorContext): T {
      if (typeof context !== "object" || context?.kind !== "class") throw new TypeError("@capsule decorates a class (standard decorators)");
      if (registration && registration.ctor !== target) {
        throw new Error(`Only one @capsule class may be registered per capsule. Already have ${registration.ctor.name}; refusing to register ${target.name}.`);
      }
      registration ??= { ctor: target, tools: new Map(), interceptors: new Map(), commands: new Map() };
      const adopt = pending;
      pending = [];
      for (const add of adopt) add(registration);
      return target;
    },
    tool(name: string, options: { mutable?: boolean; description?: string; inputSchema?: Record<string, unknown> } = {}) {
      named("tool", name);
      return (_value: unknown, context: unknown) => member(`@tool("${name}")`, context, (r, method) =>
        into(r.tools, name, { name, method, mutable: options.mutable === true, description: options.description, inputSchema: options.inputSchema }, `@tool("${name}")`, r.ctor));
    },
    /** Handles the hook action `topic` (a `[[interceptor]]` whose `action` is that name). */
    interceptor(topic: string, options: { mutable?: boolean } = {}) {
      named("interceptor", topic);
      return (_value: unknown, context: unknown) => member(`@interceptor("${topic}")`, context, (r, method) =>
        into(r.interceptors, topic, { method, mutable: options.mutable === true }, `@interceptor("${topic}")`, r.ctor));
    },
    /** A command: dispatched like an interceptor, by action name (an interceptor of the same name wins). */
    command(name: string, options: { mutable?: boolean } = {}) {
      named("command", name);
      return (_value: unknown, context: unknown) => member(`@command("${name}")`, context, (r, method) =>
        into(r.commands, name, { method, mutable: options.mutable === true }, `@command("${name}")`, r.ctor));
    },
    install: (_value: unknown, context: unknown) => member("@install", context, (r, method) => once(r, "install", method)),
    upgrade: (_value: unknown, context: unknown) => member("@upgrade", context, (r, method) => once(r, "upgrade", method)),
    run: (_value: unknown, context: unknown) => member("@run", context, (r, method) => once(r, "run", method)),
  };

  const sdk = {
    SysError,
    ...decorators,
    ...local,
    kv,
    ipc,
    interceptors,
    fs: fsModule(ctx),
    http: httpModule(ctx),
    process: processModule(ctx),
    ...people,
  };
  const runtimeSubpath = {
    /** The decorators' registry, for tooling: what the `@capsule` class declared. */
    getRegistration: () => registration && {
      tools: [...registration.tools.keys()],
      interceptors: [...registration.interceptors.keys()],
      commands: [...registration.commands.keys()],
      install: registration.install,
      upgrade: registration.upgrade,
      run: registration.run,
    },
    createBridge: (): never => {
      throw unsupported("createBridge", "the daemon dispatches hooks to the @capsule class itself");
    },
  };
  const modules: Record<string, object> = {};
  for (const name of ASTRID_OS_SDK_SPECIFIERS) {
    modules[name] = sdk;
    modules[`${name}/runtime`] = runtimeSubpath;
    // Generated TypeScript types only: nothing to load at run time.
    modules[`${name}/contracts`] = {};
  }

  return {
    modules,
    definition: () => {
      if (!registration) {
        if (pending.length > 0) throw new Error("@tool/@interceptor/@command/@install/@upgrade/@run methods without a @capsule class");
        return undefined;
      }
      return bridge(registration, kv, ctx, callers, ready.then(registered));
    },
  };
}

/** The reference bridge's dispatch, as the host's definition. */
function bridge(
  r: Registration,
  kv: ReturnType<typeof kvModule>,
  ctx: SdkContext,
  callers: AsyncLocalStorage<{ principal?: string; sourceId: string }>,
  ready: Promise<void>,
): CapsuleDefinition {
  // Mutable handlers run one at a time, so two calls never load the same `__state` and lose one's update.
  let mutableTail: Promise<unknown> = Promise.resolve();
  const serial = <T>(run: () => Promise<T>): Promise<T> => {
    const next = mutableTail.then(run, run);
    mutableTail = next.catch(() => undefined);
    return next;
  };
  const load = async (): Promise<Record<string, unknown>> => {
    const instance = new r.ctor() as Record<string, unknown>;
    const state = await kv.get<Record<string, unknown>>(STATE_KEY);
    if (state !== null && typeof state === "object") Object.assign(instance, state);
    return instance;
  };
  const save = (instance: Record<string, unknown>) => kv.set(STATE_KEY, Object.fromEntries(Object.entries(instance)));
  const invoke = async (instance: Record<string, unknown>, method: string, arg?: unknown): Promise<unknown> => {
    const fn = instance[method];
    if (typeof fn !== "function") throw new Error(`method ${method} not found on capsule instance`);
    return arg === undefined ? fn.call(instance) : fn.call(instance, arg);
  };
  /** Runs a handler on a fresh instance, or — mutable — on the stored state, saved again when it succeeds. */
  const dispatch = (handler: Handler, arg: unknown): Promise<unknown> => {
    if (!handler.mutable) return invoke(new r.ctor() as Record<string, unknown>, handler.method, arg);
    return serial(async () => {
      const instance = await load();
      const out = await invoke(instance, handler.method, arg);
      await save(instance);
      return out;
    });
  };
  const keepsState = r.run !== undefined || [...r.tools.values(), ...r.interceptors.values(), ...r.commands.values()].some((h) => h.mutable);

  const definition: CapsuleDefinition = { tools: {}, interceptors: {} };
  for (const [name, entry] of r.tools) {
    definition.tools![name] = {
      ...(entry.description !== undefined ? { description: entry.description } : {}),
      // As the reference describes a tool: its schema (an empty object by default) with `mutable` as an extension.
      inputSchema: { ...(entry.inputSchema ?? { type: "object", properties: {} }), mutable: entry.mutable },
      execute: async (args) => {
        const out = await dispatch(entry, args ?? undefined);
        return typeof out === "string" ? out : out === undefined ? "null" : JSON.stringify(out);
      },
    };
  }
  for (const [action, entry] of [...r.commands, ...r.interceptors]) {
    definition.interceptors![action] = async (event) => {
      const out = await callers.run({ principal: event.principal, sourceId: event.source_id }, () => dispatch(entry, event.payload ?? undefined));
      return out === null ? undefined : out;
    };
  }
  if (r.install !== undefined || keepsState) {
    // As the reference: install (on a fresh instance) and upgrade (on the stored state) save the state they leave.
    definition.install = async () => {
      const instance = new r.ctor() as Record<string, unknown>;
      if (r.install !== undefined) await invoke(instance, r.install);
      if (keepsState) await save(instance);
    };
  }
  if (r.upgrade !== undefined) {
    definition.upgrade = async (_api, previous) => {
      const instance = keepsState ? await load() : (new r.ctor() as Record<string, unknown>);
      await invoke(instance, r.upgrade!, previous);
      if (keepsState) await save(instance);
    };
  }
  if (r.run !== undefined) {
    const method = r.run;
    // The loop never returns: start it, and call the capsule ready once it signals so (and the subscriptions it made
    // by then are in place), or after the reference's wait.
    definition.setup = async () => {
      const instance = await load();
      const loop = invoke(instance, method).then(
        () => ctx.log("warn", "run loop returned"),
        (err: Error) => ctx.log("error", `run loop exited with error: ${err?.stack ?? String(err)}`),
      );
      await Promise.race([ready, loop, new Promise((resolve) => setTimeout(resolve, RUN_READY_WAIT_MS))]);
    };
  }
  return definition;
}

