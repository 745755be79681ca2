import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { FdChannel, SwSyncTimeline, type DmaBuf } from '../../../lib';
import { createMovingBuffer, serveRemoteImporter } from '../../../lib/policy';
import * as policy from '../../../lib/policy';
import { exited, firstLine, requireVm } from '../helpers';

const root = join(__dirname, '..', '..', '..', '..');
const peer = join(root, 'test', 'fixtures', 'scripts', 'policy-peer.js');
const tick = () => new Promise((resolve) => setImmediate(resolve));

function locked<T>(buffer: policy.PolicyBuffer<unknown>, fn: () => Promise<T> | T): Promise<T> {
  return buffer.resv.withLock(fn);
}

// A dynamic exporter over real memory (udmabuf): its moves copy to a new
// udmabuf, and importers map real dma-bufs.
describe('policy: buffers that really move', () => {
  requireVm();

  it('an importer notified of a move still reads the old memory whole, then remaps to the new memory, which holds the copy', async () => {
    const moving = createMovingBuffer({ size: 64 * 1024, profile: policy.profiles.linux61 });
    moving.backing.map().write('before the move');
    let notified = 0;
    const importer = await policy.dynamicAttach(moving.buffer, { ops: { moveNotify: () => void (notified += 1) } });
    const first = await locked(moving.buffer, () => policy.mapAttachment(importer, 'bidirectional'));
    const oldView = first.dmabuf.map();
    const oldInode = first.dmabuf.inode;
    await moving.move();
    assert.equal(notified, 1);
    assert.equal(oldView.toString('utf8', 0, 15), 'before the move', 'the old mapping stays readable and whole');
    assert.equal(moving.backing.map().toString('utf8', 0, 15), 'before the move', 'the move copied the contents');
    moving.backing.map().write('after  the move');
    assert.equal(oldView.toString('utf8', 0, 15), 'before the move', 'writes to the new memory do not reach the old');
    await locked(moving.buffer, () => policy.unmapAttachment(importer, first, 'bidirectional'));
    assert.equal(first.dmabuf.closed, true, 'unmapping drops the importer\'s reference');
    const second = await locked(moving.buffer, () => policy.mapAttachment(importer, 'bidirectional'));
    assert.notEqual(second.dmabuf.inode, oldInode);
    assert.equal(second.dmabuf.map().toString('utf8', 0, 15), 'after  the move');
    await locked(moving.buffer, () => policy.unmapAttachment(importer, second, 'bidirectional'));
    await policy.detach(moving.buffer, importer);
    policy.release(moving.buffer);
  });

  it('refuses to move while pinned (EBUSY); a fenced move frees the old memory only when its fence signals', async () => {
    const moving = createMovingBuffer({ size: 4096, profile: policy.profiles.linux61 });
    const importer = await policy.dynamicAttach(moving.buffer, { ops: { moveNotify: () => undefined } });
    await locked(moving.buffer, () => policy.pin(importer));
    await assert.rejects(moving.move(), { code: 'EBUSY', syscall: 'move' });
    await locked(moving.buffer, () => policy.unpin(importer));
    const old = moving.backing;
    const { fence } = await moving.move({ fenced: true });
    assert.equal(old.closed, false, 'held for the fence');
    assert.equal(moving.buffer.resv.testSignaled('kernel'), false);
    (fence as policy.JsFence).signal();
    await tick();
    assert.equal(old.closed, true);
    await policy.detach(moving.buffer, importer);
    policy.release(moving.buffer);
    assert.equal(moving.backing.closed, true, 'release frees the current memory');
  });

  it('an importer process that dies is detached, its mapping unmapped', async () => {
    const moving = createMovingBuffer({ size: 4096, profile: policy.profiles.linux61 });
    const [mine, theirs] = FdChannel.pair();
    const child = spawn(process.execPath, [peer, 'importer'], { stdio: ['ignore', 'pipe', 'inherit', theirs.fd] });
    theirs.close();
    const served = serveRemoteImporter(moving, mine);
    assert.deepEqual(JSON.parse(await firstLine(child)), { mapped: 0 });
    assert.deepEqual([moving.counters.attachments, moving.counters.mapCalls, moving.counters.unmapCalls], [1, 1, 0]);
    child.kill('SIGKILL');
    await served;
    mine.close();
    await exited(child);
    assert.deepEqual([moving.counters.attachments, moving.counters.mapCalls, moving.counters.unmapCalls], [0, 1, 1]);
    await moving.move(); // nobody left to notify
    policy.release(moving.buffer);
  });

  it('an exporter process that dies fails the importer\'s calls with ECONNRESET and an error event, never a hang', async () => {
    const [mine, theirs] = FdChannel.pair();
    const child = spawn(process.execPath, [peer, 'exporter'], { stdio: ['ignore', 'pipe', 'inherit', theirs.fd] });
    theirs.close();
    assert.deepEqual(JSON.parse(await firstLine(child)), { serving: true });
    const attachment = await policy.RemoteAttachment.attach(mine, { dynamic: true });
    const mapping = await attachment.map();
    const errored = new Promise<Error>((resolve) => attachment.once('error', resolve));
    child.kill('SIGKILL');
    assert.equal(((await errored) as { code?: string }).code, 'ECONNRESET');
    await assert.rejects(attachment.map(), { code: 'ECONNRESET' });
    // The memory it mapped is still ours to read: the kernel holds it for our fd.
    const [dmabuf] = mapping.handles as [DmaBuf];
    assert.equal(dmabuf.map().length, 4096);
    dmabuf.close();
    mine.close();
    await exited(child);
  });

  it('a real sync_file is a fence of the model: a reservation object waits for the kernel to signal it', async () => {
    using timeline = SwSyncTimeline.open();
    using syncFile = timeline.createFence(1);
    const resv = new policy.ReservationObject();
    await resv.lock();
    resv.reserveFences(1);
    resv.addFence(policy.externalFence(syncFile), 'write');
    resv.unlock();
    assert.equal(resv.testSignaled('read'), false);
    const idle = resv.wait('read', { timeoutMs: 10_000 });
    timeline.advance(1);
    await idle;
    assert.equal(resv.testSignaled('bookkeep'), true);
  });

  it('the README example runs as written: a buffer moves three times while another process reads it', () => {
    const result = spawnSync(process.execPath, [join(root, 'examples', 'moving-buffer.js')], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(result.status, 0, result.stderr);
    assert.equal((result.stdout.match(/notified while reading generation \d/g) ?? []).length, 3, result.stdout);
    assert.match(result.stdout, /exporter: 3 moves, 4 maps, 4 unmaps/);
  });
});
