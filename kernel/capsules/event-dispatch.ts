/**
 * What the bus hands to capsules: subscribed events (one-way, bounded by the capsule's queue), interceptor chains
 * (reference §6.7) and tool calls. Every answer a capsule gives over the control plane is validated before the
 * kernel acts on it; a dead, slow or lying capsule yields a skipped link or `is_error: true`, never silence.
 */
import { InterceptResultSchema, ToolOutcomeSchema, type InterceptResult, type ToCapsule, type ToolOutcome } from "../../protocol/capsule-messages";
import { isAstridError } from "../../protocol/errors";
import { guestView } from "../../protocol/ipc-message";
import { exactSegmentMatches, topicProblem } from "../../protocol/topic-match";
import { isAnswerTopic, TOOL_EXECUTE_PREFIX } from "../../protocol/topics";
import type { BusEvent, EventBus } from "../bus";
import { sessionIdOf } from "../session-router";
import type { Logger } from "../logger";
import type { CapsuleRun } from "./capsule-run";
import type { PrincipalQuotas } from "./principal-quotas";

/** Routes bus events into capsule workers. */
export class EventDispatch {
  /** Interceptor matches of bus events collected in the current delivery pass. */
  private readonly chains = new Map<BusEvent, Array<{ run: CapsuleRun; action: string; priority: number }>>();

  constructor(
    private readonly bus: EventBus,
    private readonly logger: Logger,
    private readonly handlerTimeoutMs: number,
    /** Quotas of the principal a call is made for (its max_timeout_secs bounds the call). */
    private readonly quotas: PrincipalQuotas,
    /** A capsule answered a control-plane call with something that is not a valid result. */
    private readonly malformedResult: (run: CapsuleRun, reason: string) => void,
    /** A call into a capsule ran past its deadline: its worker is stuck (an infinite loop) and must be restarted. */
    private readonly timedOut: (run: CapsuleRun, what: string) => void,
  ) {}

  /** A call's deadline: the handler timeout, shortened to the principal's max_timeout_secs. */
  private deadlineFor(principal: string): number {
    return Math.min(this.handlerTimeoutMs, this.quotas.get(principal).max_timeout_secs * 1000);
  }

  /** Posts an event to a ready capsule, or drops and counts it when its queue is full. */
  deliver(run: CapsuleRun, event: BusEvent, action?: string): void {
    if (run.ended || run.record.state !== "ready") return;
    if (run.queueFull) {
      if (run.dropped++ % 1000 === 0) this.logger.warn("capsule queue full; dropping events", { capsule: run.record.name, dropped: run.dropped });
      return;
    }
    run.delivered(event.message.seq, event.message.principal, sessionIdOf(event.message.payload));
    const { message } = event;
    const out: ToCapsule = { t: "event", topic: message.topic, payload: guestView(message.payload), source_id: message.source_id, seq: message.seq };
    if (message.principal !== undefined) out.principal = message.principal;
    if (event.attribution !== undefined) out.attribution = event.attribution;
    if (action !== undefined) out.action = action;
    run.post(out);
  }

  /**
   * Subscribes a ready capsule's `[[interceptor]]` events (exact-segment matcher). Every match of one bus event is
   * collected first (the bus calls all subscribers of an event in one synchronous pass), then dispatched once.
   */
  bindInterceptors(run: CapsuleRun): void {
    for (const interceptor of run.record.manifest.interceptor) {
      run.unsubscribe.push(this.bus.subscribe(interceptor.event, (event) => {
        // A person's answer (maybe an elicited secret) is the kernel's alone: no capsule intercepts it.
        if (event.message.source_id === run.sourceId || isAnswerTopic(event.message.topic)) return;
        let matches = this.chains.get(event);
        if (!matches) {
          matches = [];
          this.chains.set(event, matches);
          queueMicrotask(() => void this.dispatch(event));
        }
        matches.push({ run, action: interceptor.action, priority: interceptor.priority });
      }, exactSegmentMatches));
    }
  }

