import { existsSync, readdirSync } from 'node:fs';
import { accessModes, type AccessMode } from './constants';
import { DmaBuf } from './dmabuf';
import { check, codedError, errnoError, negativeErrno } from './errors';
import { closedError, closeFd, FdHandle, handleOf, isHandleOf, openFd } from './handle';
import { native, type NativeDrm, type NativeMapping } from './native';
import { SyncFile } from './sync-file';
import * as validate from './validate';

export const driDirectory = '/dev/dri';

/** A DRM device node: the primary node (`card*`, modesetting and dumb buffers) or the render node (`renderD*`, no KMS). */
export type DrmNode = 'card' | 'render';

/** DRM_IOCTL_VERSION: the driver behind a device node. */
export interface DrmDriver {
  name: string;
  major: number;
  minor: number;
  patchlevel: number;
  /** The driver's date string; Linux 7.2's drivers no longer have one, and the kernel answers "0". */
  date: string;
  description: string;
}

/** A display mode (struct drm_mode_modeinfo): a connector's modes, what a CRTC shows. Timings in pixels and lines, `clock` in kHz. */
export interface DrmMode {
  clock: number;
  hdisplay: number;
  hsyncStart: number;
  hsyncEnd: number;
  htotal: number;
  hskew: number;
  vdisplay: number;
  vsyncStart: number;
  vsyncEnd: number;
  vtotal: number;
  vscan: number;
  vrefresh: number;
  /** DRM_MODE_FLAG_* bits. */
  flags: number;
  /** DRM_MODE_TYPE_* bits (DRM_MODE_TYPE_PREFERRED marks the preferred mode). */
  type: number;
  name: string;
}

const noHeaders = 'the addon was built without libdrm-dev\'s headers: install libdrm-dev and rebuild (npm rebuild dmabuf)';

/** The addon's DRM functions, or an ENOTSUP error saying how to get them. */
function drm(syscall: string): NativeDrm {
  const binding = native().drm;
  if (!binding.available) throw errnoError('ENOTSUP', syscall, { hint: noHeaders });
  return binding;
}

function nodeOf(entry: string): DrmNode | undefined {
  return /^card\d+$/.test(entry) ? 'card' : /^renderD\d+$/.test(entry) ? 'render' : undefined;
}

function openHint(path: string): (code: string) => string | undefined {
  return (code) => {
    if (code === 'ENOENT') return `no such DRM node; this system has: ${listNodes().join(', ') || 'none (no DRM driver is loaded: CONFIG_DRM and a driver, e.g. vgem (CONFIG_DRM_VGEM) or vkms (CONFIG_DRM_VKMS))'}`;
    if (code === 'EACCES') return `${path} is not accessible to this user (check its mode and the video/render groups)`;
    return undefined;
  };
}

