import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { DmaBuf, heap, udmabuf } from '../../../lib';
import { kernelTest, type KernelTestDevice, type KernelTestEvent, type KernelTestFeatures, type TestExporter } from '../../../lib/kernel-test';
import { settledWithin } from '../helpers';
import { requireModule } from './helpers';

const pageSize = 4096;

/** The whole buffer, in as many DMA segments as its pages' physical contiguity allows. */
function assertMapping(mapping: { segments: number; bytes: number }, pages: number): void {
  assert.equal(mapping.bytes, pages * pageSize);
  assert.ok(mapping.segments >= 1 && mapping.segments <= pages, `${mapping.segments} segments for ${pages} pages`);
}

// What the core does between importers and exporters, read back from the
// module's counters. The expectations follow drivers/dma-buf/dma-buf.c of
// each kernel; where kernels differ, the expectation follows the feature the
// module reports (kernelTest.features()): whether the core caches mappings
// (6.1, 6.12) or calls the exporter for every map and pins a static
// importer per mapping (7.x), and whether a dynamic importer's mapping pins
// (CONFIG_DMABUF_MOVE_NOTIFY=n).
describe('kernel module: importers and exporters as the core treats them', () => {
  requireModule();
  let device: KernelTestDevice;
  let features: KernelTestFeatures;
  let moveNotify: boolean;
  before(() => {
    features = kernelTest.features();
    moveNotify = !features.dynamicMapPins;
  });
  beforeEach(() => {
    device = kernelTest.open();
  });
  afterEach(() => device.close());

  function dynamicExporter(pages = 4): TestExporter {
    return device.export({ pages, dynamic: true });
  }

  it('a static importer on a dynamic exporter is pinned while the core holds a mapping: with core_sgt_cache from attach to detach (one cached map), without it for each map until its unmap', () => {
    const exporter = dynamicExporter();
    using _buffer = exporter.dmabuf;
    const attachment = device.attach(exporter.dmabuf);
    let info = exporter.info();
    const count = (i: typeof info) => [i.pinCalls, i.unpinCalls, i.pinCount, i.mapCalls, i.unmapCalls];
    if (features.coreSgtCache) {
      assert.deepEqual([info.attachCalls, ...count(info)], [1, 1, 0, 1, 1, 0]);
      assert.equal(attachment.info().coreCached, true);
      attachment.map('to-device'); // the cached table, whatever the direction: it was cached bidirectional
      assert.equal(exporter.info().mapCalls, 1);
      assert.throws(() => exporter.move(), { code: 'EBUSY', syscall: 'ioctl(DBT_IOCTL_MOVE)' });
      attachment.unmap();
      assert.equal(exporter.info().unmapCalls, 0, 'unmapping the cached table does nothing');
    } else {
      assert.deepEqual([info.attachCalls, ...count(info)], [1, 0, 0, 0, 0, 0], 'attaching neither pins nor maps');
      assert.equal(attachment.info().coreCached, false);
      exporter.move(); // nothing pins it yet
      attachment.map('to-device');
      assert.deepEqual(count(exporter.info()), [1, 0, 1, 1, 0], 'the map pinned');
      assert.throws(() => exporter.move(), { code: 'EBUSY', syscall: 'ioctl(DBT_IOCTL_MOVE)' });
      attachment.unmap();
      assert.deepEqual(count(exporter.info()), [1, 1, 0, 1, 1], 'the unmap unpinned');
      attachment.map('from-device'); // no cache: any direction, each time from the exporter
      assert.deepEqual(count(exporter.info()), [2, 1, 1, 2, 1]);
    }
    attachment.detach();
    info = exporter.info();
    assert.equal(info.unmapCalls, info.mapCalls, 'every mapping unmapped by detach');
    assert.equal(info.unpinCalls, info.pinCalls, 'every pin undone by detach');
    assert.deepEqual([info.pinCount, info.detachCalls, info.attachments], [0, 1, 0]);
    const moves = info.moves;
    exporter.move();
    assert.equal(exporter.info().moves, moves + 1);
  });

  it('a dynamic importer on a dynamic exporter: mapped on demand, notified on move, remapped after; with dynamic_map_pins its mapping pins instead', () => {
    const exporter = dynamicExporter();
    using _buffer = exporter.dmabuf;
    const attachment = device.attach(exporter.dmabuf, { dynamic: true });
    assert.deepEqual([exporter.info().mapCalls, exporter.info().pinCalls], [0, 0]);
    assertMapping(attachment.map(), 4);
    assert.equal(exporter.info().pinCount, moveNotify ? 0 : 1, 'a dynamic mapping pins only with dynamic_map_pins');
    if (moveNotify) {
      exporter.move();
      const state = attachment.info();
      assert.deepEqual([state.moveNotifies, state.invalidated, state.mapped], [1, true, true]);
      assert.deepEqual(device.readEvents().map(({ type, attachmentId }) => [type, attachmentId]), [['move-notify', attachment.id]]);
      attachment.unmap();
      attachment.map();
      assert.deepEqual([exporter.info().mapCalls, exporter.info().unmapCalls, attachment.info().invalidated], [2, 1, false]);
    } else {
      assert.throws(() => exporter.move(), { code: 'EBUSY' });
      attachment.unmap();
      assert.deepEqual([exporter.info().pinCount, exporter.info().unpinCalls], [0, 1]);
      exporter.move();
      assert.equal(attachment.info().moveNotifies, 1, 'move_notify is called without MOVE_NOTIFY too');
    }
  });

  it('two importers on one device map the same pages at once, each its own mapping', () => {
    const exporter = dynamicExporter();
    using _buffer = exporter.dmabuf;
    const first = device.attach(exporter.dmabuf, { dynamic: true });
    const second = device.attach(exporter.dmabuf, { dynamic: true });
    assertMapping(first.map(), 4);
    assertMapping(second.map(), 4);
    assert.equal(exporter.info().mapCalls, 2, 'one exporter map per attachment');
    first.unmap();
    second.unmap();
    assert.equal(exporter.info().unmapCalls, 2);
  });

  it('an invalidation (move_notify, invalidate_mappings) reaches every dynamic attachment, mapped or not; with dynamic_map_pins a mapping pins the buffer, so the mapped one is notified once unmapped', () => {
    const exporter = dynamicExporter();
    using _buffer = exporter.dmabuf;
    const unmapped = device.attach(exporter.dmabuf, { dynamic: true });
    const mapped = device.attach(exporter.dmabuf, { dynamic: true });
    mapped.map();
    if (moveNotify) {
      exporter.move();
      assert.deepEqual([mapped.info().moveNotifies, mapped.info().mapped, mapped.info().invalidated], [1, true, true], 'mapped: notified and invalidated');
    } else {
      // A moving buffer with a mapped importer is impossible here: the core pinned it at map.
      assert.equal(exporter.info().pinCount, 1);
      assert.throws(() => exporter.move(), { code: 'EBUSY' });
      assert.equal(mapped.info().moveNotifies, 0);
      mapped.unmap();
      exporter.move();
      assert.deepEqual([mapped.info().moveNotifies, mapped.info().invalidated], [1, false], 'unmapped since: notified, nothing to invalidate');
    }
    assert.deepEqual([unmapped.info().moveNotifies, unmapped.info().invalidated], [1, false], 'never mapped: notified, nothing invalidated');
    assert.deepEqual(device.readEvents().map((event) => event.attachmentId).sort(), [unmapped.id, mapped.id].sort());
  });

  it('a dynamic importer on a static exporter (udmabuf, the system heap, ours): the core sees no pin op; with core_sgt_cache it maps once at attach and caches it; without, it maps on demand', () => {
    const cached = features.coreSgtCache;
    using memory = udmabuf.create(16 * pageSize);
    const onUdmabuf = device.attach(memory, { dynamic: true });
    assert.equal(onUdmabuf.info().exporterDynamic, false, 'udmabuf has no pin op');
    assert.equal(onUdmabuf.info().coreCached, cached);
    assertMapping(onUdmabuf.map('from-device'), 16);
    using fromHeap = heap.allocate('system', 16 * pageSize);
    const onHeap = device.attach(fromHeap, { dynamic: true });
    assert.equal(onHeap.info().exporterDynamic, false, 'the system heap has no pin op');
    assert.equal(onHeap.info().coreCached, cached);
    assertMapping(onHeap.map(), 16);
    const staticOnHeap = device.attach(fromHeap);
    assert.equal(staticOnHeap.info().coreCached, false, 'a static importer of a static exporter maps on demand');
    assertMapping(staticOnHeap.map('to-device'), 16);
    staticOnHeap.unmap();

    const exporter = device.export({ pages: 2, dynamic: false });
    using _buffer = exporter.dmabuf;
    const onStatic = device.attach(exporter.dmabuf, { dynamic: true });
    assert.equal(onStatic.info().exporterDynamic, false, 'our static exporter has no pin op');
    assert.deepEqual([exporter.info().mapCalls, exporter.info().pinCalls], [cached ? 1 : 0, 0]);
    onStatic.map('to-device');
    assert.equal(exporter.info().mapCalls, 1);
    onStatic.unmap();
    assert.equal(exporter.info().unmapCalls, cached ? 0 : 1, 'unmapping a cached table does nothing');
    assert.throws(() => exporter.move(), { code: 'EINVAL', message: /only a dynamic exporter can move/ });
  });

  it('a static importer on a static exporter: with core_sgt_cache (cache_sgt_mapping) the first map is cached and another direction is EBUSY; without, every map and unmap reaches the exporter', () => {
    const exporter = device.export({ pages: 2, dynamic: false });
    using _buffer = exporter.dmabuf;
    const attachment = device.attach(exporter.dmabuf);
    assert.equal(exporter.info().mapCalls, 0);
    attachment.map('to-device');
    assert.equal(attachment.info().coreCached, features.coreSgtCache);
    attachment.unmap();
    if (features.coreSgtCache) {
      assert.equal(exporter.info().unmapCalls, 0);
      assert.throws(() => attachment.map('from-device'), { code: 'EBUSY' });
      attachment.map('to-device');
      attachment.detach();
      assert.deepEqual([exporter.info().mapCalls, exporter.info().unmapCalls], [1, 1]);
    } else {
      assert.equal(exporter.info().unmapCalls, 1);
      attachment.map('from-device');
      attachment.detach();
      assert.deepEqual([exporter.info().mapCalls, exporter.info().unmapCalls], [2, 2]);
    }
  });

  it('a pin from a dynamic importer stops moves until unpinned; a static importer may not pin', () => {
    const exporter = dynamicExporter();
    using _buffer = exporter.dmabuf;
    const dynamic = device.attach(exporter.dmabuf, { dynamic: true });
    assert.equal(dynamic.info().exporterDynamic, true, 'our dynamic exporter has a pin op');
    dynamic.pin();
    assert.equal(exporter.info().pinCount, 1);
    assert.throws(() => exporter.move(), { code: 'EBUSY', message: /pinned/ });
    dynamic.unpin();
    exporter.move();
    assert.throws(() => dynamic.unpin(), { code: 'EINVAL' });
    using memory = udmabuf.create(pageSize);
    const staticImporter = device.attach(memory);
    assert.throws(() => staticImporter.pin(), { code: 'EINVAL', message: /only a dynamic importer may pin/ });
  });

  it('detach while mapped unmaps first; closing the importer file detaches everything it held', () => {
    const exporter = dynamicExporter();
    using _buffer = exporter.dmabuf;
    const attachment = device.attach(exporter.dmabuf, { dynamic: true });
    attachment.map();
    attachment.pin();
    attachment.detach();
    let info = exporter.info();
    assert.deepEqual([info.unmapCalls, info.pinCount, info.attachments], [1, 0, 0]);

    const other = kernelTest.open();
    for (let index = 0; index < 3; index += 1) other.attach(exporter.dmabuf, { dynamic: true }).map();
    other.attach(exporter.dmabuf).map(); // static: pinned at attach (core_sgt_cache) or by this map
    assert.equal(exporter.info().attachments, 4);
    other.close();
    info = exporter.info();
    assert.deepEqual([info.attachments, info.detachCalls, info.pinCount], [0, 5, 0]);
    assert.equal(info.unmapCalls, info.mapCalls);
  });

  it('revoke invalidates every dynamic attachment without moving, pins or not; a revocable attachment (where the kernel has dma_buf_attach_revocable) then unmaps and unpins at once and maps no more, elsewhere it is EOPNOTSUPP', () => {
    const exporter = dynamicExporter();
    using _buffer = exporter.dmabuf;
    const pinned = device.attach(exporter.dmabuf, { dynamic: true });
    pinned.map();
    pinned.pin();
    const staticImporter = device.attach(exporter.dmabuf);
    assert.equal(pinned.info().coreRevocable, features.revocable, 'the core counts an importer with an invalidation callback as revocable');
    assert.equal(staticImporter.info().coreRevocable, false);
    if (!features.revocable) {
      const before = exporter.info();
      assert.throws(() => device.attach(exporter.dmabuf, { revocable: true }), { code: 'ENOTSUP', syscall: 'ioctl(DBT_IOCTL_ATTACH)' }); // EOPNOTSUPP: the same number (95) on Linux
      assert.deepEqual(exporter.info(), before, 'the refused attach reached no exporter op');
      exporter.revoke();
      assert.deepEqual([pinned.info().moveNotifies, pinned.info().invalidated, pinned.info().pins], [1, true, 1], 'pinned, and notified all the same');
      assert.equal(exporter.info().moves, 0);
      return;
    }
    const revocable = device.attach(exporter.dmabuf, { revocable: true });
    assert.deepEqual([revocable.info().revocable, revocable.info().dynamic, revocable.info().coreRevocable], [true, true, true]);
    revocable.map();
    revocable.pin();
    const before = exporter.info();
    assert.equal(before.pinCount, 2);
    assert.throws(() => exporter.move(), { code: 'EBUSY' });
    exporter.revoke();
    const after = exporter.info();
    assert.deepEqual([after.moves, after.pinCount, after.unpinCalls - before.unpinCalls, after.unmapCalls - before.unmapCalls], [0, 1, 1, 1], 'only the revocable attachment let go');
    let state = revocable.info();
    assert.deepEqual([state.revoked, state.mapped, state.pins, state.moveNotifies], [true, false, 0, 1]);
    state = pinned.info();
    assert.deepEqual([state.revoked, state.mapped, state.invalidated, state.pins, state.moveNotifies], [false, true, true, 1, 1]);
    assert.throws(() => revocable.map(), { code: 'ENODEV' });
    assert.throws(() => revocable.pin(), { code: 'ENODEV' });
    assert.throws(() => revocable.unmap(), { code: 'EINVAL' });
    pinned.unpin();
    pinned.unmap();
    // A move invalidates too: a mapped revocable importer unmaps inside the callback.
    const second = device.attach(exporter.dmabuf, { revocable: true });
    second.map();
    const unmaps = exporter.info().unmapCalls;
    exporter.move();
    assert.deepEqual([second.info().revoked, second.info().mapped, exporter.info().unmapCalls - unmaps], [true, false, 1]);
    revocable.detach();
    second.detach();
    assert.equal(exporter.info().attachments, 2);
  });

  it('an exported buffer outlives the device file that made it', () => {
    const exporter = dynamicExporter(1);
    const view = exporter.dmabuf.map();
    view.write('still here');
    device.close();
    device = kernelTest.open();
    using second = DmaBuf.fromFd(exporter.dmabuf.fd, { dup: true });
    assert.equal(second.map().toString('utf8', 0, 10), 'still here');
    assert.equal(second.info().exporter, 'dmabuf_test');
    exporter.dmabuf.close();
  });

  it('data survives every move: read back through the old mapping and through a fresh one', () => {
    const exporter = dynamicExporter(8);
    using _buffer = exporter.dmabuf;
    const pattern = randomBytes(8 * pageSize);
    const oldView = exporter.dmabuf.map();
    pattern.copy(oldView);
    for (let move = 0; move < 10; move += 1) {
      const fence = exporter.move({ fenced: move % 2 === 1 });
      using fresh = DmaBuf.fromFd(exporter.dmabuf.fd, { dup: true });
      assert.ok(fresh.map().equals(pattern), `fresh mapping after move ${move}`);
      assert.ok(oldView.equals(pattern), `the first mapping (refaulted) after move ${move}`);
      oldView[move] = pattern[move] = move;
      fence?.signal();
    }
    assert.deepEqual([exporter.info().moves, exporter.info().heldMoves], [10, 0]);
  });

  it('many attachments and many moves: every notification counted, the event queue overflows honestly', () => {
    const attachmentCount = 40;
    const moves = 10;
    const exporter = dynamicExporter(2);
    using _buffer = exporter.dmabuf;
    const attachments = Array.from({ length: attachmentCount }, () => device.attach(exporter.dmabuf, { dynamic: true }));
    // 40 mappings of the same pages at once: CONFIG_DMA_API_DEBUG allows a
    // device at most 7 overlapping mappings it may write through, and any
    // number it only reads (DMA_TO_DEVICE); this test is about notifications.
    for (let move = 0; move < moves; move += 1) {
      if (moveNotify) for (const attachment of attachments) attachment.map('to-device');
      exporter.move();
      if (moveNotify) {
        assert.ok(attachments.every((attachment) => attachment.info().invalidated));
        for (const attachment of attachments) attachment.unmap();
      } else {
        for (const attachment of attachments) attachment.map('to-device');
        assert.equal(exporter.info().pinCount, attachmentCount);
        for (const attachment of attachments) attachment.unmap();
      }
    }
    assert.ok(attachments.every((attachment) => attachment.info().moveNotifies === moves));
    const events = device.readEvents();
    const notified = events.filter((event) => event.type === 'move-notify');
    const overflow = events.filter((event) => event.type === 'overflow');
    assert.equal(notified.length, 256, 'the ring holds 256');
    assert.deepEqual(overflow.map((event) => [event.attachmentId, event.sequence]), [[attachmentCount * moves - 256, attachmentCount * moves]]);
    assert.deepEqual(notified.map((event) => event.sequence), Array.from({ length: 256 }, (_, index) => index + 1));
    const info = exporter.info();
    assert.deepEqual([info.moves, info.mapCalls, info.unmapCalls, info.pinCount], [moves, attachmentCount * moves, attachmentCount * moves, 0]);
  });

  it('invalidations arrive as events while listening, and through the async iterator', async () => {
    const exporter = dynamicExporter(1);
    using _buffer = exporter.dmabuf;
    const attachment = device.attach(exporter.dmabuf, { dynamic: true });
    const seen = new Promise<number>((resolve) => device.on('move-notify', (event) => resolve(event.attachmentId)));
    exporter.move();
    assert.equal(await seen, attachment.id);

    const controller = new AbortController();
    const iterators = [device.events({ signal: controller.signal }), device.events({ signal: controller.signal })];
    // events() ends with no value, where its generator's type says any.
    const nexts = iterators.map((iterator): Promise<IteratorResult<KernelTestEvent, undefined>> => iterator.next());
    await new Promise((resolve) => setImmediate(resolve));
    exporter.move();
    for (const next of nexts) {
      const { value } = await next;
      assert.deepEqual([value?.type, value?.sequence], ['move-notify', 2], 'each iterator sees every event');
    }
    const ending = iterators[0]!.next();
    controller.abort();
    assert.deepEqual(await ending, { value: undefined, done: true }, 'the signal ends the iteration');
    await iterators[1]!.return(undefined);
  });
});

