import assert from 'node:assert/strict';
import { DmaBuf, FdChannel, SwSyncTimeline, SyncFile, udmabuf } from '../../lib';
import { loadSecondCopy } from '../support/second-copy';
import { expectNoLeak, pageSize, requireVm } from './helpers';

// Two copies of the package meet in one process when a dependency brings its
// own: each copy's methods take the other's handles by their brand, where
// `instanceof` would refuse them.
describe('handles made by a second copy of the package', () => {
  requireVm();
  let second: ReturnType<typeof loadSecondCopy>;
  before(() => {
    second = loadSecondCopy();
  });
  after(() => second.remove());

  it('its DmaBuf and SyncFile are not instanceof this copy\'s classes, and isDmaBuf/isSyncFile say they are', () => {
    using buffer = second.lib.udmabuf.create(pageSize);
    using timeline = second.lib.SwSyncTimeline.open();
    using fence = timeline.createFence(1);
    assert.equal(buffer instanceof DmaBuf, false);
    assert.equal(fence instanceof SyncFile, false);
    assert.equal(DmaBuf.isDmaBuf(buffer), true);
    assert.equal(SyncFile.isSyncFile(fence), true);
    assert.equal(SyncFile.isSyncFile(buffer), false);
  });

  it('this copy\'s FdChannel sends them as a dma-buf and a sync_file: the receiver reads the bytes and waits on the fence', () =>
    expectNoLeak(async () => {
      const [a, b] = FdChannel.pair();
      using buffer = second.lib.udmabuf.create(pageSize);
      buffer.withCpuAccess('write', (bytes) => bytes.fill(0x5c));
      using timeline = second.lib.SwSyncTimeline.open();
      using fence = timeline.createFence(1);
      await a.send('theirs', [buffer, fence]);
      const { handles } = await b.receive();
      const [received, receivedFence] = handles as [DmaBuf, SyncFile];
      assert.ok(received instanceof DmaBuf, 'the receiver wraps it in its own copy\'s class');
      assert.equal(received.withCpuAccess('read', (bytes) => bytes.every((byte) => byte === 0x5c)), true);
      assert.equal(receivedFence.info().status, 'active');
      timeline.advance(1);
      await receivedFence.wait();
      assert.equal(receivedFence.info().status, 'signaled');
      received.close();
      receivedFence.close();
      a.close();
      b.close();
    }));

  it('SyncFile.merge, importSyncFile and udmabuf.fromMemfd take the second copy\'s SyncFile and Memfd', () =>
    expectNoLeak(() => {
      using ours = SwSyncTimeline.open();
      using theirTimeline = second.lib.SwSyncTimeline.open();
      using theirFence = theirTimeline.createFence(1);
      using mine = ours.createFence(1);
      using merged = SyncFile.merge('both', mine, theirFence);
      assert.equal(merged.info().fences.length, 2);
      using buffer = udmabuf.create(pageSize);
      buffer.importSyncFile(theirFence, 'write');
      using exported = buffer.exportSyncFile('read');
      assert.equal(exported.info().status, 'active', 'the imported fence is the buffer\'s write fence');
      using memfd = second.lib.Memfd.create(pageSize);
      using fromTheirs = udmabuf.fromMemfd({ memfd, offset: 0, size: pageSize });
      assert.equal(fromTheirs.size, pageSize);
      assert.throws(() => SyncFile.merge('no', mine, buffer as unknown as SyncFile), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      theirTimeline.advance(1);
      ours.advance(1);
    }));
});
