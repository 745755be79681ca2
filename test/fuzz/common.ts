/**
 * What the fuzz workers share: a seeded random source (a run can be replayed
 * from its seed), the rule for which errors are acceptable, the process's fd
 * and mapping counts, and the messages a worker sends its supervisor.
 */
import { closeSync, openSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { inspect } from 'node:util';

export class Random {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0 || 1;
  }

  /** mulberry32: small, fast, and the same sequence for the same seed. */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(below: number): number {
    return Math.floor(this.next() * below);
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

export type ErrorVerdict = 'ok' | 'finding';

/**
 * The library's promise: wrong types are TypeErrors, bad ranges RangeErrors,
 * everything else a Node-shaped error with a string `code`. Anything else
 * thrown (a plain Error without code, a string, undefined) is a finding.
 */
export function judgeError(error: unknown): ErrorVerdict {
  if (error instanceof TypeError || error instanceof RangeError) return 'ok';
  // An aborted wait rejects with its signal's reason, as fetch and Node's own
  // promise APIs do: AbortSignal.abort() and AbortSignal.timeout() make
  // DOMExceptions named AbortError and TimeoutError.
  if (error instanceof DOMException && (error.name === 'AbortError' || error.name === 'TimeoutError')) return 'ok';
  if (error instanceof Error && typeof (error as { code?: unknown }).code === 'string') return 'ok';
  return 'finding';
}

/** A short, one-line account of a thrown value, for the findings list. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return `${error.constructor.name}${code === undefined ? '' : `[${typeof code === 'string' ? code : inspect(code)}]`}: ${error.message.slice(0, 200)}`;
  }
  return `a thrown ${typeof error}: ${String(error).slice(0, 200)}`;
}

export function openFdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Mappings of dma-bufs and memfds in this process (/proc/self/maps names them /dmabuf:... and /memfd:...). */
export function bufferMappingCount(): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((line) => line.includes('/dmabuf:') || line.includes('/memfd:')).length;
}

export interface Finding {
  kind: string;
  call: string;
  detail: string;
}

/** Worker to supervisor, over the fork IPC channel. */
export type WorkerMessage =
  | { type: 'progress'; calls: number }
  | { type: 'finding'; finding: Finding }
  | { type: 'done'; calls: number; fds: [number, number]; mappings: [number, number]; outcomes: Record<string, number>; notes: Record<string, number> };

export function send(message: WorkerMessage): void {
  process.send!(message);
}

/**
 * The call being made, written to a file before each call: if the process
 * dies in it (a crash in the addon, a hang in the kernel), the supervisor
 * reads which call it was.
 */
export class LastCall {
  readonly #fd: number;

  constructor(path: string) {
    this.#fd = openSync(path, 'w');
  }

  record(text: string): void {
    // Fixed length, so a shorter call does not leave the tail of a longer one.
    writeSync(this.#fd, `${text.slice(0, 2000).padEnd(2000)}\n`, 0);
  }

  close(): void {
    closeSync(this.#fd);
  }
}

export function lastCallPath(dir: string, worker: number): string {
  return `${dir}/fuzz-last-call-${worker}`;
}
