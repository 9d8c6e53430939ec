/**
 * One prompt's turn as an async iterator: events are queued as they arrive and handed to the reader in order; the
 * iterator ends after the final response, or throws the error that ended the turn (a refusal, the deadline, the
 * connection lost). The queue is bounded: a reader that stops reading ends its own turn, not the process.
 */
import { AstridError } from "../protocol/errors";
import type { TurnEvent } from "./turn-events";

/** Events a turn holds for a reader that is behind; past it the turn fails (ASTRID_ERR_SLOW_CONSUMER). */
export const MAX_QUEUED_TURN_EVENTS = 4096;

/** A prompt's turn; iterate it with `for await`. Breaking out of the loop forgets the turn. */
export class Turn implements AsyncIterableIterator<TurnEvent> {
  private readonly queue: TurnEvent[] = [];
  private wake: (() => void) | undefined;
  private error: Error | undefined;
  private ended = false;
  private timer: NodeJS.Timeout | undefined;
  /** True once any event (or an error) arrived: an error frame is then not this turn's. */
  answered = false;

  constructor(
    /** The session the prompt was sent in. */
    readonly session: string,
    /** The `context.turn_id` the prompt carried. */
    readonly id: string,
    /** Key of the platform user the prompt spoke for ("" for none). */
    readonly userKey: string,
    timeoutMs: number,
    private readonly onDone: (turn: Turn) => void,
  ) {
    this.timer = setTimeout(() => this.fail(new AstridError("ASTRID_ERR_TIMEOUT", `no final reply in session ${session} within ${timeoutMs} ms`)), timeoutMs);
  }

  /** True until the turn ended (final response, error, or the reader left). */
  get open(): boolean {
    return !this.ended && this.error === undefined;
  }

  /** Queues an event; the final response ends the turn after it is read. */
  push(event: TurnEvent): void {
    if (!this.open) return;
    this.answered = true;
    if (this.queue.length >= MAX_QUEUED_TURN_EVENTS) {
      this.fail(new AstridError("ASTRID_ERR_SLOW_CONSUMER", `the reader of session ${this.session}'s turn fell ${MAX_QUEUED_TURN_EVENTS} events behind; the turn was dropped`));
      return;
    }
    this.queue.push(event);
    if (event.type === "response") this.finish();
    this.notify();
  }

  /** Ends the turn with `err` (events already queued are still read first). */
  fail(err: Error): void {
    if (!this.open) return;
    this.answered = true;
    this.error = err;
    this.finish();
    this.notify();
  }

  async next(): Promise<IteratorResult<TurnEvent>> {
    for (;;) {
      const event = this.queue.shift();
      if (event) return { value: event, done: false };
      if (this.error) {
        const err = this.error;
        this.error = undefined;
        this.ended = true;
        throw err;
      }
      if (this.ended) return { value: undefined, done: true };
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** The reader left (`break`): the turn is forgotten; later replies to it are dropped. */
  async return(): Promise<IteratorResult<TurnEvent>> {
    this.queue.length = 0;
    this.error = undefined;
    this.ended = true;
    this.finish();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Reads the whole turn and resolves with the final response's text (deltas are dropped). */
  async text(): Promise<string> {
    let final = "";
    for await (const event of this) if (event.type === "response") final = event.text;
    return final;
  }

  private finish(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.error === undefined) this.ended = true;
    this.onDone(this);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
