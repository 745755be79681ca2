import { codedError } from '../errors';
import * as validate from '../validate';
import { policyErrno } from './errors';
import { ReservationObject } from './resv';
import { profileLabel, type PolicyProfile } from './profiles';
import { Trace, type TraceEventKind } from './trace';

/**
 * The dma-buf core's dynamic policy, after drivers/dma-buf/dma-buf.c:
 * exporters with ops, attachments (static or dynamic importers), mapping and
 * unmapping with the locking rules, pinning, move notification, detach.
 * The rules cited below by number are those of docs/dynamic-policy.md
 * (rule 5 is its #rule-5). Where kernels differ, the profile's named rules
 * (profiles.ts) decide.
 *
 * Exporter ops are synchronous, as the kernel calls them with its locks
 * held; the calls that may take the reservation lock, or wait for fences,
 * return Promises.
 */

export type DmaDirection = 'bidirectional' | 'to-device' | 'from-device';

export interface ExporterOps<M> {
  /** The core caches the first mapping of each attachment (cache_sgt_mapping). */
  readonly cacheSgtMapping?: boolean;
  attach?(buffer: PolicyBuffer<M>, attachment: Attachment<M>): void;
  detach?(buffer: PolicyBuffer<M>, attachment: Attachment<M>): void;
  /** Called with the reservation lock held; throw (EBUSY, ENOMEM) to refuse. */
  pin?(attachment: Attachment<M>): void;
  unpin?(attachment: Attachment<M>): void;
  /** Returns the mapping (the sg table), null for "no memory", or throws. */
  map(attachment: Attachment<M>, direction: DmaDirection): M | null;
  unmap(attachment: Attachment<M>, mapping: M, direction: DmaDirection): void;
  release(buffer: PolicyBuffer<M>): void;
}

export interface ImporterOps<M> {
  allowPeer2peer?: boolean;
  /**
   * The invalidation callback: move_notify (6.1, 6.12), invalidate (v10),
   * invalidate_mappings (7.2, where it is optional). Called with the
   * reservation lock held.
   */
  moveNotify?(attachment: Attachment<M>): void;
}

/** An uncached mapping an attachment handed out, and whether a move has invalidated it since. */
export interface MappingRecord<M> {
  mapping: M;
  invalidated: boolean;
}

export class Attachment<M = unknown> {
  /** The core's cached mapping (attach->sgt). */
  sgt: M | undefined;
  dir: DmaDirection | undefined;
  detached = false;
  /** Pins the core made through this attachment, not yet unpinned. */
  pins = 0;
  /**
   * The uncached mappings handed out and not unmapped. The kernel keeps no
   * such list; the model does, to invalidate once (tracking) and to know
   * what a detach leaves behind.
   */
  readonly liveMappings: MappingRecord<M>[] = [];
  /** v10: off the list while its own map runs. */
  selfFiltered = false;

  /** @internal */
  constructor(
    readonly buffer: PolicyBuffer<M>,
    readonly name: string,
    readonly importerOps: ImporterOps<M> | undefined,
    readonly priv: unknown,
  ) {}

  /** dma_buf_attachment_is_dynamic: importer ops (v10: with invalidate). */
  get dynamic(): boolean {
    if (this.buffer.profile.rules.importerOpsWithoutInvalidate === 'static-importer') return this.importerOps?.moveNotify !== undefined;
    return this.importerOps !== undefined;
  }
}

let bufferCount = 0;

export class PolicyBuffer<M = unknown> {
  /** Newest first, as list_add puts them. */
  readonly attachments: Attachment<M>[] = [];
  /** Detached with mappings or pins still held: the kernel frees the attachment and never unmaps or unpins them. */
  readonly leaked: Attachment<M>[] = [];
  released = false;

  /** @internal */
  constructor(
    readonly ops: ExporterOps<M>,
    readonly size: number,
    readonly name: string,
    readonly profile: PolicyProfile,
    readonly resv: ReservationObject,
    readonly trace: Trace | undefined,
  ) {}

