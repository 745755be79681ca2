import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { DmaBuf } from '../../../lib';
import { kernelTest, type KernelTestDevice } from '../../../lib/kernel-test';
import { requireModule } from './helpers';

const pageSize = 4096;
const wordsPerPage = pageSize / 4;

// The module's test-only knob: each CPU fault sleeps this long between
// choosing its page and mapping it. Unwidened, that window is a few hundred
// instructions and a move almost never lands in it; widened, the mover (which
// moves without pause) lands in many of them, so a fault handler that maps
// its page after dropping pages_lock loses writes within the first round.
// Nearly every write is then a slow fault, hence 8 pages a round, not more.
const faultDelayParameter = '/sys/module/dmabuf_test/parameters/fault_delay_us';

// Each writer owns every `writers`-th word of every page and writes its
// slots in order, one page after the next, so that each write after a move
// is a fresh fault on another page: slot k is word
// (floor(k / pages) * writers + index) of page (k % pages), and holds
// (round << 20 | k + 1) once written. No slot is written twice in a round, so
// a write that went astray cannot be mended by a later one.
const writerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { DmaBuf } = require(workerData.lib);
const { fd, index, writers, pages, control } = workerData;
const state = new Int32Array(control);
const buffer = DmaBuf.fromFd(fd, { dup: true });
const view = buffer.map();
const slots = pages * ${wordsPerPage} / writers;
parentPort.postMessage('ready');
for (let round = 1; ; round += 1) {
  // state[0]: the round to write (-1: stop); state[1]: writers done with it.
  while (Atomics.load(state, 0) < round && Atomics.load(state, 0) !== -1) Atomics.wait(state, 0, round - 1, 100);
  if (Atomics.load(state, 0) === -1) break;
  for (let k = 0; k < slots; k += 1) {
    const page = k % pages;
    const word = Math.floor(k / pages) * writers + index;
    view.writeUInt32LE(((round << 20) | (k + 1)) >>> 0, page * ${pageSize} + word * 4);
  }
  Atomics.add(state, 1, 1);
  Atomics.notify(state, 1);
}
buffer.close();
`;

/** The slots a round left unwritten or wrong, as "writer:slot=found" (the first few). */
function lostWrites(contents: Buffer, round: number, writers: number, pages: number): { count: number; first: string[] } {
  const slots = (pages * wordsPerPage) / writers;
  let count = 0;
  const first: string[] = [];
  for (let index = 0; index < writers; index += 1) {
    for (let k = 0; k < slots; k += 1) {
      const offset = (k % pages) * pageSize + (Math.floor(k / pages) * writers + index) * 4;
      const found = contents.readUInt32LE(offset);
      if (found !== (((round << 20) | (k + 1)) >>> 0)) {
        count += 1;
        if (first.length < 5) first.push(`${index}:${k}=0x${found.toString(16)}`);
      }
    }
  }
  return { count, first };
}

describe('kernel module: CPU writes during moves', () => {
  requireModule();
  let device: KernelTestDevice;
  beforeEach(() => {
    device = kernelTest.open();
  });
  afterEach(() => device.close());

  let savedFaultDelay: string | undefined;
  const faultDelayUs = Number(process.env.DMABUF_MOVE_RACE_FAULT_DELAY_US ?? 200);
  before(() => {
    savedFaultDelay = readFileSync(faultDelayParameter, 'utf8').trim();
    writeFileSync(faultDelayParameter, `${faultDelayUs}\n`);
    assert.equal(readFileSync(faultDelayParameter, 'utf8').trim(), String(faultDelayUs));
  });
  after(() => {
    if (savedFaultDelay !== undefined) writeFileSync(faultDelayParameter, `${savedFaultDelay}\n`);
  });

  it(`writers on worker threads, each through its own mapping, while the buffer moves and each fault waits ${faultDelayUs} µs between choosing and mapping its page: after each round every write is in the buffer`, async function () {
    const pages = Number(process.env.DMABUF_MOVE_RACE_PAGES ?? 8);
    const writers = Number(process.env.DMABUF_MOVE_RACE_WRITERS ?? 2);
    assert.equal(wordsPerPage % writers, 0, 'the writers share the words of each page evenly');
    const durationMs = Number(process.env.DMABUF_MOVE_RACE_MS ?? 8000);
    this.timeout(durationMs + 60_000);
    const exporter = device.export({ pages, dynamic: true });
    using buffer = exporter.dmabuf;
    const control = new SharedArrayBuffer(8);
    const state = new Int32Array(control);
    const workers = Array.from(
      { length: writers },
      (_, index) => new Worker(writerSource, { eval: true, workerData: { fd: buffer.fd, index, writers, pages, control, lib: require.resolve('../../../lib') } }),
    );
    const exited = workers.map(
      (worker) =>
        new Promise<void>((resolve, reject) => {
          worker.on('error', reject);
          worker.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writer exited with ${code}`))));
        }),
    );
    let rounds = 0;
    let moves = 0;
    const failures: string[] = [];
    try {
      await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('message', resolve))));
      const deadline = Date.now() + durationMs;
      while (Date.now() < deadline && failures.length === 0) {
        rounds += 1;
        Atomics.store(state, 1, 0);
        Atomics.store(state, 0, rounds);
        Atomics.notify(state, 0);
        // Moves for as long as the writers write: this thread is the mover.
        while (Atomics.load(state, 1) < writers) {
          exporter.move();
          moves += 1;
        }
        // A fresh mapping faults in the pages the buffer has now.
        using reader = DmaBuf.fromFd(buffer.fd, { dup: true });
        const lost = lostWrites(reader.map(), rounds, writers, pages);
        if (lost.count > 0) failures.push(`round ${rounds}: ${lost.count} writes lost (${lost.first.join(', ')})`);
      }
    } finally {
      Atomics.store(state, 0, -1);
      Atomics.notify(state, 0);
      await Promise.all(exited);
    }
    process.stdout.write(`      ${rounds} rounds, ${moves} moves, ${writers} writers on ${pages} pages\n`);
    assert.deepEqual(failures, []);
    assert.equal(exporter.info().moves, moves);
    assert.ok(moves >= rounds, `${moves} moves in ${rounds} rounds: the buffer moved while the writers wrote`);
  });
});
