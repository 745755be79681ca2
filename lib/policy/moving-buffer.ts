import type { FdChannel } from '../channel';
import { DmaBuf } from '../dmabuf';
import { udmabuf, type Udmabuf } from '../udmabuf';
import type { DmaDirection } from './core';
import { MovableExporter, type BackingStore } from './exporters';
import type { PolicyProfile } from './profiles';
import { serveImporter } from './remote';
import type { Trace } from './trace';

/**
 * What an importer's map of udmabuf-backed memory gets: its own dma-buf fd
 * (a duplicate, so the mapping lives on its own like a kernel mapping
 * holds pages), a zero-copy view on demand, and the memfd segments that
 * stand for the scatter list.
 */
export interface UdmabufMapping {
  dmabuf: DmaBuf;
  generation: number;
  direction: DmaDirection;
  /** The backing memfd's pages: one segment covering the buffer. */
  segments: { offset: number; size: number }[];
}

/** A BackingStore of udmabufs: each move allocates a new one and copies. */
export function udmabufStore(): BackingStore<Udmabuf, UdmabufMapping> {
  return {
    allocate: (size) => udmabuf.create(size),
    copy(from, to) {
      from.withCpuAccess('read', (source) => to.withCpuAccess('write', (target) => source.copy(target)));
    },
    describe: (backing, generation, direction) => ({
      dmabuf: DmaBuf.fromFd(backing.fd, { dup: true }),
      generation,
      direction,
      segments: [{ offset: 0, size: backing.size }],
    }),
    forget: (mapping) => mapping.dmabuf.close(),
    release: (backing) => backing.close(),
  };
}

/** A dynamic exporter whose memory is real (udmabuf) and moves. */
export function createMovingBuffer(options: { size: number; profile: PolicyProfile; name?: string; trace?: Trace; dynamic?: boolean }): MovableExporter<Udmabuf, UdmabufMapping> {
  return new MovableExporter(udmabufStore(), { dynamic: true, ...options });
}

/** Serves an importer process on an FdChannel: its maps receive the memory's dma-buf. */
export function serveRemoteImporter(exporter: MovableExporter<Udmabuf, UdmabufMapping>, channel: FdChannel): Promise<void> {
  return serveImporter(exporter.buffer, channel, (mapping) => ({
    description: { generation: mapping.generation, direction: mapping.direction, segments: mapping.segments, size: mapping.dmabuf.size },
    handles: [mapping.dmabuf],
  }));
}