  /**
   * A run-loop capsule's `[[interceptor]]` events are its own bus subscriptions (bus matcher, no `ipc_subscribe`
   * check: the manifest declared them), which it drains by handle; the interceptor chain is not its (reference).
   */
  bindRunLoopInterceptors(run: CapsuleRun): void {
    const patterns = run.record.manifest.interceptor.map((i) => i.event);
    if (patterns.length === 0) return;
    run.unsubscribe.push(this.bus.subscribe(patterns, (event) => {
      if (event.message.source_id === run.sourceId || isAnswerTopic(event.message.topic)) return;
      this.deliver(run, event);
    }));
  }

  /**
   * Serves a ready capsule's tools: a `tool_execute_request` on `tool.v1.execute.<name>` runs the tool in the
   * capsule's worker (handler deadline) and the outcome is published as a `tool_execute_result` on
   * `tool.v1.execute.<name>.result`.
   */
  bindTools(run: CapsuleRun): void {
    for (const tool of run.record.tools ?? []) {
      const topic = `${TOOL_EXECUTE_PREFIX}${tool.name}`;
      if (topicProblem(topic)) {
        this.logger.warn("tool name cannot form a topic; not served", { capsule: run.record.name, tool: tool.name });
        continue;
      }
      run.unsubscribe.push(this.bus.subscribe(topic, (event) => void this.runTool(run, tool.name, event), exactSegmentMatches));
    }
  }

  private async runTool(run: CapsuleRun, name: string, event: BusEvent): Promise<void> {
    const request = event.message.payload;
    if (request.type !== "tool_execute_request") return;
    const callId = String(request.call_id);
    const outcome = await this.executeTool(run, name, request.arguments, event.message.seq, event.message.principal, sessionIdOf(event.message.payload));
    this.bus.publish({
      topic: `${TOOL_EXECUTE_PREFIX}${name}.result`,
      payload: { type: "tool_execute_result", call_id: callId, result: { call_id: callId, content: outcome.content, is_error: outcome.is_error } },
      source_id: run.sourceId,
      principal: event.message.principal ?? run.owner,
    });
  }

  /**
   * Runs tool `name` in the capsule's worker for message `seq` (of `principal`) under the handler deadline; a
   * failure, a malformed answer or a dead worker becomes `is_error: true`, never a throw. The bus path above and the
   * operator's `CallTool` share it.
   */
  async executeTool(run: CapsuleRun, name: string, args: unknown, seq: number, principal: string | undefined, sessionId?: string): Promise<ToolOutcome> {
    try {
      run.remember(seq, principal, sessionId);
      const raw = await run.remote.call((r) => r.executeTool(name, args, seq) as Promise<unknown>, this.deadlineFor(principal ?? run.owner));
      const parsed = ToolOutcomeSchema.safeParse(raw);
      if (parsed.success) return parsed.data;
      this.malformedResult(run, `tool ${name} answered with a malformed outcome`);
      return { content: `${run.record.name} answered with a malformed tool outcome`, is_error: true };
    } catch (err) {
      if (isAstridError(err) && err.code === "ASTRID_ERR_TIMEOUT") this.timedOut(run, `tool ${name}`);
      return { content: (err as Error).message, is_error: true };
    }
  }