  /** dma_buf_is_dynamic: the exporter can pin, so it may move when not pinned. */
  get dynamic(): boolean {
    return this.ops.pin !== undefined;
  }

  /** Pins the exporter holds for the core, leaked ones included (the exporter cannot tell them apart). */
  get pinCount(): number {
    return [...this.attachments, ...this.leaked].reduce((sum, attachment) => sum + attachment.pins, 0);
  }

  /** @internal */
  record(kind: TraceEventKind, attachment?: Attachment<M>, detail?: { direction?: DmaDirection }): void {
    this.trace?.record({ profile: profileLabel(this.profile), buffer: this.name, attachment: attachment?.name, kind, ...detail });
  }
}

function assertHeld(buffer: PolicyBuffer<unknown>, call: string): void {
  buffer.resv.assertHeld(call);
}

/** dma_buf_export: the ops are checked as the kernel checks them (rule 1). */
export function exportBuffer<M>(info: { ops: ExporterOps<M>; size: number; name?: string; profile: PolicyProfile; resv?: ReservationObject; trace?: Trace }): PolicyBuffer<M> {
  const { ops, profile } = info;
  const { rules } = profile;
  const refuse = (why: string) => policyErrno('EINVAL', 'dma_buf_export', `${why} (the kernel WARNs)`);
  if (rules.exportRequiresMapUnmapRelease && (typeof ops.map !== 'function' || typeof ops.unmap !== 'function' || typeof ops.release !== 'function')) throw refuse('map, unmap and release are required');
  if (ops.cacheSgtMapping) {
    // Not a runtime refusal: an exporter setting it would not compile.
    if (rules.exporterMappingCache === 'absent') throw validate.typeError('ops.cacheSgtMapping', `undefined (${profile.label} has no cache_sgt_mapping)`, ops.cacheSgtMapping);
    if (rules.exporterMappingCache === 'refused-with-pin' && ops.pin) throw refuse('cache_sgt_mapping together with pin');
    if (rules.exporterMappingCache === 'refused-with-pin-or-unpin' && (ops.pin || ops.unpin)) throw refuse('cache_sgt_mapping together with pin/unpin');
  }
  if (rules.exportRequiresPinWithUnpin && !ops.pin !== !ops.unpin) throw refuse('pin without unpin, or unpin without pin');
  validate.integer('size', info.size, 1);
  bufferCount += 1;
  const name = info.name ?? `buffer${bufferCount}`;
  const buffer = new PolicyBuffer<M>(ops, info.size, name, profile, info.resv ?? new ReservationObject(`${name}.resv`), info.trace);
  buffer.record('export');
  return buffer;
}

/** The exporter's map, with what the core does around it (__map_dma_buf). */
async function mapThroughExporter<M>(attachment: Attachment<M>, direction: DmaDirection): Promise<M> {
  const { buffer } = attachment;
  const mapping = buffer.ops.map(attachment, direction);
  if (mapping === null) throw policyErrno('ENOMEM', 'dma_buf_map_attachment', 'the exporter returned no mapping');
  buffer.record('map', attachment, { direction });
  // Rule 4: a static importer gets its table only once the kernel fences
  // (a move in flight) have signalled; a dynamic one waits itself.
  if (buffer.profile.rules.staticImporterMapWaitsKernelFences && !attachment.dynamic && !buffer.resv.testSignaled('kernel')) {
    buffer.record('wait-kernel-fences', attachment);
    try {
      await buffer.resv.wait('kernel');
    } catch (error) {
      buffer.ops.unmap(attachment, mapping, direction);
      buffer.record('unmap', attachment, { direction });
      throw error;
    }
  }
  return mapping;
}

function unmapThroughExporter<M>(attachment: Attachment<M>, mapping: M, direction: DmaDirection): void {
  attachment.buffer.ops.unmap(attachment, mapping, direction);
  attachment.buffer.record('unmap', attachment, { direction });
}

