import assert from 'node:assert/strict';
import { release } from 'node:os';
import { SwSyncTimeline, SyncFile, type FenceStatus } from '../../lib';
import { requireVm } from './helpers';

// The merge cases of 7.2's drivers/dma-buf/st-dma-fence-unwrap.c, done from
// userspace: sw_sync fences for the kernel test's mock fences (one timeline,
// one fence context), SYNC_IOC_MERGE (SyncFile.merge) for
// dma_fence_unwrap_merge(), which sync_file_merge() calls on every kernel
// here, and SYNC_IOC_FILE_INFO (info()) for dma_fence_unwrap_for_each().
// FILE_INFO names no context or seqno, so which fence survived is read from
// the statuses as the timelines advance one step at a time; a merge of more
// than two fences is two merges, SYNC_IOC_MERGE taking two.

const [major = 0] = release().split(/[.-]/).map(Number);

/** The fence context in a single sw_sync fence's sync_file name: sw_sync-<timeline><context>-<seqno>. */
function contextOf(fence: SyncFile): number {
  const match = /^sw_sync-node(\d+)-\d+$/.exec(fence.info().name);
  assert.ok(match, fence.info().name);
  return Number(match[1]);
}

function statuses(file: SyncFile): FenceStatus[] {
  return file.info().fences.map((fence) => fence.status);
}

