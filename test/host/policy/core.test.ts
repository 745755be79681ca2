import assert from 'node:assert/strict';
import * as policy from '../../../lib/policy';

const { exportBuffer, dynamicAttach, attach, detach, pin, unpin, mapAttachment, unmapAttachment, mapAttachmentUnlocked, unmapAttachmentUnlocked, moveNotify, release, MovableExporter, modelStore, Trace, profiles, FenceTimeline, formatBuffers } = policy;
type PolicyProfile = policy.PolicyProfile;

function exporter(profile: PolicyProfile, dynamic: boolean, trace = new Trace()) {
  return new MovableExporter(modelStore(), { size: 4096, dynamic, profile, trace, name: 'A' });
}

function locked<T>(buffer: policy.PolicyBuffer<unknown>, fn: () => Promise<T> | T): Promise<T> {
  return buffer.resv.withLock(fn);
}

const notify = () => ({ moveNotify: () => undefined });

// "rule N" in a title is rule N of docs/dynamic-policy.md (#rule-N).
describe('policy: the core rules of Linux 6.1', () => {
  it('rule 1: export refuses missing ops, cache_sgt_mapping with pin, pin without unpin (v10 only the second)', () => {
    const base = { map: () => ({}), unmap: () => undefined, release: () => undefined };
    const cases = [
      { ops: { ...base, map: undefined }, v10: true },
      { ops: { ...base, cacheSgtMapping: true, pin: () => undefined, unpin: () => undefined }, v10: false },
      { ops: { ...base, pin: () => undefined }, v10: true },
    ];
    for (const { ops, v10 } of cases) {
      assert.throws(() => exportBuffer({ ops: ops as never, size: 4096, profile: profiles.linux61 }), { code: 'EINVAL', syscall: 'dma_buf_export', message: /WARN/ });
      if (v10) exportBuffer({ ops: ops as never, size: 4096, profile: profiles.v10 });
      else assert.throws(() => exportBuffer({ ops: ops as never, size: 4096, profile: profiles.v10 }), { code: 'EINVAL' });
    }
  });

  it('rule 2: importer ops without move_notify are EINVAL (v10 treats them as a static importer)', async () => {
    await assert.rejects(dynamicAttach(exporter(profiles.linux61, true).buffer, { ops: {} }), { code: 'EINVAL' });
    const attachment = await dynamicAttach(exporter(profiles.v10, true).buffer, { ops: {} });
    assert.equal(attachment.dynamic, false);
  });

  it('rule 3: mismatched importers get a mapping at attach, cached, with the dynamic exporter pinned first', async () => {
    const dynamicExporter = exporter(profiles.linux61, true);
    const staticImporter = await attach(dynamicExporter.buffer);
    assert.deepEqual([dynamicExporter.counters.pinCount, dynamicExporter.counters.mapCalls, staticImporter.dir], [1, 1, 'bidirectional']);
    await assert.rejects(dynamicExporter.move(), { code: 'EBUSY' });

    const staticExporter = exporter(profiles.linux61, false);
    const dynamicImporter = await dynamicAttach(staticExporter.buffer, { ops: notify() });
    assert.deepEqual([staticExporter.counters.mapCalls, staticExporter.counters.pinCalls], [1, 0]);
    assert.equal(await locked(staticExporter.buffer, () => mapAttachment(dynamicImporter, 'to-device')), dynamicImporter.sgt);
  });

  it('rule 4: a static importer\'s map waits for kernel fences; a dynamic importer\'s does not', async () => {
    const staticExporter = exporter(profiles.linux61, false);
    const fence = new FenceTimeline().next();
    await locked(staticExporter.buffer, () => {
      staticExporter.buffer.resv.reserveFences(1);
      staticExporter.buffer.resv.addFence(fence, 'kernel');
    });
    const staticImporter = await attach(staticExporter.buffer);
    let mapped = false;
    const mapping = mapAttachmentUnlocked(staticImporter, 'to-device').then(() => (mapped = true));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(mapped, false);
    fence.signal();
    await mapping;
    const dynamicExporter = exporter(profiles.linux61, true);
    const moved = await dynamicExporter.move({ fenced: true });
    const dynamicImporter = await dynamicAttach(dynamicExporter.buffer, { ops: notify() });
    await locked(dynamicExporter.buffer, () => mapAttachment(dynamicImporter, 'bidirectional')); // no wait
    (moved.fence as policy.JsFence).signal();
  });

  it('rule 5: a dynamic importer must hold the lock; a cached mapping in another direction is EBUSY; without MOVE_NOTIFY a mapping pins', async () => {
    const withNotify = exporter(profiles.linux61, true);
    const importer = await dynamicAttach(withNotify.buffer, { ops: notify() });
    await assert.rejects(mapAttachment(importer, 'bidirectional'), { code: 'ERR_DMABUF_POLICY_RULE', message: /reservation lock/ });
    await locked(withNotify.buffer, () => mapAttachment(importer, 'to-device'));
    assert.equal(withNotify.counters.pinCount, 0);

    const without = exporter(profiles.linux61NoMoveNotify, true);
    const pinning = await dynamicAttach(without.buffer, { ops: notify() });
    const mapping = await locked(without.buffer, () => mapAttachment(pinning, 'to-device'));
    assert.equal(without.counters.pinCount, 1);
    await assert.rejects(without.move(), { code: 'EBUSY' });
    await locked(without.buffer, () => unmapAttachment(pinning, mapping, 'to-device'));
    assert.equal(without.counters.pinCount, 0);

    const cachedExporter = exporter(profiles.linux61, false);
    const staticImporter = await attach(cachedExporter.buffer);
    await mapAttachmentUnlocked(staticImporter, 'to-device');
    await assert.rejects(mapAttachmentUnlocked(staticImporter, 'from-device'), { code: 'EBUSY' });
  });

  it('rule 8: pins are for dynamic importers under the lock', async () => {
    const dynamicExporter = exporter(profiles.linux61, true);
    const staticExporter = exporter(profiles.linux61, false);
    const staticImporter = await attach(staticExporter.buffer);
    assert.throws(() => pin(staticImporter), { code: 'ERR_DMABUF_POLICY_RULE', message: /static importer/ });
    const dynamicImporter = await dynamicAttach(dynamicExporter.buffer, { ops: notify() });
    assert.throws(() => pin(dynamicImporter), { message: /must be held/ });
    await locked(dynamicExporter.buffer, () => pin(dynamicImporter));
    await assert.rejects(dynamicExporter.move(), { code: 'EBUSY' });
    await locked(dynamicExporter.buffer, () => unpin(dynamicImporter));
    await dynamicExporter.move();
  });

  it('rules 9 and 10: move_notify reaches every dynamic attachment; detach unmaps the cached mapping and unpins', async () => {
    const trace = new Trace();
    const dynamicExporter = exporter(profiles.linux61, true, trace);
    const notified: string[] = [];
    const importers = await Promise.all(['B', 'C'].map((name) => dynamicAttach(dynamicExporter.buffer, { name, ops: { moveNotify: (attachment) => notified.push(attachment.name) } })));
    await dynamicExporter.move();
    assert.deepEqual(notified, ['C', 'B'], 'newest first, mapped or not');
    const staticImporter = await attach(dynamicExporter.buffer, { name: 'S' });
    await detach(dynamicExporter.buffer, staticImporter);
    for (const importer of importers) await detach(dynamicExporter.buffer, importer);
    assert.deepEqual(dynamicExporter.counters, { attachCalls: 3, detachCalls: 3, pinCalls: 1, unpinCalls: 1, mapCalls: 1, unmapCalls: 1, moves: 1, pinCount: 0, attachments: 0 });
    release(dynamicExporter.buffer);
    assert.deepEqual(trace.lines(), ['export A', 'attach A B', 'attach A C', 'move A', 'move-notify A C', 'move-notify A B', 'attach A S', 'pin A S', 'map A S bidirectional', 'unmap A S bidirectional', 'unpin A S', 'detach A S', 'detach A B', 'detach A C', 'release A']);
  });

  it('misuse fails loudly: move_notify without the lock, map after detach, release with attachments', async () => {
    const dynamicExporter = exporter(profiles.linux61, true);
    assert.throws(() => moveNotify(dynamicExporter.buffer), { code: 'ERR_DMABUF_POLICY_RULE' });
    const importer = await dynamicAttach(dynamicExporter.buffer, { ops: notify() });
    assert.throws(() => release(dynamicExporter.buffer), { message: /still has 1 attachments/ });
    await detach(dynamicExporter.buffer, importer);
    await assert.rejects(locked(dynamicExporter.buffer, () => mapAttachment(importer, 'bidirectional')), { message: /detached/ });
    await assert.rejects(detach(dynamicExporter.buffer, importer), { code: 'ERR_DMABUF_POLICY_RULE' });
  });

  it('a fenced move keeps the old memory until its fence signals, and the fence is a kernel fence', async () => {
    const store = modelStore();
    const movable = new MovableExporter(store, { size: 4096, dynamic: true, profile: profiles.linux61 });
    const { fence } = await movable.move({ fenced: true });
    assert.equal(store.live.size, 2);
    assert.equal(movable.buffer.resv.testSignaled('kernel'), false);
    (fence as policy.JsFence).signal();
    await movable.buffer.resv.wait('kernel');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(store.live.size, 1);
    assert.equal(movable.heldMoves, 0);
  });

  it('the debug view lists buffers, fences, attachments, pins and cached mappings', async () => {
    const dynamicExporter = exporter(profiles.tracking, true);
    await attach(dynamicExporter.buffer, { name: 'scanout' });
    const importer = await dynamicAttach(dynamicExporter.buffer, { name: 'gpu', ops: notify() });
    await locked(dynamicExporter.buffer, () => mapAttachment(importer, 'bidirectional'));
    const text = formatBuffers([dynamicExporter.buffer]);
    assert.match(text, /A\t4096 bytes\ttracking\tdynamic\tpins 1/);
    assert.match(text, /scanout\tstatic, pins 1, cached bidirectional/);
    assert.match(text, /gpu\tdynamic, mappings 1 \(0 invalidated\)/);
  });
});

