import { fstatSync, ftruncateSync, readFileSync } from 'node:fs';
import { DmaBuf, registerKeepAliveSource, unregisterKeepAliveSource, type MappingKeepAliveSource } from './dmabuf';
import { check, codedError } from './errors';
import { closeFd, FdHandle, handleOf, isHandleOf, openFd } from './handle';
import { SharedMapping } from './mapping';
import { native } from './native';
import * as validate from './validate';

export const udmabufPath = '/dev/udmabuf';

/** A range of a memfd that becomes part of a udmabuf. */
export interface MemfdSegment {
  /** An fd from memfd_create (shmem or hugetlbfs), sealed with F_SEAL_SHRINK and not F_SEAL_WRITE. */
  memfd: number | Memfd;
  /** Page-aligned byte offset into the memfd. */
  offset: number;
  /** Page-aligned length in bytes. */
  size: number;
}

export interface CreateOptions {
  /** Set as the dma-buf's name (DMA_BUF_SET_NAME), at most 31 bytes. */
  name?: string;
  /** Back the buffer with huge pages (MFD_HUGETLB); needs pages reserved in /proc/sys/vm/nr_hugepages. */
  hugetlb?: boolean;
  /** Keep the memfd open as `dmabuf.memfd` (closed with the DmaBuf); by default it is closed once the buffer exists. */
  keepMemfd?: boolean;
}

function readLimit(name: string): number | undefined {
  try {
    return Number(readFileSync(`/sys/module/udmabuf/parameters/${name}`, 'utf8').trim());
  } catch {
    return undefined;
  }
}

function hugePageSize(): number {
  const match = /^Hugepagesize:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return match ? Number(match[1]) * 1024 : 2 * 1024 * 1024;
}

/** What to do about each errno UDMABUF_CREATE(_LIST) returns, with the module's limits quoted. */
function createHint(code: string): string | undefined {
  const sizeLimit = readLimit('size_limit_mb');
  const listLimit = readLimit('list_limit');
  switch (code) {
    case 'EINVAL':
      return `offsets and sizes must be page-aligned (${native().pageSize()}) and inside the memfd, the memfd sealed with F_SEAL_SHRINK and not F_SEAL_WRITE, the total at most size_limit_mb (${sizeLimit ?? '?'} MiB) and the segments at most list_limit (${listLimit ?? '?'}); the limits are in /sys/module/udmabuf/parameters`;
    case 'EBADFD':
      return 'the memfd is not a memfd (shmem or hugetlbfs file) or not open';
    case 'ENOMEM':
      return 'the kernel could not allocate the page array or the memfd pages';
    default:
      return undefined;
  }
}

function deviceOpenHint(code: string): string {
  if (code === 'ENOENT') return 'this kernel has no udmabuf (CONFIG_UDMABUF=y); run inside the project\'s VM: npx dmabuf vm run -- <command>';
  if (code === 'EACCES' || code === 'EPERM') return `${udmabufPath} is usually mode 0660, group kvm: add the user to that group (sudo usermod -aG kvm $USER, then log in again) or run as root`;
  return 'could not open the udmabuf device';
}

/** A memfd this library made: an owned fd for the backing store of a udmabuf. */
export class Memfd extends FdHandle {
  #mapping = new SharedMapping();

  private constructor(
    fd: number,
    readonly size: number,
  ) {
    super(fd, 'Memfd');
  }

  /** Whether `value` is a Memfd, made by this copy of the package or another (where `instanceof` answers false). */
  static isMemfd(value: unknown): value is Memfd {
    return isHandleOf(value, 'Memfd');
  }

  /** A sealable memfd of `size` bytes, sealed against shrinking, as udmabuf requires. */
  static create(size: number, options?: { name?: string; hugetlb?: boolean }): Memfd {
    validate.integer('size', size);
    const opts = validate.options<{ name: string; hugetlb: boolean }>('options', options);
    const name = opts.name === undefined ? 'dmabuf' : validate.string('options.name', opts.name);
    const hugetlb = validate.optionalBoolean('options.hugetlb', opts.hugetlb) ?? false;
    const { MFD_ALLOW_SEALING, MFD_HUGETLB, F_SEAL_SHRINK } = native().constants;
    const fd = check(native().memfdCreate(name, MFD_ALLOW_SEALING | (hugetlb ? MFD_HUGETLB : 0)), 'memfd_create', (code) =>
      code === 'EINVAL' && hugetlb ? 'this kernel cannot make hugetlb memfds (CONFIG_HUGETLBFS)' : undefined,
    );
    try {
      ftruncateSync(fd, size);
      // Huge pages must exist before udmabuf takes them; allocating now fails
      // cleanly when none are reserved, where touching them would not.
      if (hugetlb) check(native().fallocate(fd, 0, size), 'fallocate', (code) => (code === 'ENOSPC' || code === 'ENOMEM' ? 'not enough huge pages reserved: raise /proc/sys/vm/nr_hugepages' : undefined));
      check(native().addSeals(fd, F_SEAL_SHRINK), 'fcntl(F_ADD_SEALS)');
      return new Memfd(fd, size);
    } catch (error) {
      closeFd(fd);
      throw error;
    }
  }

