import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { FdChannel, SwSyncTimeline, SyncFile, inspectProcess, inspectSystem, udmabuf, type DmaBuf } from '../../lib';
import { exited, firstLine, pageSize, requireVm, settledWithin } from './helpers';

const scripts = join(__dirname, '..', '..', '..', 'test', 'fixtures', 'scripts');
const bin = join(__dirname, '..', '..', '..', 'bin', 'dmabuf.js');

/**
 * A reader in another process gets the buffer with the writer's fence
 * pending, says it is waiting, and replies with what it read. The buffer
 * holds stale bytes until the moment the fence signals, when the "device"
 * writes the fresh ones: a reader that reads without waiting for the fence
 * replies while it is pending, with the stale bytes, and fails this.
 */
async function readAcrossFence(readerMode: 'read-after-fence' | 'read-without-waiting'): Promise<void> {
  using timeline = SwSyncTimeline.open();
  using buffer = udmabuf.create(4 * pageSize);
  buffer.map().write('stale: there before the fence');
  using writing = timeline.createFence(1, 'producer');
  buffer.importSyncFile(writing, 'write');
  const [parent, childEnd] = FdChannel.pair();
  const child = spawn(process.execPath, [join(scripts, 'channel-child.js'), readerMode], { stdio: ['ignore', 'inherit', 'inherit', childEnd.fd] });
  childEnd.close();
  try {
    await parent.send({ role: 'reader' }, [buffer]);
    assert.deepEqual((await parent.receive()).message, { waiting: true });
    const reply = parent.receive<{ text: string; inode: number }>();
    // The fence is pending: a reader that waits for it has not read, so has not replied.
    const repliedEarly = await settledWithin(reply, 500);
    buffer.map().fill(0).write('fresh: written as the fence signalled');
    timeline.advance(1);
    const { message } = await reply;
    assert.equal(repliedEarly, false, `the reader replied before the fence signalled, having read "${message.text}"`);
    assert.equal(message.text, 'fresh: written as the fence signalled');
    assert.equal(message.inode, buffer.inode);
    assert.equal(await exited(child), 0);
  } finally {
    parent.close();
  }
}

describe('sharing buffers between processes', () => {
  requireVm();

  it('a reader in another process waits for the writer\'s fence: it reads nothing before it signals, and then the bytes written', async () => {
    await readAcrossFence('read-after-fence');
  });

  it('that check fails a reader that skips the wait: it replies while the fence is pending, with the stale bytes', async () => {
    await assert.rejects(readAcrossFence('read-without-waiting'), (error: Error) => {
      assert.match(error.message, /^the reader replied before the fence signalled, having read "stale: there before the fence"/);
      return true;
    });
  });

  it('passes a sync_file, which the receiver waits on', async () => {
    using timeline = SwSyncTimeline.open();
    using fence = timeline.createFence(1);
    const [a, b] = FdChannel.pair();
    try {
      await a.send('fence', [fence]);
      const { handles } = await b.receive();
      const received = handles[0] as SyncFile;
      assert.ok(received instanceof SyncFile);
      assert.equal(received.status, 'active');
      const waiting = received.wait({ timeoutMs: 5000 });
      timeline.advance(1);
      await waiting;
      received.close();
    } finally {
      a.close();
      b.close();
    }
  });

  it('100 processes share one buffer: one inode, 101 holders, count 101', async function () {
    this.timeout(120_000);
    using buffer = udmabuf.create(4 * pageSize, { name: 'shared-by-101' });
    const children = Array.from({ length: 100 }, () => spawn('sleep', ['120'], { stdio: ['ignore', 'ignore', 'ignore', buffer.fd] }));
    try {
      await Promise.all(children.map((child) => new Promise((resolve) => child.on('spawn', resolve))));
      assert.equal(buffer.info().count, 101, 'fdinfo counts every open file reference');
      const shared = inspectSystem().buffers.find((entry) => entry.inode === buffer.inode);
      assert.ok(shared, 'the buffer appears in the system report');
      assert.equal(shared.holders.length, 101);
      assert.equal(shared.name, 'shared-by-101');
      assert.equal(shared.exporter, 'udmabuf');
      const pids = new Set(shared.holders.map((holder) => holder.pid));
      for (const child of children) assert.ok(pids.has(child.pid!), `child ${child.pid} is listed`);
      assert.ok(pids.has(process.pid));
    } finally {
      for (const child of children) child.kill();
      await Promise.all(children.map(exited));
    }
  });
});

