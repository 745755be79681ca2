import { EventEmitter, on } from 'node:events';
import { fstatSync, readFileSync } from 'node:fs';
import { DmaBuf } from '../dmabuf';
import { codedError, errnoName, kernelError, negativeErrno } from '../errors';
import type { ExporterCounters } from '../policy';
import { EventedFdHandle } from '../events';
import { closeFd } from '../handle';
import { type DmabufTestValueName, native } from '../native';
import { SyncFile } from '../sync-file';
import * as validate from '../validate';
import { FdWaiter } from '../wait';

/**
 * The test module (kernel-module/, /dev/dmabuf_test) from TypeScript: a
 * dynamic or static exporter the kernel can pin and move, an importer that
 * attaches to any dma-buf the way a driver does, and fences in reservation
 * objects. For driver developers it is a reference importer for their own
 * exporter: attach to its buffer, map, move it, and read the counters.
 */

type FieldType = 'u32' | 's32' | 'u64';

/** A C struct of the uapi header, laid out with natural alignment as the compiler does. */
class Struct<Name extends string> {
  readonly size: number;
  readonly #offsets = new Map<Name, [number, FieldType]>();

  constructor(fields: readonly (readonly [Name, FieldType])[]) {
    let offset = 0;
    let alignment = 1;
    for (const [name, type] of fields) {
      const width = type === 'u64' ? 8 : 4;
      alignment = Math.max(alignment, width);
      offset = Math.ceil(offset / width) * width;
      this.#offsets.set(name, [offset, type]);
      offset += width;
    }
    // Padded to its widest field, as the compiler pads it.
    this.size = Math.ceil(offset / alignment) * alignment;
  }

  encode(values: Partial<Record<Name, number>>): Buffer {
    const buffer = Buffer.alloc(this.size);
    for (const [name, value] of Object.entries(values) as [Name, number][]) {
      const [offset, type] = this.#offsets.get(name)!;
      if (type === 'u64') buffer.writeBigUInt64LE(BigInt(value), offset);
      else if (type === 's32') buffer.writeInt32LE(value, offset);
      else buffer.writeUInt32LE(value, offset);
    }
    return buffer;
  }

  decode(buffer: Buffer): Record<Name, number> {
    const values = {} as Record<Name, number>;
    for (const [name, [offset, type]] of this.#offsets) {
      values[name] = type === 'u64' ? Number(buffer.readBigUInt64LE(offset)) : type === 's32' ? buffer.readInt32LE(offset) : buffer.readUInt32LE(offset);
    }
    return values;
  }
}

// struct dbt_attachment_id, the argument of four commands.
const attachmentId = new Struct([['id', 'u32'], ['pad', 'u32']]);

const structs = {
  EXPORT: new Struct([['pages', 'u32'], ['flags', 'u32'], ['fd', 's32'], ['id', 'u32']]),
  MOVE: new Struct([['id', 'u32'], ['flags', 'u32'], ['fenceId', 'u32'], ['pad', 'u32']]),
  EXPORTER_INFO: new Struct([
    ['id', 'u32'], ['flags', 'u32'], ['pages', 'u32'], ['pinCount', 'u32'], ['attachments', 'u32'], ['heldMoves', 'u32'],
    ['attachCalls', 'u64'], ['detachCalls', 'u64'], ['pinCalls', 'u64'], ['unpinCalls', 'u64'], ['mapCalls', 'u64'], ['unmapCalls', 'u64'], ['moves', 'u64'],
  ]),
  ATTACH: new Struct([['fd', 's32'], ['flags', 'u32'], ['id', 'u32'], ['pad', 'u32']]),
  DETACH: attachmentId,
  MAP: new Struct([['id', 'u32'], ['direction', 'u32'], ['nents', 'u32'], ['pad', 'u32'], ['bytes', 'u64']]),
  UNMAP: attachmentId,
  PIN: attachmentId,
  UNPIN: attachmentId,
  ATTACHMENT_INFO: new Struct([
    ['id', 'u32'], ['flags', 'u32'], ['state', 'u32'], ['pins', 'u32'], ['nents', 'u32'], ['pad', 'u32'],
    ['bytes', 'u64'], ['moveNotifies', 'u64'], ['size', 'u64'],
  ]),
  FENCE_CREATE: new Struct([['dmabufFd', 's32'], ['usage', 'u32'], ['flags', 'u32'], ['id', 'u32'], ['syncFileFd', 's32'], ['pad', 'u32']]),
  FENCE_SIGNAL: new Struct([['id', 'u32'], ['error', 's32']]),
};
export type KernelTestCommand = keyof typeof structs;
const eventStruct = new Struct([['type', 'u32'], ['id', 'u32'], ['sequence', 'u64']]);

