import { fstatSync, readFileSync } from 'node:fs';
import { accessFlags, accessModes, type AccessMode } from './constants';
import { check, codedError, kernelError, negativeErrno } from './errors';
import { closeFd, FdHandle, handleOf, isHandleOf } from './handle';
import { SharedMapping } from './mapping';
import { native } from './native';
import { SyncFile } from './sync-file';
import * as validate from './validate';
import { FdWaiter, type WaitOptions } from './wait';

/** What /proc/self/fdinfo says of a dma-buf fd. */
export interface DmaBufInfo {
  size: number;
  /** File status flags, as the octal field in fdinfo (O_RDWR, O_CLOEXEC, ...). */
  flags: number;
  /** Access mode: 'r', 'w' or 'rw'. */
  mode: 'r' | 'w' | 'rw';
  /** Open files that share this buffer (fds in all processes, dups, mappings' files count once each). */
  count: number;
  exporter: string;
  name: string | undefined;
  inode: number;
}

export interface DmaBufWaitOptions extends WaitOptions {
  /** 'read': wait until writers are done (safe to read); 'write' or 'readwrite': until all access is done. Default 'readwrite'. */
  mode?: AccessMode;
}

const nameSyscall = 'ioctl(DMA_BUF_SET_NAME)';
// Looked up once per call on the hot path of CPU access; built on first use,
// since the values come from the addon, which loads only when first needed.
let syncFlags: { start: Record<string, number>; end: Record<string, number> } | undefined;
function cpuAccessFlags(): { start: Record<string, number>; end: Record<string, number> } {
  if (syncFlags === undefined) {
    const { DMA_BUF_SYNC_START, DMA_BUF_SYNC_END } = native().constants;
    syncFlags = {
      start: Object.fromEntries(accessModes.map((mode) => [mode, DMA_BUF_SYNC_START | accessFlags(mode)])),
      end: Object.fromEntries(accessModes.map((mode) => [mode, DMA_BUF_SYNC_END | accessFlags(mode)])),
    };
  }
  return syncFlags;
}
const syncSyscall = 'ioctl(DMA_BUF_IOCTL_SYNC)';

/**
 * Parses the key/value lines of an fdinfo file. The kernel prints each as
 * `key:\tvalue`; only that tab goes, as a value (a buffer's name) may start
 * or end with white space of its own.
 */
export function parseFdinfo(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).replace(/^\t/, ''));
  }
  return fields;
}

/**
 * What a Udmabuf in this process knows about mapping its buffer, for other
 * DmaBuf objects of it: the files a mapping must hold open (its memfds), and
 * whether this kernel must not map it at all.
 */
export interface MappingKeepAliveSource {
  mappingKeepAlive(): number[];
  mapRefusal(): Error | undefined;
}

// By dma-buf inode: the live sources in this process for each buffer, held
// weakly (a leaked Udmabuf must still be collected, and its leak reported).
const keepAliveSources = new Map<number, Set<WeakRef<MappingKeepAliveSource>>>();

/** @internal A Udmabuf registers while it is open, so that other DmaBuf objects of the same buffer map it safely. */
export function registerKeepAliveSource(inode: number, source: MappingKeepAliveSource): WeakRef<MappingKeepAliveSource> {
  const ref = new WeakRef(source);
  let sources = keepAliveSources.get(inode);
  if (!sources) keepAliveSources.set(inode, (sources = new Set()));
  sources.add(ref);
  return ref;
}

/** @internal */
export function unregisterKeepAliveSource(inode: number, ref: WeakRef<MappingKeepAliveSource>): void {
  const sources = keepAliveSources.get(inode);
  if (!sources) return;
  sources.delete(ref);
  if (sources.size === 0) keepAliveSources.delete(inode);
}

/** The live sources of buffer `inode` (pruning collected ones). */
function registeredSources(inode: number): MappingKeepAliveSource[] {
  const sources = keepAliveSources.get(inode);
  if (!sources) return [];
  const live: MappingKeepAliveSource[] = [];
  for (const ref of sources) {
    const source = ref.deref();
    if (source) live.push(source);
    else sources.delete(ref);
  }
  if (sources.size === 0) keepAliveSources.delete(inode);
  return live;
}

export function isDmaBufFd(fd: number): boolean {
  const magic = native().fsMagic(fd);
  return magic === native().constants.DMA_BUF_MAGIC;
}

