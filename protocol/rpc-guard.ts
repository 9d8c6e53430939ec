/**
 * The checks of a guarded `rpc-channel` side, as zod schemas of comlink's wire messages: a request must be a plain
 * APPLY of one of the exposed methods with raw arguments (or a RELEASE); a reply must be a raw value. Everything
 * else comlink can express — GET/SET/CONSTRUCT/ENDPOINT, proxies, transferred ports, thrown values — is refused.
 */
import { z } from "zod";
import type { ChannelGuard, WireCheck } from "./rpc-channel";

/** Most arguments an exposed method takes across the channel. */
const MAX_ARGUMENTS = 8;
const MessageId = z.string().min(1).max(128);
const RawWireValue = z.strictObject({ type: z.literal("RAW"), value: z.unknown() });
/** A reply the guarded side accepts: a raw value answering one of its calls. */
const ReplySchema = z.strictObject({ id: MessageId, type: z.literal("RAW"), value: z.unknown() });

/** A guard for a side that exposes `methods` and reports refused messages to `onInvalid`. */
export function comlinkGuard(methods: readonly [string, ...string[]], onInvalid: (reason: string) => void): ChannelGuard {
  const RequestSchema = z.discriminatedUnion("type", [
    z.strictObject({
      id: MessageId,
      type: z.literal("APPLY"),
      path: z.tuple([z.enum(methods)]),
      argumentList: z.array(RawWireValue).max(MAX_ARGUMENTS),
    }),
    z.strictObject({ id: MessageId, type: z.literal("RELEASE"), path: z.array(z.string()).max(0).optional() }),
  ]);
  return { request: (data) => check(RequestSchema, data), reply: (data) => check(ReplySchema, data), onInvalid };
}

function check(schema: z.ZodType<{ id: string }>, data: unknown): WireCheck {
  const parsed = schema.safeParse(data);
  if (parsed.success) return { ok: true, message: parsed.data };
  const issue = parsed.error.issues[0];
  return { ok: false, reason: issue ? `${issue.path.join(".") || "message"}: ${issue.message}`.slice(0, 200) : "invalid" };
}
