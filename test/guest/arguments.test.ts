import assert from 'node:assert/strict';
import { totalmem } from 'node:os';
import { DmaBuf, SwSyncTimeline, SyncFile, heap, udmabuf } from '../../lib';
import { pageSize, requireVm } from './helpers';

// Each bad argument is refused before any syscall, as a TypeError (wrong type)
// or a RangeError (wrong value), and the process lives on.
describe('argument checking', () => {
  requireVm();

  const typeErrors: [string, () => unknown][] = [
    ['udmabuf.create("4096")', () => udmabuf.create('4096' as unknown as number)],
    ['udmabuf.create(4096, { name: 7 })', () => udmabuf.create(pageSize, { name: 7 as unknown as string })],
    ['udmabuf.create(4096, { hugetlb: "yes" })', () => udmabuf.create(pageSize, { hugetlb: 'yes' as unknown as boolean })],
    ['udmabuf.create(4096, null)', () => udmabuf.create(pageSize, null as unknown as undefined)],
    ['udmabuf.fromMemfd(null)', () => udmabuf.fromMemfd(null as never)],
    ['udmabuf.fromMemfd([{ memfd: "3" }])', () => udmabuf.fromMemfd([{ memfd: '3' as unknown as number, offset: 0, size: pageSize }])],
    ['heap.allocate(1, 4096)', () => heap.allocate(1 as unknown as string, pageSize)],
    ['DmaBuf.fromFd("3")', () => DmaBuf.fromFd('3' as unknown as number)],
    ['DmaBuf.fromFd(3, { dup: 1 })', () => DmaBuf.fromFd(3, { dup: 1 as unknown as boolean })],
    ['SyncFile.merge("x", {}, {})', () => SyncFile.merge('x', {} as SyncFile, {} as SyncFile)],
  ];
  for (const [call, fn] of typeErrors) it(`${call} is a TypeError`, () => assert.throws(fn, TypeError));

  const rangeErrors: [string, () => unknown][] = [
    ['udmabuf.create(0)', () => udmabuf.create(0)],
    ['udmabuf.create(-4096)', () => udmabuf.create(-pageSize)],
    ['udmabuf.create(4095)', () => udmabuf.create(pageSize - 1)],
    ['udmabuf.create(1.5)', () => udmabuf.create(1.5)],
    ['udmabuf.create(2 ** 53)', () => udmabuf.create(2 ** 53)],
    ['udmabuf.create(NaN)', () => udmabuf.create(Number.NaN)],
    ['udmabuf.create(4096, { name: 32 bytes })', () => udmabuf.create(pageSize, { name: 'x'.repeat(32) })],
    ['udmabuf.create(4096, { name: with NUL })', () => udmabuf.create(pageSize, { name: 'a\0b' })],
    ['udmabuf.fromMemfd([])', () => udmabuf.fromMemfd([])],
    ['udmabuf.fromMemfd({ memfd: -1 })', () => udmabuf.fromMemfd({ memfd: -1, offset: 0, size: pageSize })],
    ['udmabuf.fromMemfd({ offset: -1 })', () => udmabuf.fromMemfd({ memfd: 0, offset: -1, size: pageSize })],
    ['heap.allocate("../udmabuf", 4096)', () => heap.allocate('../udmabuf', pageSize)],
    ['heap.allocate("system", 0)', () => heap.allocate('system', 0)],
    ['heap.allocate("system", more than MemTotal)', () => heap.allocate('system', totalmem() + pageSize)],
    ['DmaBuf.fromFd(-1)', () => DmaBuf.fromFd(-1)],
    ['DmaBuf.fromFd(2 ** 31)', () => DmaBuf.fromFd(2 ** 31)],
  ];
  for (const [call, fn] of rangeErrors) it(`${call} is a RangeError`, () => assert.throws(fn, RangeError));

  it('methods check their arguments too', async () => {
    using buffer = udmabuf.create(pageSize);
    assert.throws(() => buffer.beginCpuAccess('rw' as never), RangeError);
    assert.throws(() => buffer.beginCpuAccess(1 as never), TypeError);
    assert.throws(() => (buffer.name = 'n'.repeat(32)), RangeError);
    assert.throws(() => (buffer.name = 5 as unknown as string), TypeError);
    assert.throws(() => buffer.exportSyncFile('both' as never), RangeError);
    assert.throws(() => buffer.importSyncFile(3 as unknown as SyncFile, 'write'), TypeError);
    assert.throws(() => buffer.withCpuAccess('read', 'fn' as never), TypeError);
    assert.throws(() => buffer.syncRaw(-1), RangeError);
    await assert.rejects(buffer.waitIdle({ timeoutMs: -1 }), RangeError);
    // A timer fires after 1 ms for anything past 2^31-1 ms: such a wait would end at once, not never.
    await assert.rejects(buffer.waitIdle({ timeoutMs: 2 ** 31 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    await assert.rejects(buffer.waitIdle({ mode: 'all' as never }), RangeError);
    await assert.rejects(buffer.waitIdle({ signal: {} as AbortSignal }), TypeError);
    using timeline = SwSyncTimeline.open();
    assert.throws(() => timeline.createFence(2 ** 32), RangeError);
    assert.throws(() => timeline.createFence(1, 'x'.repeat(32)), RangeError);
    assert.throws(() => timeline.advance(-1), RangeError);
    using fence = timeline.createFence(1);
    await assert.rejects(fence.wait({ timeoutMs: 2 ** 31 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  });

  it('the name limit is the kernel\'s: 31 bytes fit', () => {
    using buffer = udmabuf.create(pageSize);
    buffer.name = 'é'.repeat(15) + 'x';
    assert.equal(buffer.name, 'é'.repeat(15) + 'x');
  });
});