// The scenario the v10 review argued over (rule 9): A exports (in device
// memory), B maps it peer-to-peer, C cannot reach device memory so its map
// makes A migrate to system memory. Who is notified, who is pinned?
describe('policy: the review thread\'s scenario under each profile', () => {
  async function scenario(profile: PolicyProfile) {
    const trace = new Trace();
    let placement: 'device' | 'system' = 'device';
    const notified: string[] = [];
    let pins = 0;
    const buffer: policy.PolicyBuffer<string> = exportBuffer<string>({
      name: 'A',
      size: 4096,
      profile,
      trace,
      ops: {
        pin: () => void (pins += 1),
        unpin: () => void (pins -= 1),
        map(attachment) {
          if (placement === 'device' && !attachment.importerOps?.allowPeer2peer) {
            if (pins > 0) throw policy.policyErrno('EBUSY', 'map_dma_buf', 'pinned in device memory');
            placement = 'system';
            buffer.record('move');
            moveNotify(buffer);
          }
          return placement;
        },
        unmap: () => undefined,
        release: () => undefined,
      },
    });
    const importerOps = (name: string, p2p: boolean) => ({ allowPeer2peer: p2p, moveNotify: () => notified.push(name) });
    const b = await dynamicAttach(buffer, { name: 'B', ops: importerOps('B', true) });
    const c = await dynamicAttach(buffer, { name: 'C', ops: importerOps('C', false) });
    const bMapping = await locked(buffer as policy.PolicyBuffer<unknown>, () => mapAttachment(b, 'bidirectional'));
    let cMapping: string | Error;
    try {
      cMapping = await locked(buffer as policy.PolicyBuffer<unknown>, () => mapAttachment(c, 'bidirectional')) as string;
    } catch (error) {
      cMapping = error as Error;
    }
    return { notified, pins, bMapping, cMapping, placement, trace: trace.lines() };
  }

  it('linux-6.1: B and C are both notified, C by its own map; nothing is pinned', async () => {
    const result = await scenario(profiles.linux61);
    assert.deepEqual([result.notified, result.pins, result.bMapping, result.cMapping], [['C', 'B'], 0, 'device', 'system']);
  });

  it('linux-6.1 without MOVE_NOTIFY: B\'s map pinned the buffer in device memory, so C\'s map fails with EBUSY', async () => {
    const result = await scenario(profiles.linux61NoMoveNotify);
    assert.deepEqual([result.notified, result.pins, result.placement], [[], 1, 'device']);
    assert.equal((result.cMapping as { code?: string }).code, 'EBUSY');
  });

  it('v10: the self-filter spares C; B is notified', async () => {
    const result = await scenario(profiles.v10);
    assert.deepEqual([result.notified, result.pins, result.cMapping], [['B'], 0, 'system']);
  });

  it('tracking: only B, which holds a live mapping, is notified, once', async () => {
    const result = await scenario(profiles.tracking);
    assert.deepEqual([result.notified, result.pins, result.cMapping], [['B'], 0, 'system']);
  });

  it('the profiles\' traces differ exactly in who was notified and pinned', async () => {
    const [linux, noNotify, v10, tracking] = await Promise.all([profiles.linux61, profiles.linux61NoMoveNotify, profiles.v10, profiles.tracking].map(scenario));
    const common = ['export A', 'attach A B', 'attach A C', 'map A B bidirectional'];
    assert.deepEqual(linux!.trace, [...common, 'move A', 'move-notify A C', 'move-notify A B', 'map A C bidirectional']);
    assert.deepEqual(v10!.trace, [...common, 'move A', 'move-notify A B', 'map A C bidirectional']);
    assert.deepEqual(tracking!.trace, v10!.trace);
    assert.deepEqual(noNotify!.trace, ['export A', 'attach A B', 'attach A C', 'pin A B', 'map A B bidirectional', 'pin A C', 'unpin A C']);
  });

  it('tracking: a second move before B remaps does not notify B again', async () => {
    const movable = exporter(profiles.tracking, true);
    let notified = 0;
    const b = await dynamicAttach(movable.buffer, { ops: { moveNotify: () => void (notified += 1) } });
    const mapping = await locked(movable.buffer, () => mapAttachment(b, 'bidirectional'));
    await movable.move();
    await movable.move();
    assert.equal(notified, 1);
    await locked(movable.buffer, () => unmapAttachment(b, mapping, 'bidirectional'));
    await movable.move();
    assert.equal(notified, 1, 'no live mapping, no notification');
    await locked(movable.buffer, () => mapAttachment(b, 'bidirectional'));
    await movable.move();
    assert.equal(notified, 2);
  });

  it('v10: a static importer on a dynamic exporter is cached and pinned at attach, so its implicit locking never runs', async () => {
    const v10Exporter = exporter(profiles.v10, true);
    const staticImporter = await attach(v10Exporter.buffer);
    await mapAttachment(staticImporter, 'bidirectional'); // cached at attach; no lock needed
    await unmapAttachmentUnlocked(staticImporter, staticImporter.sgt!, 'bidirectional');
    assert.equal(v10Exporter.counters.pinCount, 1);
  });
});
