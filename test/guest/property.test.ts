import assert from 'node:assert/strict';
import { readSync, writeSync } from 'node:fs';
import fc from 'fast-check';
import { DmaBuf, Memfd, SwSyncTimeline, udmabuf, type AccessMode, type KernelError } from '../../lib';
import { dmaBufMappingCount, openFdCount, pageSize, requireVm } from './helpers';

// Bounded runs: the VM is slow (TCG), and a counterexample shrinks well
// within these.
const runs = { numRuns: 40 };

function assertNothingLeaked(fds: number, maps: number): void {
  assert.equal(openFdCount(), fds, 'open fds');
  assert.equal(dmaBufMappingCount(), maps, 'dma-buf mappings');
}

describe('properties over random inputs', () => {
  requireVm();

  it('any page count: the bytes written through one fd read back through another', () => {
    const fds = openFdCount();
    const maps = dmaBufMappingCount();
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 0, max: 255 }), (pages, seed) => {
        using buffer = udmabuf.create(pages * pageSize);
        using other = DmaBuf.fromFd(buffer.fd, { dup: true });
        buffer.withCpuAccess('write', (view) => {
          for (let offset = 0; offset < view.length; offset += 997) view[offset] = (offset + seed) & 0xff;
        });
        other.withCpuAccess('read', (view) => {
          for (let offset = 0; offset < view.length; offset += 997) assert.equal(view[offset], (offset + seed) & 0xff);
        });
      }),
      runs,
    );
    assertNothingLeaked(fds, maps);
  });

  it('any segment list: valid ones join the memfds in order, invalid ones get the kernel\'s EINVAL', () => {
    const fds = openFdCount();
    const maps = dmaBufMappingCount();
    const segment = fc.record({
      memfdPages: fc.integer({ min: 1, max: 8 }),
      offsetPages: fc.integer({ min: 0, max: 9 }),
      pages: fc.integer({ min: 0, max: 9 }),
      misalign: fc.constantFrom(0, 0, 0, 1, 2048),
    });
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), (specs) => {
        const memfds = specs.map((spec, index) => {
          const memfd = Memfd.create(spec.memfdPages * pageSize);
          for (let page = 0; page < spec.memfdPages; page += 1) writeSync(memfd.fd, Buffer.from([index, page]), 0, 2, page * pageSize);
          return memfd;
        });
        try {
          const segments = specs.map((spec, index) => ({ memfd: memfds[index]!, offset: spec.offsetPages * pageSize + spec.misalign, size: spec.pages * pageSize }));
          // The kernel's rule, as 6.1 applies it: every offset and size page-aligned, every
          // segment's pages inside its memfd (an empty segment reads nothing, so any aligned
          // offset will do), and at least one page in all.
          const inBounds = (spec: (typeof specs)[number]) => spec.misalign === 0 && (spec.pages === 0 || spec.offsetPages + spec.pages <= spec.memfdPages);
          const valid = specs.every(inBounds) && specs.some((spec) => spec.pages > 0);
          if (!valid) {
            assert.throws(() => udmabuf.fromMemfd(segments), (error: KernelError) => error.code === 'EINVAL');
            return;
          }
          using joined = udmabuf.fromMemfd(segments);
          assert.equal(joined.size, specs.reduce((sum, spec) => sum + spec.pages, 0) * pageSize);
          joined.withCpuAccess('read', (view) => {
            let page = 0;
            specs.forEach((spec, index) => {
              for (let inner = 0; inner < spec.pages; inner += 1, page += 1) {
                assert.deepEqual([...view.subarray(page * pageSize, page * pageSize + 2)], [index, spec.offsetPages + inner]);
              }
            });
          });
        } finally {
          for (const memfd of memfds) memfd.close();
        }
      }),
      runs,
    );
    assertNothingLeaked(fds, maps);
  });

  it('any order of calls on a buffer: each succeeds or fails with a known error, and close releases all', async () => {
    const fds = openFdCount();
    const maps = dmaBufMappingCount();
    const modes: AccessMode[] = ['read', 'write', 'readwrite'];
    const operation = fc.oneof(
      fc.constant({ op: 'map' as const }),
      fc.constantFrom(...modes).map((mode) => ({ op: 'begin' as const, mode })),
      fc.option(fc.constantFrom(...modes), { nil: undefined }).map((mode) => ({ op: 'end' as const, mode })),
      fc.string({ maxLength: 40 }).map((name) => ({ op: 'name' as const, name })),
      fc.constantFrom(...modes).map((mode) => ({ op: 'export' as const, mode })),
      fc.constant({ op: 'fence' as const }),
      fc.constant({ op: 'wait' as const }),
      fc.constant({ op: 'close' as const }),
      fc.constant({ op: 'detach' as const }),
    );
    const knownCodes = new Set(['EBADF', 'ERR_DMABUF_FENCES_PENDING', 'ERR_DMABUF_ACCESS_BEGUN', 'ERR_DMABUF_ACCESS_NOT_BEGUN', 'ERR_DMABUF_ACCESS_MISMATCH', 'ERR_OUT_OF_RANGE', 'ETIME', 'ECANCELED']);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 8 }), fc.array(operation, { maxLength: 25 }), async (pages, operations) => {
        const timeline = SwSyncTimeline.open();
        const buffer = udmabuf.create(pages * pageSize);
        const views: Buffer[] = [];
        const detached: number[] = [];
        const waits: Promise<unknown>[] = [];
        try {
          for (const step of operations) {
            try {
              switch (step.op) {
                case 'map': views.push(buffer.map()); break;
                case 'begin': buffer.beginCpuAccess(step.mode); break;
                case 'end': buffer.endCpuAccess(step.mode); break;
                case 'name': buffer.name = step.name; break;
                case 'export': buffer.exportSyncFile(step.mode).close(); break;
                case 'fence': {
                  using fence = timeline.createFence(timeline.value + 1);
                  buffer.importSyncFile(fence, 'write');
                  break;
                }
                case 'wait': waits.push(buffer.waitIdle({ timeoutMs: 5 }).catch((error: KernelError) => assert.ok(knownCodes.has(error.code), error.message))); break;
                case 'close': buffer.close(); break;
                case 'detach': detached.push(buffer.detach()); break;
              }
            } catch (error) {
              const code = (error as KernelError).code;
              assert.ok(knownCodes.has(code) || error instanceof RangeError, `${step.op}: ${(error as Error).message}`);
            }
          }
        } finally {
          buffer.close();
          timeline.close();
          for (const fd of detached) DmaBuf.fromFd(fd).close();
        }
        await Promise.all(waits);
        for (const view of views) assert.equal(view.length, 0, 'every view of a closed buffer is empty');
      }),
      runs,
    );
    assertNothingLeaked(fds, maps);
  });

  it('a memfd read agrees with the mapping for random writes through either', () => {
    using buffer = udmabuf.create(8 * pageSize, { keepMemfd: true });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 8 * pageSize - 8 }), fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.boolean(), (offset, bytes, viaMemfd) => {
        if (viaMemfd) writeSync(buffer.memfd!.fd, bytes, 0, bytes.length, offset);
        else buffer.withCpuAccess('write', (view) => view.set(bytes, offset));
        const back = Buffer.alloc(bytes.length);
        readSync(buffer.memfd!.fd, back, 0, bytes.length, offset);
        assert.deepEqual([...back], [...bytes]);
        buffer.withCpuAccess('read', (view) => assert.deepEqual([...view.subarray(offset, offset + bytes.length)], [...bytes]));
      }),
      runs,
    );
  });
});
