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
  | 'MSG_TRUNC'
  /** linux/videodev2.h (native/v4l2.cc). */
  | 'VIDIOC_S_FMT'
  | 'VIDIOC_TRY_FMT'
  | 'V4L2_BUF_TYPE_VIDEO_CAPTURE'
  | 'V4L2_BUF_TYPE_VIDEO_OUTPUT'
  | 'V4L2_MEMORY_MMAP'
  | 'V4L2_MEMORY_DMABUF'
  | 'V4L2_FIELD_ANY'
  | 'V4L2_FIELD_NONE'
  | 'V4L2_FIELD_INTERLACED'
  | 'V4L2_FIELD_TOP'
  | 'V4L2_FIELD_BOTTOM'
  | 'V4L2_FIELD_SEQ_TB'
  | 'V4L2_FIELD_SEQ_BT'
  | 'V4L2_FIELD_ALTERNATE'
  | 'V4L2_FIELD_INTERLACED_TB'
  | 'V4L2_FIELD_INTERLACED_BT'
  | 'V4L2_CAP_VIDEO_CAPTURE'
  | 'V4L2_CAP_VIDEO_OUTPUT'
  | 'V4L2_CAP_VIDEO_OVERLAY'
  | 'V4L2_CAP_VBI_CAPTURE'
  | 'V4L2_CAP_VBI_OUTPUT'
  | 'V4L2_CAP_SLICED_VBI_CAPTURE'
  | 'V4L2_CAP_SLICED_VBI_OUTPUT'
  | 'V4L2_CAP_RDS_CAPTURE'
  | 'V4L2_CAP_VIDEO_OUTPUT_OVERLAY'
  | 'V4L2_CAP_HW_FREQ_SEEK'
  | 'V4L2_CAP_RDS_OUTPUT'
  | 'V4L2_CAP_VIDEO_CAPTURE_MPLANE'
  | 'V4L2_CAP_VIDEO_OUTPUT_MPLANE'
  | 'V4L2_CAP_VIDEO_M2M_MPLANE'
  | 'V4L2_CAP_VIDEO_M2M'
  | 'V4L2_CAP_TUNER'
  | 'V4L2_CAP_AUDIO'
  | 'V4L2_CAP_RADIO'
  | 'V4L2_CAP_MODULATOR'
  | 'V4L2_CAP_SDR_CAPTURE'
  | 'V4L2_CAP_EXT_PIX_FORMAT'
  | 'V4L2_CAP_SDR_OUTPUT'
  | 'V4L2_CAP_META_CAPTURE'
  | 'V4L2_CAP_READWRITE'
  | 'V4L2_CAP_STREAMING'
  | 'V4L2_CAP_META_OUTPUT'
  | 'V4L2_CAP_TOUCH'
  | 'V4L2_CAP_IO_MC'
  | 'V4L2_CAP_DEVICE_CAPS'
  | 'V4L2_BUF_FLAG_MAPPED'
  | 'V4L2_BUF_FLAG_QUEUED'
  | 'V4L2_BUF_FLAG_DONE'
  | 'V4L2_BUF_FLAG_KEYFRAME'
  | 'V4L2_BUF_FLAG_PFRAME'
  | 'V4L2_BUF_FLAG_BFRAME'
  | 'V4L2_BUF_FLAG_ERROR'
  | 'V4L2_BUF_FLAG_IN_REQUEST'
  | 'V4L2_BUF_FLAG_TIMECODE'
  | 'V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF'
  | 'V4L2_BUF_FLAG_PREPARED'
  | 'V4L2_BUF_FLAG_NO_CACHE_INVALIDATE'
  | 'V4L2_BUF_FLAG_NO_CACHE_CLEAN'
  | 'V4L2_BUF_FLAG_TIMESTAMP_MASK'
  | 'V4L2_BUF_FLAG_TIMESTAMP_UNKNOWN'
  | 'V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC'
  | 'V4L2_BUF_FLAG_TIMESTAMP_COPY'
  | 'V4L2_BUF_FLAG_TSTAMP_SRC_MASK'
  | 'V4L2_BUF_FLAG_TSTAMP_SRC_EOF'
  | 'V4L2_BUF_FLAG_TSTAMP_SRC_SOE'
  | 'V4L2_BUF_FLAG_LAST'
  | 'V4L2_BUF_FLAG_REQUEST_FD'
  | 'V4L2_BUF_CAP_SUPPORTS_MMAP'
  | 'V4L2_BUF_CAP_SUPPORTS_USERPTR'
  | 'V4L2_BUF_CAP_SUPPORTS_DMABUF'
  | 'V4L2_BUF_CAP_SUPPORTS_REQUESTS'
  | 'V4L2_BUF_CAP_SUPPORTS_ORPHANED_BUFS'
  | 'V4L2_BUF_CAP_SUPPORTS_M2M_HOLD_CAPTURE_BUF'
  | 'V4L2_BUF_CAP_SUPPORTS_MMAP_CACHE_HINTS'
  | 'V4L2_FMT_FLAG_COMPRESSED'
  | 'V4L2_FMT_FLAG_EMULATED'
  | 'V4L2_INPUT_TYPE_TUNER'
  | 'V4L2_INPUT_TYPE_CAMERA'
  | 'V4L2_INPUT_TYPE_TOUCH'
  | 'V4L2_OUTPUT_TYPE_MODULATOR'
  | 'V4L2_OUTPUT_TYPE_ANALOG'
  | 'V4L2_OUTPUT_TYPE_ANALOGVGAOVERLAY'
  | 'V4L2_CTRL_FLAG_NEXT_CTRL'
  | 'V4L2_CTRL_FLAG_NEXT_COMPOUND'
  | 'V4L2_CTRL_FLAG_DISABLED'
  | 'V4L2_CTRL_FLAG_GRABBED'
  | 'V4L2_CTRL_FLAG_READ_ONLY'
  | 'V4L2_CTRL_FLAG_UPDATE'
  | 'V4L2_CTRL_FLAG_INACTIVE'
  | 'V4L2_CTRL_FLAG_SLIDER'
  | 'V4L2_CTRL_FLAG_WRITE_ONLY'
  | 'V4L2_CTRL_FLAG_VOLATILE'
  | 'V4L2_CTRL_FLAG_HAS_PAYLOAD'
  | 'V4L2_CTRL_FLAG_EXECUTE_ON_WRITE'
  | 'V4L2_CTRL_FLAG_MODIFY_LAYOUT'
  | 'V4L2_CTRL_TYPE_INTEGER'
  | 'V4L2_CTRL_TYPE_BOOLEAN'
  | 'V4L2_CTRL_TYPE_MENU'
  | 'V4L2_CTRL_TYPE_BUTTON'
  | 'V4L2_CTRL_TYPE_INTEGER64'
  | 'V4L2_CTRL_TYPE_CTRL_CLASS'
  | 'V4L2_CTRL_TYPE_STRING'
  | 'V4L2_CTRL_TYPE_BITMASK'
  | 'V4L2_CTRL_TYPE_INTEGER_MENU';

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
  | 'DBT_STATE_EXPORTER_DYNAMIC'
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

