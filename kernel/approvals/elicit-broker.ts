/**
 * Elicitation: a capsule's install or upgrade hook asks the operator for a value (an API key, a name, a choice).
 * A hook runs at load, outside any session, so the question goes to the capsule owner's connections (for capsules
 * installed today, the operator's: `astrid chat`, `astrid capsule install`, a script holding the session token):
 * `elicit_request` on `astrid.v1.elicit`, answered by `elicit_response` on `astrid.v1.elicit.response.<id>` from a
 * connection acting for that owner. The first valid answer wins; an answer with neither `value` nor `values` is a
 * cancel. Answers are never forwarded to capsules or to other clients (session-router, syscall gate).
 */
import { randomUUID } from "node:crypto";
import { AstridError } from "../../protocol/errors";
import { NIL_UUID, type IpcPayload } from "../../protocol/ipc-message";
import { ELICIT_RESPONSE_PREFIX, ELICIT_TOPIC } from "../../protocol/topics";
import type { BusEvent, EventBus } from "../bus";
import type { Audience } from "../capsules/host-call";
import type { CapsuleRun } from "../capsules/capsule-run";
import type { Logger } from "../logger";

/** A value to ask for (validated by the host service). */
export interface ElicitField {
  type: "text" | "secret" | "select" | "array";
  key: string;
  description?: string;
  options?: string[];
  default?: string;
}

/** What the operator answered. */
export type ElicitReply = { value: string } | { values: string[] };

/** Most open elicitations of the daemon (hooks of different capsules may ask at once; one capsule asks one at a time). */
export const MAX_PENDING_ELICITS = 64;
/** Longest answer (a value, or all values together), in UTF-8 bytes. */
export const MAX_ANSWER_BYTES = 64 * 1024;
/** Most values of an `array` answer. */
export const MAX_ANSWER_VALUES = 256;

interface Pending {
  run: CapsuleRun;
  owner: string;
  field: ElicitField;
  timer: NodeJS.Timeout;
  resolve: (reply: ElicitReply) => void;
  reject: (err: Error) => void;
}

/** What the broker needs of the kernel. */
export interface ElicitBrokerOptions {
  bus: EventBus;
  logger: Logger;
  audience: Audience | undefined;
  timeoutMs: number;
}

/** Asks the operator, waits for the answer. */
export class ElicitBroker {
  private readonly pending = new Map<string, Pending>();
  private readonly unsubscribe: () => void;
  private closed = false;

  constructor(private readonly o: ElicitBrokerOptions) {
    this.unsubscribe = o.bus.subscribe(`${ELICIT_RESPONSE_PREFIX}*`, (event) => this.onAnswer(event));
  }

  /** Questions waiting for an answer. */
  get size(): number {
    return this.pending.size;
  }

