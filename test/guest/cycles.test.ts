import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { FdChannel, udmabuf } from '../../lib';
import { dmaBufMappingCount, exited, kernelBufferCount, openFdCount, pageSize, requireVm } from './helpers';

const scripts = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'scripts');
// 1,000 in npm test (about a minute under TCG); the reliability run sets
// DMABUF_CYCLES=10000 (the command is in the README).
const cycles = Number(process.env.DMABUF_CYCLES ?? 1_000);

interface Counts {
  fds: number;
  mappings: number;
}

interface Seen {
  cycle: number;
  head: number;
  fill: number;
  uniform: boolean;
  size: number;
}

describe('create, map, share, close, many times over', () => {
  requireVm();

  it(`${cycles} buffers made, written, sent to another process that maps and reads them, and closed on both sides: every byte arrives, and fds, mappings (both processes) and the kernel's dma-buf count end where they began`, async function () {
    this.timeout(0); // bounded by the cycle count; the time per cycle is printed
    const size = 2 * pageSize;
    const [parent, childEnd] = FdChannel.pair();
    const child = spawn(process.execPath, [join(scripts, 'cycle-peer.js')], { stdio: ['ignore', 'inherit', 'inherit', childEnd.fd] });
    childEnd.close();
    try {
      const childStart = (await parent.receive<Counts>()).message;
      const fdsBefore = openFdCount();
      const mappingsBefore = dmaBufMappingCount();
      const buffersBefore = kernelBufferCount();
      const started = process.hrtime.bigint();
      for (let cycle = 0; cycle < cycles; cycle += 1) {
        const buffer = udmabuf.create(size);
        try {
          const fill = (cycle * 7 + 1) & 0xff;
          buffer.withCpuAccess('write', (bytes) => {
            bytes.fill(fill);
            bytes.writeUInt32LE(cycle, 0);
          });
          await parent.send({ cycle }, [buffer]);
        } finally {
          buffer.close();
        }
        const { message } = await parent.receive<Seen>();
        // Only a failing cycle pays for the deepEqual's message.
        if (message.cycle !== cycle || message.head !== cycle || message.fill !== ((cycle * 7 + 1) & 0xff) || !message.uniform || message.size !== size) {
          assert.deepEqual(message, { cycle, head: cycle, fill: (cycle * 7 + 1) & 0xff, uniform: true, size }, `cycle ${cycle}`);
        }
      }
      const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
      process.stdout.write(`      ${cycles} cycles in ${(elapsedMs / 1000).toFixed(1)} s: ${((elapsedMs * 1000) / cycles).toFixed(0)} µs per cycle\n`);
      await parent.send({ done: true });
      const childFinal = (await parent.receive<Counts>()).message;
      assert.equal(await exited(child), 0, 'the peer exits cleanly');
      assert.deepEqual(childFinal, childStart, "the peer's open fds and dma-buf mappings");
      assert.equal(openFdCount(), fdsBefore, 'open fds here');
      assert.equal(dmaBufMappingCount(), mappingsBefore, 'dma-buf mappings here');
      assert.equal(kernelBufferCount(), buffersBefore, "the kernel's count of dma-bufs (bufinfo)");
    } finally {
      parent.close();
      if (child.exitCode === null) child.kill();
    }
  });
});