function pinThroughExporter<M>(attachment: Attachment<M>): void {
  const { ops } = attachment.buffer;
  if (!ops.pin) return;
  ops.pin(attachment);
  attachment.pins += 1;
  attachment.buffer.record('pin', attachment);
}

function unpinThroughExporter<M>(attachment: Attachment<M>): void {
  const { ops } = attachment.buffer;
  if (!ops.unpin) return;
  ops.unpin(attachment);
  attachment.pins -= 1;
  attachment.buffer.record('unpin', attachment);
}

/**
 * dma_buf_dynamic_attach (rules 2 and 3). Without importer ops, a static
 * importer (dma_buf_attach). Where the profile caches mismatches: when
 * importer and exporter disagree on being dynamic, the mapping is made now
 * and cached, the exporter pinned first if it is the dynamic one.
 */
export async function dynamicAttach<M>(buffer: PolicyBuffer<M>, importer: { ops?: ImporterOps<M>; priv?: unknown; name?: string } = {}): Promise<Attachment<M>> {
  const { rules } = buffer.profile;
  if (buffer.released) throw codedError('ERR_DMABUF_POLICY_RULE', 'dma_buf_dynamic_attach', `${buffer.name} was released`);
  if (rules.importerOpsWithoutInvalidate === 'rejected' && importer.ops && !importer.ops.moveNotify) {
    throw policyErrno('EINVAL', 'dma_buf_dynamic_attach', 'importer ops without move_notify (the kernel WARNs)');
  }
  const attachment = new Attachment<M>(buffer, importer.name ?? `${buffer.name}.attachment${buffer.attachments.length + 1}`, importer.ops, importer.priv);
  buffer.ops.attach?.(buffer, attachment);
  await buffer.resv.lock();
  buffer.attachments.unshift(attachment);
  buffer.resv.unlock();
  buffer.record('attach', attachment);

  const caching = rules.mismatchedAttachCachesMapping;
  if (caching && attachment.dynamic !== buffer.dynamic) {
    const locks = caching === 'locks-always' || buffer.dynamic;
    if (locks) await buffer.resv.lock();
    try {
      if (buffer.dynamic) pinThroughExporter(attachment);
      try {
        attachment.sgt = await mapThroughExporter(attachment, 'bidirectional');
        attachment.dir = 'bidirectional';
      } catch (error) {
        if (buffer.dynamic) unpinThroughExporter(attachment);
        throw error;
      }
    } catch (error) {
      if (locks) buffer.resv.unlock();
      await detach(buffer, attachment);
      throw error;
    }
    if (locks) buffer.resv.unlock();
  }
  return attachment;
}

/** dma_buf_attach: a static importer. */
export function attach<M>(buffer: PolicyBuffer<M>, importer: { priv?: unknown; name?: string } = {}): Promise<Attachment<M>> {
  return dynamicAttach(buffer, { priv: importer.priv, name: importer.name });
}

/**
 * dma_buf_attach_revocable (7.2, rule 12): whether the importer can be
 * told, by an invalidation, that a pinned buffer is gone for good, and will
 * unmap.
 */
export function attachRevocable<M>(attachment: Attachment<M>): boolean {
  if (!attachment.buffer.profile.rules.revocableAttachQuery) throw codedError('ERR_DMABUF_POLICY_RULE', 'dma_buf_attach_revocable', `${attachment.buffer.profile.label} has no dma_buf_attach_revocable()`);
  return attachment.importerOps?.moveNotify !== undefined;
}

/**
 * dma_buf_detach (rule 10): where the profile caches, the cached mapping
 * goes (and its pin); then the attachment. Uncached mappings and the
 * importer's own pins are the importer's to drop first: the kernel does
 * not check, so a detach with them leaves them behind (buffer.leaked).
 */
