import { attachRevocable, exportBuffer, moveNotify, type Attachment, type DmaDirection, type ExporterOps, type PolicyBuffer } from './core';
import type { PolicyProfile } from './profiles';
import { policyErrno } from './errors';
import { FenceTimeline, type PolicyFence } from './fence';
import type { ReservationObject } from './resv';
import type { Trace } from './trace';

/** Counters of what the core asked an exporter to do, named as the kernel test module names them. */
export interface ExporterCounters {
  attachCalls: number;
  detachCalls: number;
  pinCalls: number;
  unpinCalls: number;
  mapCalls: number;
  unmapCalls: number;
  moves: number;
  pinCount: number;
  attachments: number;
}

/**
 * Memory an exporter can move between. The policy layer never touches real
 * memory itself: lib/policy/moving-buffer.ts gives udmabuf-backed stores, tests
 * give plain ones.
 */
export interface BackingStore<Backing, Mapping> {
  allocate(size: number): Backing;
  /** Copies all of `from` into `to`; `from` is not written. */
  copy(from: Backing, to: Backing): void;
  /** What an importer's map gets for this memory. */
  describe(backing: Backing, generation: number, direction: DmaDirection): Mapping;
  /** The importer unmapped it. */
  forget?(mapping: Mapping): void;
  release(backing: Backing): void;
}

export interface MoveResult {
  generation: number;
  /** With a fenced move: the fence that keeps the old memory alive, now in the reservation object as a kernel fence. */
  fence?: PolicyFence;
}

/**
 * An exporter over a BackingStore: dynamic (pin/unpin, may move) or static
 * (cached mapping, never moves), counting what the core asks of it as the
 * kernel test module does.
 */
export class MovableExporter<Backing, Mapping> {
  readonly buffer: PolicyBuffer<Mapping>;
  readonly counters: ExporterCounters = { attachCalls: 0, detachCalls: 0, pinCalls: 0, unpinCalls: 0, mapCalls: 0, unmapCalls: 0, moves: 0, pinCount: 0, attachments: 0 };
  #backing: Backing;
  #generation = 0;
  readonly #timeline = new FenceTimeline();
  /** Old memory of fenced moves, freed as their fences signal. */
  readonly #held = new Set<Backing>();
  #released = false;
  #revoked = false;

