import { codedError } from '../errors';
import { policyErrno } from './errors';

/**
 * Wound/wait mutexes as the kernel's reservation objects use them
 * (DEFINE_WD_CLASS: the wait-die flavour), for asynchronous tasks.
 *
 * Several objects can be locked in any order without deadlock: every task
 * that locks more than one takes an acquire context, whose stamp orders
 * tasks by age. A context that holds locks never waits for an older one: it
 * gets EDEADLK instead, must drop everything, wait for the contended lock
 * with `lockSlow`, and start again. So every wait goes from older to younger
 * and no cycle can form. `lockAll` does the back-off loop. Rule 14 of
 * docs/dynamic-policy.md.
 */
export class WwClass {
  #stamp = 0;

  constructor(readonly name: string) {}

  /** @internal */
  nextStamp(): number {
    this.#stamp += 1;
    return this.#stamp;
  }
}

export class WwAcquireContext {
  readonly stamp: number;
  /** Locks held through this context. */
  acquired = 0;
  #done = false;
  #finished = false;
  /** Back-offs this context went through, for measurements. */
  backoffs = 0;

  constructor(
    readonly wwClass: WwClass,
    readonly signal?: AbortSignal,
  ) {
    this.stamp = wwClass.nextStamp();
  }

  /** Older contexts win: they wait where a younger one would die. */
  isOlderThan(other: WwAcquireContext): boolean {
    return this.stamp < other.stamp;
  }

  /** ww_acquire_done: no lock may be taken through this context any more. */
  done(): void {
    this.#done = true;
  }

  /** ww_acquire_fini: every lock must be unlocked by now. */
  fini(): void {
    if (this.acquired !== 0) throw codedError('ERR_DMABUF_POLICY_RULE', 'ww_acquire_fini', `${this.acquired} locks are still held`);
    this.#finished = true;
  }