/** @internal The layouts, for test/host/uapi-values.test.ts to hold to the header. */
export const uapiLayouts = { commands: structs, event: eventStruct };

/** The uapi header's flags, limits and event types, from the addon built with it (loaded at first use). */
const dbt = () => native().dmabufTestValues;

export type DmaDirection = 'bidirectional' | 'to-device' | 'from-device';
const directionValues: Readonly<Record<DmaDirection, DmabufTestValueName>> = { bidirectional: 'DBT_DIR_BIDIRECTIONAL', 'to-device': 'DBT_DIR_TO_DEVICE', 'from-device': 'DBT_DIR_FROM_DEVICE' };
const directions = Object.keys(directionValues) as DmaDirection[];
/** Fence usages of a reservation object, in the kernel's order (enum dma_resv_usage). */
export type FenceUsage = 'kernel' | 'write' | 'read' | 'bookkeep';
const usageValues: Readonly<Record<FenceUsage, DmabufTestValueName>> = { kernel: 'DBT_USAGE_KERNEL', write: 'DBT_USAGE_WRITE', read: 'DBT_USAGE_READ', bookkeep: 'DBT_USAGE_BOOKKEEP' };
const usages = Object.keys(usageValues) as FenceUsage[];

export const defaultDevicePath = '/dev/dmabuf_test';
/** The misc device's number as the kernel registered it, "major:minor". */
const miscDeviceNumberPath = '/sys/class/misc/dmabuf_test/dev';
/** What the running kernel's dma-buf core does, as the module was built to find it. */
const featuresPath = '/sys/class/misc/dmabuf_test/features';

/**
 * What the running kernel's dma-buf core does that changes what the
 * module's counters show (the uapi header's "features"). The module finds
 * these in the kernel's headers and Kconfig when it is built.
 */
export interface KernelTestFeatures {
  /**
   * The core caches mappings (6.1, 6.12): a static exporter's first mapping,
   * and at attach a mismatched importer and exporter (a static importer of a
   * dynamic exporter also pinned) until detach. Without it (7.x) every map
   * reaches the exporter, and a static importer of a dynamic exporter pins
   * it for each mapping.
   */
  coreSgtCache: boolean;
  /** A dynamic importer's mapping pins a dynamic exporter (CONFIG_DMABUF_MOVE_NOTIFY=n). */
  dynamicMapPins: boolean;
  /** The importer callback is invalidate_mappings (formerly move_notify; the same events). */
  invalidateMappings: boolean;
  /** `attach(buffer, { revocable: true })` is available (dma_buf_attach_revocable()). */
  revocable: boolean;
}

/**
 * Why the open `fd` is not the module's device, or undefined when it is: its
 * device number must be the one the module registered, so that no other
 * file (which would take these ioctl numbers for its own, or read nothing
 * forever) is driven as if it were.
 */
