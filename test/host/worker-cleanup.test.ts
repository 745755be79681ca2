import assert from 'node:assert/strict';
import { closeSync, fstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

// A worker runs plain JavaScript: it loads the compiled library (npm test compiles first).
const compiled = join(__dirname, '..', '..', 'dist', 'lib', 'index.js');

interface Held {
  memfdInode: number;
  detachedFd: number;
  mappedInWorker: number;
  fdsInWorker: number;
}

// The worker opens a memfd and keeps a view of its mapping, a channel pair
// (both ends polling for messages, one with a received fd queued), and a
// listening server with an accept loop, and detaches one memfd's fd; then
// it ends without closing anything.
const workerBody = (ending: 'exit' | 'terminate') => `(async () => {
  const { FdChannel, Memfd } = require(${JSON.stringify(compiled)});
  const { parentPort } = require('node:worker_threads');
  const memfd = Memfd.create(8192);
  const view = memfd.map();
  view[0] = 1;
  const [left, right] = FdChannel.pair();
  const server = FdChannel.listen('@dmabuf-worker-cleanup-' + process.pid + '-' + Math.random());
  server.on('connection', () => {});
  const detachedFd = Memfd.create(4096).detach();
  globalThis.held = [memfd, view, left, right, server];
  // A message nobody received yet, with a Memfd's fd as a plain fd: once
  // the channel has read it, the fd is open in this process and queued.
  const fs = require('node:fs');
  const openBefore = fs.readdirSync('/proc/self/fd').length;
  const queued = Memfd.create(4096);
  void left.send('queued', [queued.fd]);
  queued.close();
  while (fs.readdirSync('/proc/self/fd').length !== openBefore + 1) await new Promise((resolve) => setImmediate(resolve));
  // Measured here, before ending: after process.exit() the parent may only
  // see the message once the worker is already gone.
  const memfdInode = fs.fstatSync(memfd.fd).ino;
  const mappedInWorker = fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((line) => line.split(/\\s+/)[4] === String(memfdInode)).length;
  parentPort.postMessage({ memfdInode, detachedFd, mappedInWorker, fdsInWorker: fs.readdirSync('/proc/self/fd').length });
  ${ending === 'exit' ? 'process.exit(0);' : ''}
})();`;

function openFds(): Set<string> {
  return new Set(readdirSync('/proc/self/fd'));
}

function mappingsOf(inode: number): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.split(/\s+/)[4] === String(inode)).length;
}

async function runAndEnd(ending: 'exit' | 'terminate'): Promise<{ held: Held; mappedInWorker: number; fdsInWorker: number }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(workerBody(ending), { eval: true });
    let held: Held | undefined;
    worker.on('message', (message: Held) => {
      held = message;
      if (ending === 'terminate') void worker.terminate();
    });
    worker.on('error', reject);
    worker.on('exit', () => (held ? resolve({ held, mappedInWorker: held.mappedInWorker, fdsInWorker: held.fdsInWorker }) : reject(new Error('the worker ended before reporting'))));
  });
}

describe('a worker thread that ends holding buffers, channels and mappings', () => {
  for (const ending of ['exit', 'terminate'] as const) {
    it(`releases every fd and mapping it owned when it ${ending === 'exit' ? 'calls process.exit()' : 'is terminated'}, and not the fd it detached`, async () => {
      const before = openFds();
      const { held, mappedInWorker, fdsInWorker } = await runAndEnd(ending);
      try {
        assert.equal(mappedInWorker, 1, 'the worker had the memfd mapped');
        assert.ok(fdsInWorker >= before.size + 5, `the worker held its fds (${fdsInWorker} open, ${before.size} before)`);
        assert.equal(mappingsOf(held.memfdInode), 0, 'the mapping is gone');
        const after = openFds();
        const leaked = [...after].filter((fd) => !before.has(fd) && Number(fd) !== held.detachedFd);
        assert.deepEqual(leaked, [], 'no fd of the worker is left open');
        assert.ok(fstatSync(held.detachedFd).isFile(), 'the detached fd is the caller\'s, and still open');
      } finally {
        closeSync(held.detachedFd);
      }
    });
  }
});

// Each way a received plain fd reaches the worker's code. The worker hands
// the fd on (fds are the process's, so the parent can use it) and ends: the
// fd was the caller's from delivery on, so the teardown must leave it open.
const handedOverBody = (way: 'listener' | 'pending receive()' | 'queued receive()') => `(async () => {
  const { FdChannel, Memfd } = require(${JSON.stringify(compiled)});
  const { parentPort } = require('node:worker_threads');
  const fs = require('node:fs');
  const [left, right] = FdChannel.pair();
  const memfd = Memfd.create(4096);
  let received;
  if (${JSON.stringify(way)} === 'listener') {
    const message = new Promise((resolve) => right.once('message', resolve));
    await left.send('fd', [memfd.fd]);
    received = await message;
  } else if (${JSON.stringify(way)} === 'pending receive()') {
    const message = right.receive();
    await left.send('fd', [memfd.fd]);
    received = await message;
  } else {
    const openBefore = fs.readdirSync('/proc/self/fd').length;
    await left.send('fd', [memfd.fd]);
    // The channel has read the message (its fd is open here) before receive() asks for it.
    while (fs.readdirSync('/proc/self/fd').length !== openBefore + 1) await new Promise((resolve) => setImmediate(resolve));
    received = await right.receive();
  }
  parentPort.postMessage({ fd: received.handles[0], inode: fs.fstatSync(memfd.fd).ino });
  left.close();
  right.close();
  memfd.close();
})();`;

describe('a worker thread that was handed a plain fd by an FdChannel', () => {
  for (const way of ['listener', 'pending receive()', 'queued receive()'] as const) {
    it(`leaves open, when it ends, the fd a ${way} gave it`, async () => {
      const { fd, inode } = await new Promise<{ fd: number; inode: number }>((resolve, reject) => {
        const worker = new Worker(handedOverBody(way), { eval: true });
        let reported: { fd: number; inode: number } | undefined;
        worker.on('message', (message: { fd: number; inode: number }) => (reported = message));
        worker.on('error', reject);
        worker.on('exit', () => (reported ? resolve(reported) : reject(new Error('the worker ended before reporting'))));
      });
      let found: number | string;
      try {
        found = fstatSync(fd).ino;
      } catch (error) {
        found = (error as NodeJS.ErrnoException).code!;
      }
      if (typeof found === 'number') closeSync(fd);
      assert.equal(found, inode, `fd ${fd} is still the memfd that was sent`);
    });
  }
});
