import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { SwSyncTimeline, udmabuf } from '../../lib';
import { pageSize, requireVm } from './helpers';

// DMA_BUF_IOCTL_SYNC START waits in the kernel, without a timeout, for the
// fences its direction must wait for. The library refuses to let it block the
// event loop unless asked to.
describe('CPU access and pending fences', () => {
  requireVm();
  let timeline: SwSyncTimeline;
  beforeEach(() => {
    timeline = SwSyncTimeline.open();
  });
  afterEach(() => timeline.close());

  it('a pending write fence: every access is refused rather than blocking', async () => {
    using buffer = udmabuf.create(pageSize);
    using fence = timeline.createFence(1);
    buffer.importSyncFile(fence, 'write');
    for (const mode of ['read', 'write', 'readwrite'] as const) {
      assert.throws(() => buffer.beginCpuAccess(mode), { code: 'ERR_DMABUF_FENCES_PENDING' });
      assert.throws(() => buffer.withCpuAccess(mode, () => assert.fail('not reached')), { code: 'ERR_DMABUF_FENCES_PENDING' });
    }
    assert.equal(buffer.cpuAccess, undefined);
    timeline.advance(1);
    await buffer.waitIdle({ mode: 'readwrite', timeoutMs: 5000 });
    buffer.withCpuAccess('readwrite', (view) => view.write('after the fence'));
  });

  it('a pending read fence holds back writers only, as the kernel orders them', () => {
    using buffer = udmabuf.create(pageSize);
    using fence = timeline.createFence(1);
    buffer.importSyncFile(fence, 'read');
    buffer.withCpuAccess('read', () => undefined);
    assert.throws(() => buffer.beginCpuAccess('write'), { code: 'ERR_DMABUF_FENCES_PENDING' });
    timeline.advance(1);
    buffer.withCpuAccess('write', () => undefined);
  });

  it('{ block: true } waits in the kernel until the fence signals (shown from a worker thread)', async () => {
    using buffer = udmabuf.create(pageSize);
    using fence = timeline.createFence(1);
    buffer.importSyncFile(fence, 'write');
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const { DmaBuf } = require(workerData.lib);
       const buffer = DmaBuf.fromFd(workerData.fd, { dup: true });
       parentPort.postMessage('begin');
       buffer.beginCpuAccess('read', { block: true });
       parentPort.postMessage(process.hrtime.bigint().toString());
       buffer.endCpuAccess();
       buffer.close();`,
      { eval: true, workerData: { fd: buffer.fd, lib: require.resolve('../../lib') } },
    );
    const messages: string[] = [];
    const finished = new Promise<void>((resolve, reject) => {
      worker.on('message', (message: string) => messages.push(message));
      worker.on('error', reject);
      worker.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker exited ${code}`))));
    });
    while (messages.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(messages, ['begin'], 'the worker is still inside the ioctl');
    const signalledAt = process.hrtime.bigint();
    timeline.advance(1);
    await finished;
    assert.ok(BigInt(messages[1]!) >= signalledAt, 'the ioctl returned only after the fence signalled');
  });
});
