import assert from 'node:assert/strict';
import { fstatSync, ftruncateSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Memfd } from '../../lib';
import { native, type NativeMapping } from '../../lib/native';

// A worker runs plain JavaScript: it loads the compiled library (npm test compiles first).
const compiled = join(__dirname, '..', '..', 'dist', 'lib');

// Memfds and mappings work on any Linux host, so the addon's per-environment
// state is tested here: each worker thread loads its own copy of the addon's
// JavaScript objects and tears them down when it exits.
describe('native addon across worker threads', () => {
  it('keeps mapping after a worker that used the addon has exited', async () => {
    for (let round = 0; round < 3; round += 1) {
      await new Promise<void>((resolve, reject) => {
        const worker = new Worker(
          `const { native } = require(${JSON.stringify(join(compiled, 'native.js'))});
           const { Memfd } = require(${JSON.stringify(join(compiled, 'index.js'))});
           const memfd = Memfd.create(8192);
           const mapping = native().mapShared(memfd.fd, 8192, true);
           new Uint8Array(mapping.buffer)[0] = 1;
           mapping.unmap();
           memfd.close();`,
          { eval: true },
        );
        worker.on('error', reject);
        worker.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker exited with ${code}`))));
      });
    }
    using memfd = Memfd.create(8192);
    const mapping = native().mapShared(memfd.fd, 8192, true) as NativeMapping;
    const view = new Uint8Array(mapping.buffer!);
    view[4096] = 42;
    assert.equal(view[4096], 42);
    assert.equal(mapping.unmap(), 0);
    assert.equal(view.length, 0, 'unmap detaches every view');
    assert.equal(mapping.unmap(), 0, 'a second unmap does nothing');
  });

  it('unmaps a mapping whose views are collected, exactly once', () => {
    using memfd = Memfd.create(4096);
    ftruncateSync(memfd.fd, 4096);
    const before = mapsOf(memfd.fd);
    let mapping: NativeMapping | undefined = native().mapShared(memfd.fd, 4096, true) as NativeMapping;
    assert.equal(mapsOf(memfd.fd), before + 1);
    mapping.unmap();
    mapping = undefined;
    assert.equal(mapsOf(memfd.fd), before);
  });
});

function mapsOf(fd: number): number {
  const inode = fstatSync(fd).ino;
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((line) => line.split(/\s+/)[4] === String(inode)).length;
}
