import { policyErrno, PolicyRuleError } from './errors';
import { ReservationObject } from './resv';
import { Trace, type TraceEventKind } from './trace';

/**
 * The dma-buf core's dynamic policy, after drivers/dma-buf/dma-buf.c:
 * exporters with ops, attachments (static or dynamic importers), mapping and
 * unmapping with the locking rules, pinning, move notification, detach.
 * `../shared/docs/dynamic-policy.md` numbers the rules cited below.
 *
 * Exporter ops are synchronous, as the kernel calls them with its locks
 * held; the calls that may take the reservation lock, or wait for fences,
 * return Promises.
 */

export type DmaDirection = 'bidirectional' | 'to-device' | 'from-device';

/**
 * - `linux-6.1`: the VM's kernel. `moveNotify` is CONFIG_DMABUF_MOVE_NOTIFY:
 *   off, a dynamic importer's mapping of a dynamic exporter pins it.
 * - `v10`: the 2019 proposal: `invalidate` skips the attachment whose own map
 *   is running, static importers on dynamic exporters lock implicitly, no
 *   pinning switch, and static maps do not wait for fences.
 * - `tracking`: the review thread's answer (2): the core tracks every
 *   mapping, and an invalidation reaches only attachments holding a live,
 *   not yet invalidated mapping, once per mapping. Otherwise as linux-6.1
 *   with moveNotify.
 */
export type PolicyProfile = { name: 'linux-6.1'; moveNotify: boolean } | { name: 'v10' } | { name: 'tracking' };

export const profiles = {
  linux61: { name: 'linux-6.1', moveNotify: true } as PolicyProfile,
  linux61NoMoveNotify: { name: 'linux-6.1', moveNotify: false } as PolicyProfile,
  v10: { name: 'v10' } as PolicyProfile,
  tracking: { name: 'tracking' } as PolicyProfile,
};

export function profileLabel(profile: PolicyProfile): string {
  return profile.name === 'linux-6.1' ? `linux-6.1${profile.moveNotify ? '' : ' (no MOVE_NOTIFY)'}` : profile.name;
}

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
  /** move_notify (6.1); `invalidate` in v10. Called with the reservation lock held. */
  moveNotify?(attachment: Attachment<M>): void;
}

interface MappingRecord<M> {
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
  /** tracking profile: the mappings handed out and not unmapped. */
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
    if (this.buffer.profile.name === 'v10') return this.importerOps?.moveNotify !== undefined;
    return this.importerOps !== undefined;
  }
}

let bufferCount = 0;

export class PolicyBuffer<M = unknown> {
  /** Newest first, as list_add puts them. */
  readonly attachments: Attachment<M>[] = [];
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