/** Why an fd whose file system magic is `magic` is not a dma-buf, or undefined when it is: DmaBuf.fromFd's check, and a received fd's. */
export function dmaBufRefusal(fd: number, magic: number): Error | undefined {
  return magic === native().constants.DMA_BUF_MAGIC ? undefined : codedError('ERR_DMABUF_NOT_A_DMABUF', fd, magic);
}

/**
 * A dma-buf: one fd to a buffer an exporter (udmabuf, a dma-heap, a driver)
 * owns. Closing it drops this process's reference; the buffer lives while
 * any fd, mapping or device attachment holds it.
 */
export class DmaBuf extends FdHandle {
  /** Size in bytes, fixed for the buffer's life. */
  readonly size: number;
  #inode: number | undefined;
  /** Made on first map: most received buffers are never mapped here. */
  #mapping: SharedMapping | undefined;
  #waiter: FdWaiter | undefined;
  #cpuAccess: AccessMode | undefined;

  /** Takes ownership of an fd already known to be a dma-buf. Use `DmaBuf.fromFd` for anything else. */
  // A creator that knows the size passes it, saving an fstat per buffer.
  protected constructor(fd: number, size?: number, owned = false) {
    super(fd, 'DmaBuf', owned);
    this.size = size ?? fstatSync(fd).size;
  }

  /** Whether `value` is a DmaBuf, made by this copy of the package or another (where `instanceof` answers false). */
  static isDmaBuf(value: unknown): value is DmaBuf {
    return isHandleOf(value, 'DmaBuf');
  }

  /** @internal Wraps an fd the library just received from the kernel as a dma-buf. */
  static adopt(fd: number, size?: number, options?: { owned: boolean }): DmaBuf {
    return new DmaBuf(fd, size, options?.owned);
  }

  /** The inode that identifies this buffer across fds and processes. */
  get inode(): number {
    this.#inode ??= fstatSync(this.assertOpen('fstat')).ino;
    return this.#inode;
  }

  /**
   * Wraps an fd that should be a dma-buf. With `dup: true` the fd is
   * duplicated (close-on-exec) and the caller keeps the original; otherwise
   * this object takes it over. An fd that is not a dma-buf is refused (and,
   * when duplicated, the duplicate closed).
   */
  static fromFd(fd: number, options?: { dup?: boolean }): DmaBuf {
    validate.fd('fd', fd);
    const { dup } = validate.options<{ dup: boolean }>('options', options);
    validate.optionalBoolean('options.dup', dup);
    const magic = native().fsMagic(fd);
    if (magic < 0) throw kernelError(magic, 'fstatfs', { hint: `fd ${fd} is not an open file descriptor` });
    const refusal = dmaBufRefusal(fd, magic);
    if (refusal) throw refusal;
    const owned = dup ? check(native().dupCloexec(fd), 'fcntl(F_DUPFD_CLOEXEC)') : fd;
    try {
      return new DmaBuf(owned);
    } catch (error) {
      if (dup) closeFd(owned);
      throw error;
    }
  }