  /**
   * A tool served the reference's way — an `[[interceptor]]` on `tool.v1.execute.<name>` with the action
   * `tool_execute_<name>` (a WebAssembly capsule's, or one written for the reference SDK) — runs as a call with the
   * handler deadline, not a one-way delivery. The capsule publishes its `tool_execute_result` itself; when it cannot
   * (it trapped, denied, timed out or died), the kernel publishes an `is_error` result, so the caller never waits
   * for an answer that is not coming.
   */
  private async interceptTool(run: CapsuleRun, action: string, event: BusEvent): Promise<void> {
    if (run.ended || run.record.state !== "ready") return;
    const { message } = event;
    const name = toolOfInterceptor(event, action)!;
    const input = { topic: message.topic, payload: guestView(message.payload), source_id: message.source_id, seq: message.seq, ...(message.principal !== undefined ? { principal: message.principal } : {}) };
    let failure: string | undefined;
    try {
      run.remember(message.seq, message.principal, sessionIdOf(message.payload));
      const raw = await run.remote.call((r) => r.intercept(action, input) as Promise<unknown>, this.deadlineFor(message.principal ?? run.owner));
      const parsed = InterceptResultSchema.safeParse(raw);
      if (!parsed.success) {
        this.malformedResult(run, `interceptor ${action} answered with a malformed decision`);
        failure = `${run.record.name} answered tool ${name} with a malformed decision`;
      } else if (parsed.data.action === "deny") failure = parsed.data.reason ?? `${run.record.name} denied tool ${name}`;
    } catch (err) {
      if (isAstridError(err) && err.code === "ASTRID_ERR_TIMEOUT") this.timedOut(run, `interceptor ${action}`);
      failure = (err as Error).message;
    }
    if (failure === undefined) return;
    this.logger.warn("a tool interceptor failed; its caller gets an error result", { capsule: run.record.name, action, error: failure });
    const callId = String(message.payload.call_id);
    this.bus.publish({
      topic: `${TOOL_EXECUTE_PREFIX}${name}.result`,
      payload: { type: "tool_execute_result", call_id: callId, result: { call_id: callId, content: failure, is_error: true } },
      source_id: run.sourceId,
      principal: message.principal ?? run.owner,
    });
  }

  /**
   * Reference §6.7: one match goes onto that capsule's ordered queue; several run as a chain by ascending priority,
   * each call bounded by the handler deadline — a returned payload replaces the event's for the next interceptor,
   * `final` or a denial stops the chain, an error, a malformed answer or a dead capsule skips that link.
   */
  private async dispatch(event: BusEvent): Promise<void> {
    const matches = this.chains.get(event) ?? [];
    this.chains.delete(event);
    if (matches.length === 1 && toolOfInterceptor(event, matches[0]!.action) !== undefined) return this.interceptTool(matches[0]!.run, matches[0]!.action, event);
    if (matches.length === 1) return this.deliver(matches[0]!.run, event, matches[0]!.action);
    matches.sort((a, b) => a.priority - b.priority);
    const { message } = event;
    let payload = guestView(message.payload);
    for (const link of matches) {
      if (link.run.ended || link.run.record.state !== "ready") continue;
      const input = { topic: message.topic, payload, source_id: message.source_id, seq: message.seq, ...(message.principal !== undefined ? { principal: message.principal } : {}) };
      let result: InterceptResult;
      try {
        link.run.remember(message.seq, message.principal, sessionIdOf(message.payload));
        const raw = await link.run.remote.call((r) => r.intercept(link.action, input) as Promise<unknown>, this.deadlineFor(message.principal ?? link.run.owner));
        const parsed = InterceptResultSchema.safeParse(raw);
        if (!parsed.success) {
          this.malformedResult(link.run, `interceptor ${link.action} answered with a malformed decision`);
          continue;
        }
        result = parsed.data;
      } catch (err) {
        this.logger.warn("interceptor skipped", { capsule: link.run.record.name, action: link.action, error: (err as Error).message });
        if (isAstridError(err) && err.code === "ASTRID_ERR_TIMEOUT") this.timedOut(link.run, `interceptor ${link.action}`);
        continue;
      }
      if (result.action === "deny") {
        this.logger.info("interceptor denied an event", { capsule: link.run.record.name, topic: message.topic, reason: result.reason });
        return;
      }
      if (result.data !== undefined) payload = result.data;
      if (result.action === "final") return;
    }
  }
}

/** The tool an interceptor serves: `<name>` when the event is a `tool_execute_request` on `tool.v1.execute.<name>` and the action is `tool_execute_<name>`. */
function toolOfInterceptor(event: BusEvent, action: string): string | undefined {
  const { topic, payload } = event.message;
  if (!topic.startsWith(TOOL_EXECUTE_PREFIX) || payload.type !== "tool_execute_request") return undefined;
  const name = topic.slice(TOOL_EXECUTE_PREFIX.length);
  return action === `tool_execute_${name}` ? name : undefined;
}
