import assert from 'node:assert/strict';
import * as policy from '../../../lib/policy';

const { ReservationObject, FenceTimeline, fenceUsages } = policy;

// drivers/dma-buf/st-dma-resv.c, ported: each subtest runs for every usage.
describe('policy: reservation objects (the kernel selftest st-dma-resv, ported)', () => {
  const timeline = () => new FenceTimeline();

  it('sanitycheck: a fence signals; a reservation object locks and unlocks', async () => {
    const fence = timeline().next();
    assert.equal(fence.signal(), true);
    const resv = new ReservationObject();
    await resv.lock();
    assert.equal(resv.locked, true);
    resv.unlock();
    assert.equal(resv.locked, false);
  });

  for (const usage of fenceUsages) {
    it(`test_signaling (${usage}): unsignalled until the fence signals`, async () => {
      const resv = new ReservationObject();
      const fence = timeline().next();
      await resv.lock();
      resv.reserveFences(1);
      resv.addFence(fence, usage);
      assert.equal(resv.testSignaled(usage), false, 'unexpectedly signalled');
      fence.signal();
      assert.equal(resv.testSignaled(usage), true, 'not reporting signalled');
      resv.unlock();
    });

    it(`test_for_each and test_get_fences (${usage}): exactly the fence added, with its usage`, async () => {
      const resv = new ReservationObject();
      const fence = timeline().next();
      await resv.lock();
      resv.reserveFences(1);
      resv.addFence(fence, usage);
      assert.deepEqual(resv.entries().map((entry) => [entry.fence, entry.usage]), [[fence, usage]]);
      resv.unlock();
      // for_each_unlocked and get_fences read without the lock.
      assert.deepEqual(resv.fences(usage), [fence]);
      fence.signal();
    });

    it(`usages are ordered (${usage}): a query sees its usage and those before it`, async () => {
      const resv = new ReservationObject();
      const fence = timeline().next();
      await resv.lock();
      resv.reserveFences(1);
      resv.addFence(fence, usage);
      resv.unlock();
      const rank = fenceUsages.indexOf(usage);
      for (const [index, query] of fenceUsages.entries()) assert.equal(resv.fences(query).length, index >= rank ? 1 : 0, `query ${query}`);
    });
  }

  it('adding without a reserved slot is a rule error; slots do not outlive the lock', async () => {
    const resv = new ReservationObject();
    await resv.lock();
    assert.throws(() => resv.addFence(timeline().next(), 'write'), { code: 'ERR_DMABUF_POLICY_RULE', message: /reserveFences/ });
    resv.reserveFences(1);
    resv.unlock();
    await resv.lock();
    assert.throws(() => resv.addFence(timeline().next(), 'write'), { code: 'ERR_DMABUF_POLICY_RULE' });
    resv.unlock();
    assert.throws(() => resv.reserveFences(1), { code: 'ERR_DMABUF_POLICY_RULE', message: /must be held/ });
  });

  it('a later fence of the same context replaces the earlier one; a signalled fence gives up its slot', async () => {
    const resv = new ReservationObject();
    const line = timeline();
    const first = line.next();
    const second = line.next();
    await resv.lock();
    resv.reserveFences(1);
    resv.addFence(first, 'write');
    resv.addFence(second, 'write'); // no slot needed
    assert.deepEqual(resv.fences('bookkeep'), [second]);
    second.signal();
    const other = timeline().next();
    resv.addFence(other, 'read');
    assert.deepEqual(resv.fences('bookkeep'), [other]);
    resv.unlock();
  });

  it('wait resolves when the fences of a usage signal, times out with ETIME, and aborts', async () => {
    const resv = new ReservationObject();
    const write = timeline().next();
    const read = timeline().next();
    await resv.lock();
    resv.reserveFences(2);
    resv.addFence(write, 'write');
    resv.addFence(read, 'read');
    resv.unlock();
    await assert.rejects(resv.wait('write', { timeoutMs: 10 }), { code: 'ETIME', syscall: 'dma_resv_wait_timeout' });
    const controller = new AbortController();
    const aborted = resv.wait('read', { signal: controller.signal });
    controller.abort(new Error('stop'));
    await assert.rejects(aborted, /stop/);
    write.signal();
    await resv.wait('write');
    assert.equal(resv.testSignaled('read'), false);
    read.signal(-5);
    await resv.wait('bookkeep');
    assert.equal(resv.fences('read')[1]!.error, -5);
  });
});