  /** @internal */
  checkUsable(call: string, mutex: WwMutex): void {
    if (this.#finished) throw codedError('ERR_DMABUF_POLICY_RULE', call, 'the acquire context was finished');
    if (this.#done) throw codedError('ERR_DMABUF_POLICY_RULE', call, 'ww_acquire_done was called: no more locks through this context');
    if (mutex.wwClass !== this.wwClass) throw codedError('ERR_DMABUF_POLICY_RULE', call, `the mutex is of class ${mutex.wwClass.name}, the context of ${this.wwClass.name}`);
  }
}

interface Waiter {
  ctx: WwAcquireContext | undefined;
  owner: object;
  /** lockSlow: the context dropped everything and may wait behind anyone. */
  slow: boolean;
  grant(): void;
  die(): void;
  cleanup(): void;
}

const anonymous = () => ({});

export class WwMutex {
  #owner: object | undefined;
  #ownerCtx: WwAcquireContext | undefined;
  readonly #waiters: Waiter[] = [];

  constructor(
    readonly wwClass: WwClass,
    readonly name = 'ww_mutex',
  ) {}

  get locked(): boolean {
    return this.#owner !== undefined;
  }

  /** The context holding the lock (undefined when free or held without one). */
  get holder(): WwAcquireContext | undefined {
    return this.#ownerCtx;
  }

  isHeldBy(ctx: WwAcquireContext): boolean {
    return this.#ownerCtx === ctx;
  }

  /**
   * ww_mutex_lock: resolves once held; rejects with EALREADY if `ctx`
   * already holds it, EDEADLK if `ctx` must back off, and with the signal's
   * reason (EINTR in the kernel's interruptible variant) when aborted.
   */
  lock(ctx?: WwAcquireContext): Promise<void> {
    return this.#acquire('ww_mutex_lock', ctx, false);
  }

  /** ww_mutex_lock_slow: after backing off (holding nothing), wait for the contended lock whoever holds it. */
  lockSlow(ctx: WwAcquireContext): Promise<void> {
    if (ctx.acquired !== 0) return Promise.reject(codedError('ERR_DMABUF_POLICY_RULE', 'ww_mutex_lock_slow', `the context still holds ${ctx.acquired} locks`));
    return this.#acquire('ww_mutex_lock_slow', ctx, true);
  }

  /** ww_mutex_trylock: never waits and never dies. */
  tryLock(ctx?: WwAcquireContext): boolean {
    ctx?.checkUsable('ww_mutex_trylock', this);
    if (this.#owner) return false;
    this.#take(ctx ?? anonymous(), ctx);
    return true;
  }

  unlock(): void {
    if (!this.#owner) throw codedError('ERR_DMABUF_POLICY_RULE', 'ww_mutex_unlock', `${this.name} is not locked`);
    if (this.#ownerCtx) this.#ownerCtx.acquired -= 1;
    this.#owner = undefined;
    this.#ownerCtx = undefined;
    // The oldest context first, then the others in arrival order.
    let next = -1;
    this.#waiters.forEach((waiter, index) => {
      const best = next >= 0 ? this.#waiters[next]! : undefined;
      if (!best) next = index;
      else if (waiter.ctx && (!best.ctx || waiter.ctx.isOlderThan(best.ctx))) next = index;
    });
    if (next < 0) return;
    const [waiter] = this.#waiters.splice(next, 1);
    waiter!.cleanup();
    this.#take(waiter!.owner, waiter!.ctx);
    waiter!.grant();
    this.#killYoungerWaiters();
  }

  #take(owner: object, ctx: WwAcquireContext | undefined): void {
    this.#owner = owner;
    this.#ownerCtx = ctx;
    if (ctx) ctx.acquired += 1;
  }

  /** Wait-die: a context holding locks dies rather than wait for an older one. */
  #mustDie(ctx: WwAcquireContext | undefined, slow: boolean): boolean {
    if (!ctx || slow || ctx.acquired === 0) return false;
    if (this.#ownerCtx && this.#ownerCtx.isOlderThan(ctx)) return true;
    return this.#waiters.some((waiter) => waiter.ctx !== undefined && waiter.ctx !== ctx && waiter.ctx.isOlderThan(ctx));
  }

  #killYoungerWaiters(): void {
    for (const waiter of [...this.#waiters]) {
      if (this.#mustDie(waiter.ctx, waiter.slow)) {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.cleanup();
        waiter.die();
      }
    }
  }

  #acquire(call: string, ctx: WwAcquireContext | undefined, slow: boolean): Promise<void> {
    try {
      ctx?.checkUsable(call, this);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    const signal = ctx?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    if (ctx && this.#ownerCtx === ctx) return Promise.reject(policyErrno('EALREADY', call, `the context already holds ${this.name}`));
    const owner = ctx ?? anonymous();
    // Never free while waiters queue: unlock hands the lock straight on.
    if (!this.#owner) {
      this.#take(owner, ctx);
      return Promise.resolve();
    }
    if (this.#mustDie(ctx, slow)) return Promise.reject(this.#deadlock(ctx!, call));
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(signal!.reason as Error);
      };
      const waiter: Waiter = {
        ctx,
        owner,
        slow,
        grant: resolve,
        die: () => reject(this.#deadlock(ctx!, call)),
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
      this.#killYoungerWaiters();
    });
  }

  /** The context dies (wait-die): counted, and told what to do. */
  #deadlock(ctx: WwAcquireContext, call: string): Error {
    ctx.backoffs += 1;
    return policyErrno('EDEADLK', call, `an older context wants ${this.name}: drop every lock, lockSlow this one, and retry`);
  }
}

/**
 * Locks every mutex through `ctx` (which must hold nothing yet), backing off
 * on EDEADLK as the kernel's users do: drop all, lockSlow the contended one,
 * retry. Resolves with everything held; on any other error (an abort),
 * holds nothing.
 */
export async function lockAll(mutexes: Iterable<WwMutex>, ctx: WwAcquireContext): Promise<void> {
  if (ctx.acquired !== 0) throw codedError('ERR_DMABUF_POLICY_RULE', 'lockAll', 'the context must hold nothing when it starts');
  const wanted = [...new Set(mutexes)];
  let contended: WwMutex | undefined;
  for (;;) {
    const held: WwMutex[] = [];
    if (contended) {
      await contended.lockSlow(ctx);
      held.push(contended);
    }
    let current: WwMutex | undefined;
    try {
      for (const mutex of wanted) {
        if (mutex === contended) continue;
        current = mutex;
        await mutex.lock(ctx);
        held.push(mutex);
      }
      return;
    } catch (error) {
      for (const mutex of held) mutex.unlock();
      if ((error as { code?: string }).code !== 'EDEADLK') throw error;
      contended = current;
    }
  }
}