  /**
   * Asks `run`'s owner for `field`; resolves with the answer. Rejects with ASTRID_ERR_NOBODY_TO_ASK when no
   * connection acts for the owner, ASTRID_ERR_ELICIT_CANCELLED on a cancel, ASTRID_ERR_TIMEOUT when nobody answers.
   */
  ask(run: CapsuleRun, field: ElicitField): Promise<ElicitReply> {
    if (this.closed) return Promise.reject(new AstridError("ASTRID_ERR_SHUTTING_DOWN", "the daemon is shutting down"));
    const owner = run.owner;
    if ((this.o.audience?.actingFor(owner) ?? 0) === 0) {
      return Promise.reject(new AstridError("ASTRID_ERR_NOBODY_TO_ASK",
        `${run.record.name} asks for ${JSON.stringify(field.key)} but no connection of ${owner} is open to answer; install it with \`astrid capsule install\` (or keep \`astrid chat\` open) so the question can be answered`));
    }
    if ([...this.pending.values()].some((p) => p.run === run) || this.pending.size >= MAX_PENDING_ELICITS) {
      return Promise.reject(new AstridError("ASTRID_ERR_RATE_LIMITED", `${run.record.name}: one elicitation at a time per capsule (and ${MAX_PENDING_ELICITS} in all)`));
    }
    const requestId = randomUUID();
    return new Promise<ElicitReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        const p = this.take(requestId);
        p?.reject(new AstridError("ASTRID_ERR_TIMEOUT", `nobody answered ${run.record.name}'s question ${JSON.stringify(field.key)} within ${this.o.timeoutMs} ms`));
      }, this.o.timeoutMs);
      this.pending.set(requestId, { run, owner, field, timer, resolve, reject });
      const payload = {
        type: "elicit_request",
        request_id: requestId,
        capsule_id: run.record.name,
        field: {
          type: field.type,
          key: field.key,
          description: field.description ?? "",
          ...(field.options !== undefined ? { options: field.options } : {}),
          ...(field.default !== undefined ? { default: field.default } : {}),
        },
      };
      // No session_id: the session router sends it to the connections acting for the owner.
      this.o.bus.publish({ topic: ELICIT_TOPIC, payload: payload as unknown as IpcPayload, source_id: NIL_UUID, principal: owner });
    });
  }

  /** The run ended: its open question is withdrawn. */
  endRun(run: CapsuleRun): void {
    for (const [id, p] of [...this.pending]) {
      if (p.run === run) this.take(id)?.reject(new AstridError("ASTRID_ERR_CAPSULE_UNAVAILABLE", `${run.record.name} stopped before its question was answered`));
    }
  }

  /** The daemon is stopping: every open question fails. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    for (const id of [...this.pending.keys()]) this.take(id)?.reject(new AstridError("ASTRID_ERR_SHUTTING_DOWN", "the daemon is shutting down"));
  }

  private onAnswer(event: BusEvent): void {
    const { message, origin } = event;
    const requestId = message.topic.slice(ELICIT_RESPONSE_PREFIX.length);
    if (origin === undefined) {
      this.o.logger.warn("elicit answer not from a client ignored", { request_id: requestId.slice(0, 64), source: message.source_id });
      return;
    }
    const p = this.pending.get(requestId);
    if (!p) return this.tell(origin, `no open elicit request ${JSON.stringify(requestId.slice(0, 64))} (answered already, timed out, or never asked)`);
    if (message.principal !== p.owner || this.o.audience?.connectionActsFor(origin, p.owner) !== true) {
      this.o.logger.warn("elicit answer from another principal ignored", { request_id: requestId, capsule: p.run.record.name, connection: origin, answered_as: message.principal });
      return;
    }
    const read = readAnswer(message.payload, requestId, p.field);
    if (typeof read === "string") return this.tell(origin, read);
    const taken = this.take(requestId)!;
    if (read === null) {
      taken.reject(new AstridError("ASTRID_ERR_ELICIT_CANCELLED", `the operator cancelled ${p.run.record.name}'s question ${JSON.stringify(p.field.key)}`));
    } else {
      taken.resolve(read);
    }
  }

  /** Tells the client that sent a frame why it was not taken (to that connection only). */
  private tell(conn: number, text: string): void {
    this.o.audience?.refuse(conn, text);
  }

  private take(requestId: string): Pending | undefined {
    const p = this.pending.get(requestId);
    if (!p) return undefined;
    this.pending.delete(requestId);
    clearTimeout(p.timer);
    return p;
  }
}

/**
 * A client's answer: the reply, null for a cancel (neither `value` nor `values`), or the reason it is not taken
 * (the asker may send a corrected one; the question stays open).
 */
function readAnswer(payload: unknown, requestId: string, field: ElicitField): ElicitReply | null | string {
  const p = (payload !== null && typeof payload === "object" ? payload : {}) as Record<string, unknown>;
  if (p.type !== "elicit_response" || p.request_id !== requestId) {
    return `an elicit_response needs "type": "elicit_response" and "request_id": ${JSON.stringify(requestId)}`;
  }
  if (p.value === undefined && p.values === undefined) return null;
  if (field.type === "array") {
    const values = p.values ?? (typeof p.value === "string" ? [p.value] : undefined);
    if (!Array.isArray(values) || !values.every((v) => typeof v === "string") || values.length > MAX_ANSWER_VALUES) {
      return `the answer to ${field.key} (array) needs "values": up to ${MAX_ANSWER_VALUES} strings`;
    }
    if (Buffer.byteLength(values.join("")) > MAX_ANSWER_BYTES) return `the answer to ${field.key} is larger than ${MAX_ANSWER_BYTES} bytes`;
    return { values: values as string[] };
  }
  if (typeof p.value !== "string") return `the answer to ${field.key} (${field.type}) needs a string "value"`;
  if (Buffer.byteLength(p.value) > MAX_ANSWER_BYTES) return `the answer to ${field.key} is larger than ${MAX_ANSWER_BYTES} bytes`;
  if (field.type === "select" && !field.options!.includes(p.value)) return `the answer to ${field.key} must be one of: ${field.options!.join(", ")}`;
  return { value: p.value };
}
