/**
 * The kernel's dynamic dma-buf policy as a TypeScript library: reservation
 * objects (ww-mutex locking and fences), exporters, attachments and
 * mappings under three profiles, traces to compare them, and importers in
 * other processes. The model touches no kernel: real memory and channels
 * are handed in (moving-buffer.ts hands in udmabuf memory, shared over an
 * FdChannel).
 */
export * from './core';
export * from './debug';
export { PolicyRuleError, policyErrno, type PolicyErrno } from './errors';
export * from './exporters';
export * from './fence';
export { createMovingBuffer, serveRemoteImporter, udmabufStore, type UdmabufMapping } from './moving-buffer';
export * from './profiles';
export * from './remote';
export * from './resv';
export * from './trace';
export * from './ww-mutex';
