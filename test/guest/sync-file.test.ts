import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SwSyncTimeline, SyncFile, udmabuf, type KernelError } from '../../lib';
import { expectNoLeak, pageSize, requireVm, settledWithin } from './helpers';

describe('fences: sync_file, sw_sync, and a dma-buf\'s reservation', () => {
  requireVm();
  let timeline: SwSyncTimeline;
  beforeEach(() => {
    timeline = SwSyncTimeline.open();
  });
  afterEach(() => timeline.close());

  it('a sw_sync fence is active until its timeline reaches it, then signalled with a timestamp', () => {
    using fence = timeline.createFence(2, 'frame-2');
    const before = fence.info();
    assert.equal(before.status, 'active');
    // Linux ignores the name sw_sync is given: a sync_file's name is derived
    // as <driver>-<timeline><context>-<seqno>, the timeline named for the process.
    assert.match(before.name, /^sw_sync-node\d+-2$/);
    assert.equal(before.fences.length, 1);
    assert.equal(before.fences[0]!.driver, 'sw_sync');
    assert.equal(before.fences[0]!.timeline, 'node');
    assert.equal(before.fences[0]!.timestampNs, 0n);
    timeline.advance(1);
    assert.equal(fence.status, 'active');
    timeline.advance(1);
    const after = fence.info();
    assert.equal(after.status, 'signaled');
    assert.equal(after.statusCode, 1);
    assert.ok(after.fences[0]!.timestampNs > 0n);
  });

  it('wait() resolves when the fence signals, without blocking the event loop', async () => {
    using fence = timeline.createFence(1);
    let ticks = 0;
    const ticker = setInterval(() => (ticks += 1), 10);
    const waiting = fence.wait();
    assert.equal(await settledWithin(waiting, 200), false);
    assert.ok(ticks >= 5, `the event loop ran (${ticks} ticks) while waiting`);
    timeline.advance(1);
    await waiting;
    clearInterval(ticker);
  });

  it('wait() gives up at its timeout with ETIME', async () => {
    using fence = timeline.createFence(1);
    await assert.rejects(fence.wait({ timeoutMs: 50 }), (error: KernelError) => error.code === 'ETIME' && error.syscall === 'poll');
  });

  it('wait() stops on an abort signal with the signal\'s reason', async () => {
    using fence = timeline.createFence(1);
    const controller = new AbortController();
    const waiting = fence.wait({ signal: controller.signal });
    controller.abort();
    await assert.rejects(waiting, { name: 'AbortError' });
  });

  it('close() during wait() rejects the wait with ECANCELED, and the fd is released', async () => {
    await expectNoLeak(async () => {
      const fence = timeline.createFence(1);
      const waiting = fence.wait();
      fence.close();
      await assert.rejects(waiting, (error: KernelError) => error.code === 'ECANCELED');
    });
  });

  it('a fence whose timeline goes away signals with an error, and wait() rejects with it', async () => {
    const doomed = SwSyncTimeline.open();
    using fence = doomed.createFence(1);
    const waiting = fence.wait();
    doomed.close();
    await assert.rejects(waiting, (error: KernelError) => error.code === 'ENOENT' && error.syscall === 'sync_file');
    assert.equal(fence.status, 'error');
    assert.equal(fence.info().statusCode, -2);
  });

  it('merge() holds both fences and signals when both have', async () => {
    const other = SwSyncTimeline.open();
    try {
      using a = timeline.createFence(1, 'a');
      using b = other.createFence(1, 'b');
      using merged = SyncFile.merge('both', a, b);
      const info = merged.info();
      assert.equal(info.name, 'both');
      assert.equal(info.fences.length, 2);
      assert.equal(info.status, 'active');
      timeline.advance(1);
      assert.equal(merged.status, 'active');
      other.advance(1);
      await merged.wait({ timeoutMs: 5000 });
      assert.deepEqual(merged.info().fences.map((fence) => fence.status), ['signaled', 'signaled']);
    } finally {
      other.close();
    }
  });

  it('merge() of two points on one timeline keeps only the later one', () => {
    using early = timeline.createFence(1);
    using late = timeline.createFence(3);
    using merged = SyncFile.merge('one-timeline', early, late);
    assert.equal(merged.info().fences.length, 1);
    timeline.advance(1);
    assert.equal(merged.status, 'active');
    timeline.advance(2);
    assert.equal(merged.status, 'signaled');
  });

  it('SyncFile.fromFd refuses an fd that is not a sync_file with ENOTTY', () => {
    using buffer = udmabuf.create(pageSize);
    assert.throws(() => SyncFile.fromFd(buffer.fd, { dup: true }), (error: KernelError) => error.code === 'ENOTTY' && /is not a sync_file/.test(error.message));
  });

  describe('deadlines (SYNC_IOC_SET_DEADLINE)', () => {
    // Linux 6.12 has the ioctl and sw_sync's SW_SYNC_GET_DEADLINE; 6.1 has neither.
    const [major = 0, minor = 0] = readFileSync('/proc/sys/kernel/osrelease', 'utf8').split(/[.-]/).map(Number);
    const kernelHasDeadlines = major > 6 || (major === 6 && minor >= 12);

    if (kernelHasDeadlines) {
      it('sw_sync stores the exact deadline set, in process.hrtime.bigint()\'s clock, and keeps the earliest of several', () => {
        using fence = timeline.createFence(1);
        assert.equal(timeline.deadlineOf(fence), undefined, 'no deadline before one is set (ENOENT)');
        const deadline = process.hrtime.bigint() + 16_000_000n;
        fence.setDeadline(deadline);
        assert.equal(timeline.deadlineOf(fence), deadline);
        fence.setDeadline(deadline + 1_000_000n);
        assert.equal(timeline.deadlineOf(fence), deadline, 'a later deadline does not replace an earlier one');
        fence.setDeadline(deadline - 1_000_000n);
        assert.equal(timeline.deadlineOf(fence), deadline - 1_000_000n);
      });

      it('setDeadlineIn(ms) sets now + ms on CLOCK_MONOTONIC and returns it', () => {
        using fence = timeline.createFence(1);
        const before = process.hrtime.bigint();
        const deadline = fence.setDeadlineIn(8.5);
        const after = process.hrtime.bigint();
        assert.equal(timeline.deadlineOf(fence), deadline);
        assert.ok(deadline >= before + 8_500_000n && deadline <= after + 8_500_000n, `${deadline} within [${before}, ${after}] + 8.5 ms`);
      });

      it('a deadline on a merged sync_file reaches every fence in it, on both timelines', () => {
        using other = SwSyncTimeline.open();
        using first = timeline.createFence(1);
        using second = other.createFence(1);
        using merged = SyncFile.merge('both', first, second);
        const deadline = process.hrtime.bigint() + 5_000_000n;
        merged.setDeadline(deadline);
        assert.equal(timeline.deadlineOf(first), deadline);
        assert.equal(other.deadlineOf(second), deadline);
      });

      it('a fence already signalled ignores a deadline', () => {
        using fence = timeline.createFence(1);
        timeline.advance(1);
        fence.setDeadline(process.hrtime.bigint());
        assert.equal(timeline.deadlineOf(fence), undefined);
      });
    } else {
      it('setDeadline fails with ENOTTY on this kernel, naming 6.12 as the kernel that has it', () => {
        using fence = timeline.createFence(1);
        assert.throws(() => fence.setDeadline(process.hrtime.bigint()), (error: KernelError) =>
          error.code === 'ENOTTY' && error.syscall === 'ioctl(SYNC_IOC_SET_DEADLINE)' && /Linux 6\.12 has/.test(error.message));
        assert.throws(() => timeline.deadlineOf(fence), (error: KernelError) => error.code === 'ENOTTY' && /6\.12/.test(error.message));
      });
    }

    it('setDeadline refuses what the kernel cannot take: a number, a negative, more than 2^63 - 1 ns', () => {
      using fence = timeline.createFence(1);
      assert.throws(() => fence.setDeadline(1000 as unknown as bigint), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => fence.setDeadline(-1n), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => fence.setDeadline(1n << 63n), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => fence.setDeadlineIn(Number.NaN), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => fence.setDeadlineIn(-1), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    });
  });

  describe('on a dma-buf', () => {
    it('a write fence makes waitIdle() pend until it signals, and exportSyncFile reflects it', async () => {
      using buffer = udmabuf.create(4 * pageSize);
      using fence = timeline.createFence(1, 'gpu-write');
      buffer.importSyncFile(fence, 'write');
      using readerMustWait = buffer.exportSyncFile('read');
      assert.equal(readerMustWait.status, 'active');
      assert.ok(readerMustWait.info().fences.some((item) => item.driver === 'sw_sync'));
      const idle = buffer.waitIdle({ mode: 'read' });
      assert.equal(await settledWithin(idle, 200), false, 'waitIdle pends on the write fence');
      timeline.advance(1);
      await idle;
      assert.equal(readerMustWait.status, 'signaled');
      using writerMustWait = buffer.exportSyncFile('write');
      assert.equal(writerMustWait.status, 'signaled');
    });

    it('a read fence holds back writers only', async () => {
      using buffer = udmabuf.create(4 * pageSize);
      using fence = timeline.createFence(1, 'gpu-read');
      buffer.importSyncFile(fence, 'read');
      await buffer.waitIdle({ mode: 'read', timeoutMs: 5000 });
      using forReaders = buffer.exportSyncFile('read');
      using forWriters = buffer.exportSyncFile('write');
      assert.equal(forReaders.status, 'signaled');
      assert.equal(forWriters.status, 'active');
      const writable = buffer.waitIdle({ mode: 'write' });
      assert.equal(await settledWithin(writable, 200), false);
      timeline.advance(1);
      await writable;
      assert.equal(forWriters.status, 'signaled');
    });

    it('several waits on one buffer share one poll and each gets its answer', async () => {
      using buffer = udmabuf.create(pageSize);
      using write = timeline.createFence(1);
      buffer.importSyncFile(write, 'write');
      const waits = [buffer.waitIdle({ mode: 'read' }), buffer.waitIdle({ mode: 'readwrite' }), buffer.waitIdle({ mode: 'read', timeoutMs: 30 })];
      await assert.rejects(waits[2]!, (error: KernelError) => error.code === 'ETIME');
      timeline.advance(1);
      await Promise.all(waits.slice(0, 2));
    });

    it('an idle buffer is idle at once', async () => {
      using buffer = udmabuf.create(pageSize);
      await buffer.waitIdle({ timeoutMs: 1000 });
    });
  });
});
