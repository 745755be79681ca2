export { DmaBuf, isDmaBufFd, parseFdinfo, type DmaBufInfo, type DmaBufWaitOptions } from './dmabuf';
export { SyncFile, SwSyncTimeline, type SyncFileInfo, type FenceInfo, type FenceStatus } from './sync-file';
export { udmabuf, Udmabuf, UdmabufDevice, Memfd, type MemfdSegment, type CreateOptions as UdmabufCreateOptions } from './udmabuf';
export { heap, type HeapAllocateOptions } from './heap';
export type { AccessMode } from './constants';
export type { WaitOptions } from './wait';
export { listDevices, formatDevices, type DmaBufDevices } from './devices';
export { errnoName, kernelError, type KernelError } from './errors';
export * as vm from './vm';