  /** fdinfo for this fd: size, flags, count of open files, exporter, name, inode. */
  info(): DmaBufInfo {
    const fd = this.assertOpen('info');
    const fields = parseFdinfo(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    const flags = Number.parseInt(fields.get('flags') ?? '0', 8);
    const { O_ACCMODE, O_RDONLY, O_WRONLY } = native().constants;
    const access = flags & O_ACCMODE;
    return {
      size: Number(fields.get('size')),
      flags,
      mode: access === O_RDONLY ? 'r' : access === O_WRONLY ? 'w' : 'rw',
      count: Number(fields.get('count')),
      exporter: fields.get('exp_name') ?? '',
      name: fields.get('name'),
      inode: Number(fields.get('ino')),
    };
  }

  /** The name set with DMA_BUF_SET_NAME (by any process), or undefined. */
  get name(): string | undefined {
    return this.info().name;
  }

  set name(value: string) {
    const fd = this.assertOpen(nameSyscall);
    validate.kernelName('name', value, native().constants.DMA_BUF_NAME_MAX_BYTES);
    check(native().dmaBufSetName(fd, value), nameSyscall);
  }

  /**
   * The whole buffer as a Buffer over a shared mapping: no copy, and writes
   * land in the dma-buf. The mapping is made once and shared by every call;
   * `close()` unmaps it and every view of it drops to length 0. Bracket CPU
   * access with `withCpuAccess` (or begin/endCpuAccess). Always read-write
   * (see SharedMapping), so a read-only fd is refused.
   */
  map(): Buffer {
    const fd = this.assertOpen('mmap');
    if (keepAliveSources.size > 0 && !this.hasOwnMappingRules()) {
      const sources = registeredSources(this.inode);
      for (const source of sources) {
        const refusal = source.mapRefusal();
        if (refusal) throw refusal;
      }
      const keepAlive = sources.flatMap((source) => source.mappingKeepAlive());
      return (this.#mapping ??= new SharedMapping()).view(fd, this.size, keepAlive.length > 0 ? keepAlive : undefined);
    }
    return (this.#mapping ??= new SharedMapping()).view(fd, this.size, this.mappingKeepAlive());
  }

  /** @internal True for a Udmabuf, which knows its own memfds and rules. */
  protected hasOwnMappingRules(): boolean {
    return false;
  }

  /**
   * Files a mapping of this buffer must hold open until it is unmapped (see
   * Udmabuf). Any other DmaBuf of a udmabuf that a Udmabuf object in this
   * process holds open (a `fromFd` wrapper, a buffer received over an
   * FdChannel from this process) finds that Udmabuf by inode in map(), and
   * its mapping holds the same memfds and obeys the same refusals.
   */
  protected mappingKeepAlive(): number[] | undefined {
    return undefined;
  }

  /**
   * DMA_BUF_IOCTL_SYNC with raw flags and none of the pairing checks below:
   * for tests of the kernel's own argument checking.
   */
  syncRaw(flags: number): void {
    const fd = this.assertOpen(syncSyscall);
    check(native().dmaBufSync(fd, validate.integer('flags', flags, 0, 0xffffffff), 0), syncSyscall);
  }

  /** The mode of the CPU access begun and not yet ended, if any. */
  get cpuAccess(): AccessMode | undefined {
    return this.#cpuAccess;
  }

  /**
   * Starts CPU access (DMA_BUF_IOCTL_SYNC START): caches are made coherent for
   * the CPU. One access at a time; end it with the same mode.
   *
   * The kernel makes this ioctl wait, without a timeout, for the fences that
   * `mode` must wait for (writes for 'read', all access otherwise). That would
   * block the event loop, so pending fences are refused with
   * `ERR_DMABUF_FENCES_PENDING`: `await waitIdle({ mode })` first. Pass
   * `{ block: true }` to let the thread wait in the kernel instead.
   */
  beginCpuAccess(mode: AccessMode, options?: { block?: boolean }): void {
    const fd = this.assertOpen(syncSyscall);
    const flags = cpuAccessFlags().start[mode as string];
    if (flags === undefined) validate.oneOf('mode', mode, accessModes);
    const block = options === undefined ? false : (validate.optionalBoolean('options.block', validate.options<{ block: boolean }>('options', options).block) ?? false);
    if (this.#cpuAccess !== undefined) {
      throw codedError('ERR_DMABUF_ACCESS_BEGUN', this.#cpuAccess);
    }
    const binding = native();
    const status = binding.dmaBufSync(fd, flags!, block ? 0 : mode === 'read' ? binding.constants.POLLIN : binding.constants.POLLOUT);
    if (status < 0) {
      // The addon answers EBUSY for fences it found pending without waiting.
      if (status === negativeErrno('EBUSY') && !block) throw codedError('ERR_DMABUF_FENCES_PENDING', mode);
      check(status, syncSyscall);
    }
    this.#cpuAccess = mode;
  }

  /** Ends the CPU access begun with the same mode (DMA_BUF_IOCTL_SYNC END). */
  endCpuAccess(mode?: AccessMode): void {
    const fd = this.assertOpen(syncSyscall);
    const begun = this.#cpuAccess;
    if (begun === undefined) throw codedError('ERR_DMABUF_ACCESS_NOT_BEGUN');
    if (mode !== undefined && mode !== begun) {
      validate.oneOf('mode', mode, accessModes);
      throw codedError('ERR_DMABUF_ACCESS_MISMATCH', mode, begun);
    }
    this.#cpuAccess = undefined;
    const status = native().dmaBufSync(fd, cpuAccessFlags().end[begun]!, 0);
    if (status < 0) check(status, syncSyscall);
  }

  /**
   * Runs `fn` with the mapped buffer inside begin/end CPU access, and always
   * ends what it began: when `fn` returns, throws, or its promise settles.
   * Like beginCpuAccess, refuses to block on pending fences.
   */
  withCpuAccess<T>(mode: AccessMode, fn: (buffer: Buffer) => T): T {
    validate.functionArg('fn', fn);
    const buffer = this.map();
    this.beginCpuAccess(mode);
    let result: T;
    try {
      result = fn(buffer);
    } catch (error) {
      this.#endQuietly(mode);
      throw error;
    }
    if (result instanceof Promise) {
      return result.finally(() => this.#endQuietly(mode)) as T;
    }
    this.endCpuAccess(mode);
    return result;
  }

  // An end after close (fn closed the buffer) has nothing left to end.
  #endQuietly(mode: AccessMode): void {
    if (!this.closed && this.#cpuAccess === mode) this.endCpuAccess(mode);
  }

  /**
   * The buffer's fences as a sync_file (DMA_BUF_IOCTL_EXPORT_SYNC_FILE):
   * 'read' gives what a reader must wait for (writes), 'write' or 'readwrite'
   * what a writer must wait for (all access).
   */
  exportSyncFile(mode: AccessMode): SyncFile {
    const fd = this.assertOpen('ioctl(DMA_BUF_IOCTL_EXPORT_SYNC_FILE)');
    validate.oneOf('mode', mode, accessModes);
    const syncFd = check(native().dmaBufExportSyncFile(fd, accessFlags(mode)), 'ioctl(DMA_BUF_IOCTL_EXPORT_SYNC_FILE)', (code) =>
      code === 'ENOTTY' ? 'this kernel cannot export fences from a dma-buf (needs Linux 6.0 or newer)' : undefined,
    );
    return SyncFile.adopt(syncFd);
  }

  /**
   * Adds a sync_file's fences to the buffer (DMA_BUF_IOCTL_IMPORT_SYNC_FILE):
   * as a write ('write', 'readwrite') that readers and writers wait for, or as
   * a read ('read') that only writers wait for. The sync_file stays open.
   */
  importSyncFile(syncFile: SyncFile, mode: AccessMode): void {
    const fd = this.assertOpen('ioctl(DMA_BUF_IOCTL_IMPORT_SYNC_FILE)');
    handleOf<SyncFile>('syncFile', syncFile, 'SyncFile', 'a SyncFile');
    validate.oneOf('mode', mode, accessModes);
    check(native().dmaBufImportSyncFile(fd, syncFile.fd, accessFlags(mode)), 'ioctl(DMA_BUF_IOCTL_IMPORT_SYNC_FILE)', (code) =>
      code === 'ENOTTY' ? 'this kernel cannot import fences into a dma-buf (needs Linux 6.0 or newer)' : undefined,
    );
  }

  /**
   * Resolves when the buffer's fences for `mode` have signalled, by polling
   * the fd from the event loop (no thread waits).
   */
  async waitIdle(options?: DmaBufWaitOptions): Promise<void> {
    const fd = this.assertOpen('poll');
    const { mode = 'readwrite', timeoutMs, signal } = validate.options<DmaBufWaitOptions>('options', options);
    validate.oneOf('options.mode', mode, accessModes);
    if (timeoutMs !== undefined) validate.timeoutMs('options.timeoutMs', timeoutMs);
    validate.optionalSignal('options.signal', signal);
    if (signal?.aborted) throw signal.reason;
    // Already idle (the common case) costs one poll(2) and no event-loop turn.
    const { POLLIN, POLLOUT } = native().constants;
    const idleEvents = mode === 'read' ? POLLIN : POLLOUT;
    if ((check(native().pollNow(fd, idleEvents), 'poll') & idleEvents) !== 0) return;
    this.#waiter ??= new FdWaiter(fd, 'DmaBuf');
    const poller = native().Poller;
    await this.#waiter.wait(mode === 'read' ? poller.READABLE : poller.WRITABLE, 'poll', { timeoutMs, signal });
  }

  protected override releaseResources(): void {
    this.#waiter?.close('poll');
    this.#mapping?.release();
    this.#cpuAccess = undefined;
  }
}
