import assert from 'node:assert/strict';
import { constants } from 'node:fs';
import { heap, type KernelError } from '../../lib';
import { native } from '../../lib/native';
import { requireVm } from './helpers';

const oneMiB = 1024 * 1024;

describe('dma-heaps', () => {
  requireVm();

  it('lists the heaps under /dev/dma_heap', () => {
    assert.deepEqual(heap.list(), ['system']);
  });

  it('allocates a read-write, close-on-exec buffer exported by the heap', () => {
    using buffer = heap.allocate('system', oneMiB);
    assert.equal(buffer.size, oneMiB);
    const info = buffer.info();
    assert.equal(info.exporter, 'system');
    assert.equal(info.mode, 'rw');
    const { O_ACCMODE, O_CLOEXEC } = native().constants;
    assert.equal(info.flags & O_ACCMODE, constants.O_RDWR);
    // The kernel's two views of close-on-exec: fdinfo's flags show O_CLOEXEC
    // for an fd marked so, and F_GETFD gives FD_CLOEXEC.
    assert.equal(info.flags & O_CLOEXEC, O_CLOEXEC, `fdinfo flags 0${info.flags.toString(8)}`);
    assert.equal(native().fdFlags(buffer.fd), 1 /* FD_CLOEXEC */);
  });

  it('names the heaps there are when asked for one there is not', () => {
    assert.throws(() => heap.allocate('linux,cma', oneMiB), (error: KernelError) => {
      assert.equal(error.code, 'ENOENT');
      assert.equal(error.syscall, 'open');
      assert.match(error.message, /no heap named 'linux,cma'; this system has: system/);
      return true;
    });
  });

  // tools/testing/selftests/dmabuf-heaps/dmabuf-heap.c, through the JavaScript API.
  describe('the kernel selftest cases', () => {
    it('allocation and access: a pattern written between sync start and end reads back', () => {
      using buffer = heap.allocate('system', oneMiB);
      buffer.withCpuAccess('readwrite', (view) => {
        view.fill(1, 0, oneMiB / 2);
        view.fill(0, oneMiB / 2);
      });
      buffer.withCpuAccess('readwrite', (view) => {
        assert.equal(view[0], 1);
        assert.equal(view[oneMiB - 1], 0);
        view.fill(0xff);
      });
      buffer.withCpuAccess('read', (view) => assert.ok(view.every((byte) => byte === 0xff)));
    });

    for (const size of [4 * 1024, oneMiB]) {
      it(`allocated ${size / 1024}k buffers are zeroed, after 32 were filled and freed`, () => {
        for (let round = 0; round < 2; round += 1) {
          const buffers = Array.from({ length: 32 }, () => heap.allocate('system', size));
          try {
            for (const buffer of buffers) {
              buffer.withCpuAccess('readwrite', (view) => {
                if (round === 0) view.fill(0xff);
                else assert.equal(view.findIndex((byte) => byte !== 0), -1, 'the buffer is zeroed');
              });
            }
          } finally {
            for (const buffer of buffers) buffer.close();
          }
        }
      });
    }

    it('invalid heap flags are EINVAL', () => {
      assert.throws(() => heap.allocate('system', oneMiB, { heapFlags: 0x111111 }), (error: KernelError) => error.code === 'EINVAL' && error.syscall === 'ioctl(DMA_HEAP_IOCTL_ALLOC)');
    });

    it('invalid fd flags are EINVAL', () => {
      assert.throws(() => heap.allocate('system', oneMiB, { fdFlags: ~(constants.O_RDWR | native().constants.O_CLOEXEC) }), (error: KernelError) => error.code === 'EINVAL');
    });
  });

  it('a read-only fd cannot be mapped, and says why', () => {
    using buffer = heap.allocate('system', oneMiB, { fdFlags: constants.O_RDONLY });
    assert.equal(buffer.info().mode, 'r');
    assert.throws(() => buffer.map(), (error: KernelError) => {
      assert.equal(error.code, 'EACCES');
      assert.equal(error.syscall, 'mmap');
      assert.match(error.message, /read-only/);
      return true;
    });
  });
});
