import assert from 'node:assert/strict';
import { fstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import { Memfd } from '../../lib';
import { native, type NativeMapping } from '../../lib/native';

// A worker runs plain JavaScript: it loads the compiled library (npm test compiles first).
const compiled = join(__dirname, '..', '..', 'dist', 'lib');

// The host suite runs without --expose-gc; this gives the test a real gc().
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

// Memfds and mappings work on any Linux host, so the addon's per-environment
// state is tested here: each worker thread loads its own copy of the addon's
// JavaScript objects and tears them down when it exits.
describe('native addon across worker threads', () => {
  it('keeps mapping after a worker that used the addon has exited', async () => {
    for (let round = 0; round < 3; round += 1) {
      await runWorker(
        `const memfd = Memfd.create(8192);
         const { mapping, buffer } = native().mapShared(memfd.fd, 8192, true);
         new Uint8Array(buffer)[0] = 1;
         mapping.unmap();
         memfd.close();`,
      );
    }
    using memfd = Memfd.create(8192);
    const { mapping, buffer } = mapped(memfd.fd, 8192);
    const view = new Uint8Array(buffer);
    view[4096] = 42;
    assert.equal(view[4096], 42);
    assert.equal(mapping.unmap(), 0);
    assert.equal(view.length, 0, 'unmap detaches every view');
    assert.equal(mapping.unmap(), 0, 'a second unmap does nothing');
  });

  it('unmaps a mapping once when its buffer is collected: a later unmap() leaves the mapping now at that address alone', async () => {
    using memfd = Memfd.create(4096);
    const before = rangesOf(memfd.fd);
    let finalized = 0;
    const registry = new FinalizationRegistry(() => (finalized += 1));
    // The buffer lives only inside this function; the Mapping object outlives it.
    const first = ((): { mapping: NativeMapping; range: string } => {
      const { mapping, buffer } = mapped(memfd.fd, 4096);
      new Uint8Array(buffer)[0] = 7;
      registry.register(buffer, 'first');
      return { mapping, range: rangesOf(memfd.fd).find((range) => !before.includes(range))! };
    })();
    assert.equal(rangesOf(memfd.fd).length, before.length + 1);
    for (let turn = 0; turn < 20 && (finalized === 0 || rangesOf(memfd.fd).length > before.length); turn += 1) {
      gc();
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.equal(finalized, 1, 'the buffer was collected');
    assert.deepEqual(rangesOf(memfd.fd), before, 'its finalizer unmapped the range');
    assert.equal(first.mapping.buffer, null);

    // The kernel hands the freed range out again: a second munmap through
    // the first Mapping would now unmap this one.
    const second = mapped(memfd.fd, 4096);
    assert.deepEqual(rangesOf(memfd.fd), [...before, first.range].sort(), 'the new mapping took the freed address');
    assert.equal(first.mapping.unmap(), 0);
    assert.equal(first.mapping.unmap(), 0);
    assert.deepEqual(rangesOf(memfd.fd), [...before, first.range].sort(), 'the new mapping is still there');
    const view = new Uint8Array(second.buffer);
    assert.equal(view[0], 7, 'and reads the memfd');
    assert.equal(second.mapping.unmap(), 0);
    assert.equal(second.mapping.unmap(), 0, 'a second unmap does nothing');
    assert.equal(view.length, 0);
    assert.deepEqual(rangesOf(memfd.fd), before);
  });
});

function mapped(fd: number, size: number): { mapping: NativeMapping; buffer: ArrayBuffer } {
  const result = native().mapShared(fd, size, true);
  if (typeof result !== 'object') assert.fail(`mapShared returned ${result}`);
  return result;
}

function runWorker(body: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const worker = new Worker(
      `const { native } = require(${JSON.stringify(join(compiled, 'native.js'))});
       const { Memfd } = require(${JSON.stringify(join(compiled, 'index.js'))});
       ${body}`,
      { eval: true },
    );
    worker.on('error', reject);
    worker.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker exited with ${code}`))));
  });
}

/** The address ranges of this process's mappings of the fd's inode, sorted. */
function rangesOf(fd: number): string[] {
  const inode = String(fstatSync(fd).ino);
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.split(/\s+/)[4] === inode)
    .map((line) => line.split(' ')[0]!)
    .sort();
}

export function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}