  /**
   * The whole memfd as a Buffer over a shared mapping (one mapping, views of
   * it; close() unmaps). The way to reach a hugetlb-backed udmabuf's bytes:
   * hugetlbfs has no write(2), and some kernels cannot map the udmabuf itself.
   */
  map(): Buffer {
    return this.#mapping.view(this.assertOpen('mmap'), this.size);
  }

  protected override releaseResources(): void {
    this.#mapping.release();
  }

  get seals(): number {
    return check(native().getSeals(this.assertOpen('fcntl(F_GET_SEALS)')), 'fcntl(F_GET_SEALS)');
  }

  addSeals(seals: number): void {
    check(native().addSeals(this.assertOpen('fcntl(F_ADD_SEALS)'), validate.integer('seals', seals, 0, 0xffff)), 'fcntl(F_ADD_SEALS)');
  }
}

let mapsPageFrames: boolean | undefined;

/** The VmFlags of this process's mappings of dma-buf `inode`, from /proc/self/smaps. */
function dmaBufVmFlags(inode: number): string[] | undefined {
  for (const block of readFileSync('/proc/self/smaps', 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const header = /^\S+ \S+ \S+ \S+ (\d+)\s+\/dmabuf:/.exec(block);
    if (!header || Number(header[1]) !== inode) continue;
    return /^VmFlags:(.*)$/m.exec(block)?.[1]!.trim().split(/\s+/);
  }
  return undefined;
}

/**
 * Whether this kernel's udmabuf maps buffers as raw page frames (VM_PFNMAP:
 * `pf` in the mapping's VmFlags), as Linux 6.12 and later do, the pages
 * pinned by the udmabuf itself (memfd_pin_folios). Linux 6.1 instead hands
 * the memfd's struct pages to each fault, and two things corrupt page state
 * there: the memfd's inode going while its pages are mapped, and faulting in
 * a hugetlb-backed buffer (test/runner/kernel-behaviour.test.ts shows both).
 * Probed once per process on a udmabuf's own fd with a one-page mapping that
 * is never touched: mapping is harmless on every kernel, faulting is not.
 */
export function udmabufMapsPageFrames(fd: number): boolean {
  if (mapsPageFrames !== undefined) return mapsPageFrames;
  const probe = native().mapShared(fd, native().pageSize(), false);
  // Unanswered (a read-only fd, an exotic /proc): keep the 6.1 precautions.
  if (typeof probe === 'number') return false;
  try {
    mapsPageFrames = dmaBufVmFlags(fstatSync(fd).ino)?.includes('pf') ?? false;
  } catch {
    mapsPageFrames = false;
  } finally {
    probe.mapping.unmap();
  }
  return mapsPageFrames;
}

/** A dma-buf made by udmabuf, with the memfd behind it when asked to keep it. */
export class Udmabuf extends DmaBuf {
  #memfd: Memfd | undefined;
  #hugetlb = false;
  // The caller's memfds behind a fromMemfd buffer, by fd and inode.
  #backing: { fd: number; inode: number }[] = [];
  // While open, other DmaBuf objects of this buffer find the memfds through
  // this (registered by inode, held weakly there and strongly here).
  #keepAliveSource: { inode: number; source: MappingKeepAliveSource; ref: WeakRef<MappingKeepAliveSource> } | undefined;

  /** @internal */
  static adoptWithMemfd(fd: number, size: number | undefined, memfd: Memfd | undefined, hugetlb = false, backing: number[] = []): Udmabuf {
    const buffer = new Udmabuf(fd, size);
    buffer.#memfd = memfd;
    buffer.#hugetlb = hugetlb;
    try {
      buffer.#backing = [...new Set(backing)].map((memfdFd) => ({ fd: memfdFd, inode: fstatSync(memfdFd).ino }));
      // Without a memfd left open (udmabuf.create's default) a mapping has
      // nothing to hold; a hugetlb buffer's mappings are refused everywhere.
      if (memfd || buffer.#backing.length > 0 || hugetlb) {
        const source = { mappingKeepAlive: () => buffer.mappingKeepAlive(), mapRefusal: () => buffer.#mapRefusal() };
        const inode = buffer.inode;
        buffer.#keepAliveSource = { inode, source, ref: registerKeepAliveSource(inode, source) };
      }
    } catch (error) {
      buffer.close();
      throw error;
    }
    return buffer;
  }

  /**
   * Linux 6.1's udmabuf corrupts page state when a memfd's inode is evicted
   * while its pages are mapped through the udmabuf, so there every mapping
   * holds its own duplicates of the memfds that are still open. A memfd
   * closed before the mapping is made is harmless (its pages left the page
   * cache unmapped); a number the caller has since reused is recognised by
   * inode and left alone. A kernel that maps page frames needs none of it.
   */
  protected override mappingKeepAlive(): number[] {
    if (this.closed || udmabufMapsPageFrames(this.fd)) return [];
    if (this.#memfd && !this.#memfd.closed) return [this.#memfd.fd];
    return this.#backing.filter(({ fd, inode }) => {
      try {
        return fstatSync(fd).ino === inode;
      } catch {
        return false;
      }
    }).map(({ fd }) => fd);
  }

  /** True when the buffer is backed by huge pages (`hugetlb: true`, or a hugetlb memfd given to fromMemfd). */
  get hugetlb(): boolean {
    return this.#hugetlb;
  }

  /**
   * As DmaBuf.map, but refused for a hugetlb-backed buffer on kernels whose
   * udmabuf corrupts page state when such a mapping is faulted in (those
   * that do not map page frames, see udmabufMapsPageFrames): read and write
   * it through its memfd (`keepMemfd`) instead.
   */
  override map(): Buffer {
    this.assertOpen('mmap');
    const refusal = this.#mapRefusal();
    if (refusal) throw refusal;
    return super.map();
  }

  #mapRefusal(): Error | undefined {
    if (!this.#hugetlb || this.closed || udmabufMapsPageFrames(this.fd)) return undefined;
    return codedError('ERR_DMABUF_UNSAFE_MAPPING', String(native().kernelRelease()));
  }

  protected override hasOwnMappingRules(): boolean {
    return true;
  }

  /** The memfd behind the buffer (with `keepMemfd`); closed with it. */
  get memfd(): Memfd | undefined {
    this.assertOpen('memfd');
    return this.#memfd;
  }

  protected override releaseResources(): void {
    if (this.#keepAliveSource) unregisterKeepAliveSource(this.#keepAliveSource.inode, this.#keepAliveSource.ref);
    this.#keepAliveSource = undefined;
    try {
      super.releaseResources();
    } finally {
      this.#memfd?.close();
    }
  }
}

/**
 * An open /dev/udmabuf. Creating many buffers through one device saves an
 * open and a close per buffer; `udmabuf.create` opens one per call.
 */
export class UdmabufDevice extends FdHandle {
  private constructor(fd: number) {
    super(fd, 'UdmabufDevice');
  }

  static open(): UdmabufDevice {
    return new UdmabufDevice(openFd(udmabufPath, 'rw', deviceOpenHint));
  }

  /** A udmabuf of `size` bytes over a memfd this call makes (sealed, close-on-exec). */
  create(size: number, options?: CreateOptions): Udmabuf {
    const device = this.assertOpen('ioctl(UDMABUF_CREATE)');
    const opts = checkCreateArguments(size, options);
    const hugetlb = opts.hugetlb ?? false;
    const memfd = Memfd.create(size, { name: opts.name ? `udmabuf:${opts.name}` : 'udmabuf', hugetlb });
    let buffer: Udmabuf | undefined;
    try {
      const fd = check(native().udmabufCreate(device, memfd.fd, 0, size), 'ioctl(UDMABUF_CREATE)', createHint);
      buffer = Udmabuf.adoptWithMemfd(fd, size, opts.keepMemfd ? memfd : undefined, hugetlb);
      if (opts.name !== undefined) buffer.name = opts.name;
      return buffer;
    } catch (error) {
      buffer?.close();
      if (!memfd.closed) memfd.close();
      throw error;
    } finally {
      if (!opts.keepMemfd && !memfd.closed) memfd.close();
    }
  }

  /**
   * One udmabuf over one or many memfd ranges (UDMABUF_CREATE, or
   * UDMABUF_CREATE_LIST for several), in order. The memfds stay the caller's.
   */
  fromMemfd(segments: MemfdSegment | readonly MemfdSegment[]): Udmabuf {
    const device = this.assertOpen('ioctl(UDMABUF_CREATE)');
    const flat = flattenSegments(segments);
    const fd = flat.length === 3
      ? check(native().udmabufCreate(device, flat[0]!, flat[1]!, flat[2]!), 'ioctl(UDMABUF_CREATE)', createHint)
      : check(native().udmabufCreateList(device, flat), 'ioctl(UDMABUF_CREATE_LIST)', createHint);
    const memfds = flat.filter((_, index) => index % 3 === 0);
    // The caller's hugetlb memfds make a hugetlb buffer, with its mapping rules.
    const hugetlb = memfds.some((memfd) => native().fsMagic(memfd) === native().constants.HUGETLBFS_MAGIC);
    return Udmabuf.adoptWithMemfd(fd, undefined, undefined, hugetlb, memfds);
  }
}

function checkCreateArguments(size: number, options: CreateOptions | undefined): CreateOptions {
  const opts = validate.options<CreateOptions>('options', options);
  const hugetlb = validate.optionalBoolean('options.hugetlb', opts.hugetlb) ?? false;
  validate.optionalBoolean('options.keepMemfd', opts.keepMemfd);
  validate.pageMultiple('size', size, hugetlb ? hugePageSize() : native().pageSize());
  if (opts.name !== undefined) validate.kernelName('options.name', opts.name, native().constants.DMA_BUF_NAME_MAX_BYTES);
  return opts;
}

/** Segments as the native call takes them: [memfd, offset, size, ...]. */
function flattenSegments(segments: MemfdSegment | readonly MemfdSegment[]): number[] {
  if (typeof segments !== 'object' || segments === null) throw validate.typeError('segments', 'a segment or an array of segments', segments);
  const list: readonly MemfdSegment[] = Array.isArray(segments) ? segments : [segments as MemfdSegment];
  if (list.length === 0) throw validate.invalidValue('segments', 'at least one segment', list);
  const flat: number[] = [];
  list.forEach((segment, index) => {
    const where = `segments[${index}]`;
    if (typeof segment !== 'object' || segment === null) throw validate.typeError(where, 'an object', segment);
    const memfd = isHandleOf(segment.memfd, 'Memfd') ? (segment.memfd as Memfd).fd : validate.fd(`${where}.memfd`, segment.memfd);
    // Alignment and bounds are the kernel's to judge (the selftests check its EINVAL); only what cannot reach it is refused here.
    flat.push(memfd, validate.integer(`${where}.offset`, segment.offset), validate.integer(`${where}.size`, segment.size));
  });
  return flat;
}

function withDevice<T>(use: (device: UdmabufDevice) => T): T {
  const device = UdmabufDevice.open();
  try {
    return use(device);
  } finally {
    device.close();
  }
}

/** udmabuf: dma-bufs over memfd pages, from /dev/udmabuf. */
export const udmabuf = {
  /** A udmabuf of `size` bytes (a multiple of the page size) over a new sealed memfd. */
  create(size: number, options?: CreateOptions): Udmabuf {
    checkCreateArguments(size, options);
    return withDevice((device) => device.create(size, options));
  },
  /** One udmabuf over one or many ranges of the caller's memfds. */
  fromMemfd(segments: MemfdSegment | readonly MemfdSegment[]): Udmabuf {
    flattenSegments(segments);
    return withDevice((device) => device.fromMemfd(segments));
  },
  /** An open device, for creating many buffers. */
  open(): UdmabufDevice {
    return UdmabufDevice.open();
  },
  /** The module's limits, from /sys/module/udmabuf/parameters. */
  limits(): { sizeLimitMiB: number | undefined; listLimit: number | undefined } {
    return { sizeLimitMiB: readLimit('size_limit_mb'), listLimit: readLimit('list_limit') };
  },
  /**
   * Whether this kernel maps udmabufs as page frames (see
   * udmabufMapsPageFrames), probed on `buffer`, a udmabuf: heaps map page
   * frames on every kernel, so only a udmabuf answers the question.
   */
  mapsPageFrames(buffer: DmaBuf): boolean {
    handleOf<DmaBuf>('buffer', buffer, 'DmaBuf', 'a DmaBuf');
    const exporter = buffer.info().exporter;
    if (exporter !== 'udmabuf') throw validate.invalidValue('buffer', 'a udmabuf', `a buffer exported by ${exporter}`);
    return udmabufMapsPageFrames(buffer.fd);
  },
};
