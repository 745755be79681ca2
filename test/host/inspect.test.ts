import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseFdinfo } from '../../lib/dmabuf';
import { parseBufinfo, parseBufinfoFence } from '../../lib/inspect';

// Text captured in the VM from each kernel by
// test/fixtures/scripts/capture-inspect-sources.js: a udmabuf named
// capture-fences with a signalled write fence (seq 1) and an unsignalled read
// fence (seq 3), a bare udmabuf, and capture-pending-write with an
// unsignalled write fence (seq 2), all on one sw_sync timeline named after
// the task's comm, 'cap ture'.
interface Capture {
  release: string;
  comm: string;
  inodes: { fences: number; bare: number; pendingWrite: number };
  bufinfo: string;
  fdinfo: string;
}

const directory = join(__dirname, '..', 'fixtures', 'kernels');
const captures = readdirSync(directory)
  .filter((name) => name.startsWith('inspect-sources-'))
  .map((name) => JSON.parse(readFileSync(join(directory, name), 'utf8')) as Capture);

describe('inspect parses what each kernel writes', () => {
  it('has a capture from each kernel generation the project runs: 6.1, 6.12, 7.2', () => {
    assert.deepEqual(captures.map((capture) => capture.release.split('.').slice(0, 2).join('.')).sort(), ['6.1', '6.12', '7.2']);
  });

  for (const capture of captures) {
    // 7.2 writes the fence's context:seqno first and names only unsignalled fences.
    const namesSignalled = !/^(7|[89]|\d{2,})\./.test(capture.release);

    describe(`Linux ${capture.release}`, () => {
      it('bufinfo: every buffer with its size, exporter, name and fences, each fence line fully parsed', () => {
        const entries = parseBufinfo(capture.bufinfo);
        assert.equal(entries.length, 3);
        const byInode = new Map(entries.map((entry) => [entry.inode, entry]));
        const fenced = byInode.get(capture.inodes.fences)!;
        assert.deepEqual([fenced.size, fenced.exporter, fenced.name, fenced.attachedDevices], [16384, 'udmabuf', 'capture-fences', []]);
        const [signalled, pending] = fenced.fences;
        assert.equal(fenced.fences.length, 2);
        assert.deepEqual([signalled!.usage, signalled!.seqno, signalled!.signalled], ['write', 1, true], signalled!.text);
        assert.deepEqual([signalled!.driver, signalled!.timeline], namesSignalled ? ['sw_sync', capture.comm] : [undefined, undefined], signalled!.text);
        assert.deepEqual([pending!.usage, pending!.driver, pending!.timeline, pending!.seqno, pending!.signalled], ['read', 'sw_sync', capture.comm, 3, false], pending!.text);
        // One timeline, one context: where the kernel prints it, both fences carry the same.
        if (namesSignalled) assert.deepEqual([signalled!.context, pending!.context], [undefined, undefined]);
        else assert.ok(Number.isInteger(signalled!.context) && signalled!.context === pending!.context, `${signalled!.text} / ${pending!.text}`);

        const bare = byInode.get(capture.inodes.bare)!;
        assert.deepEqual([bare.size, bare.name, bare.fences], [4096, undefined, []]);
        const write = byInode.get(capture.inodes.pendingWrite)!;
        assert.deepEqual(write.fences.map((fence) => [fence.usage, fence.driver, fence.timeline, fence.seqno, fence.signalled]), [['write', 'sw_sync', capture.comm, 2, false]]);
      });

      it('fdinfo: size, exporter, name and inode of the buffer', () => {
        const fields = parseFdinfo(capture.fdinfo);
        assert.deepEqual(
          ['size', 'exp_name', 'name', 'ino'].map((key) => fields.get(key)),
          ['16384', 'udmabuf', 'capture-fences', String(capture.inodes.fences)],
        );
      });
    });
  }

  it('a fence line in neither format keeps its text and usage, and parses nothing else', () => {
    assert.deepEqual(parseBufinfoFence('\tkernel fence:something new'), {
      usage: 'kernel', driver: undefined, timeline: undefined, context: undefined, seqno: undefined, signalled: undefined, text: 'kernel fence:something new',
    });
  });
});
