import { constants as bufferConstants } from 'node:buffer';
import { check } from './errors';
import { native, type NativeMapping } from './native';
import { outOfRange } from './validate';

/**
 * One read-write shared mapping of a whole fd, made on first use and handed
 * out as Buffers over the same memory. `release()` unmaps it, and every view
 * drops to length 0.
 *
 * Always read-write: JavaScript can write into any Buffer, and a write to a
 * read-only mapping would kill the process, so a read-only fd is refused.
 */
export class SharedMapping {
  #mapping: NativeMapping | undefined;

  view(fd: number, size: number, keepAlive?: number[]): Buffer {
    if (size > bufferConstants.MAX_LENGTH) {
      throw outOfRange('size', `at most buffer.constants.MAX_LENGTH (${bufferConstants.MAX_LENGTH}) bytes to map as one Buffer`, size);
    }
    // Read once and held: the mapping keeps its buffer only weakly, and a
    // collection between two reads would find it gone.
    const live = this.#mapping?.buffer;
    if (live) return Buffer.from(live);
    const { mapping, buffer } = check(native().mapShared(fd, size, true, keepAlive), 'mmap', (code) =>
      code === 'EACCES' ? 'the fd is read-only, and mappings are always read-write (a write to a read-only mapping would kill the process)' : undefined,
    );
    this.#mapping = mapping;
    return Buffer.from(buffer);
  }

  release(): void {
    this.#mapping?.unmap();
    this.#mapping = undefined;
  }
}
