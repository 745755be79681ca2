import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as policy from '../../../lib/policy';

const { WwClass, WwMutex, WwAcquireContext, lockAll } = policy;
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('policy: wound/wait mutexes (wait-die, as reservation objects use them)', () => {
  const ww = new WwClass('test_ww_class');

  it('EALREADY when a context locks what it holds', async () => {
    const mutex = new WwMutex(ww);
    const ctx = new WwAcquireContext(ww);
    await mutex.lock(ctx);
    await assert.rejects(mutex.lock(ctx), { code: 'EALREADY' });
    mutex.unlock();
    ctx.fini();
  });

  it('ABBA: the younger context dies with EDEADLK, backs off, takes the contended lock with lockSlow, and both finish', async () => {
    const a = new WwMutex(ww, 'A');
    const b = new WwMutex(ww, 'B');
    const older = new WwAcquireContext(ww);
    const younger = new WwAcquireContext(ww);
    await a.lock(older);
    await b.lock(younger);
    const olderWantsB = b.lock(older); // the older one waits
    await assert.rejects(a.lock(younger), { code: 'EDEADLK', syscall: 'ww_mutex_lock' });
    b.unlock(); // back off
    await olderWantsB;
    assert.equal(b.holder, older);
    const slow = a.lockSlow(younger);
    a.unlock();
    b.unlock();
    older.fini();
    await slow;
    await b.lock(younger);
    a.unlock();
    b.unlock();
    younger.fini();
    assert.equal(younger.backoffs, 1);
  });

  it('a younger context that holds nothing waits instead of dying; a waiting younger one dies when an older one queues', async () => {
    const mutex = new WwMutex(ww);
    const other = new WwMutex(ww);
    const holder = new WwAcquireContext(ww);
    await mutex.lock(holder);
    const empty = new WwAcquireContext(ww);
    const waits = mutex.lock(empty);
    mutex.unlock();
    await waits;
    mutex.unlock();

    const oldest = new WwAcquireContext(ww);
    const middle = new WwAcquireContext(ww);
    const youngest = new WwAcquireContext(ww);
    await mutex.lock(middle);
    await other.lock(youngest);
    // youngest holds a lock and waits for middle (younger waiting for older: it must die at once).
    await assert.rejects(mutex.lock(youngest), { code: 'EDEADLK' });
    other.unlock();
    const oldestWaits = mutex.lock(oldest);
    mutex.unlock();
    await oldestWaits;
    assert.equal(mutex.holder, oldest);
    mutex.unlock();
  });

  it('an aborted wait rejects with the reason and leaves the lock to the others', async () => {
    const mutex = new WwMutex(ww);
    await mutex.lock();
    const controller = new AbortController();
    const ctx = new WwAcquireContext(ww, controller.signal);
    const waiting = mutex.lock(ctx);
    const next = mutex.lock();
    controller.abort(Object.assign(new Error('interrupted'), { code: 'EINTR' }));
    await assert.rejects(waiting, { code: 'EINTR' });
    mutex.unlock();
    await next;
    assert.equal(mutex.locked, true);
    mutex.unlock();
  });

  it('misuse is a rule error: lockSlow while holding, fini while holding, another class, unlocking a free mutex, locking after done', async () => {
    const mutex = new WwMutex(ww);
    const other = new WwMutex(ww);
    const ctx = new WwAcquireContext(ww);
    await mutex.lock(ctx);
    await assert.rejects(other.lockSlow(ctx), { code: 'ERR_DMABUF_POLICY_RULE' });
    assert.throws(() => ctx.fini(), { code: 'ERR_DMABUF_POLICY_RULE', message: /still held/ });
    mutex.unlock();
    ctx.done();
    await assert.rejects(other.lock(ctx), { code: 'ERR_DMABUF_POLICY_RULE', message: /ww_acquire_done/ });
    await assert.rejects(new WwMutex(new WwClass('other')).lock(new WwAcquireContext(ww)), { code: 'ERR_DMABUF_POLICY_RULE', message: /class/ });
    assert.throws(() => mutex.unlock(), { code: 'ERR_DMABUF_POLICY_RULE' });
  });

  it('cyclic: N tasks each locking mutex i then i+1 all finish (test-ww_mutex.c "cyclic")', async () => {
    const count = 16;
    const mutexes = Array.from({ length: count }, (_, index) => new WwMutex(ww, `m${index}`));
    await Promise.all(
      mutexes.map(async (_, index) => {
        const ctx = new WwAcquireContext(ww);
        await lockAll([mutexes[index]!, mutexes[(index + 1) % count]!], ctx);
        await tick();
        mutexes[index]!.unlock();
        mutexes[(index + 1) % count]!.unlock();
        ctx.fini();
      }),
    );
    assert.ok(mutexes.every((mutex) => !mutex.locked));
  });

  // size: 'max' on every array: fast-check 4 otherwise caps an array at
  // 2 * minLength + 10 elements whatever maxLength says (14 tasks, not 24).
  // Task counts are drawn uniformly for at least 3 runs in 4, so a run has at
  // least a 1-in-31 chance of all 24 tasks: 600 runs all miss it with odds
  // below 1 in 10^8, and the check that the most tasks were drawn stands.
  const maxTasks = 24;
  const wwRuns = 600;
  it(`property: random lock orders over 2 to 12 mutexes and 2 to ${maxTasks} tasks (the most drawn) always finish, with mutual exclusion`, async () => {
    let mostTasks = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 12 }),
        fc.array(fc.array(fc.nat(11), { minLength: 1, maxLength: 6, size: 'max' }), { minLength: 2, maxLength: maxTasks, size: 'max' }),
        fc.array(fc.nat(3), { minLength: 1, maxLength: 8, size: 'max' }),
        async (mutexCount, taskOrders, yields) => {
          mostTasks = Math.max(mostTasks, taskOrders.length);
          const mutexes = Array.from({ length: mutexCount }, (_, index) => new WwMutex(ww, `m${index}`));
          const holders = new Array<number>(mutexCount).fill(0);
          let finished = 0;
          await Promise.all(
            taskOrders.map(async (order, task) => {
              const wanted = order.map((index) => mutexes[index % mutexCount]!);
              const ctx = new WwAcquireContext(ww);
              await lockAll(wanted, ctx);
              const held = [...new Set(wanted)];
              for (const mutex of held) holders[mutexes.indexOf(mutex)]! += 1;
              for (let index = 0; index < yields[task % yields.length]!; index += 1) await tick();
              for (const mutex of held) {
                assert.equal(holders[mutexes.indexOf(mutex)], 1, 'one holder at a time');
                holders[mutexes.indexOf(mutex)]! -= 1;
                mutex.unlock();
              }
              ctx.fini();
              finished += 1;
            }),
          );
          assert.equal(finished, taskOrders.length);
          assert.ok(mutexes.every((mutex) => !mutex.locked));
        },
      ),
      { numRuns: wwRuns },
    );
    assert.equal(mostTasks, maxTasks, 'the most tasks drawn in one run is the declared maximum');
  });
});
