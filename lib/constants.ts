// Values from the kernel's uapi headers (linux/dma-buf.h, linux/memfd.h,
// linux/fcntl.h, linux/magic.h) that the TypeScript layer needs.
export const DMA_BUF_SYNC_READ = 1 << 0;
export const DMA_BUF_SYNC_WRITE = 2 << 0;
export const DMA_BUF_SYNC_RW = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE;
export const DMA_BUF_SYNC_START = 0 << 2;
export const DMA_BUF_SYNC_END = 1 << 2;
/** The kernel refuses names that do not fit 32 bytes with their NUL. */
export const DMA_BUF_NAME_MAX_BYTES = 31;
export const DMA_BUF_MAGIC = 0x444d4142;
export const HUGETLBFS_MAGIC = 0x958458f6;

export const MFD_ALLOW_SEALING = 0x2;
export const MFD_HUGETLB = 0x4;
export const F_SEAL_SEAL = 0x1;
export const F_SEAL_SHRINK = 0x2;
export const F_SEAL_GROW = 0x4;
export const F_SEAL_WRITE = 0x8;
export const F_SEAL_FUTURE_WRITE = 0x10;

export type AccessMode = 'read' | 'write' | 'readwrite';
export const accessModes: readonly AccessMode[] = ['read', 'write', 'readwrite'];

export function accessFlags(mode: AccessMode): number {
  return mode === 'read' ? DMA_BUF_SYNC_READ : mode === 'write' ? DMA_BUF_SYNC_WRITE : DMA_BUF_SYNC_RW;
}