export async function detach<M>(buffer: PolicyBuffer<M>, attachment: Attachment<M>): Promise<void> {
  if (attachment.buffer !== buffer || attachment.detached) throw codedError('ERR_DMABUF_POLICY_RULE', 'dma_buf_detach', `${attachment.name} is not attached to ${buffer.name}`);
  const cachedUnmap = attachment.sgt !== undefined ? buffer.profile.rules.detachUnmapsCachedMapping : false;
  const unmapCached = () => {
    unmapThroughExporter(attachment, attachment.sgt!, attachment.dir!);
    attachment.sgt = undefined;
    if (buffer.dynamic) unpinThroughExporter(attachment);
  };
  if (cachedUnmap === 'locks-if-exporter-dynamic') {
    if (buffer.dynamic) await buffer.resv.lock();
    unmapCached();
    if (buffer.dynamic) buffer.resv.unlock();
  }
  await buffer.resv.lock();
  if (cachedUnmap === 'locks-always') unmapCached();
  buffer.attachments.splice(buffer.attachments.indexOf(attachment), 1);
  buffer.resv.unlock();
  attachment.detached = true;
  buffer.ops.detach?.(buffer, attachment);
  buffer.record('detach', attachment);
  if (attachment.liveMappings.length > 0 || attachment.pins > 0 || attachment.sgt !== undefined) {
    buffer.leaked.push(attachment);
    buffer.record('leak', attachment);
  }
}

/** dma_buf_pin (rule 8): dynamic importers only, under the lock. */
export function pin<M>(attachment: Attachment<M>): void {
  if (!attachment.dynamic) throw codedError('ERR_DMABUF_POLICY_RULE', 'dma_buf_pin', `${attachment.name} is a static importer; only dynamic importers pin`);
  assertHeld(attachment.buffer, 'dma_buf_pin');
  pinThroughExporter(attachment);
}

export function unpin<M>(attachment: Attachment<M>): void {
  if (!attachment.dynamic) throw codedError('ERR_DMABUF_POLICY_RULE', 'dma_buf_unpin', `${attachment.name} is a static importer; only dynamic importers unpin`);
  assertHeld(attachment.buffer, 'dma_buf_unpin');
  if (attachment.pins === 0 && attachment.buffer.ops.unpin) throw codedError('ERR_DMABUF_POLICY_RULE', 'dma_buf_unpin', `${attachment.name} holds no pin`);
  unpinThroughExporter(attachment);
}

/**
 * dma_buf_map_attachment (rule 5): the lock the profile asserts, the cached
 * table if there is one, else a pin where the profile pins on map, the
 * exporter's map, and caching where the exporter asked for it.
 */
export async function mapAttachment<M>(attachment: Attachment<M>, direction: DmaDirection): Promise<M> {
  const { buffer } = attachment;
  const { rules } = buffer.profile;
  const call = 'dma_buf_map_attachment';
  if (attachment.detached) throw codedError('ERR_DMABUF_POLICY_RULE', call, `${attachment.name} is detached`);
  const cached = attachment.sgt !== undefined;
  if (rules.lockAssertedOnMap(attachment, cached)) assertHeld(buffer, call);
  if (cached) {
    if (attachment.dir !== direction && attachment.dir !== 'bidirectional') {
      throw policyErrno('EBUSY', call, `the cached mapping is ${attachment.dir}, not ${direction}`);
    }
    buffer.record('map-cached', attachment, { direction });
    return attachment.sgt!;
  }

  const takesLock = rules.mapTakesLockItself(attachment);
  if (takesLock) await buffer.resv.lock();
  try {
    const pinned = rules.pinOnMap(attachment);
    if (pinned) pinThroughExporter(attachment);
    // v10: mapping may make the exporter move; the invalidation it sends
    // must not come back to the attachment being mapped.
    attachment.selfFiltered = rules.invalidationReaches === 'all-but-the-attachment-mapping' && attachment.dynamic;
    let mapping: M;
    try {
      mapping = await mapThroughExporter(attachment, direction);
    } catch (error) {
      if (pinned) unpinThroughExporter(attachment);
      throw error;
    } finally {
      attachment.selfFiltered = false;
    }
    if (buffer.ops.cacheSgtMapping) {
      attachment.sgt = mapping;
      attachment.dir = direction;
    } else {
      attachment.liveMappings.push({ mapping, invalidated: false });
    }
    return mapping;
  } finally {
    if (takesLock) buffer.resv.unlock();
  }
}

