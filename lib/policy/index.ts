/**
 * The kernel's dynamic dma-buf policy as a TypeScript library: reservation
 * objects (ww-mutex locking and fences), exporters, attachments and
 * mappings under three profiles, traces to compare them, and importers in
 * other processes. Nothing here touches the kernel: real memory and
 * channels are handed in (lib/moving-buffer.ts does it with udmabuf and
 * FdChannel).
 */
export * from './core';
export * from './debug';
export { PolicyRuleError, policyErrno, type PolicyErrno } from './errors';
export * from './exporters';
export * from './fence';
export * from './profiles';
export * from './remote';
export * from './resv';
export * from './trace';
export * from './ww-mutex';
