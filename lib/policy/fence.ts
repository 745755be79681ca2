/**
 * Fences as the reservation model sees them: something that signals once,
 * from a timeline (context) with increasing sequence numbers. A fence may be
 * a JavaScript one, or stand for a real sync_file through `externalFence`.
 */

import * as validate from '../validate';

// MAX_ERRNO (include/linux/err.h): the kernel's errors are -1 to -4095.
const maxErrno = 4095;

/** The kernel's usages, in its order: waiting for one waits for those before it too. */
export const fenceUsages = ['kernel', 'write', 'read', 'bookkeep'] as const;
export type FenceUsage = (typeof fenceUsages)[number];

export function usageRank(usage: FenceUsage): number {
  return fenceUsages.indexOf(usage);
}

export interface PolicyFence {
  readonly context: number;
  readonly seqno: number;
  readonly signaled: boolean;
  /** A negative errno once signalled with an error. */
  readonly error: number | undefined;
  /** Resolves once signalled, with or without an error. */
  whenSignaled(): Promise<void>;
}

let nextContext = 1;

/** dma_fence_context_alloc: a new timeline. */
export function allocateFenceContext(): number {
  return nextContext++;
}

/** A fence signalled from JavaScript. */
export class JsFence implements PolicyFence {
  #signaled = false;
  #error: number | undefined;
  readonly #waiters: (() => void)[] = [];

  constructor(
    readonly context: number,
    readonly seqno: number,
  ) {}

  get signaled(): boolean {
    return this.#signaled;
  }

  get error(): number | undefined {
    return this.#error;
  }

  /** Signals once; false if it already was (as dma_fence_signal's -EINVAL). */
  signal(error?: number): boolean {
    if (this.#signaled) return false;
    if (error !== undefined) validate.integer('error', error, -maxErrno, -1);
    this.#error = error;
    this.#signaled = true;
    for (const wake of this.#waiters.splice(0)) wake();
    return true;
  }

  whenSignaled(): Promise<void> {
    if (this.#signaled) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

/** A timeline of JsFences, like a driver's fence context. */
export class FenceTimeline {
  readonly context = allocateFenceContext();
  #seqno = 0;

  next(): JsFence {
    this.#seqno += 1;
    return new JsFence(this.context, this.#seqno);
  }
}

/** What the model needs of a real fence (a SyncFile satisfies it). */
export interface ExternalFenceSource {
  info(): { status: string; statusCode: number };
  wait(options?: { timeoutMs?: number }): Promise<unknown>;
}

/**
 * Wraps a real fence, such as a SyncFile, so that it can sit in a model
 * reservation object. Each gets a timeline of its own: the model cannot
 * know the kernel's contexts, so it never replaces one with another.
 */
export function externalFence(source: ExternalFenceSource): PolicyFence {
  const context = allocateFenceContext();
  let settled: Promise<void> | undefined;
  return {
    context,
    seqno: 1,
    get signaled() {
      return source.info().status !== 'active';
    },
    get error() {
      const { statusCode } = source.info();
      return statusCode < 0 ? statusCode : undefined;
    },
    whenSignaled() {
      settled ??= source.wait().then(
        () => undefined,
        () => undefined,
      );
      return settled;
    },
  };
}

/** dma_fence_is_later for fences of one context. */
export function isLater(fence: PolicyFence, than: PolicyFence): boolean {
  return fence.seqno > than.seqno;
}