/** dma_buf_unmap_attachment (rule 7): the cached table stays; another is unmapped, and unpinned where the profile pinned on map. */
export async function unmapAttachment<M>(attachment: Attachment<M>, mapping: M, direction: DmaDirection): Promise<void> {
  const { buffer } = attachment;
  const { rules } = buffer.profile;
  const call = 'dma_buf_unmap_attachment';
  const cached = attachment.sgt !== undefined && attachment.sgt === mapping;
  if (rules.lockAssertedOnMap(attachment, cached)) assertHeld(buffer, call);
  if (cached) return;
  const index = attachment.liveMappings.findIndex((record) => record.mapping === mapping);
  if (index < 0) throw codedError('ERR_DMABUF_POLICY_RULE', call, `${attachment.name} does not hold that mapping`);
  const takesLock = rules.mapTakesLockItself(attachment);
  if (takesLock) await buffer.resv.lock();
  attachment.liveMappings.splice(index, 1);
  unmapThroughExporter(attachment, mapping, direction);
  if (rules.pinOnMap(attachment)) unpinThroughExporter(attachment);
  if (takesLock) buffer.resv.unlock();
}

/** dma_buf_map_attachment_unlocked (rule 6): takes the lock around the locked call. v10 had none: its plain call locks where needed. */
export async function mapAttachmentUnlocked<M>(attachment: Attachment<M>, direction: DmaDirection): Promise<M> {
  if (!attachment.buffer.profile.rules.unlockedMapCalls) return mapAttachment(attachment, direction);
  await attachment.buffer.resv.lock();
  try {
    return await mapAttachment(attachment, direction);
  } finally {
    attachment.buffer.resv.unlock();
  }
}

export async function unmapAttachmentUnlocked<M>(attachment: Attachment<M>, mapping: M, direction: DmaDirection): Promise<void> {
  if (!attachment.buffer.profile.rules.unlockedMapCalls) return unmapAttachment(attachment, mapping, direction);
  await attachment.buffer.resv.lock();
  try {
    await unmapAttachment(attachment, mapping, direction);
  } finally {
    attachment.buffer.resv.unlock();
  }
}

/**
 * dma_buf_move_notify (rule 9; dma_buf_invalidate_mappings in 7.2), called
 * by the exporter with the lock held when it moved or revokes. Who hears
 * it is the profile's invalidationReaches.
 */
export function moveNotify<M>(buffer: PolicyBuffer<M>): void {
  const { rules } = buffer.profile;
  assertHeld(buffer, 'dma_buf_move_notify');
  if (rules.staticExporterInvalidationIsError && !buffer.dynamic) {
    throw codedError('ERR_DMABUF_POLICY_RULE', 'dma_buf_move_notify', `${buffer.name} is a static exporter: its importers hold cached mappings`);
  }
  for (const attachment of [...buffer.attachments]) {
    if (!attachment.importerOps?.moveNotify) continue;
    if (rules.invalidationReaches === 'all-but-the-attachment-mapping' && attachment.selfFiltered) continue;
    const live = attachment.liveMappings.filter((record) => !record.invalidated);
    if (rules.invalidationReaches === 'live-mappings-once' && live.length === 0) continue;
    for (const record of live) record.invalidated = true;
    buffer.record('move-notify', attachment);
    attachment.importerOps.moveNotify(attachment);
  }
}

/** 7.2's name for moveNotify. */
export const invalidateMappings = moveNotify;

/** The last reference went: the exporter's release. Every attachment must be gone. */
export function release<M>(buffer: PolicyBuffer<M>): void {
  if (buffer.released) return;
  if (buffer.attachments.length > 0) throw codedError('ERR_DMABUF_POLICY_RULE', 'dma_buf_release', `${buffer.name} still has ${buffer.attachments.length} attachments`);
  buffer.released = true;
  buffer.ops.release(buffer);
  buffer.record('release');
}