describe('inspection: who holds which buffer', () => {
  requireVm();
  let holders: ChildProcess[] = [];
  afterEach(async () => {
    for (const child of holders) child.kill();
    await Promise.all(holders.map(exited));
    holders = [];
  });

  async function hold(mode: 'fd-only' | 'map-only'): Promise<{ pid: number; inode: number }> {
    const child = spawn(process.execPath, [join(scripts, 'hold-buffer.js'), mode], { stdio: ['ignore', 'pipe', 'inherit'] });
    holders.push(child);
    const { inode } = JSON.parse(await firstLine(child)) as { inode: number };
    return { pid: child.pid!, inode };
  }

  it('sees a buffer held only by fd, and one held only by a mapping, in the right processes', async () => {
    const byFd = await hold('fd-only');
    const byMap = await hold('map-only');
    using mine = udmabuf.create(2 * pageSize, { name: 'mine' });
    mine.map();

    const fdReport = inspectProcess(byFd.pid);
    const held = fdReport.buffers.find((buffer) => buffer.inode === byFd.inode)!;
    assert.equal(held.fds.length, 1);
    assert.equal(held.mappings.length, 0);
    assert.equal(held.exporter, 'udmabuf');
    assert.equal(held.size, 8 * pageSize);
    assert.equal(held.name, 'held-fd-only');

    const mapReport = inspectProcess(byMap.pid);
    const mapped = mapReport.buffers.find((buffer) => buffer.inode === byMap.inode)!;
    assert.deepEqual(mapped.fds, []);
    assert.equal(mapped.mappings.length, 1);
    assert.equal(mapped.mappings[0]!.bytes, 8 * pageSize);

    const own = inspectProcess().buffers.find((buffer) => buffer.inode === mine.inode)!;
    assert.deepEqual(own.fds, [mine.fd]);
    assert.equal(own.mappings.length, 1);

    const system = inspectSystem();
    assert.ok(system.bufinfo, 'debugfs bufinfo is readable as root in the VM');
    const mappedOnly = system.buffers.find((buffer) => buffer.inode === byMap.inode)!;
    assert.equal(mappedOnly.exporter, 'udmabuf', 'bufinfo names the exporter of a buffer no process holds by fd');
    assert.equal(mappedOnly.size, 8 * pageSize);
    assert.equal(mappedOnly.name, 'held-map-only');
    assert.deepEqual(mappedOnly.holders.map((holder) => [holder.pid, holder.fds.length, holder.mappings]), [[byMap.pid, 0, 1]]);
    const exporterTotal = system.totals.perExporter.find((row) => row.exporter === 'udmabuf')!;
    assert.ok(exporterTotal.buffers >= 3);
    const perProcess = system.totals.perProcess.find((row) => row.pid === byFd.pid)!;
    assert.deepEqual([perProcess.buffers, perProcess.bytes], [1, 8 * pageSize]);
  });

  it('shows fences of a buffer\'s reservation from debugfs', () => {
    using timeline = SwSyncTimeline.open();
    using buffer: DmaBuf = udmabuf.create(pageSize);
    using fence = timeline.createFence(1);
    buffer.importSyncFile(fence, 'write');
    const entry = inspectSystem().buffers.find((item) => item.inode === buffer.inode)!;
    const shown = entry.fences!.find((item) => item.usage === 'write');
    assert.ok(shown, JSON.stringify(entry.fences));
    assert.deepEqual([shown.driver, shown.timeline, shown.seqno, shown.signalled], ['sw_sync', 'node', 1, false], shown.text);
    timeline.advance(1);
  });

  it('the CLI prints the same as JSON and as a table', async () => {
    const byFd = await hold('fd-only');
    const json = spawnSync(process.execPath, [bin, 'ls', '--json'], { encoding: 'utf8' });
    assert.equal(json.status, 0, json.stderr);
    const report = JSON.parse(json.stdout) as ReturnType<typeof inspectSystem>;
    assert.ok(report.buffers.some((buffer) => buffer.inode === byFd.inode && buffer.holders.some((holder) => holder.pid === byFd.pid)));
    const text = spawnSync(process.execPath, [bin, 'ls'], { encoding: 'utf8' });
    assert.match(text.stdout, new RegExp(`^${byFd.inode}\\s+32\\.0 KiB\\s+udmabuf\\s+held-fd-only\\s+${byFd.pid} node: 1 fd, 0 maps`, 'm'));
    const one = spawnSync(process.execPath, [bin, 'ls', '--pid', String(byFd.pid), '--json'], { encoding: 'utf8' });
    assert.equal((JSON.parse(one.stdout) as ReturnType<typeof inspectProcess>).buffers[0]!.inode, byFd.inode);
  });
});

describe('the README\'s two-process example', () => {
  requireVm();

  it('runs as written', () => {
    const example = join(__dirname, '..', '..', '..', 'examples', 'two-processes.js');
    const result = spawnSync(process.execPath, [example], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^reader \d+ saw: hello, reader$/m);
    assert.match(result.stdout, /^writer \d+: reader exited with 0$/m);
  });
});
