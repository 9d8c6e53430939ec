/**
 * One agent reply shown on Discord while it streams: the text so far is posted at once, then edited in place as
 * deltas arrive, split into messages of at most 2 000 characters. Discord rate-limits edits (about 5 per 5 s per
 * channel), so edits are coalesced: one round of edits per `editIntervalMs` at most, each message edited only when
 * its own text changed, one round at a time. A reply longer than `maxMessages` messages is cut with a notice.
 */
import { DISCORD_MESSAGE_LIMIT, type PostedMessage, type SeamChannel } from "./seam";

/** Options of a ReplyStream. */
export interface ReplyStreamOptions {
  /** The Discord message the reply answers. */
  replyTo?: string;
  /** Least time between two rounds of edits (ms; default 1000). */
  editIntervalMs?: number;
  /** Most messages one reply may take (default 10: 20 000 characters); the rest is cut with a notice. */
  maxMessages?: number;
  /** Told about a post or edit Discord refused (the stream stops updating). */
  onError?: (err: unknown) => void;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/**
 * Splits `text` into pieces of at most `limit` UTF-16 code units (never more characters than Discord counts),
 * cutting after the last line break in the second half of a piece, else after the last space there, else hard —
 * never inside a surrogate pair. A piece's cut depends only on the text up to it, so the earlier messages of a
 * growing reply keep their text.
 */
export function splitForDiscord(text: string, limit = DISCORD_MESSAGE_LIMIT): string[] {
  const pieces: string[] = [];
  let rest = text;
  while (rest.length > limit) {
    const window = rest.slice(0, limit);
    let cut = window.lastIndexOf("\n") + 1;
    if (cut <= limit / 2) cut = window.lastIndexOf(" ") + 1;
    if (cut <= limit / 2) cut = isHighSurrogate(rest.charCodeAt(limit - 1)) ? limit - 1 : limit;
    pieces.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  if (rest.length > 0) pieces.push(rest);
  return pieces;
}

/** The messages a reply takes: split, at most `max`, the last one ending with a notice when the reply was cut. */
export function piecesOf(text: string, max: number, limit = DISCORD_MESSAGE_LIMIT): string[] {
  const pieces = splitForDiscord(text, limit);
  if (pieces.length <= max) return pieces;
  const kept = pieces.slice(0, max);
  const shown = kept.slice(0, -1).reduce((n, p) => n + p.length, 0);
  const notice = (cutChars: number) => `\n… (reply cut: ${cutChars} more characters not shown)`;
  let last = kept[max - 1]!;
  last = last.slice(0, limit - notice(text.length).length);
  if (isHighSurrogate(last.charCodeAt(last.length - 1))) last = last.slice(0, -1);
  kept[max - 1] = last + notice(text.length - shown - last.length);
  return kept;
}

/** A reply being streamed into one channel. */
export class ReplyStream {
  private text = "";
  private final = false;
  private failed = false;
  private readonly posted: Array<{ message: PostedMessage; content: string }> = [];
  private lastRoundAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  private readonly settled: Promise<void>;
  private settle!: () => void;
  private readonly interval: number;
  private readonly max: number;

  constructor(private readonly channel: SeamChannel, private readonly options: ReplyStreamOptions = {}) {
    this.interval = options.editIntervalMs ?? 1000;
    this.max = options.maxMessages ?? 10;
    this.settled = new Promise((resolve) => (this.settle = resolve));
  }

  /** Adds a delta; shown with the next round of edits. */
  append(delta: string): void {
    if (this.final) return;
    this.text += delta;
    this.schedule();
  }

  /** Sets the final text (the agent's whole reply) and resolves once it is all on Discord (or failed). */
  finish(text: string): Promise<void> {
    if (!this.final) {
      this.final = true;
      this.text = text.trim() === "" ? "(the agent sent an empty reply)" : text;
      this.schedule();
    }
    return this.settled;
  }

  /** Stops streaming and shows `line` (an error) after what was shown so far. */
  fail(line: string): Promise<void> {
    if (this.final) return this.settled;
    return this.finish(this.text === "" ? line : `${this.text}\n${line}`);
  }

  /** Stops at once: no more posts or edits. */
  destroy(): void {
    this.failed = true;
    this.final = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.settle();
  }

  private pieces(): string[] {
    return this.text === "" ? [] : piecesOf(this.text, this.max);
  }

  private dirty(): boolean {
    const pieces = this.pieces();
    for (let i = 0; i < Math.max(pieces.length, this.posted.length); i++) if (this.posted[i]?.content !== (pieces[i] ?? "…")) return true;
    return false;
  }

  private schedule(): void {
    if (this.failed || this.timer || this.round) return;
    if (!this.dirty()) {
      if (this.final) this.settle();
      return;
    }
    const wait = Math.max(0, this.lastRoundAt + this.interval - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.round = this.editRound().finally(() => {
        this.round = undefined;
        this.schedule();
      });
    }, wait);
  }

  /** One round: posts the new pieces, edits the changed ones, blanks pieces a shorter final text no longer has. */
  private async editRound(): Promise<void> {
    this.lastRoundAt = Date.now();
    const pieces = this.pieces();
    try {
      for (let i = 0; i < Math.max(pieces.length, this.posted.length); i++) {
        if (this.failed) return;
        const content = pieces[i] ?? "…";
        const had = this.posted[i];
        if (had && had.content === content) continue;
        if (had) {
          await had.message.edit({ content });
          had.content = content;
        } else {
          const message = await this.channel.send({ content, ...(i === 0 && this.options.replyTo ? { replyTo: this.options.replyTo } : {}) });
          this.posted.push({ message, content });
        }
      }
    } catch (err) {
      this.options.onError?.(err);
      this.destroy();
    }
  }
}
