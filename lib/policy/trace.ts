/**
 * What a profile did, in order: which exporter op ran for which attachment,
 * and who was notified. Every profile records the same kinds, so one
 * scenario run under several profiles can be compared line by line.
 */
export type TraceEventKind =
  | 'export'
  | 'attach'
  | 'detach'
  | 'pin'
  | 'unpin'
  | 'map'
  | 'map-cached'
  | 'unmap'
  | 'wait-kernel-fences'
  | 'move'
  | 'move-notify'
  | 'leak'
  | 'revoke'
  | 'release';

export interface TraceEvent {
  seq: number;
  profile: string;
  buffer: string;
  attachment?: string;
  kind: TraceEventKind;
  direction?: string;
}

export class Trace {
  readonly events: TraceEvent[] = [];
  readonly #listeners = new Set<(event: TraceEvent) => void>();

  record(event: Omit<TraceEvent, 'seq'>): void {
    const full = { seq: this.events.length + 1, ...event };
    this.events.push(full);
    for (const listener of this.#listeners) listener(full);
  }

  onEvent(listener: (event: TraceEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** How many events of each kind, per attachment (the kernel module's counters, in effect). */
  counts(): Record<string, Partial<Record<TraceEventKind, number>>> {
    const counts: Record<string, Partial<Record<TraceEventKind, number>>> = {};
    for (const event of this.events) {
      const key = event.attachment ?? event.buffer;
      counts[key] ??= {};
      counts[key][event.kind] = (counts[key][event.kind] ?? 0) + 1;
    }
    return counts;
  }

  /** One line per event, profile-independent, for diffing two profiles' runs. */
  lines(): string[] {
    return this.events.map((event) => [event.kind, event.buffer, event.attachment ?? '', event.direction ?? ''].join(' ').trimEnd());
  }
}