  /**
   * `revocable`: the exporter hands its memory only to importers it can
   * take it back from, as vfio-pci's does on 7.2 (vfio_pci_dmabuf.c:25-40):
   * attach refuses an attachment dma_buf_attach_revocable() rejects
   * (EOPNOTSUPP, Node's ENOTSUP), and after `revoke()` maps fail with ENODEV (:59-60).
   */
  constructor(
    readonly store: BackingStore<Backing, Mapping>,
    options: { size: number; dynamic: boolean; profile: PolicyProfile; name?: string; trace?: Trace; resv?: ReservationObject; revocable?: boolean },
  ) {
    this.#backing = store.allocate(options.size);
    const counters = this.counters;
    // A dynamic exporter has pin/unpin; a static one has the core cache its
    // mappings where the kernel still can.
    const caches = options.profile.rules.exporterMappingCache !== 'absent';
    const pinning: Pick<ExporterOps<Mapping>, 'pin' | 'unpin' | 'cacheSgtMapping'> = options.dynamic
      ? {
          pin: () => {
            counters.pinCalls += 1;
            counters.pinCount += 1;
          },
          unpin: () => {
            counters.unpinCalls += 1;
            counters.pinCount -= 1;
          },
        }
      : caches
        ? { cacheSgtMapping: true }
        : {};
    const ops: ExporterOps<Mapping> = {
      ...pinning,
      attach: (_buffer, attachment) => {
        if (options.revocable && this.#revoked) throw policyErrno('ENODEV', 'attach', `${this.buffer.name} was revoked`);
        if (options.revocable && !attachRevocable(attachment)) throw policyErrno('ENOTSUP', 'attach', `${attachment.name} cannot be revoked`);
        counters.attachCalls += 1;
        counters.attachments += 1;
      },
      detach: () => {
        counters.detachCalls += 1;
        counters.attachments -= 1;
      },
      map: (_attachment: Attachment<Mapping>, direction: DmaDirection) => {
        if (options.revocable && this.#revoked) throw policyErrno('ENODEV', 'map_dma_buf', `${this.buffer.name} was revoked`);
        counters.mapCalls += 1;
        return store.describe(this.#backing, this.#generation, direction);
      },
      unmap: (_attachment: Attachment<Mapping>, mapping: Mapping) => {
        counters.unmapCalls += 1;
        store.forget?.(mapping);
      },
      release: () => this.#release(),
    };
    this.buffer = exportBuffer({ ops, size: options.size, name: options.name, profile: options.profile, trace: options.trace, resv: options.resv });
  }

  get generation(): number {
    return this.#generation;
  }

  /** The memory importers map now. */
  get backing(): Backing {
    return this.#backing;
  }

  /** Old memory still held for fenced moves. */
  get heldMoves(): number {
    return this.#held.size;
  }

  /**
   * Moves the contents to new memory under the reservation lock and notifies
   * importers. EBUSY while pinned; EINVAL for a static exporter. With
   * `fenced`, the old memory stays allocated until the returned fence is
   * signalled (by whoever stands for the copy engine: `signalMove`), and
   * the fence sits in the reservation object so that waiters and static
   * maps wait for it.
   */
  async move(options: { fenced?: boolean; lockHeld?: boolean } = {}): Promise<MoveResult> {
    const { buffer } = this;
    if (!buffer.dynamic) throw policyErrno('EINVAL', 'move', 'only a dynamic exporter can move');
    if (!options.lockHeld) await buffer.resv.lock();
    try {
      if (this.counters.pinCount > 0) throw policyErrno('EBUSY', 'move', `${buffer.name} is pinned (${this.counters.pinCount} pins)`);
      if (options.fenced) buffer.resv.reserveFences(1);
      const next = this.store.allocate(buffer.size);
      this.store.copy(this.#backing, next);
      const old = this.#backing;
      this.#backing = next;
      this.#generation += 1;
      this.counters.moves += 1;
      buffer.record('move');
      moveNotify(buffer);
      if (!options.fenced) {
        this.store.release(old);
        return { generation: this.#generation };
      }
      const fence = this.#timeline.next();
      this.#held.add(old);
      void fence.whenSignaled().then(() => {
        this.#held.delete(old);
        this.store.release(old);
      });
      buffer.resv.addFence(fence, 'kernel');
      return { generation: this.#generation, fence };
    } finally {
      if (!options.lockHeld) buffer.resv.unlock();
    }
  }

  get revoked(): boolean {
    return this.#revoked;
  }

  /**
   * Invalidates every importer with the callback without moving, pinned or
   * not, as an exporter taking its memory away does (7.2's revoke:
   * dma-buf.c:1362-1398 of 7.2, rule 11). Importers told must unmap; static
   * importers are not told at all. A `revocable` exporter also refuses
   * maps from then on, as vfio-pci does (vfio_pci_dmabuf.c:344-356, 59-60).
   * EINVAL for a static exporter, which has nothing to take back.
   */
  async revoke(options: { lockHeld?: boolean } = {}): Promise<void> {
    const { buffer } = this;
    if (!buffer.dynamic) throw policyErrno('EINVAL', 'revoke', 'only a dynamic exporter revokes');
    if (!options.lockHeld) await buffer.resv.lock();
    try {
      this.#revoked = true;
      buffer.record('revoke');
      moveNotify(buffer);
    } finally {
      if (!options.lockHeld) buffer.resv.unlock();
    }
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.store.release(this.#backing);
  }
}

/** A BackingStore of plain numbers: for the model's own tests and for comparing with the kernel. */
export interface ModelMapping {
  generation: number;
  direction: DmaDirection;
  backing: number;
}

export function modelStore(): BackingStore<number, ModelMapping> & { live: Set<number> } {
  let next = 0;
  const live = new Set<number>();
  return {
    live,
    allocate() {
      next += 1;
      live.add(next);
      return next;
    },
    copy() {},
    describe(backing, generation, direction) {
      return { backing, generation, direction };
    },
    release(backing) {
      live.delete(backing);
    },
  };
}
