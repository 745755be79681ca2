import { native } from './native';

// The kernel's values themselves (DMA_BUF_SYNC_*, MFD_*, F_SEAL_*, magics,
// limits) are native().constants, built by the addon from the C headers:
// read them from there, never retype them here.

export type AccessMode = 'read' | 'write' | 'readwrite';
export const accessModes: readonly AccessMode[] = ['read', 'write', 'readwrite'];

/** The DMA_BUF_SYNC_* direction bits of an access mode. */
export function accessFlags(mode: AccessMode): number {
  const { DMA_BUF_SYNC_READ, DMA_BUF_SYNC_WRITE, DMA_BUF_SYNC_RW } = native().constants;
  return mode === 'read' ? DMA_BUF_SYNC_READ : mode === 'write' ? DMA_BUF_SYNC_WRITE : DMA_BUF_SYNC_RW;
}