function listNodes(): string[] {
  if (!existsSync(driDirectory)) return [];
  return readdirSync(driDirectory).filter((entry) => nodeOf(entry) !== undefined).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

interface HandleEntry {
  count: number;
  /** Made by CREATE_DUMB: destroyed with DESTROY_DUMB rather than GEM_CLOSE (the same in the kernel, named for what it undoes). */
  dumb: boolean;
}

/** What a device closes when it closes: GEM objects, fences, framebuffers, blobs. Each asks `device.closed` whether the kernel still needs telling. */
interface Owned {
  close(): void;
}

// Only DrmDevice makes the objects below: their constructors take this token.
const token = Symbol('DrmDevice');

function assertToken(given: symbol, what: string): void {
  if (given !== token) throw codedError('ERR_ILLEGAL_CONSTRUCTOR', what, 'a DrmDevice');
}

/**
 * A GEM buffer object's handle on one DrmDevice. The kernel gives one handle
 * per buffer per device fd, so two imports of one dma-buf (or an import of a
 * buffer this device exported) are two GemBuffer objects sharing a handle:
 * the handle is closed (GEM_CLOSE) when the last of them is closed, or with
 * the device.
 */
export class GemBuffer implements Disposable {
  readonly device: DrmDevice;
  readonly handle: number;
  /** Bytes: the dumb buffer's size, or the imported dma-buf's. */
  readonly size: number;
  #closed = false;
  #mapping: NativeMapping | undefined;
  readonly #release: () => void;

  /** @internal */
  constructor(given: symbol, device: DrmDevice, handle: number, size: number, release: () => void) {
    assertToken(given, 'GemBuffer');
    this.device = device;
    this.handle = handle;
    this.size = size;
    this.#release = release;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** @internal */
  assertOpen(syscall: string): number {
    if (this.#closed) throw closedError('GemBuffer', syscall);
    return this.handle;
  }

  /**
   * The buffer through the device fd (DRM_IOCTL_MODE_MAP_DUMB, then mmap at
   * its fake offset), made once and shared by every call; close() unmaps it.
   * The kernel maps only buffers the device made: an imported one is EINVAL.
   */
  map(): Buffer {
    const handle = this.assertOpen('ioctl(DRM_IOCTL_MODE_MAP_DUMB)');
    const live = this.#mapping?.buffer;
    if (live) return Buffer.from(live);
    const fd = this.device.fd;
    const offset = check(drm('ioctl(DRM_IOCTL_MODE_MAP_DUMB)').mapDumb(fd, handle), 'ioctl(DRM_IOCTL_MODE_MAP_DUMB)', (code) =>
      code === 'EINVAL' ? 'the kernel maps only GEM buffers this device made, not imported ones: map the DmaBuf instead' : undefined,
    );
    const { mapping, buffer } = check(native().mapShared(fd, this.size, true, undefined, offset), 'mmap');
    this.#mapping = mapping;
    return Buffer.from(buffer);
  }

  /** Drops this object's share of the handle; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#mapping?.unmap();
    this.#mapping = undefined;
    this.#release();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A dumb buffer (DRM_IOCTL_MODE_CREATE_DUMB): linear, CPU-mappable, scanout-capable. */
export class DumbBuffer extends GemBuffer {
  readonly width: number;
  readonly height: number;
  readonly bpp: number;
  /** Bytes per row, as the driver chose it. */
  readonly pitch: number;

  /** @internal */
  constructor(given: symbol, device: DrmDevice, created: { handle: number; pitch: number; size: number }, request: { width: number; height: number; bpp: number }, release: () => void) {
    super(given, device, created.handle, created.size, release);
    this.width = request.width;
    this.height = request.height;
    this.bpp = request.bpp;
    this.pitch = created.pitch;
  }
}

/**
 * A vgem fence (DRM_IOCTL_VGEM_FENCE_ATTACH) on a buffer's reservation
 * object, visible to every importer and through the buffer's dma-buf until
 * signal(). vgem signals it by itself after 10 s (VGEM_FENCE_TIMEOUT), and
 * then signal() fails with ETIMEDOUT. close() signals it if signal() was
 * never called, so nothing is left waiting.
 */
export class VgemFence implements Disposable {
  readonly device: DrmDevice;
  /** vgem's id for the fence, per device fd. */
  readonly id: number;
  readonly write: boolean;
  #signalled = false;
  readonly #done: () => void;

  /** @internal */
  constructor(given: symbol, device: DrmDevice, id: number, write: boolean, done: () => void) {
    assertToken(given, 'VgemFence');
    this.device = device;
    this.id = id;
    this.write = write;
    this.#done = done;
  }

  /** Whether signal() (or close()) has been called: the kernel no longer knows the id. */
  get signalled(): boolean {
    return this.#signalled;
  }

  /**
   * DRM_IOCTL_VGEM_FENCE_SIGNAL, each call: the second gives the kernel's
   * ENOENT, a fence vgem already expired ETIMEDOUT (and is signalled all the same).
   */
  signal(): void {
    const fd = this.device.fd;
    const first = !this.#signalled;
    this.#signalled = true;
    if (first) this.#done();
    check(drm('ioctl(DRM_IOCTL_VGEM_FENCE_SIGNAL)').vgemFenceSignal(fd, this.id, 0), 'ioctl(DRM_IOCTL_VGEM_FENCE_SIGNAL)', (code) =>
      code === 'ETIMEDOUT'
        ? 'vgem had already signalled the fence itself: it does 10 s after the attach'
        : code === 'ENOENT'
          ? 'the fence was already signalled'
          : undefined,
    );
  }

  /** Signals the fence if signal() never did; an expired one (ETIMEDOUT) is signalled already. */
  close(): void {
    if (this.#signalled) return;
    this.#signalled = true;
    this.#done();
    // vgem signals what is left when its file closes (vgem_fence_close).
    if (this.device.closed) return;
    const status = drm('ioctl(DRM_IOCTL_VGEM_FENCE_SIGNAL)').vgemFenceSignal(this.device.fd, this.id, 0);
    if (status !== negativeErrno('ETIMEDOUT')) check(status, 'ioctl(DRM_IOCTL_VGEM_FENCE_SIGNAL)');
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A framebuffer (DRM_IOCTL_MODE_ADDFB2); close() removes it (RMFB), which also takes it off any plane showing it. */
export class Framebuffer implements Disposable {
  readonly device: DrmDevice;
  readonly id: number;
  readonly width: number;
  readonly height: number;
  readonly format: number;
  #closed = false;
  readonly #remove: () => void;

  /** @internal */
  constructor(given: symbol, device: DrmDevice, id: number, size: { width: number; height: number; format: number }, remove: () => void) {
    assertToken(given, 'Framebuffer');
    this.device = device;
    this.id = id;
    this.width = size.width;
    this.height = size.height;
    this.format = size.format;
    this.#remove = remove;
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#remove();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A property blob holding a mode (for a CRTC's MODE_ID); close() destroys it. */
export class ModeBlob implements Disposable {
  readonly id: number;
  #closed = false;
  readonly #destroy: () => void;

  /** @internal */
  constructor(given: symbol, id: number, destroy: () => void) {
    assertToken(given, 'ModeBlob');
    this.id = id;
    this.#destroy = destroy;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#destroy();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export interface DrmConnector {
  id: number;
  /** DRM_MODE_CONNECTOR_* (native().drm.constants has the ones the library uses). */
  type: number;
  typeId: number;
  connection: 'connected' | 'disconnected' | 'unknown';
  encoderId: number;
  encoders: number[];
  modes: DrmMode[];
  mmWidth: number;
  mmHeight: number;
}

export interface DrmEncoder {
  id: number;
  type: number;
  crtcId: number;
  possibleCrtcs: number;
}

export interface DrmCrtc {
  id: number;
  fbId: number;
  x: number;
  y: number;
  mode: DrmMode | null;
}

export interface DrmPlane {
  id: number;
  crtcId: number;
  fbId: number;
  possibleCrtcs: number;
  /** Fourcc codes. */
  formats: number[];
}

export interface DrmResources {
  connectors: DrmConnector[];
  encoders: DrmEncoder[];
  crtcs: DrmCrtc[];
  /** Empty until DRM_CLIENT_CAP_UNIVERSAL_PLANES is set: then primary and cursor planes too. */
  planes: DrmPlane[];
  minWidth: number;
  maxWidth: number;
  minHeight: number;
  maxHeight: number;
}

export type DrmObjectType = 'crtc' | 'connector' | 'plane';

export interface DrmProperty {
  id: number;
  value: bigint;
  /** The enum entry's name for the value, for an enum property. */
  enumName?: string;
}

/** One object's new property values in an atomic commit, by property name. */
export interface AtomicRequest {
  objectId: number;
  objectType: DrmObjectType;
  properties: Record<string, number | bigint>;
}

export interface AtomicOptions {
  /** DRM_MODE_ATOMIC_ALLOW_MODESET: the commit may change modes (needed to light a CRTC up). */
  allowModeset?: boolean;
  /** DRM_MODE_ATOMIC_TEST_ONLY: check, change nothing. */
  testOnly?: boolean;
  /** A pointer property (WRITEBACK_OUT_FENCE_PTR, OUT_FENCE_PTR) to take an out-fence through, as a SyncFile. */
  outFence?: { objectId: number; objectType: DrmObjectType; property: string };
}

/** Names of a DRM client cap, for setClientCap. */
export type DrmClientCap = 'universalPlanes' | 'atomic' | 'writebackConnectors';

function clientCapValue(cap: DrmClientCap): number {
  const { DRM_CLIENT_CAP_UNIVERSAL_PLANES, DRM_CLIENT_CAP_ATOMIC, DRM_CLIENT_CAP_WRITEBACK_CONNECTORS } = drm('ioctl(DRM_IOCTL_SET_CLIENT_CAP)').constants;
  return { universalPlanes: DRM_CLIENT_CAP_UNIVERSAL_PLANES, atomic: DRM_CLIENT_CAP_ATOMIC, writebackConnectors: DRM_CLIENT_CAP_WRITEBACK_CONNECTORS }[cap];
}

function objectTypeValue(type: DrmObjectType): number {
  const { DRM_MODE_OBJECT_CRTC, DRM_MODE_OBJECT_CONNECTOR, DRM_MODE_OBJECT_PLANE } = drm('ioctl(DRM_IOCTL_MODE_OBJ_GETPROPERTIES)').constants;
  return { crtc: DRM_MODE_OBJECT_CRTC, connector: DRM_MODE_OBJECT_CONNECTOR, plane: DRM_MODE_OBJECT_PLANE }[type];
}

const objectTypes: readonly DrmObjectType[] = ['crtc', 'connector', 'plane'];
const u64Max = (1n << 64n) - 1n;

/**
 * A DRM device node, open read-write and close-on-exec. Owns the GEM
 * handles, vgem fences, framebuffers and blobs made through it: closing the
 * device closes whatever of them is still open.
 */
export class DrmDevice extends FdHandle {
  readonly path: string;
  readonly node: DrmNode | undefined;
  readonly driver: DrmDriver;
  readonly #handles = new Map<number, HandleEntry>();
  readonly #owned = new Set<Owned>();

  private constructor(fd: number, path: string, driver: DrmDriver) {
    super(fd, 'DrmDevice');
    this.path = path;
    this.node = nodeOf(path.slice(path.lastIndexOf('/') + 1));
    this.driver = driver;
  }

  /** Whether `value` is a DrmDevice, from this copy of the package or another. */
  static isDrmDevice(value: unknown): value is DrmDevice {
    return isHandleOf(value, 'DrmDevice');
  }

  /** Opens a DRM node (`/dev/dri/card0`, `/dev/dri/renderD128`) and reads its driver's version. */
  static open(path: string): DrmDevice {
    validate.string('path', path);
    const binding = drm('open');
    const fd = openFd(path, 'rw', openHint(path));
    try {
      const version = binding.version(fd);
      const driver = check(version, 'ioctl(DRM_IOCTL_VERSION)', (code) => (code === 'ENOTTY' ? `${path} is not a DRM device` : undefined));
      return new DrmDevice(fd, path, driver);
    } catch (error) {
      closeFd(fd);
      throw error;
    }
  }

  /** Every DRM node under /dev/dri with its driver, by DRM_IOCTL_VERSION (sysfs paths differ between kernels: 7.2's vgem and vkms are faux devices). */
  static list(): { path: string; node: DrmNode; driver: DrmDriver }[] {
    const binding = drm('ioctl(DRM_IOCTL_VERSION)');
    const found: { path: string; node: DrmNode; driver: DrmDriver }[] = [];
    for (const entry of listNodes()) {
      const path = `${driDirectory}/${entry}`;
      const fd = native().openFile(path, native().constants.O_RDWR);
      if (fd < 0) continue;
      try {
        const version = binding.version(fd);
        if (typeof version !== 'number') found.push({ path, node: nodeOf(entry)!, driver: version });
      } finally {
        closeFd(fd);
      }
    }
    return found;
  }

  /** Opens the first node of `driverName` (DRM_IOCTL_VERSION's name: 'vgem', 'vkms', ...). Default node: 'card'. */
  static find(driverName: string, options?: { node?: DrmNode }): DrmDevice {
    validate.string('driverName', driverName);
    const { node = 'card' } = validate.options<{ node: DrmNode }>('options', options);
    validate.oneOf('options.node', node, ['card', 'render']);
    const nodes = DrmDevice.list();
    const match = nodes.find((entry) => entry.driver.name === driverName && entry.node === node);
    if (!match) {
      const option = { vgem: 'load the vgem module (CONFIG_DRM_VGEM)', vkms: 'load the vkms module (CONFIG_DRM_VKMS)' }[driverName] ?? `load the ${driverName} driver`;
      const hasOther = nodes.some((entry) => entry.driver.name === driverName);
      throw errnoError('ENODEV', 'open', {
        hint: hasOther ? `the DRM driver '${driverName}' has no ${node} node (a driver without rendering, such as vkms, has only a card node)` : `no DRM device with driver '${driverName}': ${option}`,
      });
    }
    return DrmDevice.open(match.path);
  }

  /** DRM_IOCTL_GET_CAP by its value (native().drm.constants.DRM_CAP_*). */
  getCap(capability: number): number {
    const fd = this.assertOpen('ioctl(DRM_IOCTL_GET_CAP)');
    validate.integer('capability', capability, 0, 0xffffffff);
    return check(drm('ioctl(DRM_IOCTL_GET_CAP)').getCap(fd, capability), 'ioctl(DRM_IOCTL_GET_CAP)', (code) =>
      code === 'ENOTSUP' ? `this driver (${this.driver.name}) has no modesetting, and answers only the caps every driver has (PRIME, TIMESTAMP_MONOTONIC, SYNCOBJ)` : code === 'EINVAL' ? 'the kernel knows no such cap' : undefined,
    );
  }

  /** DRM_IOCTL_SET_CLIENT_CAP: atomic (card node; implies universal planes), writebackConnectors (after atomic). */
  setClientCap(cap: DrmClientCap, value = true): void {
    const fd = this.assertOpen('ioctl(DRM_IOCTL_SET_CLIENT_CAP)');
    validate.oneOf('cap', cap, ['universalPlanes', 'atomic', 'writebackConnectors']);
    if (typeof value !== 'boolean') throw validate.typeError('value', 'a boolean', value);
    check(drm('ioctl(DRM_IOCTL_SET_CLIENT_CAP)').setClientCap(fd, clientCapValue(cap), value ? 1 : 0), 'ioctl(DRM_IOCTL_SET_CLIENT_CAP)', (code) =>
      code === 'ENOTSUP' || code === 'EINVAL' ? `this driver (${this.driver.name}) or node does not take ${cap} (atomic needs a modesetting driver's card node; writebackConnectors needs atomic first)` : undefined,
    );
  }

  /**
   * Counts one more object on `handle` and makes it; the handle is closed in
   * the kernel when the last object on it is closed while the device is open.
   */
  #adopt<T extends GemBuffer>(handle: number, dumb: boolean, make: (onClose: () => void) => T): T {
    const entry = this.#handles.get(handle);
    if (entry) entry.count += 1;
    else this.#handles.set(handle, { count: 1, dumb });
    const buffer: T = make(() => {
      this.#owned.delete(buffer);
      const shared = this.#handles.get(handle);
      if (!shared || (shared.count -= 1) > 0) return;
      this.#handles.delete(handle);
      if (this.closed) return;
      if (shared.dumb) check(drm('ioctl(DRM_IOCTL_MODE_DESTROY_DUMB)').destroyDumb(this.fd, handle), 'ioctl(DRM_IOCTL_MODE_DESTROY_DUMB)');
      else check(drm('ioctl(DRM_IOCTL_GEM_CLOSE)').gemClose(this.fd, handle), 'ioctl(DRM_IOCTL_GEM_CLOSE)');
    });
    this.#owned.add(buffer);
    return buffer;
  }

  /** Tracks an object the device closes with it; `forget` is its close's part here. */
  #own<T extends Owned>(make: (forget: () => void) => T): T {
    const object: T = make(() => this.#owned.delete(object));
    this.#owned.add(object);
    return object;
  }

  /** How many GemBuffer objects share `handle` on this device (0: closed). */
  handleShares(handle: number): number {
    return this.#handles.get(handle)?.count ?? 0;
  }

  /** A dumb buffer (DRM_IOCTL_MODE_CREATE_DUMB): only on a card node, the ioctl is not render-allowed. */
  createDumb(options: { width: number; height: number; bpp: number }): DumbBuffer {
    const fd = this.assertOpen('ioctl(DRM_IOCTL_MODE_CREATE_DUMB)');
    const opts = validate.options<{ width: number; height: number; bpp: number }>('options', options);
    const request = {
      width: validate.integer('options.width', opts.width, 1, 0xffffffff),
      height: validate.integer('options.height', opts.height, 1, 0xffffffff),
      bpp: validate.integer('options.bpp', opts.bpp, 1, 0xffffffff),
    };
    const created = check(drm('ioctl(DRM_IOCTL_MODE_CREATE_DUMB)').createDumb(fd, request.width, request.height, request.bpp, 0), 'ioctl(DRM_IOCTL_MODE_CREATE_DUMB)', (code) =>
      code === 'EACCES' && this.node === 'render' ? 'dumb buffers are made on the card node (CREATE_DUMB is not render-allowed): DrmDevice.find(driver, { node: \'card\' })' : undefined,
    );
    return this.#adopt(created.handle, true, (onClose) => new DumbBuffer(token, this, created, request, onClose));
  }

  /**
   * The buffer as a dma-buf (DRM_IOCTL_PRIME_HANDLE_TO_FD, close-on-exec):
   * 'readwrite' (the default) adds DRM_RDWR, so that it can be mapped; 'read'
   * gives a read-only fd. An imported buffer gives back the dma-buf it came from.
   */
  exportDmaBuf(gem: GemBuffer, options?: { mode?: AccessMode }): DmaBuf {
    const fd = this.assertOpen('ioctl(DRM_IOCTL_PRIME_HANDLE_TO_FD)');
    const handle = this.#ownGem(gem).assertOpen('ioctl(DRM_IOCTL_PRIME_HANDLE_TO_FD)');
    const { mode = 'readwrite' } = validate.options<{ mode: AccessMode }>('options', options);
    validate.oneOf('options.mode', mode, accessModes);
    const binding = drm('ioctl(DRM_IOCTL_PRIME_HANDLE_TO_FD)');
    const { DRM_CLOEXEC, DRM_RDWR } = binding.constants;
    const flags = DRM_CLOEXEC | (mode === 'read' ? 0 : DRM_RDWR);
    const dmaBufFd = check(binding.primeHandleToFd(fd, handle, flags >>> 0), 'ioctl(DRM_IOCTL_PRIME_HANDLE_TO_FD)', (code) =>
      code === 'ENOSYS' || code === 'ENOTSUP' ? `this driver (${this.driver.name}) cannot export dma-bufs (DRM_CAP_PRIME)` : undefined,
    );
    return DmaBuf.adopt(dmaBufFd);
  }

  /**
   * A GEM handle for any dma-buf (DRM_IOCTL_PRIME_FD_TO_HANDLE): udmabuf,
   * heap, another device's. The dma-buf stays open, and is the caller's.
   */
  importDmaBuf(dmaBuf: DmaBuf): GemBuffer {
    const fd = this.assertOpen('ioctl(DRM_IOCTL_PRIME_FD_TO_HANDLE)');
    handleOf<DmaBuf>('dmaBuf', dmaBuf, 'DmaBuf', 'a DmaBuf');
    const handle = check(drm('ioctl(DRM_IOCTL_PRIME_FD_TO_HANDLE)').primeFdToHandle(fd, dmaBuf.fd), 'ioctl(DRM_IOCTL_PRIME_FD_TO_HANDLE)', (code) =>
      code === 'ENOSYS' || code === 'ENOTSUP' ? `this driver (${this.driver.name}) cannot import dma-bufs (DRM_CAP_PRIME)` : undefined,
    );
    return this.#adopt(handle, false, (onClose) => new GemBuffer(token, this, handle, dmaBuf.size, onClose));
  }

  #ownGem(gem: GemBuffer): GemBuffer {
    if (!(gem instanceof GemBuffer)) throw validate.typeError('gem', 'a GemBuffer', gem);
    if (gem.device !== this) throw validate.invalidValue('gem', 'a GemBuffer of this DrmDevice (GEM handles are per device fd)', gem);
    return gem;
  }

  /**
   * A vgem fence on the buffer (DRM_IOCTL_VGEM_FENCE_ATTACH): a write fence
   * (`write: true`) makes readers and writers wait, a read fence writers.
   * The kernel refuses one that conflicts with an unsignalled fence (EBUSY).
   */
  attachFence(gem: GemBuffer, options?: { write?: boolean }): VgemFence {
    const syscall = 'ioctl(DRM_IOCTL_VGEM_FENCE_ATTACH)';
    const fd = this.assertOpen(syscall);
    const handle = this.#ownGem(gem).assertOpen(syscall);
    const write = validate.optionalBoolean('options.write', validate.options<{ write: boolean }>('options', options).write) ?? false;
    // The ioctl numbers above DRM_COMMAND_BASE are each driver's own.
    if (this.driver.name !== 'vgem') throw errnoError('ENOTSUP', syscall, { hint: `vgem fences are vgem's own ioctls, and this device's driver is ${this.driver.name}` });
    const binding = drm(syscall);
    const id = check(binding.vgemFenceAttach(fd, handle, write ? binding.constants.VGEM_FENCE_WRITE : 0), syscall, (code) =>
      code === 'EBUSY'
        ? `the buffer has an unsignalled ${write ? '' : 'write '}fence this one would conflict with: signal it first`
        : code === 'ENOTTY' || code === 'EINVAL'
          ? 'this vgem has no fence ioctls'
          : undefined,
    );
    return this.#own((forget) => new VgemFence(token, this, id, write, forget));
  }

  /** Connectors, encoders, CRTCs and planes (DRM_IOCTL_MODE_GETRESOURCES and friends; a card node of a modesetting driver). */
  resources(): DrmResources {
    const fd = this.assertOpen('ioctl(DRM_IOCTL_MODE_GETRESOURCES)');
    const binding = drm('ioctl(DRM_IOCTL_MODE_GETRESOURCES)');
    const res = check(binding.getResources(fd), 'ioctl(DRM_IOCTL_MODE_GETRESOURCES)', (code) =>
      code === 'ENOTSUP' || code === 'EINVAL' ? `this driver (${this.driver.name}) or node has no modesetting: use a card node of a KMS driver (vkms: CONFIG_DRM_VKMS)` : undefined,
    );
    const planes = check(binding.getPlaneResources(fd), 'ioctl(DRM_IOCTL_MODE_GETPLANERESOURCES)');
    return {
      connectors: res.connectors.map((id) => this.connector(id)),
      encoders: res.encoders.map((id) => {
        const encoder = check(binding.getEncoder(fd, id), 'ioctl(DRM_IOCTL_MODE_GETENCODER)');
        return { id: encoder.encoderId, type: encoder.encoderType, crtcId: encoder.crtcId, possibleCrtcs: encoder.possibleCrtcs };
      }),
      crtcs: res.crtcs.map((id) => this.crtc(id)),
      planes: planes.map((id) => {
        const plane = check(binding.getPlane(fd, id), 'ioctl(DRM_IOCTL_MODE_GETPLANE)');
        return { id: plane.planeId, crtcId: plane.crtcId, fbId: plane.fbId, possibleCrtcs: plane.possibleCrtcs, formats: plane.formats };
      }),
      minWidth: res.minWidth,
      maxWidth: res.maxWidth,
      minHeight: res.minHeight,
      maxHeight: res.maxHeight,
    };
  }

  connector(id: number): DrmConnector {
    const fd = this.assertOpen('ioctl(DRM_IOCTL_MODE_GETCONNECTOR)');
    validate.integer('id', id, 0, 0xffffffff);
    const c = check(drm('ioctl(DRM_IOCTL_MODE_GETCONNECTOR)').getConnector(fd, id), 'ioctl(DRM_IOCTL_MODE_GETCONNECTOR)');
    return { id: c.connectorId, type: c.connectorType, typeId: c.connectorTypeId, connection: c.connection, encoderId: c.encoderId, encoders: c.encoders, modes: c.modes, mmWidth: c.mmWidth, mmHeight: c.mmHeight };
  }

  crtc(id: number): DrmCrtc {
    const fd = this.assertOpen('ioctl(DRM_IOCTL_MODE_GETCRTC)');
    validate.integer('id', id, 0, 0xffffffff);
    const c = check(drm('ioctl(DRM_IOCTL_MODE_GETCRTC)').getCrtc(fd, id), 'ioctl(DRM_IOCTL_MODE_GETCRTC)');
    return { id: c.crtcId, fbId: c.fbId, x: c.x, y: c.y, mode: c.mode };
  }

  /**
   * A framebuffer over a GEM buffer (DRM_IOCTL_MODE_ADDFB2, one plane).
   * `format`: a fourcc (native().drm.constants.DRM_FORMAT_*); `pitch`: bytes per row.
   */
  addFramebuffer(gem: GemBuffer, options: { width: number; height: number; format: number; pitch: number; offset?: number }): Framebuffer {
    const syscall = 'ioctl(DRM_IOCTL_MODE_ADDFB2)';
    const fd = this.assertOpen(syscall);
    const handle = this.#ownGem(gem).assertOpen(syscall);
    const opts = validate.options<{ width: number; height: number; format: number; pitch: number; offset: number }>('options', options);
    const size = {
      width: validate.integer('options.width', opts.width, 1, 0xffffffff),
      height: validate.integer('options.height', opts.height, 1, 0xffffffff),
      format: validate.integer('options.format', opts.format, 0, 0xffffffff),
    };
    const pitch = validate.integer('options.pitch', opts.pitch, 1, 0xffffffff);
    const offset = opts.offset === undefined ? 0 : validate.integer('options.offset', opts.offset, 0, 0xffffffff);
    const id = check(drm(syscall).addFb2(fd, size.width, size.height, size.format, 0, [handle, pitch, offset]), syscall, (code) =>
      code === 'EINVAL' ? 'the driver refused the size, format, pitch or offset for this buffer (a plane\'s formats are in resources().planes)' : undefined,
    );
    return this.#own(
      (forget) =>
        new Framebuffer(token, this, id, size, () => {
          forget();
          if (!this.closed) check(drm('ioctl(DRM_IOCTL_MODE_RMFB)').rmFb(this.fd, id), 'ioctl(DRM_IOCTL_MODE_RMFB)');
        }),
    );
  }

  /** Shows `framebuffer` on a CRTC with the legacy DRM_IOCTL_MODE_SETCRTC; null turns the CRTC off. */
  setCrtc(crtcId: number, framebuffer: Framebuffer | null, options?: { connectors?: number[]; mode?: DrmMode; x?: number; y?: number }): void {
    const syscall = 'ioctl(DRM_IOCTL_MODE_SETCRTC)';
    const fd = this.assertOpen(syscall);
    validate.integer('crtcId', crtcId, 0, 0xffffffff);
    const opts = validate.options<{ connectors: number[]; mode: DrmMode; x: number; y: number }>('options', options);
    if (framebuffer !== null && (!(framebuffer instanceof Framebuffer) || framebuffer.device !== this || framebuffer.closed)) {
      throw validate.invalidValue('framebuffer', 'an open Framebuffer of this DrmDevice, or null', framebuffer);
    }
    const connectors = opts.connectors === undefined ? [] : validate.array('options.connectors', opts.connectors).map((id, index) => validate.integer(`options.connectors[${index}]`, id, 0, 0xffffffff));
    if (framebuffer !== null && opts.mode === undefined) throw codedError('ERR_MISSING_OPTION', 'options.mode', 'to show a framebuffer');
    check(
      drm(syscall).setCrtc(fd, crtcId, framebuffer?.id ?? 0, validate.integer('options.x', opts.x ?? 0, 0, 0xffffffff), validate.integer('options.y', opts.y ?? 0, 0, 0xffffffff), connectors, framebuffer === null ? null : opts.mode!),
      syscall,
    );
  }

  /**
   * An object's properties by name: id, current value and, for an enum, the
   * name of that value (a plane's `type`: 'Primary', 'Overlay', 'Cursor').
   */
  properties(objectId: number, objectType: DrmObjectType): Map<string, DrmProperty> {
    const fd = this.assertOpen('ioctl(DRM_IOCTL_MODE_OBJ_GETPROPERTIES)');
    validate.integer('objectId', objectId, 0, 0xffffffff);
    validate.oneOf('objectType', objectType, objectTypes);
    const binding = drm('ioctl(DRM_IOCTL_MODE_OBJ_GETPROPERTIES)');
    const { ids, values } = check(binding.objectProperties(fd, objectId, objectTypeValue(objectType)), 'ioctl(DRM_IOCTL_MODE_OBJ_GETPROPERTIES)');
    const result = new Map<string, DrmProperty>();
    ids.forEach((id, index) => {
      const property = check(binding.getProperty(fd, id), 'ioctl(DRM_IOCTL_MODE_GETPROPERTY)');
      const value = values[index]!;
      const named = property.enums.find((entry) => entry.value === value);
      result.set(property.name, named ? { id, value, enumName: named.name } : { id, value });
    });
    return result;
  }

  /** A blob holding `mode`, for a CRTC's MODE_ID property (DRM_IOCTL_MODE_CREATEPROPBLOB). */
  createModeBlob(mode: DrmMode): ModeBlob {
    const fd = this.assertOpen('ioctl(DRM_IOCTL_MODE_CREATEPROPBLOB)');
    const id = check(drm('ioctl(DRM_IOCTL_MODE_CREATEPROPBLOB)').createModeBlob(fd, mode), 'ioctl(DRM_IOCTL_MODE_CREATEPROPBLOB)');
    return this.#own(
      (forget) =>
        new ModeBlob(token, id, () => {
          forget();
          if (!this.closed) check(drm('ioctl(DRM_IOCTL_MODE_DESTROYPROPBLOB)').destroyBlob(this.fd, id), 'ioctl(DRM_IOCTL_MODE_DESTROYPROPBLOB)');
        }),
    );
  }

  /**
   * DRM_IOCTL_MODE_ATOMIC (needs setClientCap('atomic')): properties by
   * name, looked up per object. Returns the out-fence asked for, as a SyncFile.
   */
  atomicCommit(requests: AtomicRequest[], options?: AtomicOptions): { outFence: SyncFile | undefined } {
    const syscall = 'ioctl(DRM_IOCTL_MODE_ATOMIC)';
    const fd = this.assertOpen(syscall);
    validate.array('requests', requests);
    const opts = validate.options<AtomicOptions>('options', options);
    const binding = drm(syscall);
    const objectIds: number[] = [];
    const counts: number[] = [];
    const propIds: number[] = [];
    const values: bigint[] = [];
    const fenceIndexes: number[] = [];
    const wanted = opts.outFence;
    const add = (objectId: number, objectType: DrmObjectType, entries: [string, number | bigint | 'fence'][]) => {
      const known = this.properties(objectId, objectType);
      objectIds.push(objectId);
      counts.push(entries.length);
      for (const [name, value] of entries) {
        const property = known.get(name);
        if (!property) throw validate.invalidValue(`property ${name}`, `a property of ${objectType} ${objectId} (it has: ${[...known.keys()].join(', ')})`, name);
        if (value === 'fence') fenceIndexes.push(propIds.length);
        propIds.push(property.id);
        values.push(value === 'fence' ? 0n : BigInt.asUintN(64, validate.bigint(`${name}`, BigInt(value), -(1n << 63n), u64Max)));
      }
    };
    requests.forEach((request, index) => {
      const { objectId, objectType, properties } = validate.options<AtomicRequest>(`requests[${index}]`, request);
      const entries = Object.entries(validate.options<Record<string, number | bigint>>(`requests[${index}].properties`, properties)) as [string, number | bigint | 'fence'][];
      for (const [name, value] of entries) {
        if (typeof value !== 'bigint' && !Number.isSafeInteger(value)) throw validate.typeError(`requests[${index}].properties.${name}`, 'an integer or a bigint', value);
      }
      if (wanted && wanted.objectId === objectId && wanted.objectType === objectType) entries.push([wanted.property, 'fence']);
      add(validate.integer(`requests[${index}].objectId`, objectId, 0, 0xffffffff), validate.oneOf(`requests[${index}].objectType`, objectType, objectTypes), entries);
    });
    if (wanted && !requests.some((request) => request.objectId === wanted.objectId && request.objectType === wanted.objectType)) add(wanted.objectId, wanted.objectType, [[wanted.property, 'fence']]);
    const { DRM_MODE_ATOMIC_ALLOW_MODESET, DRM_MODE_ATOMIC_TEST_ONLY } = binding.constants;
    const flags = (opts.allowModeset ? DRM_MODE_ATOMIC_ALLOW_MODESET : 0) | (opts.testOnly ? DRM_MODE_ATOMIC_TEST_ONLY : 0);
    const outFences = new Int32Array(fenceIndexes.length);
    check(
      binding.atomicCommit(fd, flags, Uint32Array.from(objectIds), Uint32Array.from(counts), Uint32Array.from(propIds), BigUint64Array.from(values), outFences, fenceIndexes),
      syscall,
      (code) => (code === 'EINVAL' ? 'the driver refused the new state (dmesg with drm.debug=0x10 says why)' : code === 'EACCES' ? 'atomic commits need the DRM master: no other client may hold it' : undefined),
    );
    const fenceFd = outFences[0];
    return { outFence: fenceFd !== undefined && fenceFd >= 0 ? SyncFile.adopt(fenceFd) : undefined };
  }

  protected override releaseResources(): void {
    // The kernel frees all of it with the fd (this.closed is already true):
    // the objects only learn that they are closed, and unmap their mappings.
    for (const owned of [...this.#owned]) owned.close();
    this.#owned.clear();
    this.#handles.clear();
  }
}