/** V4L2 (native/v4l2.cc): single-planar formats, buffers and controls. Each returns its value or -errno. */
export interface NativeV4l2 {
  queryCapabilities(fd: number): { driver: string; card: string; busInfo: string; version: number; capabilities: number; deviceCaps: number } | number;
  enumFormat(fd: number, type: number, index: number): { index: number; flags: number; description: string; pixelformat: number } | number;
  getFormat(fd: number, type: number): NativeV4l2Format | number;
  /** command: VIDIOC_S_FMT or VIDIOC_TRY_FMT (any other is refused). */
  setFormat(fd: number, command: number, type: number, width: number, height: number, pixelformat: number, field: number, bytesperline: number, sizeimage: number): NativeV4l2Format | number;
  enumIo(fd: number, output: boolean, index: number): { index: number; name: string; type: number; capabilities: number; status: number } | number;
  getIo(fd: number, output: boolean): number;
  setIo(fd: number, output: boolean, index: number): number;
  /** VIDIOC_G_PARM when denominator is 0, else VIDIOC_S_PARM: the time per frame the driver now uses. */
  frameInterval(fd: number, type: number, numerator: number, denominator: number): { numerator: number; denominator: number; settable: boolean } | number;
  requestBuffers(fd: number, type: number, memory: number, count: number): { count: number; capabilities: number } | number;
  queryBuffer(fd: number, type: number, memory: number, index: number): NativeV4l2Buffer | number;
  /** dmaBufFd and length are read for V4L2_MEMORY_DMABUF only. */
  queueBuffer(fd: number, type: number, memory: number, index: number, dmaBufFd: number, length: number, bytesused: number, field: number): NativeV4l2Buffer | number;
  /** -EAGAIN when no buffer is done (the device is O_NONBLOCK). */
  dequeueBuffer(fd: number, type: number, memory: number): NativeV4l2Buffer | number;
  exportBuffer(fd: number, type: number, index: number, flags: number): number;
  stream(fd: number, on: boolean, type: number): number;
  queryControl(fd: number, id: number): NativeV4l2Control | number;
  queryMenu(fd: number, id: number, index: number): { index: number; name: string; value: bigint } | number;
  /** A bigint, or -errno as a number. */
  getControl(fd: number, id: number, is64: boolean): bigint | number;
  setControl(fd: number, id: number, value: bigint, is64: boolean): number;
}

export interface NativeV4l2Format {
  type: number;
  width: number;
  height: number;
  pixelformat: number;
  field: number;
  bytesperline: number;
  sizeimage: number;
  colorspace: number;
  quantization: number;
  xferFunc: number;
  ycbcrEnc: number;
}

export interface NativeV4l2Buffer {
  index: number;
  type: number;
  bytesused: number;
  flags: number;
  field: number;
  timestampSec: number;
  timestampUsec: number;
  sequence: number;
  memory: number;
  /** V4L2_MEMORY_MMAP only. */
  offset?: number;
  /** V4L2_MEMORY_DMABUF only. */
  fd?: number;
  length: number;
}

export interface NativeV4l2Control {
  id: number;
  type: number;
  name: string;
  minimum: bigint;
  maximum: bigint;
  step: bigint;
  defaultValue: bigint;
  flags: number;
  elemSize: number;
  elems: number;
  nrOfDims: number;
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
  v4l2: NativeV4l2;
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
