import bindings from 'bindings';
import type { DrmMode } from './drm';

/**
 * The names in native().constants: values of the C headers each native/*.cc
 * file includes, made from their macros (test/host/constants.test.ts holds
 * them to the headers and keeps lib/ from retyping them).
 */
export type NativeConstantName =
  | 'O_ACCMODE'
  | 'O_RDONLY'
  | 'O_WRONLY'
  | 'O_RDWR'
  | 'O_NONBLOCK'
  | 'O_CLOEXEC'
  | 'POLLIN'
  | 'POLLOUT'
  | 'DMA_BUF_MAGIC'
  | 'HUGETLBFS_MAGIC'
  | 'MFD_ALLOW_SEALING'
  | 'MFD_HUGETLB'
  | 'F_SEAL_SEAL'
  | 'F_SEAL_SHRINK'
  | 'F_SEAL_GROW'
  | 'F_SEAL_WRITE'
  | 'F_SEAL_FUTURE_WRITE'
  | 'DMA_BUF_SYNC_READ'
  | 'DMA_BUF_SYNC_WRITE'
  | 'DMA_BUF_SYNC_RW'
  | 'DMA_BUF_SYNC_START'
  | 'DMA_BUF_SYNC_END'
  /** DMA_BUF_NAME_LEN less the NUL: the longest name DMA_BUF_SET_NAME takes. */
  | 'DMA_BUF_NAME_MAX_BYTES'
  /** struct sync_merge_data's name less the NUL: the longest sync_file (or sw_sync fence) name. */
  | 'SYNC_NAME_MAX_BYTES'
  /** include/net/scm.h, not a uapi header: the most fds one SCM_RIGHTS message carries. */
  | 'SCM_MAX_FD'
  | 'AF_UNIX'
  | 'SOCK_STREAM'
  | 'SOCK_SEQPACKET'
  | 'SOCK_DGRAM'
  /** recvmsg's flags: fds dropped for want of room (MSG_CTRUNC), a datagram cut to the buffer (MSG_TRUNC). */
  | 'MSG_CTRUNC'
  | 'MSG_TRUNC';

/** The values native/dmabuf_test.cc exports from kernel-module/uapi/dmabuf_test.h. */
export type DmabufTestValueName =
  | 'DBT_MAX_PAGES'
  | 'DBT_EXPORT_DYNAMIC'
  | 'DBT_MOVE_FENCED'
  | 'DBT_MOVE_REVOKE'
  | 'DBT_ATTACH_DYNAMIC'
  | 'DBT_ATTACH_REVOCABLE'
  | 'DBT_DIR_BIDIRECTIONAL'
  | 'DBT_DIR_TO_DEVICE'
  | 'DBT_DIR_FROM_DEVICE'
  | 'DBT_STATE_MAPPED'
  | 'DBT_STATE_INVALIDATED'
  | 'DBT_STATE_CORE_CACHED'
  | 'DBT_STATE_REVOKED'
  | 'DBT_STATE_CORE_REVOCABLE'
  | 'DBT_USAGE_KERNEL'
  | 'DBT_USAGE_WRITE'
  | 'DBT_USAGE_READ'
  | 'DBT_USAGE_BOOKKEEP'
  | 'DBT_FENCE_ADD'
  | 'DBT_FENCE_SYNC_FILE'
  | 'DBT_EVENT_MOVE_NOTIFY'
  | 'DBT_EVENT_OVERFLOW'
  | 'DBT_IOC_MAGIC';

export type DmabufTestStructTag =
  | 'dbt_export'
  | 'dbt_move'
  | 'dbt_exporter_info'
  | 'dbt_attach'
  | 'dbt_attachment_id'
  | 'dbt_map'
  | 'dbt_attachment_info'
  | 'dbt_fence_create'
  | 'dbt_fence_signal'
  | 'dbt_event';

