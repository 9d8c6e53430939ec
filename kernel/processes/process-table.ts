/**
 * Which host processes each capsule run holds, and the limits on them: at most MAX_BACKGROUND_PER_CAPSULE
 * background processes per capsule (and the acting principal's `max_background_processes` across capsules), at most
 * MAX_FOREGROUND_PER_CAPSULE `process.run`s at once, at most MAX_PROCESSES_TOTAL in the whole daemon. A slot is
 * reserved before a process starts, so concurrent calls cannot overshoot. Exited background processes keep their
 * logs (the newest MAX_EXITED_KEPT per capsule) until newer ones or the run's end release them.
 */
import { randomUUID } from "node:crypto";
import { AstridError } from "../../protocol/errors";
import type { ManagedProcess } from "./managed-process";

/** Background processes one capsule may keep running. */
export const MAX_BACKGROUND_PER_CAPSULE = 8;
/** `process.run` calls one capsule may have running at once. */
export const MAX_FOREGROUND_PER_CAPSULE = 16;
/** Host processes in the whole daemon. */
export const MAX_PROCESSES_TOTAL = 128;
/** Exited background processes whose logs a capsule can still read. */
export const MAX_EXITED_KEPT = 8;

/** A background process and who started it. */
export interface BackgroundEntry {
  id: string;
  proc: ManagedProcess;
  principal: string;
  argv: readonly string[];
}

/** A reserved place for a process about to start. */
export interface Slot {
  readonly background: boolean;
  readonly principal: string;
  /** Set once the slot is filled or released. */
  done: boolean;
}

interface OwnerState {
  background: Map<string, BackgroundEntry>;
  foreground: Set<ManagedProcess>;
  slots: Set<Slot>;
}

/** Host processes by owner (a capsule run). */
export class ProcessTable<Owner extends object> {
  private readonly owners = new Map<Owner, OwnerState>();
  private closed = false;

  private state(owner: Owner): OwnerState {
    let state = this.owners.get(owner);
    if (!state) this.owners.set(owner, (state = { background: new Map(), foreground: new Set(), slots: new Set() }));
    return state;
  }

  /** Processes running or about to start, in the whole daemon. */
  get total(): number {
    let n = 0;
    for (const s of this.owners.values()) n += s.slots.size + s.foreground.size + [...s.background.values()].filter((e) => e.proc.running).length;
    return n;
  }

  /** Running background processes (and reserved ones) of `principal`, across owners. */
  private backgroundOf(principal: string): number {
    let n = 0;
    for (const s of this.owners.values()) {
      for (const e of s.background.values()) if (e.principal === principal && e.proc.running) n++;
      for (const slot of s.slots) if (slot.background && slot.principal === principal) n++;
    }
    return n;
  }

  /**
   * Reserves a place for a process of `owner` acting for `principal`, or throws ASTRID_ERR_PROCESS_LIMIT saying
   * which limit was reached. `principalBackgroundLimit`: the principal's max_background_processes.
   */
  reserve(owner: Owner, ownerName: string, principal: string, background: boolean, principalBackgroundLimit: number): Slot {
    if (this.closed) throw new AstridError("ASTRID_ERR_SHUTTING_DOWN", "the daemon is stopping; no new host processes");
    if (this.total >= MAX_PROCESSES_TOTAL) throw new AstridError("ASTRID_ERR_PROCESS_LIMIT", `the daemon already runs ${MAX_PROCESSES_TOTAL} host processes`);
    const s = this.state(owner);
    const mine = [...s.slots].filter((slot) => slot.background === background).length;
    if (background) {
      const running = [...s.background.values()].filter((e) => e.proc.running).length + mine;
      if (running >= MAX_BACKGROUND_PER_CAPSULE) {
        throw new AstridError("ASTRID_ERR_PROCESS_LIMIT", `${ownerName} already runs ${MAX_BACKGROUND_PER_CAPSULE} background processes (stop one with process.kill)`);
      }
      if (this.backgroundOf(principal) >= principalBackgroundLimit) {
        throw new AstridError("ASTRID_ERR_PROCESS_LIMIT", `principal ${principal} already runs ${principalBackgroundLimit} background processes (its max_background_processes quota)`);
      }
    } else if (s.foreground.size + mine >= MAX_FOREGROUND_PER_CAPSULE) {
      throw new AstridError("ASTRID_ERR_PROCESS_LIMIT", `${ownerName} already has ${MAX_FOREGROUND_PER_CAPSULE} process.run calls running`);
    }
    const slot: Slot = { background, principal, done: false };
    s.slots.add(slot);
    return slot;
  }

  /** Gives the slot back (the process did not start). */
  release(owner: Owner, slot: Slot): void {
    slot.done = true;
    this.owners.get(owner)?.slots.delete(slot);
  }

  /** Fills a foreground slot; the process leaves the table when it finishes. */
  addForeground(owner: Owner, slot: Slot, proc: ManagedProcess): void {
    this.checkSlot(slot, proc);
    const s = this.state(owner);
    this.release(owner, slot);
    s.foreground.add(proc);
    void proc.finished.then(() => s.foreground.delete(proc));
  }

  /** Fills a background slot; returns the id `logs` and `kill` take. */
  addBackground(owner: Owner, slot: Slot, proc: ManagedProcess, argv: readonly string[]): BackgroundEntry {
    this.checkSlot(slot, proc);
    const s = this.state(owner);
    this.release(owner, slot);
    const entry: BackgroundEntry = { id: randomUUID(), proc, principal: slot.principal, argv };
    s.background.set(entry.id, entry);
    void proc.finished.then(() => this.trimExited(s));
    return entry;
  }

  /** A background process of `owner`, running or exited (and not yet released). */
  get(owner: Owner, id: string): BackgroundEntry | undefined {
    return this.owners.get(owner)?.background.get(id);
  }

  /** Everything `owner` runs, for a stop; the owner is forgotten. */
  takeAll(owner: Owner): ManagedProcess[] {
    const s = this.owners.get(owner);
    if (!s) return [];
    this.owners.delete(owner);
    for (const slot of s.slots) slot.done = true;
    return [...s.foreground, ...[...s.background.values()].map((e) => e.proc)].filter((p) => p.running);
  }

  /** Every process of every owner; no process may be added afterwards. */
  closeAll(): ManagedProcess[] {
    this.closed = true;
    return [...this.owners.keys()].flatMap((owner) => this.takeAll(owner));
  }

  /** Running background processes of `owner` (for tests and status). */
  runningBackground(owner: Owner): number {
    return [...(this.owners.get(owner)?.background.values() ?? [])].filter((e) => e.proc.running).length;
  }

  /** A slot whose owner ended (or the daemon closed) while its process started: the process goes at once. */
  private checkSlot(slot: Slot, proc: ManagedProcess): void {
    if (!slot.done) return;
    proc.destroy(this.closed ? "the daemon is stopping" : "the capsule stopped");
    throw new AstridError(this.closed ? "ASTRID_ERR_SHUTTING_DOWN" : "ASTRID_ERR_CAPSULE_UNAVAILABLE", "the process was stopped as it started: its capsule (or the daemon) is stopping");
  }

  private trimExited(s: OwnerState): void {
    const exited = [...s.background.values()].filter((e) => !e.proc.running);
    for (const e of exited.slice(0, Math.max(0, exited.length - MAX_EXITED_KEPT))) s.background.delete(e.id);
  }
}
