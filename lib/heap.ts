import { existsSync, readdirSync } from 'node:fs';
import { totalmem } from 'node:os';
import { DmaBuf } from './dmabuf';
import { check } from './errors';
import { closeFd, openFd } from './handle';
import { native } from './native';
import * as validate from './validate';

export const heapDirectory = '/dev/dma_heap';

/** The names of this system's dma-heaps (`system`, `linux,cma`, ...): never assume one. */
function list(): string[] {
  if (!existsSync(heapDirectory)) return [];
  return readdirSync(heapDirectory).sort();
}

export interface HeapAllocateOptions {
  /** Heap flags; no heap in Linux 6.1 accepts any (EINVAL). Default 0. */
  heapFlags?: number;
  /** The new fd's open flags, as the kernel takes them; O_CLOEXEC is always added. Default O_RDWR. */
  fdFlags?: number;
}

/** A dma-buf of `size` bytes from the named heap (DMA_HEAP_IOCTL_ALLOC), read-write and close-on-exec. */
function allocate(name: string, size: number, options?: HeapAllocateOptions): DmaBuf {
  validate.string('name', name);
  const opts = validate.options<HeapAllocateOptions>('options', options);
  const { O_RDWR, O_CLOEXEC } = native().constants;
  const heapFlags = opts.heapFlags === undefined ? 0 : validate.integer('options.heapFlags', opts.heapFlags, 0, 0xffffffff);
  const fdFlags = (opts.fdFlags === undefined ? O_RDWR : validate.integer('options.fdFlags', opts.fdFlags, -0x80000000, 0xffffffff)) | O_CLOEXEC;
  if (name === '' || name.includes('/') || name === '.' || name === '..') throw validate.invalidValue('name', 'a heap name (an entry of /dev/dma_heap)', name);
  // Linux 6.1's system heap allocates page by page until it has them all,
  // so a size beyond the machine's memory wakes the OOM killer rather than
  // failing with ENOMEM. totalmem() is MemTotal from /proc/meminfo.
  const memTotal = totalmem();
  if (validate.integer('size', size, 1) > memTotal) throw validate.outOfRange('size', `at most this machine's memory (MemTotal, ${memTotal} bytes)`, size);
  const path = `${heapDirectory}/${name}`;
  const heapFd = openFd(path, 'r', (code) => {
    const available = list();
    if (code === 'ENOENT') {
      return available.length > 0
        ? `no heap named '${name}'; this system has: ${available.join(', ')}`
        : 'this kernel has no dma-heaps (CONFIG_DMABUF_HEAPS, CONFIG_DMABUF_HEAPS_SYSTEM); run inside the project\'s VM: npx dmabuf vm run -- <command>';
    }
    return code === 'EACCES' ? `${path} is not accessible to this user; heaps are often root-only (check its mode and group)` : undefined;
  });
  try {
    const fd = check(native().heapAllocate(heapFd, size, fdFlags >>> 0, heapFlags), 'ioctl(DMA_HEAP_IOCTL_ALLOC)', (code) =>
      code === 'ENOMEM' ? `the '${name}' heap could not allocate ${size} bytes` : undefined,
    );
    // The kernel rounds the length up to whole pages: ask the fd, not the request.
    return DmaBuf.adopt(fd);
  } finally {
    closeFd(heapFd);
  }
}

export const heap = { list, allocate };
