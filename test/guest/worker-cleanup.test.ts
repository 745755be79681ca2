import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { kernelBufferCount, requireVm } from './helpers';

// A worker runs plain JavaScript: it loads the compiled library, as the guest suite does.
const compiled = join(__dirname, '..', '..', 'lib', 'index.js');

// The worker holds one of everything that owns an fd or a mapping of a
// dma-buf: a udmabuf with its memfd kept and mapped, a second fd of it mapped
// too, a heap buffer mapped, a sw_sync timeline with a fence imported into the
// udmabuf (so a fence is pending in its reservation object), and CPU access
// begun and never ended. Then it ends without closing anything.
const workerBody = (ending: 'exit' | 'terminate') => `
  const { DmaBuf, SwSyncTimeline, heap, udmabuf } = require(${JSON.stringify(compiled)});
  const { parentPort } = require('node:worker_threads');
  const buffer = udmabuf.create(4 * 4096, { name: 'worker-held', keepMemfd: true });
  buffer.map().fill(0x5a);
  buffer.memfd.map()[0] = 1;
  const again = DmaBuf.fromFd(buffer.fd, { dup: true });
  again.map();
  const fromHeap = heap.allocate(heap.list()[0], 8192);
  fromHeap.map().fill(1);
  const timeline = SwSyncTimeline.open();
  const fence = timeline.createFence(1);
  buffer.importSyncFile(fence, 'write');
  fromHeap.beginCpuAccess('readwrite');
  globalThis.held = [buffer, again, fromHeap, timeline, fence];
  // Measured here, before ending: after process.exit() the parent may only
  // see the message once the worker is already gone.
  const fs = require('node:fs');
  const mappings = fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((line) => line.includes('/dmabuf:') || line.includes('/memfd:')).length;
  const buffers = Number(/^Total (\\d+) objects/m.exec(fs.readFileSync('/sys/kernel/debug/dma_buf/bufinfo', 'utf8'))[1]);
  parentPort.postMessage({ fds: fs.readdirSync('/proc/self/fd').length, mappings, buffers });
  ${ending === 'exit' ? 'process.exit(0);' : ''}`;

function openFds(): Set<string> {
  return new Set(readdirSync('/proc/self/fd'));
}

/** Mappings of dma-bufs and memfds in this process (a dma-buf shows as /dmabuf:<name>, a memfd as /memfd:<name>). */
function dmaBufAndMemfdMappings(): string[] {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.includes('/dmabuf:') || line.includes('/memfd:'));
}


function runAndEnd(ending: 'exit' | 'terminate'): Promise<{ fdsInWorker: number; mappingsInWorker: number; buffersInWorker: number }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(workerBody(ending), { eval: true });
    let seen: { fdsInWorker: number; mappingsInWorker: number; buffersInWorker: number } | undefined;
    worker.on('message', (message: { fds: number; mappings: number; buffers: number }) => {
      seen = { fdsInWorker: message.fds, mappingsInWorker: message.mappings, buffersInWorker: message.buffers };
      if (ending === 'terminate') void worker.terminate();
    });
    worker.on('error', reject);
    worker.on('exit', () => (seen ? resolve(seen) : reject(new Error('the worker ended before reporting'))));
  });
}

describe('a worker thread that ends holding dma-bufs, mappings, fences and CPU access', () => {
  requireVm();

  for (const ending of ['exit', 'terminate'] as const) {
    it(`releases every fd, mapping and kernel buffer it held when it ${ending === 'exit' ? 'calls process.exit()' : 'is terminated'}`, async () => {
      const fds = openFds();
      const mappings = dmaBufAndMemfdMappings();
      const buffers = kernelBufferCount();
      const { fdsInWorker, mappingsInWorker, buffersInWorker } = await runAndEnd(ending);
      // udmabuf, its memfd, the dup, the heap buffer, the timeline, the fence: 6 fds at least.
      assert.ok(fdsInWorker >= fds.size + 6, `the worker held its fds (${fdsInWorker} open, ${fds.size} before)`);
      assert.equal(mappingsInWorker, mappings.length + 4, 'the worker had the udmabuf (twice), its memfd and the heap buffer mapped');
      assert.equal(buffersInWorker, buffers + 2, 'the kernel had the udmabuf and the heap buffer');
      const leaked = [...openFds()].filter((fd) => !fds.has(fd));
      assert.deepEqual(leaked, [], 'no fd of the worker is left open');
      assert.deepEqual(dmaBufAndMemfdMappings(), mappings, 'no mapping of the worker is left');
      assert.equal(kernelBufferCount(), buffers, 'the kernel freed both buffers');
    });
  }
});