describe('kernel module: fences in reservation objects', () => {
  requireModule();
  let device: KernelTestDevice;
  beforeEach(() => {
    device = kernelTest.open();
  });
  afterEach(() => device.close());

  it('a write fence keeps the buffer busy for readers and writers until signalled', async () => {
    using buffer = udmabuf.create(pageSize);
    const fence = device.createFence({ buffer, usage: 'write', syncFile: true });
    using syncFile = fence.syncFile!;
    assert.equal(syncFile.info().fences[0]!.driver, 'dmabuf_test');
    assert.throws(() => buffer.beginCpuAccess('read'), { code: 'ERR_DMABUF_FENCES_PENDING' });
    using forReaders = buffer.exportSyncFile('read');
    assert.equal(forReaders.info().status, 'active');
    const idle = buffer.waitIdle({ mode: 'read', timeoutMs: 10_000 });
    assert.equal(await settledWithin(idle, 100), false);
    fence.signal();
    await idle;
    assert.equal(syncFile.info().status, 'signaled');
    assert.equal(forReaders.info().status, 'signaled');
  });

  it('a read fence holds writers only; a kernel fence holds everyone', () => {
    using buffer = udmabuf.create(pageSize);
    const read = device.createFence({ buffer, usage: 'read' });
    using forReaders = buffer.exportSyncFile('read');
    using forWriters = buffer.exportSyncFile('write');
    assert.deepEqual([forReaders.info().status, forWriters.info().status], ['signaled', 'active']);
    read.signal();
    const kernel = device.createFence({ buffer, usage: 'kernel' });
    using kernelForReaders = buffer.exportSyncFile('read');
    assert.equal(kernelForReaders.info().status, 'active');
    kernel.signal();
    assert.equal(kernelForReaders.info().status, 'signaled');
  });

  it('a fenced move holds the old pages until its fence signals, and waiters see the kernel fence', async () => {
    const exporter = device.export({ pages: 2, dynamic: true });
    using buffer = exporter.dmabuf;
    const fence = exporter.move({ fenced: true })!;
    assert.equal(exporter.info().heldMoves, 1);
    const idle = buffer.waitIdle({ mode: 'read', timeoutMs: 10_000 });
    assert.equal(await settledWithin(idle, 100), false);
    fence.signal();
    await idle;
    assert.equal(exporter.info().heldMoves, 0);
  });

  it('signalled with an error, the fence carries it; unsignalled fences are cancelled when the device closes', () => {
    const failing = device.createFence({ syncFile: true });
    using failed = failing.syncFile!;
    failing.signal(-5);
    assert.deepEqual([failed.info().status, failed.info().statusCode], ['error', -5]);
    assert.throws(() => failing.signal(), { code: 'ENOENT', message: /already signalled/ });

    const other = kernelTest.open();
    using buffer = udmabuf.create(pageSize);
    using orphan = other.createFence({ buffer, syncFile: true }).syncFile!;
    other.close();
    assert.equal(orphan.info().statusCode, -125, 'ECANCELED');
    buffer.withCpuAccess('read', () => undefined); // nothing left to wait for
  });

  it('a fence that outlives every device file keeps the module loaded: rmmod is refused while its sync_file is open', () => {
    const other = kernelTest.open();
    const syncFile = other.createFence({ syncFile: true }).syncFile!;
    other.close();
    device.close(); // no file of the module is open now; only the fence holds it
    try {
      const rmmod = spawnSync('rmmod', ['dmabuf_test'], { encoding: 'utf8' });
      assert.notEqual(rmmod.status, 0, 'rmmod must fail while a fence of the module exists');
      assert.match(rmmod.stderr, /in use/);
    } finally {
      syncFile.close();
      device = kernelTest.open();
    }
  });
});
