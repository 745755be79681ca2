import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, readdirSync, readlinkSync, readSync, writeSync, writeFileSync } from 'node:fs';
import { DmaBuf, Memfd, udmabuf, type KernelError } from '../../lib';
import { native } from '../../lib/native';
import { dmaBufVmFlags, expectNoLeak, pageSize, requireVm } from './helpers';

/** This process's open fds that are memfds, by /proc/self/fd link ("/memfd:<name> (deleted)"). */
function memfdFds(name: string): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(`/memfd:${name} `)) count += 1;
    } catch {
      // closed while we looked (the readdir's own fd)
    }
  }
  return count;
}

function kernelErrorWith(code: string, syscall: string) {
  return (error: unknown) => {
    const failure = error as KernelError;
    assert.equal(failure.code, code, failure.message);
    assert.equal(failure.syscall, syscall);
    assert.equal(typeof failure.errno, 'number');
    assert.ok(failure.errno < 0);
    return true;
  };
}

describe('udmabuf', () => {
  requireVm();

  it('makes a close-on-exec dma-buf of the asked size, exported by udmabuf', () => {
    using buffer = udmabuf.create(16 * pageSize, { name: 'frame-0' });
    assert.equal(buffer.size, 16 * pageSize);
    const info = buffer.info();
    assert.equal(info.exporter, 'udmabuf');
    assert.equal(info.size, 16 * pageSize);
    assert.equal(info.name, 'frame-0');
    assert.equal(info.count, 1);
    assert.equal(info.mode, 'rw');
    assert.equal(info.inode, buffer.inode);
    assert.equal(native().fdFlags(buffer.fd) & 1, 1, 'FD_CLOEXEC');
  });

  it('moves bytes: written through one mapping, read through a second mapping of a second fd', () => {
    using first = udmabuf.create(8 * pageSize);
    using second = DmaBuf.fromFd(first.fd, { dup: true });
    assert.notEqual(second.fd, first.fd);
    assert.equal(second.inode, first.inode);
    const pattern = Buffer.alloc(first.size);
    for (let index = 0; index < pattern.length; index += 1) pattern[index] = (index * 7 + 3) & 0xff;
    first.withCpuAccess('write', (view) => pattern.copy(view));
    second.withCpuAccess('read', (view) => {
      assert.ok(view.buffer !== first.map().buffer, 'a separate mapping');
      assert.ok(view.equals(pattern));
    });
  });

  it('shares its pages with the memfd behind it, both ways', () => {
    using buffer = udmabuf.create(4 * pageSize, { keepMemfd: true });
    const memfd = buffer.memfd!;
    buffer.withCpuAccess('write', (view) => view.write('through the dma-buf', 100));
    const readBack = Buffer.alloc(19);
    readSync(memfd.fd, readBack, 0, 19, 100);
    assert.equal(readBack.toString(), 'through the dma-buf');
    writeSync(memfd.fd, Buffer.from('through the memfd'), 0, 17, 3 * pageSize);
    buffer.withCpuAccess('read', (view) => assert.equal(view.toString('utf8', 3 * pageSize, 3 * pageSize + 17), 'through the memfd'));
  });

  it('joins ranges of several memfds, in order (UDMABUF_CREATE_LIST)', () => {
    using a = Memfd.create(4 * pageSize);
    using b = Memfd.create(2 * pageSize);
    writeSync(a.fd, Buffer.alloc(pageSize, 0xaa), 0, pageSize, 2 * pageSize);
    writeSync(b.fd, Buffer.alloc(pageSize, 0xbb), 0, pageSize, 0);
    using joined = udmabuf.fromMemfd([
      { memfd: a, offset: 2 * pageSize, size: pageSize },
      { memfd: b.fd, offset: 0, size: 2 * pageSize },
    ]);
    assert.equal(joined.size, 3 * pageSize);
    joined.withCpuAccess('read', (view) => {
      assert.ok(view.subarray(0, pageSize).every((byte) => byte === 0xaa));
      assert.ok(view.subarray(pageSize, 2 * pageSize).every((byte) => byte === 0xbb));
      assert.ok(view.subarray(2 * pageSize).every((byte) => byte === 0));
    });
  });

  // Linux 6.1's udmabuf corrupts page state if a memfd's inode goes while its
  // pages are mapped through the udmabuf (test/runner/kernel-behaviour.test.ts
  // shows the kernel's BUG): there each mapping the library makes holds
  // duplicates of the memfds still open, and closes them at unmap. A kernel
  // whose udmabuf maps page frames (VmFlags `pf`, 6.12 and later) needs none.
  describe('mappings hold the memfds behind them exactly where the kernel maps struct pages', () => {
    let pageFrames: boolean;
    before(() => {
      using probe = udmabuf.create(pageSize);
      probe.map();
      pageFrames = dmaBufVmFlags(probe.inode).includes('pf');
    });

    it('udmabuf.mapsPageFrames agrees with the VmFlags of a real mapping, and refuses a buffer of another exporter', () => {
      using buffer = udmabuf.create(pageSize);
      assert.equal(udmabuf.mapsPageFrames(buffer), pageFrames);
      assert.throws(() => udmabuf.mapsPageFrames({} as DmaBuf), TypeError);
    });

    it('a fromMemfd buffer\'s mapping holds one duplicate of each memfd unless the kernel maps page frames; closing the memfds while mapped leaves the bytes writable and readable', () => {
      const held = pageFrames ? 0 : 1;
      const a = Memfd.create(2 * pageSize, { name: 'held-a' });
      const b = Memfd.create(pageSize, { name: 'held-b' });
      using joined = udmabuf.fromMemfd([
        { memfd: a, offset: 0, size: 2 * pageSize },
        { memfd: b, offset: 0, size: pageSize },
      ]);
      assert.deepEqual([memfdFds('held-a'), memfdFds('held-b')], [1, 1], 'the caller\'s own');
      const view = joined.map();
      assert.deepEqual([memfdFds('held-a'), memfdFds('held-b')], [1 + held, 1 + held], 'the mapping\'s duplicates, where it needs them');
      view.fill(1);
      a.close();
      b.close();
      assert.deepEqual([memfdFds('held-a'), memfdFds('held-b')], [held, held], 'the mapping\'s, after the caller closed theirs');
      view.fill(2, pageSize);
      assert.deepEqual([view[0], view[2 * pageSize]], [1, 2]);
      joined.close();
      assert.deepEqual([memfdFds('held-a'), memfdFds('held-b')], [0, 0], 'unmapping closed them');
    });

    it('a fromFd wrapper\'s mapping of a keepMemfd buffer holds the memfd too unless the kernel maps page frames: the original can close while it is mapped', () => {
      const held = pageFrames ? 0 : 1;
      const original = udmabuf.create(4 * pageSize, { keepMemfd: true, name: 'wrapped' });
      using wrapper = DmaBuf.fromFd(original.fd, { dup: true });
      assert.equal(memfdFds('udmabuf:wrapped'), 1);
      const view = wrapper.map();
      assert.equal(memfdFds('udmabuf:wrapped'), 1 + held, 'where needed, the wrapper\'s mapping found the memfd by the buffer\'s inode');
      view.fill(3);
      original.close();
      assert.equal(memfdFds('udmabuf:wrapped'), held, 'held by the wrapper\'s mapping alone, where needed');
      view.fill(4, pageSize);
      assert.deepEqual([view[0], view[pageSize]], [3, 4]);
      wrapper.close();
      assert.equal(memfdFds('udmabuf:wrapped'), 0);
    });

    it('a buffer made without a memfd left open (udmabuf.create\'s default) is mapped with nothing held', () => {
      using buffer = udmabuf.create(pageSize, { name: 'no-memfd' });
      using wrapper = DmaBuf.fromFd(buffer.fd, { dup: true });
      buffer.map().fill(5);
      assert.equal(wrapper.map()[0], 5);
      assert.equal(memfdFds('udmabuf:no-memfd'), 0);
    });
  });

  // tools/testing/selftests/drivers/dma-buf/udmabuf.c, case by case, with the errno the kernel gives.
  describe('the kernel selftest cases', () => {
    let memfd: Memfd;
    beforeEach(() => {
      memfd = Memfd.create(4 * pageSize);
    });
    afterEach(() => memfd.close());

    it('test-1: an offset that is not page-aligned is EINVAL', () => {
      assert.throws(() => udmabuf.fromMemfd({ memfd, offset: pageSize / 2, size: pageSize }), kernelErrorWith('EINVAL', 'ioctl(UDMABUF_CREATE)'));
    });

    it('test-2: a size that is not a page multiple is EINVAL', () => {
      assert.throws(() => udmabuf.fromMemfd({ memfd, offset: 0, size: pageSize / 2 }), kernelErrorWith('EINVAL', 'ioctl(UDMABUF_CREATE)'));
    });

    it('test-3: an fd that is not a memfd (stdin) is EBADFD', () => {
      assert.throws(() => udmabuf.fromMemfd({ memfd: 0, offset: 0, size: 4 * pageSize }), kernelErrorWith('EBADFD', 'ioctl(UDMABUF_CREATE)'));
    });

    it('test-4: a sealed memfd, page-aligned, works', () => {
      using buffer = udmabuf.fromMemfd({ memfd, offset: 0, size: 4 * pageSize });
      assert.equal(buffer.size, 4 * pageSize);
    });
  });

  describe('seals and limits', () => {
    it('refuses a memfd without F_SEAL_SHRINK (EINVAL)', () => {
      const fd = native().memfdCreate('unsealed', native().constants.MFD_ALLOW_SEALING);
      try {
        ftruncateSync(fd, pageSize);
        assert.throws(() => udmabuf.fromMemfd({ memfd: fd, offset: 0, size: pageSize }), kernelErrorWith('EINVAL', 'ioctl(UDMABUF_CREATE)'));
      } finally {
        closeSync(fd);
      }
    });

    for (const name of ['F_SEAL_WRITE', 'F_SEAL_FUTURE_WRITE'] as const) {
      it(`refuses a memfd sealed with ${name} (EINVAL)`, () => {
        const { F_SEAL_SHRINK, [name]: seal } = native().constants;
        using memfd = Memfd.create(pageSize);
        memfd.addSeals(seal);
        assert.equal(memfd.seals & (F_SEAL_SHRINK | seal), F_SEAL_SHRINK | seal);
        assert.throws(() => udmabuf.fromMemfd({ memfd, offset: 0, size: pageSize }), kernelErrorWith('EINVAL', 'ioctl(UDMABUF_CREATE)'));
      });
    }

    it('refuses a range past the end of the memfd (EINVAL)', () => {
      using memfd = Memfd.create(pageSize);
      assert.throws(() => udmabuf.fromMemfd({ memfd, offset: pageSize, size: pageSize }), kernelErrorWith('EINVAL', 'ioctl(UDMABUF_CREATE)'));
    });

    it('refuses more than size_limit_mb, and says so with the limit', () => {
      const { sizeLimitMiB } = udmabuf.limits();
      assert.equal(sizeLimitMiB, 64);
      const size = (sizeLimitMiB! + 1) * 1024 * 1024;
      assert.throws(() => udmabuf.create(size), (error: KernelError) => {
        assert.equal(error.code, 'EINVAL');
        assert.match(error.message, /size_limit_mb \(64 MiB\)/);
        return true;
      });
    });

    it('refuses more segments than list_limit (EINVAL on Linux 6.1), and says so with the limit', () => {
      const { listLimit } = udmabuf.limits();
      using memfd = Memfd.create(pageSize);
      const segments = Array.from({ length: listLimit! + 1 }, () => ({ memfd, offset: 0, size: pageSize }));
      assert.throws(() => udmabuf.fromMemfd(segments), (error: KernelError) => {
        assert.equal(error.code, 'EINVAL');
        assert.equal(error.syscall, 'ioctl(UDMABUF_CREATE_LIST)');
        assert.match(error.message, /list_limit \(1024/);
        return true;
      });
    });

    it('accepts list_limit segments of one page each', () => {
      const { listLimit } = udmabuf.limits();
      using memfd = Memfd.create(pageSize);
      using buffer = udmabuf.fromMemfd(Array.from({ length: listLimit! }, () => ({ memfd, offset: 0, size: pageSize })));
      assert.equal(buffer.size, listLimit! * pageSize);
    });
  });

  describe('huge pages', () => {
    const hugePage = 2 * 1024 * 1024;

    it('says to reserve huge pages when none are', () => {
      writeFileSync('/proc/sys/vm/nr_hugepages', '0');
      assert.throws(() => udmabuf.create(hugePage, { hugetlb: true }), (error: KernelError) => {
        assert.equal(error.syscall, 'fallocate');
        assert.match(error.message, /nr_hugepages/);
        return true;
      });
    });

    it('backs a buffer with reserved huge pages; the bytes move through the memfd', async () => {
      writeFileSync('/proc/sys/vm/nr_hugepages', '2');
      await expectNoLeak(() => {
        using buffer = udmabuf.create(hugePage, { hugetlb: true, keepMemfd: true });
        assert.equal(buffer.hugetlb, true);
        assert.equal(buffer.size, hugePage);
        // hugetlbfs has no write(2): the memfd's own mapping is the way in.
        assert.throws(() => writeSync(buffer.memfd!.fd, Buffer.alloc(1), 0, 1, 0), { code: 'EINVAL' });
        buffer.memfd!.map().fill(0x5a, hugePage - 10);
        const tail = Buffer.alloc(10);
        readSync(buffer.memfd!.fd, tail, 0, 10, hugePage - 10);
        assert.ok(tail.every((byte) => byte === 0x5a));
      });
      // Freeing the huge pages is where a corrupted page state would be reported.
      writeFileSync('/proc/sys/vm/nr_hugepages', '0');
    });

    // Faulting a hugetlb udmabuf in corrupts page state where udmabuf maps
    // struct pages (6.1, test/runner/kernel-behaviour.test.ts); the library
    // refuses exactly there, told by the VmFlags of a mapping.
    it('maps it where the kernel maps page frames, and refuses a CPU mapping where it maps struct pages, through any DmaBuf of it in this process', () => {
      writeFileSync('/proc/sys/vm/nr_hugepages', '1');
      {
        using probe = udmabuf.create(pageSize);
        probe.map();
        const pageFrames = dmaBufVmFlags(probe.inode).includes('pf');
        using buffer = udmabuf.create(hugePage, { hugetlb: true, keepMemfd: true });
        using wrapper = DmaBuf.fromFd(buffer.fd, { dup: true });
        if (pageFrames) {
          buffer.map().fill(0x77, hugePage - 4);
          assert.deepEqual([...buffer.memfd!.map().subarray(hugePage - 5)], [0, 0x77, 0x77, 0x77, 0x77], 'written through the udmabuf, read through the memfd');
          assert.equal(wrapper.map()[hugePage - 1], 0x77);
          buffer.withCpuAccess('read', (view) => assert.equal(view[hugePage - 1], 0x77));
        } else {
          assert.throws(() => buffer.map(), { code: 'ERR_DMABUF_UNSAFE_MAPPING' });
          assert.throws(() => buffer.withCpuAccess('read', () => undefined), { code: 'ERR_DMABUF_UNSAFE_MAPPING' });
          assert.throws(() => wrapper.map(), { code: 'ERR_DMABUF_UNSAFE_MAPPING' });
        }
      }
      // Freeing the huge page is where a corrupted page state would be reported.
      writeFileSync('/proc/sys/vm/nr_hugepages', '0');
    });

    it('wants sizes in whole huge pages', () => {
      assert.throws(() => udmabuf.create(pageSize, { hugetlb: true }), RangeError);
    });
  });
});
