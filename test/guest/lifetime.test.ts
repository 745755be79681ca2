import assert from 'node:assert/strict';
import { DmaBuf, Memfd, SwSyncTimeline, heap, udmabuf, type KernelError } from '../../lib';
import { dmaBufMappingCount, expectNoLeak, openFdCount, pageSize, requireVm } from './helpers';

declare const gc: (() => void) | undefined;

async function collectGarbage(): Promise<void> {
  assert.ok(typeof gc === 'function', 'the guest suite runs with --expose-gc');
  for (let round = 0; round < 4; round += 1) {
    gc!();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('ownership and lifetime', () => {
  requireVm();

  it('close() unmaps: every view drops to length 0 and the mapping is gone', () => {
    const maps = dmaBufMappingCount();
    const buffer = udmabuf.create(4 * pageSize);
    const view = buffer.map();
    const slice = view.subarray(pageSize, 2 * pageSize);
    view.fill(7);
    assert.equal(dmaBufMappingCount(), maps + 1);
    buffer.close();
    assert.equal(view.length, 0);
    assert.equal(slice.length, 0);
    assert.equal(view[0], undefined, 'reading a detached view touches no memory');
    assert.equal(dmaBufMappingCount(), maps);
  });

  it('map() hands out views of one mapping', () => {
    using buffer = udmabuf.create(pageSize);
    const maps = dmaBufMappingCount();
    const first = buffer.map();
    const second = buffer.map();
    assert.equal(first.buffer, second.buffer);
    assert.equal(dmaBufMappingCount(), maps + 1);
  });

  it('close() twice is harmless; any other use after close throws EBADF', () => {
    const buffer = udmabuf.create(pageSize);
    buffer.close();
    buffer.close();
    for (const use of [() => buffer.fd, () => buffer.map(), () => buffer.info(), () => buffer.beginCpuAccess('read'), () => buffer.exportSyncFile('read'), () => (buffer.name = 'x')]) {
      assert.throws(use, (error: KernelError) => error.code === 'EBADF');
    }
    return assert.rejects(buffer.waitIdle(), (error: KernelError) => error.code === 'EBADF');
  });

  it('Symbol.dispose closes, with `using`: one fd more inside the block, none after, and the number is closed', () => {
    const fds = openFdCount();
    let fd: number;
    let inside: number;
    {
      using buffer = udmabuf.create(pageSize);
      fd = buffer.fd;
      inside = openFdCount();
    }
    assert.equal(inside, fds + 1, 'the buffer\'s fd (udmabuf.create closes its device and memfd)');
    assert.equal(openFdCount(), fds);
    assert.throws(() => DmaBuf.fromFd(fd), (error: KernelError) => error.code === 'EBADF' && error.syscall === 'fstatfs');
  });

  it('detach() hands the fd over and unmaps; the buffer lives on in the fd', () => {
    const buffer = udmabuf.create(pageSize);
    buffer.map().write('kept');
    const view = buffer.map();
    const fd = buffer.detach();
    assert.equal(view.length, 0);
    assert.ok(buffer.closed);
    using again = DmaBuf.fromFd(fd);
    again.withCpuAccess('read', (mapped) => assert.equal(mapped.toString('utf8', 0, 4), 'kept'));
  });

  it('a view that outlives its DmaBuf object keeps its mapping; collection releases both', async () => {
    const maps = dmaBufMappingCount();
    const fds = openFdCount();
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      let view: Buffer | undefined = (() => {
        const leaked = udmabuf.create(pageSize);
        const mapped = leaked.map();
        mapped.write('still here');
        return mapped;
      })();
      await collectGarbage();
      assert.equal(view.toString('utf8', 0, 10), 'still here', 'the mapping lives while a view does');
      assert.ok(warnings.some((warning) => (warning as Error & { code?: string }).code === 'DMABUF_LEAKED_HANDLE'), 'the leak is reported');
      assert.equal(openFdCount(), fds, 'the leaked fd was closed');
      view = undefined;
      await collectGarbage();
      assert.equal(dmaBufMappingCount(), maps, 'the mapping went with the last view');
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('fromFd refuses what is not a dma-buf, and closes nothing it does not own', () => {
    using memfd = Memfd.create(pageSize);
    const fds = openFdCount();
    assert.throws(() => DmaBuf.fromFd(memfd.fd, { dup: true }), (error: Error & { code?: string }) => error.code === 'ERR_DMABUF_NOT_A_DMABUF');
    assert.throws(() => DmaBuf.fromFd(memfd.fd), (error: Error & { code?: string }) => error.code === 'ERR_DMABUF_NOT_A_DMABUF');
    assert.equal(openFdCount(), fds);
    assert.equal(memfd.seals & 2, 2, 'the memfd is still open and ours');
  });

  it('error paths leak nothing: failed creates, allocations, syncs and waits, each failing as the kernel said', async () => {
    const kernel = (code: string, syscall: string) => (error: KernelError) => {
      assert.deepEqual([error.code, error.syscall], [code, syscall], error.message);
      return true;
    };
    await expectNoLeak(async () => {
      for (let round = 0; round < 20; round += 1) {
        // Beyond size_limit_mb (64 MiB on the VM's kernel).
        assert.throws(() => udmabuf.create(128 * 1024 * 1024), kernel('EINVAL', 'ioctl(UDMABUF_CREATE)'));
        // fd 0 is not a memfd.
        assert.throws(() => udmabuf.fromMemfd({ memfd: 0, offset: 0, size: pageSize }), kernel('EBADFD', 'ioctl(UDMABUF_CREATE)'));
        assert.throws(() => heap.allocate('system', pageSize, { heapFlags: 1 }), kernel('EINVAL', 'ioctl(DMA_HEAP_IOCTL_ALLOC)'));
        assert.throws(() => heap.allocate('nonexistent', pageSize), kernel('ENOENT', 'open'));
        using buffer = udmabuf.create(pageSize);
        assert.throws(() => buffer.syncRaw(0xff), kernel('EINVAL', 'ioctl(DMA_BUF_IOCTL_SYNC)'));
        const signal = AbortSignal.abort();
        await assert.rejects(buffer.waitIdle({ signal }), (error: Error) => error === signal.reason && error.name === 'AbortError');
      }
    });
  });

  it('a closed timeline refuses use; its fences stay usable', async () => {
    const timeline = SwSyncTimeline.open();
    const fence = timeline.createFence(1);
    timeline.close();
    assert.throws(() => timeline.advance(), (error: KernelError) => error.code === 'EBADF');
    await assert.rejects(fence.wait(), (error: KernelError) => error.code === 'ENOENT');
    fence.close();
  });
});

describe('CPU access bracketing', () => {
  requireVm();

  it('pairs END with the mode of START', () => {
    using buffer = udmabuf.create(pageSize);
    buffer.beginCpuAccess('write');
    assert.equal(buffer.cpuAccess, 'write');
    assert.throws(() => buffer.beginCpuAccess('read'), { code: 'ERR_DMABUF_ACCESS_BEGUN' });
    assert.throws(() => buffer.endCpuAccess('read'), { code: 'ERR_DMABUF_ACCESS_MISMATCH' });
    buffer.endCpuAccess();
    assert.equal(buffer.cpuAccess, undefined);
    assert.throws(() => buffer.endCpuAccess('write'), { code: 'ERR_DMABUF_ACCESS_NOT_BEGUN' });
  });

  it('withCpuAccess ends what it began when the callback throws', () => {
    using buffer = udmabuf.create(pageSize);
    assert.throws(() => buffer.withCpuAccess('write', () => {
      throw new Error('boom');
    }), /boom/);
    assert.equal(buffer.cpuAccess, undefined);
  });

  it('withCpuAccess ends what it began when the promise rejects, and not before', async () => {
    using buffer = udmabuf.create(pageSize);
    let release!: () => void;
    const pending = buffer.withCpuAccess('readwrite', () => new Promise<void>((_resolve, reject) => {
      release = () => reject(new Error('later'));
    }));
    assert.equal(buffer.cpuAccess, 'readwrite', 'still inside the access');
    release();
    await assert.rejects(pending, /later/);
    assert.equal(buffer.cpuAccess, undefined);
  });

  it('the kernel refuses sync flags without a direction, or unknown ones (EINVAL)', () => {
    using buffer = udmabuf.create(pageSize);
    for (const flags of [0, 4, 8, 0xff]) {
      assert.throws(() => buffer.syncRaw(flags), (error: KernelError) => error.code === 'EINVAL' && error.errno === -22 && error.syscall === 'ioctl(DMA_BUF_IOCTL_SYNC)');
    }
  });
});