describe('fence merges (st-dma-fence-unwrap.c\'s merge cases) through SYNC_IOC_MERGE and SYNC_IOC_FILE_INFO', () => {
  requireVm();
  // Opened in this order, so the kernel gives a the lower fence context:
  // merges sort their fences by context (ctx[0] before ctx[1] in the kernel's tests).
  let a: SwSyncTimeline;
  let b: SwSyncTimeline;
  const open: SyncFile[] = [];
  const keep = (file: SyncFile) => (open.push(file), file);

  beforeEach(() => {
    a = SwSyncTimeline.open();
    b = SwSyncTimeline.open();
  });
  afterEach(() => {
    for (const file of open.splice(0)) file.close();
    // Closing a timeline signals what is left on it (with ENOENT).
    a.close();
    b.close();
  });

  it('sw_sync timelines opened one after the other get increasing fence contexts', () => {
    assert.ok(contextOf(keep(a.createFence(1))) < contextOf(keep(b.createFence(1))));
  });

  it('unwrap_merge: two fences of two contexts merge into both, lower context first', () => {
    const merged = keep(SyncFile.merge('merge', keep(b.createFence(1)), keep(a.createFence(1))));
    assert.equal(merged.info().fences.length, 2);
    b.advance(1);
    assert.deepEqual(statuses(merged), ['active', 'signaled'], 'the second fence is b\'s');
    a.advance(1);
    assert.deepEqual(statuses(merged), ['signaled', 'signaled']);
  });

  it('unwrap_merge_duplicate: a fence merged with itself gives that one fence', () => {
    const fence = keep(a.createFence(1));
    const merged = keep(SyncFile.merge('duplicate', fence, fence));
    assert.equal(merged.info().fences.length, 1);
    assert.equal(merged.status, 'active');
    a.advance(1);
    assert.equal(merged.status, 'signaled');
  });

  it('unwrap_merge_seqno: of b:1, b:2 and a:1 the merge keeps a:1 and b:2, a first', () => {
    // The kernel's f1 = (ctx[1], 1), f2 = (ctx[1], 2), f3 = (ctx[0], 1), merged as (f1, f2) then f3.
    const merged = keep(SyncFile.merge('seqno', keep(SyncFile.merge('f1f2', keep(b.createFence(1)), keep(b.createFence(2)))), keep(a.createFence(1))));
    assert.equal(merged.info().fences.length, 2);
    b.advance(1);
    assert.deepEqual(statuses(merged), ['active', 'active'], 'b:1 is gone: b at 1 signals nothing');
    a.advance(1);
    assert.deepEqual(statuses(merged), ['signaled', 'active'], 'the first fence is a\'s');
    b.advance(1);
    assert.deepEqual(statuses(merged), ['signaled', 'signaled']);
  });

  it('unwrap_merge_seqno, the other grouping: f1 with (f2, f3) gives the same two fences in the same order', () => {
    const merged = keep(SyncFile.merge('seqno', keep(b.createFence(1)), keep(SyncFile.merge('f2f3', keep(b.createFence(2)), keep(a.createFence(1))))));
    assert.equal(merged.info().fences.length, 2);
    b.advance(1);
    assert.deepEqual(statuses(merged), ['active', 'active']);
    a.advance(1);
    assert.deepEqual(statuses(merged), ['signaled', 'active']);
  });

  it('unwrap_merge_order: (f1, f2) merged with the same fences in the opposite order gives f1 then f2 once each', () => {
    // The kernel's test has a dma_fence_chain for the opposite order, which
    // userspace cannot build from sw_sync fences: a merge given (f2, f1) stands in.
    const f1 = keep(a.createFence(1));
    const f2 = keep(b.createFence(1));
    const merged = keep(SyncFile.merge('order', keep(SyncFile.merge('a1', f1, f2)), keep(SyncFile.merge('reversed', f2, f1))));
    assert.equal(merged.info().fences.length, 2);
    a.advance(1);
    assert.deepEqual(statuses(merged), ['signaled', 'active']);
  });

  it('unwrap_merge_complex: (f1, f2), (f2, f1) and a signalled fence merge into f1 and f2, the signalled one dropped', () => {
    // dma_fence_get_stub() in the kernel's test: a fence already signalled.
    const signalled = SwSyncTimeline.open();
    try {
      const done = keep(signalled.createFence(1));
      signalled.advance(1);
      const f1 = keep(a.createFence(1));
      const f2 = keep(b.createFence(1));
      const f3 = keep(SyncFile.merge('f3', f1, f2));
      const f4 = keep(SyncFile.merge('f4', f2, f1));
      const merged = keep(SyncFile.merge('complex', keep(SyncFile.merge('f3f4', f3, f4)), done));
      assert.equal(merged.info().fences.length, 2);
      assert.deepEqual(statuses(merged), ['active', 'active']);
      b.advance(1);
      assert.deepEqual(statuses(merged), ['active', 'signaled']);
    } finally {
      signalled.close();
    }
  });

  it('unwrap_merge_complex_seqno: (a:2, b:1) merged with (a:1, b:2) keeps a:2 and b:2, a first', () => {
    const f5 = keep(SyncFile.merge('f5', keep(a.createFence(2)), keep(b.createFence(1))));
    const f6 = keep(SyncFile.merge('f6', keep(a.createFence(1)), keep(b.createFence(2))));
    const merged = keep(SyncFile.merge('complex-seqno', f5, f6));
    assert.equal(merged.info().fences.length, 2);
    a.advance(1);
    b.advance(1);
    assert.deepEqual(statuses(merged), ['active', 'active'], 'a:1 and b:1 are gone');
    a.advance(1);
    assert.deepEqual(statuses(merged), ['signaled', 'active']);
    b.advance(1);
    assert.deepEqual(statuses(merged), ['signaled', 'signaled']);
  });

  it('a merge of an active and a signalled fence is the active fence alone', () => {
    const done = keep(a.createFence(1));
    a.advance(1);
    const merged = keep(SyncFile.merge('one-left', done, keep(b.createFence(1))));
    const { fences } = merged.info();
    assert.equal(fences.length, 1);
    assert.deepEqual([fences[0]!.driver, fences[0]!.timeline, fences[0]!.status], ['sw_sync', 'node', 'active']);
  });

  it('a merge of two signalled fences is one signalled stub fence stamped with the later signal', () => {
    const first = keep(a.createFence(1));
    a.advance(1);
    const second = keep(b.createFence(1));
    b.advance(1);
    const later = second.info().fences[0]!.timestampNs;
    assert.ok(later >= first.info().fences[0]!.timestampNs);
    const merged = keep(SyncFile.merge('all-done', first, second));
    const { fences } = merged.info();
    assert.equal(fences.length, 1);
    assert.equal(fences[0]!.status, 'signaled');
    assert.equal(fences[0]!.timestampNs, later);
    // 7.x's FILE_INFO names no driver or timeline for a signalled fence.
    assert.deepEqual([fences[0]!.driver, fences[0]!.timeline], major >= 7 ? ['detached-driver', 'signaled-timeline'] : ['stub', 'stub']);
  });

  it(`a signalled sw_sync fence inside a merge is named ${major >= 7 ? '"detached-driver", "signaled-timeline" (7.x)' : '"sw_sync", "node" as while active (6.x)'} by FILE_INFO`, () => {
    const merged = keep(SyncFile.merge('named', keep(a.createFence(1)), keep(b.createFence(1))));
    a.advance(1);
    const [first, second] = merged.info().fences;
    assert.deepEqual([first!.driver, first!.timeline, first!.status], major >= 7 ? ['detached-driver', 'signaled-timeline', 'signaled'] : ['sw_sync', 'node', 'signaled']);
    assert.deepEqual([second!.driver, second!.timeline, second!.status], ['sw_sync', 'node', 'active']);
  });
});