/** The header values native/drm.cc exports (libdrm-dev's drm.h, drm_mode.h, drm_fourcc.h; vgem_drm.h's declared there). */
export type NativeDrmConstantName =
  | 'DRM_CAP_DUMB_BUFFER'
  | 'DRM_CAP_DUMB_PREFERRED_DEPTH'
  | 'DRM_CAP_PRIME'
  | 'DRM_PRIME_CAP_IMPORT'
  | 'DRM_PRIME_CAP_EXPORT'
  | 'DRM_CAP_TIMESTAMP_MONOTONIC'
  | 'DRM_CAP_ADDFB2_MODIFIERS'
  | 'DRM_CAP_SYNCOBJ'
  | 'DRM_CLIENT_CAP_UNIVERSAL_PLANES'
  | 'DRM_CLIENT_CAP_ATOMIC'
  | 'DRM_CLIENT_CAP_WRITEBACK_CONNECTORS'
  | 'DRM_CLOEXEC'
  | 'DRM_RDWR'
  | 'DRM_FORMAT_XRGB8888'
  | 'DRM_FORMAT_ARGB8888'
  | 'DRM_MODE_CONNECTOR_VIRTUAL'
  | 'DRM_MODE_CONNECTOR_WRITEBACK'
  | 'DRM_MODE_OBJECT_CRTC'
  | 'DRM_MODE_OBJECT_CONNECTOR'
  | 'DRM_MODE_OBJECT_PLANE'
  | 'DRM_MODE_ATOMIC_ALLOW_MODESET'
  | 'DRM_MODE_ATOMIC_TEST_ONLY'
  | 'DRM_MODE_TYPE_PREFERRED'
  | 'VGEM_FENCE_WRITE'
  | 'DRM_IOCTL_VGEM_FENCE_ATTACH'
  | 'DRM_IOCTL_VGEM_FENCE_SIGNAL';

/** native/drm.cc: DRM ioctls, each returning its value or -errno (all -ENOTSUP when `available` is false). */
export interface NativeDrm {
  /** False when the addon was built without libdrm-dev's headers. */
  available: boolean;
  constants: Readonly<Record<NativeDrmConstantName, number>>;
  /** sizeof the vgem structs as drm.cc declares them. */
  vgemSizes: Readonly<Record<'drm_vgem_fence_attach' | 'drm_vgem_fence_signal', number>>;
  version(fd: number): { name: string; major: number; minor: number; patchlevel: number; date: string; description: string } | number;
  getCap(fd: number, capability: number): number;
  setClientCap(fd: number, capability: number, value: number): number;
  createDumb(fd: number, width: number, height: number, bpp: number, flags: number): { handle: number; pitch: number; size: number } | number;
  /** The fake offset to mmap the device fd at. */
  mapDumb(fd: number, handle: number): number;
  destroyDumb(fd: number, handle: number): number;
  gemClose(fd: number, handle: number): number;
  primeHandleToFd(fd: number, handle: number, flags: number): number;
  primeFdToHandle(fd: number, dmaBuf: number): number;
  /** The fence's id, or -errno. */
  vgemFenceAttach(fd: number, handle: number, flags: number): number;
  vgemFenceSignal(fd: number, fence: number, flags: number): number;
  getResources(fd: number): { fbs: number[]; crtcs: number[]; connectors: number[]; encoders: number[]; minWidth: number; maxWidth: number; minHeight: number; maxHeight: number } | number;
  getConnector(fd: number, id: number):
    | { connectorId: number; encoderId: number; connectorType: number; connectorTypeId: number; connection: 'connected' | 'disconnected' | 'unknown'; mmWidth: number; mmHeight: number; encoders: number[]; modes: DrmMode[] }
    | number;
  getEncoder(fd: number, id: number): { encoderId: number; encoderType: number; crtcId: number; possibleCrtcs: number; possibleClones: number } | number;
  getCrtc(fd: number, id: number): { crtcId: number; fbId: number; x: number; y: number; gammaSize: number; mode: DrmMode | null } | number;
  setCrtc(fd: number, crtcId: number, fbId: number, x: number, y: number, connectorIds: number[], mode: DrmMode | null): number;
  getPlaneResources(fd: number): number[] | number;
  getPlane(fd: number, id: number): { planeId: number; crtcId: number; fbId: number; possibleCrtcs: number; formats: number[] } | number;
  /** planes: [handle, pitch, offset] per plane, flattened (1 to 4 planes). */
  addFb2(fd: number, width: number, height: number, format: number, flags: number, planes: number[]): number;
  rmFb(fd: number, fbId: number): number;
  objectProperties(fd: number, objectId: number, objectType: number): { ids: number[]; values: bigint[] } | number;
  getProperty(fd: number, propertyId: number): { propertyId: number; name: string; flags: number; enums: { name: string; value: bigint }[] } | number;
  createModeBlob(fd: number, mode: DrmMode): number;
  destroyBlob(fd: number, blobId: number): number;
  /** fencePropIndexes: props (by index) whose value is a pointer the kernel writes an fd through; the fds land in outFences. */
  atomicCommit(fd: number, flags: number, objectIds: Uint32Array, propCounts: Uint32Array, propIds: Uint32Array, values: BigUint64Array, outFences: Int32Array, fencePropIndexes?: number[]): number;
}