function notTestDevice(fd: number): string | undefined {
  const stat = fstatSync(fd);
  if (!stat.isCharacterDevice()) return 'not a character device';
  let registered: string;
  try {
    registered = readFileSync(miscDeviceNumberPath, 'utf8').trim();
  } catch {
    return `${miscDeviceNumberPath} is missing: the dmabuf_test module is not loaded`;
  }
  // The kernel's dev_t as glibc encodes it: 12 bits of major, 20 of minor, split.
  const rdev = BigInt(stat.rdev);
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}` === registered ? undefined : `character device ${major}:${minor}, and dmabuf_test is ${registered}`;
}

const hints: Partial<Record<KernelTestCommand, Partial<Record<string, string>>>> = {
  MOVE: {
    EBUSY: 'the buffer is pinned: an importer pinned it, or its mapping did (a static importer, or a dynamic one on a kernel without CONFIG_DMABUF_MOVE_NOTIFY)',
    EINVAL: 'only a dynamic exporter can move',
  },
  MAP: { EBUSY: 'the attachment is already mapped (unmap first), or the core cached a mapping with another direction', ENODEV: 'the attachment was revoked: detach it' },
  UNMAP: { EINVAL: 'the attachment is not mapped (a revoke unmaps it)' },
  PIN: { EINVAL: 'only a dynamic importer may pin (the kernel WARNs for a static one)', ENODEV: 'the attachment was revoked: detach it' },
  UNPIN: { EINVAL: 'the attachment holds no pin (or is a static importer)' },
  ATTACH: { EINVAL: 'the fd is not a dma-buf', EBADF: 'the fd is not open', ENOTSUP: 'EOPNOTSUPP: this kernel has no revocable attachments (dma_buf_attach_revocable())' },
  FENCE_SIGNAL: { ENOENT: 'no such fence: already signalled, or never created by this file' },
};

function ioctl(fd: number, command: KernelTestCommand, argument: Buffer): void {
  const number = (native().dmabufTestCommands as Record<string, number>)[command]!;
  // The size is encoded in the command: a layout here that disagrees with
  // the header the addon was built with is caught before the kernel sees it.
  if (((number >>> 16) & 0x3fff) !== argument.length) {
    throw codedError('ERR_DMABUF_ADDON_MISMATCH', `the argument of DBT_IOCTL_${command}`, argument.length, (number >>> 16) & 0x3fff);
  }
  const result = native().dmabufTestIoctl(fd, number, argument);
  if (result < 0) {
    const code = errnoName(-result);
    throw kernelError(result, `ioctl(DBT_IOCTL_${command})`, { hint: hints[command]?.[code] ?? (code === 'ENOENT' ? 'no such object in this file (closed, detached, or never created)' : undefined) });
  }
}

/** Sends a command whose argument is built from `values`, and returns the struct the kernel wrote back. */
function call<C extends KernelTestCommand>(fd: number, command: C, values: Parameters<(typeof structs)[C]['encode']>[0]): ReturnType<(typeof structs)[C]['decode']> {
  const struct = structs[command] as Struct<string>;
  const argument = struct.encode(values as Record<string, number>);
  ioctl(fd, command, argument);
  return struct.decode(argument) as ReturnType<(typeof structs)[C]['decode']>;
}

/** The module's counters (named as lib/policy's counting exporter names its own), and the buffer's shape. */
export interface ExporterInfo extends ExporterCounters {
  dynamic: boolean;
  pages: number;
  /** Fenced moves whose old pages are still held. */
  heldMoves: number;
}

export interface AttachmentInfo {
  dynamic: boolean;
  /** Attached with `revocable: true`. */
  revocable: boolean;
  mapped: boolean;
  /** Invalidated (move_notify / invalidate_mappings) while mapped: the mapping must be remade. */
  invalidated: boolean;
  /** A revocable attachment was invalidated: it unmapped, dropped its pins, and maps no more. */
  revoked: boolean;
  /** The core holds a cached mapping (mismatched importer and exporter, or cache_sgt_mapping; never without `coreSgtCache`). */
  coreCached: boolean;
  /** dma_buf_attach_revocable() is true for it: what an exporter that demands revocable importers checks (never without the `revocable` feature). */
  coreRevocable: boolean;
  /** The buffer's exporter has a pin op (dma_buf_is_dynamic()): it may move, and tells importers; a static one never does. */
  exporterDynamic: boolean;
  pins: number;
  /** DMA segments and bytes of the current mapping (0 when unmapped). */
  segments: number;
  bytes: number;
  /** Invalidations received (move_notify / invalidate_mappings), revokes included. */
  moveNotifies: number;
  size: number;
}

export interface KernelTestDeviceEvents {
  'move-notify': [event: KernelTestEvent];
  overflow: [event: KernelTestEvent];
  error: [error: Error];
  close: [];
}

export interface KernelTestEvent {
  type: 'move-notify' | 'overflow';
  /** The attachment notified; for 'overflow', how many events were dropped. */
  attachmentId: number;
  /** Counts every event of the device file, dropped ones included. */
  sequence: number;
}

/** Something the device made: it belongs to the open device file and dies with it. */
abstract class DeviceObject {
  protected constructor(
    protected readonly device: KernelTestDevice,
    readonly id: number,
  ) {}

  protected get fd(): number {
    return this.device.fd;
  }
}

/** A buffer exported by the module. `dmabuf` is an ordinary DmaBuf (map it, share it, close it). */
export class TestExporter extends DeviceObject {
  /** @internal */
  constructor(device: KernelTestDevice, id: number, readonly dmabuf: DmaBuf) {
    super(device, id);
  }

  info(): ExporterInfo {
    const { flags, pages, pinCount, attachments, heldMoves, attachCalls, detachCalls, pinCalls, unpinCalls, mapCalls, unmapCalls, moves } = call(this.fd, 'EXPORTER_INFO', { id: this.id });
    return { dynamic: (flags & dbt().DBT_EXPORT_DYNAMIC) !== 0, pages, pinCount, attachments, heldMoves, attachCalls, detachCalls, pinCalls, unpinCalls, mapCalls, unmapCalls, moves };
  }

  /**
   * Migrates the contents to new pages under the reservation lock and calls
   * dma_buf_move_notify. With `fenced`, the old pages stay allocated until
   * the returned fence is signalled (and the fence sits in the reservation
   * object as a kernel fence, so waitIdle and static importers wait for it).
   */
  move(options?: { fenced?: boolean }): TestFence | undefined {
    const { fenced } = validate.options<{ fenced: boolean }>('options', options);
    validate.optionalBoolean('options.fenced', fenced);
    const { fenceId } = call(this.fd, 'MOVE', { id: this.id, flags: fenced ? dbt().DBT_MOVE_FENCED : 0 });
    return fenced ? new TestFence(this.device, fenceId, undefined) : undefined;
  }

  /**
   * Invalidates every attachment without moving, as an exporter revoking
   * access does; pins do not stop it, and `moves` does not count it.
   * Revocable attachments unmap and drop their pins at once; dynamic ones
   * are marked invalidated.
   */
  revoke(): void {
    call(this.fd, 'MOVE', { id: this.id, flags: dbt().DBT_MOVE_REVOKE });
  }
}

/** The test device attached to a dma-buf, as a driver's importer would be. */
export class TestAttachment extends DeviceObject {
  #detached = false;

  /** @internal */
  constructor(
    device: KernelTestDevice,
    id: number,
    readonly dynamic: boolean,
    readonly revocable = false,
  ) {
    super(device, id);
  }

  /**
   * Maps for the device: under the reservation lock for a dynamic importer,
   * through the _unlocked calls for a static one (which wait in the kernel
   * for the buffer's kernel fences).
   */
  map(direction: DmaDirection = 'bidirectional'): { segments: number; bytes: number } {
    const { nents, bytes } = call(this.fd, 'MAP', { id: this.id, direction: dbt()[directionValues[validate.oneOf('direction', direction, directions)]] });
    return { segments: nents, bytes };
  }

  unmap(): void {
    call(this.fd, 'UNMAP', { id: this.id });
  }

  pin(): void {
    call(this.fd, 'PIN', { id: this.id });
  }

  unpin(): void {
    call(this.fd, 'UNPIN', { id: this.id });
  }

  info(): AttachmentInfo {
    const { flags, state, pins, nents, bytes, moveNotifies, size } = call(this.fd, 'ATTACHMENT_INFO', { id: this.id });
    return {
      dynamic: (flags & dbt().DBT_ATTACH_DYNAMIC) !== 0,
      revocable: (flags & dbt().DBT_ATTACH_REVOCABLE) !== 0,
      mapped: (state & dbt().DBT_STATE_MAPPED) !== 0,
      invalidated: (state & dbt().DBT_STATE_INVALIDATED) !== 0,
      revoked: (state & dbt().DBT_STATE_REVOKED) !== 0,
      coreCached: (state & dbt().DBT_STATE_CORE_CACHED) !== 0,
      coreRevocable: (state & dbt().DBT_STATE_CORE_REVOCABLE) !== 0,
      exporterDynamic: (state & dbt().DBT_STATE_EXPORTER_DYNAMIC) !== 0,
      pins,
      segments: nents,
      bytes,
      moveNotifies,
      size,
    };
  }

  /** Unmaps and unpins what is left, then detaches. Idempotent. */
  detach(): void {
    if (this.#detached || this.device.closed) return;
    this.#detached = true;
    call(this.fd, 'DETACH', { id: this.id });
  }

  [Symbol.dispose](): void {
    this.detach();
  }
}

/** A fence of the module, signalled on command (or with ECANCELED when the device file closes). */
export class TestFence extends DeviceObject {
  /** @internal */
  constructor(device: KernelTestDevice, id: number, readonly syncFile: SyncFile | undefined) {
    super(device, id);
  }

  /** Signals the fence, with a negative errno it then carries if `error` is given. */
  signal(error = 0): void {
    validate.integer('error', -error, 0, 4095);
    call(this.fd, 'FENCE_SIGNAL', { id: this.id, error });
  }
}

/**
 * An open /dev/dmabuf_test. Closing it detaches every attachment, signals
 * every fence with ECANCELED and drops its references to exported buffers
 * (which live on while their DmaBuf objects are open).
 *
 * Events ({@link KernelTestDeviceEvents}): 'move-notify' and 'overflow',
 * read from the device while a listener for either is attached, 'error'
 * when reading fails, 'close'; or iterate `events()`.
 */
export class KernelTestDevice extends EventedFdHandle<KernelTestDeviceEvents> {
  readonly #waiter: FdWaiter;
  #reading = false;
  #stopReading: AbortController | undefined;
  #eventBuffer = Buffer.alloc(64 * native().dmabufTestSizes.dbt_event);

  private constructor(fd: number) {
    super(fd, 'KernelTestDevice', ['move-notify', 'overflow', 'error', 'close']);
    this.#waiter = new FdWaiter(fd, 'KernelTestDevice', { drained: true });
    this.onListenersChanged((event, added) => {
      if (added && (event === 'move-notify' || event === 'overflow')) void this.#readLoop();
      else if (!added && !this.#listening()) this.#stopReading?.abort();
    });
  }

  /**
   * Opens the device; ENOENT says the module is not loaded. A file that is
   * not the module's device is refused with ERR_DMABUF_NOT_TEST_DEVICE.
   */
  static open(path: string = defaultDevicePath): KernelTestDevice {
    validate.string('path', path);
    const fd = native().openFile(path, native().constants.O_RDWR | native().constants.O_NONBLOCK);
    if (fd < 0) {
      throw kernelError(fd, 'open', {
        path,
        hint: errnoName(-fd) === 'ENOENT' ? 'the dmabuf_test module is not loaded: in the VM, `dmabuf vm run --module kernel-module -- <command>` builds and loads it' : undefined,
      });
    }
    let reason: string | undefined;
    try {
      reason = notTestDevice(fd);
    } catch (error) {
      closeFd(fd);
      throw error;
    }
    if (reason !== undefined) {
      closeFd(fd);
      throw codedError('ERR_DMABUF_NOT_TEST_DEVICE', path, reason);
    }
    return new KernelTestDevice(fd);
  }

  /** A buffer of `pages` zeroed pages: dynamic (pin/unpin, movable) or static (cached mapping). */
  export(options: { pages: number; dynamic: boolean }): TestExporter {
    const opts = validate.options<{ pages: number; dynamic: boolean }>('options', options);
    const pages = validate.integer('options.pages', opts.pages, 1, dbt().DBT_MAX_PAGES);
    const dynamic = validate.optionalBoolean('options.dynamic', opts.dynamic) ?? false;
    const { fd, id } = call(this.fd, 'EXPORT', { pages, flags: dynamic ? dbt().DBT_EXPORT_DYNAMIC : 0 });
    return new TestExporter(this, id, DmaBuf.adopt(fd, pages * native().pageSize()));
  }

  /**
   * Attaches the test device to any dma-buf (the caller keeps its fd).
   * `dynamic`: with importer ops, so the exporter may move the buffer and
   * invalidate the mapping. `revocable` (implies `dynamic`): an importer that
   * honours a revoke, as dma_buf_attach_revocable() asks; invalidated, it
   * unmaps and unpins at once and maps no more (ENODEV). Throws ENOTSUP (EOPNOTSUPP) on
   * a kernel without it (see `kernelTest.features().revocable`).
   */
  attach(buffer: DmaBuf | number, options?: { dynamic?: boolean; revocable?: boolean }): TestAttachment {
    const fd = DmaBuf.isDmaBuf(buffer) ? buffer.fd : validate.fd('buffer', buffer);
    const opts = validate.options<{ dynamic: boolean; revocable: boolean }>('options', options);
    const revocable = validate.optionalBoolean('options.revocable', opts.revocable) ?? false;
    const dynamic = (validate.optionalBoolean('options.dynamic', opts.dynamic) ?? false) || revocable;
    if (revocable && opts.dynamic === false) throw codedError('ERR_INCOMPATIBLE_OPTION_PAIR', 'options.revocable', 'options.dynamic: false', 'a revocable importer is a dynamic one: leave options.dynamic out or true');
    const { id } = call(this.fd, 'ATTACH', { fd, flags: (dynamic ? dbt().DBT_ATTACH_DYNAMIC : 0) | (revocable ? dbt().DBT_ATTACH_REVOCABLE : 0) });
    return new TestAttachment(this, id, dynamic, revocable);
  }

  /**
   * An unsignalled fence; with `buffer`, added to its reservation object
   * with `usage` (default 'write'); with `syncFile: true`, also as a SyncFile.
   */
  createFence(options: { buffer?: DmaBuf | number; usage?: FenceUsage; syncFile?: boolean } = {}): TestFence {
    const opts = validate.options<{ buffer: DmaBuf | number; usage: FenceUsage; syncFile: boolean }>('options', options);
    const bufferFd = opts.buffer === undefined ? -1 : DmaBuf.isDmaBuf(opts.buffer) ? opts.buffer.fd : validate.fd('options.buffer', opts.buffer);
    if (opts.usage !== undefined && opts.buffer === undefined) throw codedError('ERR_MISSING_OPTION', 'options.buffer', 'with options.usage (the fence is added to that buffer\'s reservation object)');
    const usage = opts.buffer === undefined ? 0 : dbt()[usageValues[validate.oneOf('options.usage', opts.usage ?? 'write', usages)]];
    const wantSyncFile = validate.optionalBoolean('options.syncFile', opts.syncFile) ?? false;
    const flags = (bufferFd >= 0 ? dbt().DBT_FENCE_ADD : 0) | (wantSyncFile ? dbt().DBT_FENCE_SYNC_FILE : 0);
    const { id, syncFileFd } = call(this.fd, 'FENCE_CREATE', { dmabufFd: bufferFd, usage, flags });
    let syncFile: SyncFile | undefined;
    if (wantSyncFile) {
      try {
        syncFile = SyncFile.adopt(syncFileFd);
      } catch (error) {
        closeFd(syncFileFd);
        throw error;
      }
    }
    return new TestFence(this, id, syncFile);
  }

  /**
   * Sends any command with raw argument bytes (at least the command's size):
   * for fuzzing the module. `command` is a full ioctl number of type 0xDB.
   */
  rawIoctl(command: number, argument: Buffer): number {
    validate.integer('command', command, 0, 0xffffffff);
    if (!Buffer.isBuffer(argument)) throw validate.typeError('argument', 'a Buffer', argument);
    return native().dmabufTestIoctl(this.fd, command, argument);
  }

  /** The full ioctl numbers, for rawIoctl. */
  static get commands(): Readonly<Record<KernelTestCommand, number>> {
    return native().dmabufTestCommands as Record<KernelTestCommand, number>;
  }

  /** Events queued now, without waiting (consumes them: listeners will not see these). */
  readEvents(): KernelTestEvent[] {
    const fd = this.assertOpen('read');
    const events: KernelTestEvent[] = [];
    for (;;) {
      const bytes = native().readInto(fd, this.#eventBuffer);
      // The module never returns 0 (EAGAIN when drained), but a read that
      // brings nothing must end the loop whatever the file does.
      if (bytes === negativeErrno('EAGAIN') || bytes === 0) return events;
      if (bytes < 0) throw kernelError(bytes, 'read', { path: defaultDevicePath });
      for (let offset = 0; offset + eventStruct.size <= bytes; offset += eventStruct.size) {
        const { type, id, sequence } = eventStruct.decode(this.#eventBuffer.subarray(offset, offset + eventStruct.size));
        events.push({ type: type === dbt().DBT_EVENT_OVERFLOW ? 'overflow' : type === dbt().DBT_EVENT_MOVE_NOTIFY ? 'move-notify' : (`unknown-${type}` as 'overflow'), attachmentId: id, sequence });
      }
    }
  }

  /** Invalidations as they happen, as an async iterator (ends with the signal, or when the device closes). */
  async *events(options?: { signal?: AbortSignal }): AsyncGenerator<KernelTestEvent> {
    const signal = validate.optionalSignal('options.signal', validate.options<{ signal: AbortSignal }>('options', options).signal);
    // A closed device has already emitted 'close': waiting for it would never end.
    this.assertOpen('events');
    const stop = new AbortController();
    const onClose = () => stop.abort();
    this.once('close', onClose);
    const combined = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
    // Each iterator has its own queue, so that two of them both see every event.
    const queue = new EventEmitter();
    const forward = (event: KernelTestEvent) => queue.emit('event', event);
    this.on('move-notify', forward).on('overflow', forward);
    try {
      for await (const [event] of on(queue, 'event', { signal: combined })) yield event as KernelTestEvent;
    } catch (error) {
      if ((error as { name?: string }).name !== 'AbortError') throw error;
    } finally {
      this.off('move-notify', forward).off('overflow', forward);
      this.off('close', onClose);
    }
  }

  #listening(): boolean {
    return this.listenerCount('move-notify') + this.listenerCount('overflow') > 0;
  }

  async #readLoop(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    try {
      while (!this.closed && this.#listening()) {
        for (const event of this.readEvents()) this.emit(event.type, event);
        // A once() listener, or an off() in one, may have been the last.
        if (!this.#listening()) break;
        this.#stopReading = new AbortController();
        await this.#waiter.wait(native().Poller.READABLE, 'read', { signal: this.#stopReading.signal });
      }
    } catch (error) {
      const stopped = (error as { name?: string }).name === 'AbortError' || (error as { code?: string }).code === 'ECANCELED';
      if (!stopped) this.emitError(error as Error);
    } finally {
      this.#reading = false;
      this.#stopReading = undefined;
    }
  }

  protected override releaseResources(): void {
    this.#waiter.close('read');
    this.emit('close');
  }
}

/** Reads what the loaded module reports of the running kernel's dma-buf core. */
function features(): KernelTestFeatures {
  let text: string;
  try {
    text = readFileSync(featuresPath, 'utf8');
  } catch (error) {
    const { errno, syscall } = error as NodeJS.ErrnoException;
    if (errno === undefined || syscall === undefined) throw error;
    throw kernelError(errno, syscall, { path: featuresPath, hint: 'the dmabuf_test module is not loaded, or is older than its features attribute' });
  }
  const names = new Set(text.split('\n').filter((name) => name !== ''));
  return {
    coreSgtCache: names.has('core_sgt_cache'),
    dynamicMapPins: names.has('dynamic_map_pins'),
    invalidateMappings: names.has('invalidate_mappings'),
    revocable: names.has('revocable'),
  };
}

/** The module's user interface: `kernelTest.open()`, and `kernelTest.features()` of the running kernel. */
export const kernelTest = {
  open: (path?: string): KernelTestDevice => KernelTestDevice.open(path),
  features,
  devicePath: defaultDevicePath,
};
