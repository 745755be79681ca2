import { codedError } from '../errors';
import * as validate from '../validate';
import { policyErrno } from './errors';
import { fenceUsages, isLater, usageRank, type FenceUsage, type PolicyFence } from './fence';
import { lockAll, WwAcquireContext, WwClass, WwMutex } from './ww-mutex';

/** The class every reservation object's lock belongs to (the kernel's reservation_ww_class). */
export const reservationClass = new WwClass('reservation_ww_class');

/** An acquire context for locking reservation objects. */
export function acquireContext(signal?: AbortSignal): WwAcquireContext {
  return new WwAcquireContext(reservationClass, signal);
}

/** A fence in a reservation object, with the usage it was added for. */
export interface ReservationEntry {
  fence: PolicyFence;
  usage: FenceUsage;
}

/**
 * A reservation object (struct dma_resv): a ww_mutex (rule 14) and fences
 * with usages (rule 15). Adding a fence needs the lock and a slot reserved
 * first, as in the kernel; slots do not outlive the lock (the kernel's debug
 * builds reset them at unlock to catch that misuse; the model always does).
 */
export class ReservationObject {
  readonly mutex: WwMutex;
  #entries: ReservationEntry[] = [];
  #reserved = 0;

  constructor(readonly name = 'resv') {
    this.mutex = new WwMutex(reservationClass, name);
  }

  get locked(): boolean {
    return this.mutex.locked;
  }

  /** dma_resv_lock: EALREADY, EDEADLK as a ww_mutex; with a context whose signal aborts, the lock_interruptible variant. */
  lock(ctx?: WwAcquireContext): Promise<void> {
    return this.mutex.lock(ctx);
  }

  lockSlow(ctx: WwAcquireContext): Promise<void> {
    return this.mutex.lockSlow(ctx);
  }

  tryLock(ctx?: WwAcquireContext): boolean {
    return this.mutex.tryLock(ctx);
  }

  unlock(): void {
    this.#reserved = 0;
    this.mutex.unlock();
  }

  /** Runs `fn` holding the lock (taken through `ctx` if given), and unlocks whatever happens. */
  async withLock<T>(fn: () => Promise<T> | T, ctx?: WwAcquireContext): Promise<T> {
    await this.lock(ctx);
    try {
      return await fn();
    } finally {
      this.unlock();
    }
  }

  /** dma_resv_assert_held. JavaScript has no current task: "held" means locked by someone. */
  assertHeld(call: string): void {
    if (!this.mutex.locked) throw codedError('ERR_DMABUF_POLICY_RULE', call, `the reservation lock of ${this.name} must be held`);
  }

  /** dma_resv_reserve_fences: room for `count` more fences, under the lock. */
  reserveFences(count: number): void {
    this.assertHeld('dma_resv_reserve_fences');
    validate.integer('count', count);
    this.#reserved += count;
  }

  /**
   * dma_resv_add_fence: replaces a fence of the same context that this one
   * is later than (at a usage no stronger), or one already signalled;
   * otherwise takes a reserved slot.
   */
  addFence(fence: PolicyFence, usage: FenceUsage): void {
    this.assertHeld('dma_resv_add_fence');
    validate.oneOf('usage', usage, fenceUsages);
    const replaced = this.#entries.findIndex(
      (entry) => (entry.fence.context === fence.context && usageRank(entry.usage) >= usageRank(usage) && isLater(fence, entry.fence)) || entry.fence.signaled,
    );
    if (replaced >= 0) {
      this.#entries[replaced] = { fence, usage };
      return;
    }
    if (this.#reserved === 0) throw codedError('ERR_DMABUF_POLICY_RULE', 'dma_resv_add_fence', 'no fence slot reserved: call reserveFences first');
    this.#reserved -= 1;
    this.#entries.push({ fence, usage });
  }

  /** dma_resv_get_fences: every fence whose usage is `usage` or comes before it. */
  fences(usage: FenceUsage): PolicyFence[] {
    const rank = usageRank(usage);
    return this.#entries.filter((entry) => usageRank(entry.usage) <= rank).map((entry) => entry.fence);
  }

  /** Each fence with its usage, for debug views. */
  entries(): readonly Readonly<ReservationEntry>[] {
    return this.#entries.map((entry) => ({ ...entry }));
  }

  /** dma_resv_test_signaled */
  testSignaled(usage: FenceUsage): boolean {
    return this.fences(usage).every((fence) => fence.signaled);
  }

  /**
   * dma_resv_wait_timeout, as a Promise: resolves when every fence of
   * `usage` (and before) has signalled; rejects with ETIME after
   * `timeoutMs`, or with the signal's reason.
   */
  async wait(usage: FenceUsage, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    const pending = this.fences(usage).filter((fence) => !fence.signaled);
    if (pending.length === 0) return;
    const all = Promise.all(pending.map((fence) => fence.whenSignaled())).then(() => undefined);
    const { timeoutMs, signal } = options;
    if (timeoutMs === undefined && !signal) return all;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      await Promise.race([
        all,
        new Promise<never>((_, reject) => {
          if (timeoutMs !== undefined) timer = setTimeout(() => reject(policyErrno('ETIME', 'dma_resv_wait_timeout', `fences still pending after ${timeoutMs} ms`)), timeoutMs);
          if (signal) {
            onAbort = () => reject(signal.reason as Error);
            if (signal.aborted) onAbort();
            else signal.addEventListener('abort', onAbort, { once: true });
          }
        }),
      ]);
    } finally {
      if (timer) clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }
}

/** Locks many reservation objects through one context, with the kernel's back-off. */
export function lockReservations(objects: Iterable<ReservationObject>, ctx: WwAcquireContext): Promise<void> {
  return lockAll([...objects].map((object) => object.mutex), ctx);
}