  get pinCount(): number {
    return this.attachments.reduce((sum, attachment) => sum + attachment.pins, 0);
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
  const refuse = (why: string) => policyErrno('EINVAL', 'dma_buf_export', `${why} (the kernel WARNs)`);
  if (profile.name === 'v10') {
    if (ops.cacheSgtMapping && ops.pin) throw refuse('cache_sgt_mapping together with pin');
  } else {
    if (typeof ops.map !== 'function' || typeof ops.unmap !== 'function' || typeof ops.release !== 'function') throw refuse('map, unmap and release are required');
    if (ops.cacheSgtMapping && (ops.pin || ops.unpin)) throw refuse('cache_sgt_mapping together with pin/unpin');
    if (!ops.pin !== !ops.unpin) throw refuse('pin without unpin, or unpin without pin');
  }
  if (!Number.isInteger(info.size) || info.size <= 0) throw new RangeError(`size must be a positive integer, got ${info.size}`);
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
  // (a move in flight) have signalled; a dynamic one waits itself. v10 did
  // not wait.
  if (buffer.profile.name !== 'v10' && !attachment.dynamic && !buffer.resv.testSignaled('kernel')) {
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
 * importer (dma_buf_attach). When importer and exporter disagree on being
 * dynamic, the mapping is made now and cached, the exporter pinned first if
 * it is the dynamic one.
 */
export async function dynamicAttach<M>(buffer: PolicyBuffer<M>, importer: { ops?: ImporterOps<M>; priv?: unknown; name?: string } = {}): Promise<Attachment<M>> {
  if (buffer.released) throw new PolicyRuleError('dma_buf_dynamic_attach', `${buffer.name} was released`);
  if (buffer.profile.name !== 'v10' && importer.ops && !importer.ops.moveNotify) {
    throw policyErrno('EINVAL', 'dma_buf_dynamic_attach', 'importer ops without move_notify (the kernel WARNs)');
  }
  const attachment = new Attachment<M>(buffer, importer.name ?? `${buffer.name}.attachment${buffer.attachments.length + 1}`, importer.ops, importer.priv);
  buffer.ops.attach?.(buffer, attachment);
  await buffer.resv.lock();
  buffer.attachments.unshift(attachment);
  buffer.resv.unlock();
  buffer.record('attach', attachment);

  if (attachment.dynamic !== buffer.dynamic) {
    const lockForExporter = buffer.dynamic;
    if (lockForExporter) await buffer.resv.lock();
    try {
      if (lockForExporter) pinThroughExporter(attachment);
      try {
        attachment.sgt = await mapThroughExporter(attachment, 'bidirectional');
        attachment.dir = 'bidirectional';
      } catch (error) {
        if (lockForExporter) unpinThroughExporter(attachment);
        throw error;
      }
    } catch (error) {
      if (lockForExporter) buffer.resv.unlock();
      await detach(buffer, attachment);
      throw error;
    }
    if (lockForExporter) buffer.resv.unlock();
  }
  return attachment;
}

/** dma_buf_attach: a static importer. */
export function attach<M>(buffer: PolicyBuffer<M>, importer: { priv?: unknown; name?: string } = {}): Promise<Attachment<M>> {
  return dynamicAttach(buffer, { priv: importer.priv, name: importer.name });
}

/** dma_buf_detach (rule 10): the cached mapping goes (and its pin), then the attachment. */
export async function detach<M>(buffer: PolicyBuffer<M>, attachment: Attachment<M>): Promise<void> {
  if (attachment.buffer !== buffer || attachment.detached) throw new PolicyRuleError('dma_buf_detach', `${attachment.name} is not attached to ${buffer.name}`);
  if (attachment.sgt !== undefined) {
    if (buffer.dynamic) await buffer.resv.lock();
    unmapThroughExporter(attachment, attachment.sgt, attachment.dir!);
    attachment.sgt = undefined;
    if (buffer.dynamic) {
      unpinThroughExporter(attachment);
      buffer.resv.unlock();
    }
  }
  await buffer.resv.lock();
  buffer.attachments.splice(buffer.attachments.indexOf(attachment), 1);
  buffer.resv.unlock();
  attachment.detached = true;
  buffer.ops.detach?.(buffer, attachment);
  buffer.record('detach', attachment);
}

/** dma_buf_pin (rule 8): dynamic importers only, under the lock. */
export function pin<M>(attachment: Attachment<M>): void {
  if (!attachment.dynamic) throw new PolicyRuleError('dma_buf_pin', `${attachment.name} is a static importer; only dynamic importers pin`);
  assertHeld(attachment.buffer, 'dma_buf_pin');
  pinThroughExporter(attachment);
}

export function unpin<M>(attachment: Attachment<M>): void {
  if (!attachment.dynamic) throw new PolicyRuleError('dma_buf_unpin', `${attachment.name} is a static importer; only dynamic importers unpin`);
  assertHeld(attachment.buffer, 'dma_buf_unpin');
  if (attachment.pins === 0 && attachment.buffer.ops.unpin) throw new PolicyRuleError('dma_buf_unpin', `${attachment.name} holds no pin`);
  unpinThroughExporter(attachment);
}

function movesWithoutPin(profile: PolicyProfile): boolean {
  return profile.name !== 'linux-6.1' || profile.moveNotify;
}

/**
 * dma_buf_map_attachment (rule 5). A dynamic importer must hold the
 * reservation lock (v10: a static importer on a dynamic exporter has it
 * taken for it).
 */
export async function mapAttachment<M>(attachment: Attachment<M>, direction: DmaDirection): Promise<M> {
  const { buffer } = attachment;
  const call = 'dma_buf_map_attachment';
  if (attachment.detached) throw new PolicyRuleError(call, `${attachment.name} is detached`);
  if (attachment.dynamic) assertHeld(buffer, call);
  if (attachment.sgt !== undefined) {
    if (attachment.dir !== direction && attachment.dir !== 'bidirectional') {
      throw policyErrno('EBUSY', call, `the cached mapping is ${attachment.dir}, not ${direction}`);
    }
    buffer.record('map-cached', attachment, { direction });
    return attachment.sgt;
  }

  if (buffer.profile.name === 'v10') return mapV10(attachment, direction);

  let pinned = false;
  if (buffer.dynamic) {
    assertHeld(buffer, call);
    if (!movesWithoutPin(buffer.profile)) {
      pinThroughExporter(attachment);
      pinned = true;
    }
  }
  let mapping: M;
  try {
    mapping = await mapThroughExporter(attachment, direction);
  } catch (error) {
    if (pinned) unpinThroughExporter(attachment);
    throw error;
  }
  if (buffer.ops.cacheSgtMapping) {
    attachment.sgt = mapping;
    attachment.dir = direction;
  } else if (buffer.profile.name === 'tracking') {
    attachment.liveMappings.push({ mapping, invalidated: false });
  }
  return mapping;
}

async function mapV10<M>(attachment: Attachment<M>, direction: DmaDirection): Promise<M> {
  const { buffer } = attachment;
  const implicitLock = !attachment.dynamic && buffer.dynamic;
  if (attachment.dynamic) {
    // Mapping may make the exporter move; the invalidation it sends must
    // not come back to the attachment being mapped.
    attachment.selfFiltered = true;
  } else if (implicitLock) {
    await buffer.resv.lock();
    try {
      pinThroughExporter(attachment);
    } catch (error) {
      buffer.resv.unlock();
      throw error;
    }
  }
  let mapping: M | undefined;
  try {
    mapping = await mapThroughExporter(attachment, direction);
  } finally {
    attachment.selfFiltered = false;
    if (implicitLock) {
      if (mapping === undefined) unpinThroughExporter(attachment);
      buffer.resv.unlock();
    }
  }
  if (buffer.ops.cacheSgtMapping) {
    attachment.sgt = mapping;
    attachment.dir = direction;
  }
  return mapping;
}

/** dma_buf_unmap_attachment (rule 7). */
export async function unmapAttachment<M>(attachment: Attachment<M>, mapping: M, direction: DmaDirection): Promise<void> {
  const { buffer } = attachment;
  const call = 'dma_buf_unmap_attachment';
  if (attachment.dynamic) assertHeld(buffer, call);
  if (attachment.sgt === mapping) return;
  if (buffer.profile.name === 'v10') {
    const implicitLock = !attachment.dynamic && buffer.dynamic;
    if (implicitLock) await buffer.resv.lock();
    unmapThroughExporter(attachment, mapping, direction);
    if (implicitLock) {
      unpinThroughExporter(attachment);
      buffer.resv.unlock();
    }
    return;
  }
  if (buffer.dynamic) assertHeld(buffer, call);
  if (buffer.profile.name === 'tracking') {
    const index = attachment.liveMappings.findIndex((record) => record.mapping === mapping);
    if (index < 0) throw new PolicyRuleError(call, `${attachment.name} does not hold that mapping`);
    attachment.liveMappings.splice(index, 1);
  }
  unmapThroughExporter(attachment, mapping, direction);
  if (buffer.dynamic && !movesWithoutPin(buffer.profile)) unpinThroughExporter(attachment);
}

/** dma_buf_map_attachment_unlocked (rule 6): takes the lock around the locked call. v10 had none: its plain call locks where needed. */
export async function mapAttachmentUnlocked<M>(attachment: Attachment<M>, direction: DmaDirection): Promise<M> {
  if (attachment.buffer.profile.name === 'v10') return mapAttachment(attachment, direction);
  await attachment.buffer.resv.lock();
  try {
    return await mapAttachment(attachment, direction);
  } finally {
    attachment.buffer.resv.unlock();
  }
}

export async function unmapAttachmentUnlocked<M>(attachment: Attachment<M>, mapping: M, direction: DmaDirection): Promise<void> {
  if (attachment.buffer.profile.name === 'v10') return unmapAttachment(attachment, mapping, direction);
  await attachment.buffer.resv.lock();
  try {
    await unmapAttachment(attachment, mapping, direction);
  } finally {
    attachment.buffer.resv.unlock();
  }
}

/**
 * dma_buf_move_notify (rule 9), called by the exporter with the lock held
 * when it moved. linux-6.1 tells every attachment with importer ops; v10
 * skips the one whose map is running; tracking tells only attachments with
 * a live mapping not yet invalidated, once.
 */
export function moveNotify<M>(buffer: PolicyBuffer<M>): void {
  assertHeld(buffer, 'dma_buf_move_notify');
  if (buffer.profile.name === 'tracking' && !buffer.dynamic) {
    throw new PolicyRuleError('dma_buf_move_notify', `${buffer.name} is a static exporter: its importers hold cached mappings`);
  }
  for (const attachment of [...buffer.attachments]) {
    if (!attachment.importerOps?.moveNotify) continue;
    if (buffer.profile.name === 'v10' && attachment.selfFiltered) continue;
    if (buffer.profile.name === 'tracking') {
      const live = attachment.liveMappings.filter((record) => !record.invalidated);
      if (live.length === 0) continue;
      for (const record of live) record.invalidated = true;
    }
    buffer.record('move-notify', attachment);
    attachment.importerOps.moveNotify(attachment);
  }
}

/** The last reference went: the exporter's release. Every attachment must be gone. */
export function release<M>(buffer: PolicyBuffer<M>): void {
  if (buffer.released) return;
  if (buffer.attachments.length > 0) throw new PolicyRuleError('dma_buf_release', `${buffer.name} still has ${buffer.attachments.length} attachments`);
  buffer.released = true;
  buffer.ops.release(buffer);
  buffer.record('release');
}