export interface NativeSyncFileInfo {
  name: string;
  status: number;
  fences: { timeline: string; driver: string; status: number; flags: number; timestampNs: bigint }[];
}

export interface NativeMapping {
  /** The mapped memory while it lives (held weakly: null once collected or unmapped). */
  readonly buffer: ArrayBuffer | null;
  /** Detaches the ArrayBuffer (every view drops to length 0), then unmaps. Returns 0 or -errno. */
  unmap(): number;
}

export interface NativePoller {
  /** `stayArmed`: do not stop on the first event (for fds the caller drains on every event). */
  start(events: number, stayArmed?: boolean): number;
  stop(): void;
  close(): void;
  ref(): void;
  unref(): void;
  /**
   * From now on each readable event first makes one recvmsg into `buffer`
   * at `io[0]`; the callback finds the result in `io` (native/poller.cc
   * gives the layout). Received fds are owned by the environment (ownFd).
   */
  receiveInto(buffer: Buffer, io: Int32Array): void;
  /** The same read, now; returns io[1]. */
  receiveNow(): number;
}

/**
 * The addon's exports. Each call returns its value or a negative errno; a
 * wrong argument type throws a TypeError (TypeScript validates first; those
 * checks are a backstop).
 */
export interface NativeBinding {
  kernelRelease(): string | number;
  probeMemfdCreate(): number;
  pageSize(): number;
  /** Errnos from the C library's errno.h that os.constants.errno lacks (EBADFD). */
  errnos: Record<string, number>;
  /** Frozen: the header values TypeScript uses, under the headers' own names. */
  constants: Readonly<Record<NativeConstantName, number>>;
  openFile(path: string, flags: number): number;
  /** Closes the fd, and forgets it if an FdHandle owned it. */
  closeFd(fd: number): number;
  /** An FdHandle's fd: closed by this environment's cleanup hook if still open when its thread ends. */
  ownFd(fd: number): number;
  /** The fd is handed to the caller (detach()): no longer closed at the thread's end. */
  disownFd(fd: number): number;
  fsMagic(fd: number): number;
  dupCloexec(fd: number): number;
  fdFlags(fd: number): number;
  pollNow(fd: number, events: number): number;
  memfdCreate(name: string, flags: number): number;
  addSeals(fd: number, seals: number): number;
  getSeals(fd: number): number;
  fallocate(fd: number, offset: number, length: number): number;
  udmabufCreate(device: number, memfd: number, offset: number, size: number): number;
  udmabufCreateList(device: number, flatSegments: number[]): number;
  heapAllocate(heap: number, length: number, fdFlags: number, heapFlags: number): number;
  /** idleEvents: POLLIN/POLLOUT to refuse with -EBUSY rather than wait on fences; 0 to let the ioctl wait. */
  dmaBufSync(fd: number, flags: number, idleEvents: number): number;
  dmaBufSetName(fd: number, name: string): number;
  dmaBufExportSyncFile(fd: number, flags: number): number;
  dmaBufImportSyncFile(fd: number, syncFile: number, flags: number): number;
  syncFileMerge(name: string, first: number, second: number): number;
  syncFileInfo(fd: number): NativeSyncFileInfo | number;
  syncFileStatus(fd: number, status: Int32Array): number;
  swSyncCreateFence(timeline: number, value: number, name: string): number;
  swSyncIncrement(timeline: number, count: number): number;
  /** SYNC_IOC_SET_DEADLINE (Linux 6.12+): 0 or -errno (-ENOTTY on older kernels). */
  syncFileSetDeadline(fd: number, deadlineNs: bigint): number;
  /** sw_sync's SW_SYNC_GET_DEADLINE (Linux 6.12+): the earliest deadline set on the fence, or -errno (-ENOENT: none set). */
  swSyncGetDeadline(timeline: number, fence: number): bigint | number;
  /**
   * keepAlive: fds the mapping duplicates and holds until it is unmapped;
   * offset: where in the file the mapping starts (page-aligned). The
   * buffer comes back with the mapping, held by the caller from the start:
   * `mapping.buffer` holds it only weakly, and reading it back later could
   * find it collected (and unmapped).
   */
  mapShared(fd: number, length: number, writable: boolean, keepAlive?: number[], offset?: number): { mapping: NativeMapping; buffer: ArrayBuffer } | number;
  /** A connected pair of `type` (SOCK_STREAM, ...), non-blocking and close-on-exec, or -errno. */
  socketPair(type: number): [number, number] | number;
  /** [SO_DOMAIN, SO_TYPE] of a socket, or -errno (-ENOTSOCK). */
  socketInfo(fd: number): [number, number] | number;
  unixListen(address: string, backlog: number): number;
  /** A non-blocking, close-on-exec Unix stream socket. */
  unixSocket(): number;
  /** 0, or -errno: -EAGAIN while the listener's backlog is full (try again later: there is nothing to poll for). */
  unixConnect(fd: number, address: string): number;
  accept(fd: number): number;
  sendFds(fd: number, buffer: Buffer, offset: number, length: number, fds: number[]): number;
  /** Bytes read or -errno; fdsOut[0] = fds received, fdsOut[1] = the message's MSG_CTRUNC | MSG_TRUNC flags, then the fds. Room: fdsOut.length - 2. */
  recvFds(fd: number, buffer: Buffer, offset: number, length: number, fdsOut: Int32Array): number;
  pidfdOpen(pid: number): number;
  pidfdGetFd(pidfd: number, targetFd: number): number;
  readInto(fd: number, buffer: Buffer): number;
  /** Any ioctl of type 0xDB whose size fits `argument` (kernel-module/uapi/dmabuf_test.h). */
  dmabufTestIoctl(fd: number, command: number, argument: Buffer): number;
  dmabufTestCommands: Record<string, number>;
  /** The uapi header's other values under its own names, built from its macros (test/host/uapi-values.test.ts holds them to the header). */
  dmabufTestValues: Record<DmabufTestValueName, number>;
  /** sizeof each of the uapi header's structs, by tag, as the compiler lays it out. */
  dmabufTestSizes: Record<DmabufTestStructTag, number>;
  /** DRM devices (native/drm.cc). */
  drm: NativeDrm;
  Poller: {
    new (fd: number, callback: (status: number, events: number) => void): NativePoller;
    READABLE: number;
    WRITABLE: number;
    /** io[1] when no read was made (an error status, or not readable). */
    NOT_READ: number;
    /** Elements per received fd in io: fd, fs magic, size low and high 32 bits. */
    FD_STRIDE: number;
  };
}

let loaded: NativeBinding | undefined;

/** Loads the addon on first use, so that tools which never touch it (the VM runner) work without a build. */
export function native(): NativeBinding {
  loaded ??= bindings('dmabuf_native') as NativeBinding;
  return loaded;
}
