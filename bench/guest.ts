/**
 * Runs inside the VM (bench/run.ts boots it): each workload through the
 * library, then through the C baseline, alternating, best of several rounds
 * each, and prints the results as JSON lines.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FdChannel, Memfd, SwSyncTimeline, udmabuf } from '../lib';

interface Measurement {
  workload: string;
  ops: number;
  seconds: number;
}

const rounds = 5;
// warmup: iterations before measuring; under TCG the JIT needs thousands of
// round trips before event-loop code runs at speed.
const workloads: Record<string, { iterations: number; warmup?: number; run(iterations: number): Promise<Measurement> | Measurement }> = {
  // The library's default checks for pending fences before START, so that
  // the kernel never blocks the event loop; C does the same poll(2) here.
  'sync-checked': {
    iterations: 20000,
    run(iterations) {
      using buffer = udmabuf.create(1 << 20);
      const start = process.hrtime.bigint();
      for (let index = 0; index < iterations; index += 1) {
        buffer.beginCpuAccess('readwrite');
        buffer.endCpuAccess('readwrite');
      }
      return { workload: 'sync-checked', ops: iterations, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
    },
  },
  sync: {
    iterations: 20000,
    run(iterations) {
      using buffer = udmabuf.create(1 << 20);
      const blocking = { block: true };
      const start = process.hrtime.bigint();
      for (let index = 0; index < iterations; index += 1) {
        buffer.beginCpuAccess('readwrite', blocking);
        buffer.endCpuAccess('readwrite');
      }
      return { workload: 'sync', ops: iterations, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
    },
  },
  create: {
    iterations: 2000,
    run(iterations) {
      using device = udmabuf.open();
      const start = process.hrtime.bigint();
      for (let index = 0; index < iterations; index += 1) device.create(16 * 4096).close();
      return { workload: 'create', ops: iterations, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
    },
  },
  memcpy: {
    iterations: 40,
    run(iterations) {
      const size = 16 << 20;
      using buffer = udmabuf.create(size);
      const source = Buffer.alloc(size, 0x5a);
      const target = buffer.map();
      target.fill(0);
      const start = process.hrtime.bigint();
      for (let index = 0; index < iterations; index += 1) {
        source[index % size] = index & 0xff;
        source.copy(target);
      }
      return { workload: 'memcpy', ops: iterations * size, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
    },
  },
  fence: {
    iterations: 2000,
    async run(iterations) {
      using timeline = SwSyncTimeline.open();
      using buffer = udmabuf.create(4096);
      const start = process.hrtime.bigint();
      for (let index = 0; index < iterations; index += 1) {
        using fence = timeline.createFence(timeline.value + 1, 'bench');
        buffer.importSyncFile(fence, 'write');
        using exported = buffer.exportSyncFile('read');
        timeline.advance(1);
        await exported.wait();
      }
      return { workload: 'fence', ops: iterations, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
    },
  },
  fdpass: { iterations: 2000, warmup: 4000, run: pingPong('fdpass', channelPeer) },
  // Node's own stream sockets doing the same ping-pong without fds: the floor
  // an event-loop round trip sets, against the same C pair.
  'fdpass-node-net': { iterations: 2000, warmup: 4000, run: pingPong('fdpass-node-net', netPeer) },
  ...(process.env.DMABUF_BENCH_USOCKET ? { 'fdpass-usocket': { iterations: 1000, run: isolated('fdpass-usocket') } } : {}),
};

const peer = join(__dirname, 'fd-peer.js');

/**
 * One peer process per workload, kept for the warm-up and every round: a
 * fresh Node process would run its side cold (under TCG the JIT needs
 * thousands of round trips), while the C pair is always at speed.
 */
const peers = new Map<string, Promise<{ roundTrip(): Promise<void>; close(): Promise<void> }>>();

function channelPeer(): Promise<{ roundTrip(): Promise<void>; close(): Promise<void> }> {
  const [mine, theirs] = FdChannel.pair();
  const child = spawn(process.execPath, [peer, 'channel'], { stdio: ['ignore', 'inherit', 'inherit', theirs.fd] });
  theirs.close();
  const memfd = Memfd.create(4096);
  return Promise.resolve({
    async roundTrip() {
      await mine.send('ping', [memfd.fd]);
      closeSync((await mine.receive()).handles[0] as number);
    },
    async close() {
      mine.close();
      memfd.close();
      await new Promise((resolve) => child.on('exit', resolve));
    },
  });
}

async function netPeer(): Promise<{ roundTrip(): Promise<void>; close(): Promise<void> }> {
  const path = join(tmpdir(), `dmabuf-bench-net-${process.pid}.sock`);
  rmSync(path, { force: true });
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const child = spawn(process.execPath, ['-e', `const s = require('node:net').connect(${JSON.stringify(path)}); s.on('data', (d) => s.write(d)); s.on('end', () => s.end());`], { stdio: 'inherit' });
  const socket = await new Promise<Socket>((resolve) => server.once('connection', resolve));
  return {
    async roundTrip() {
      socket.write('ping');
      await new Promise((resolve) => socket.once('data', resolve));
    },
    async close() {
      socket.end();
      await new Promise((resolve) => child.on('exit', resolve));
      server.close();
      rmSync(path, { force: true });
    },
  };
}

function pingPong(workload: string, makePeer: () => Promise<{ roundTrip(): Promise<void>; close(): Promise<void> }>): (iterations: number) => Promise<Measurement> {
  return async (iterations) => {
    if (!peers.has(workload)) peers.set(workload, makePeer());
    const { roundTrip } = await peers.get(workload)!;
    const start = process.hrtime.bigint();
    for (let index = 0; index < iterations; index += 1) await roundTrip();
    return { workload, ops: iterations, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
  };
}

async function closePeers(): Promise<void> {
  for (const peerPromise of peers.values()) await (await peerPromise).close();
  peers.clear();
}

interface USocketLike {
  on(event: string, listener: (socket: USocketLike) => void): void;
  removeAllListeners(event: string): void;
  read(size: number, fdCount: number): { data: Buffer; fds: number[] } | null;
  write(message: { data: Buffer; fds: number[] }): void;
  end(): void;
  listen(path: string, callback: () => void): void;
  close(): void;
}

async function fdPassUsocket(iterations: number): Promise<Measurement> {
  const installedAt = process.env.DMABUF_BENCH_USOCKET!;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { UServer } = require(require.resolve('usocket', { paths: [installedAt] })) as { UServer: new () => USocketLike };
  const path = join(process.env.TMPDIR ?? '/tmp', `usocket-bench-${process.pid}.sock`);
  rmSync(path, { force: true });
  const server = new UServer();
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const child = spawn(process.execPath, [peer, 'usocket', path, installedAt], { stdio: 'inherit' });
  const connection = await new Promise<USocketLike>((resolve) => server.on('connection', resolve));
  using memfd = Memfd.create(4096);
  let pending: (() => void) | undefined;
  connection.on('readable', () => {
    for (;;) {
      const message = connection.read(16, 1);
      if (!message) return;
      for (const fd of message.fds) closeSync(fd);
      pending?.();
    }
  });
  const roundTrip = () => new Promise<void>((resolve) => {
    pending = resolve;
    connection.write({ data: Buffer.alloc(16, 2), fds: [memfd.fd] });
  });
  await roundTrip();
  const start = process.hrtime.bigint();
  for (let index = 0; index < iterations; index += 1) await roundTrip();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  // usocket 1.1.0 aborts the process (a failed assertion in uwrap.cc) when
  // end() or close() meets a pending read: stop reading and let the peer go.
  pending = undefined;
  connection.removeAllListeners('readable');
  connection.on('error', () => undefined);
  server.on('error', () => undefined);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  rmSync(path, { force: true });
  return { workload: 'fdpass-usocket', ops: iterations, seconds };
}

function runC(binary: string, workload: string, iterations: number): Measurement {
  if (workload.startsWith('fdpass')) {
    const pingpong = spawnSync(process.env.DMABUF_BENCH_PINGPONG!, [String(iterations)], { encoding: 'utf8' });
    if (pingpong.status !== 0) throw new Error(`fd_pingpong failed: ${pingpong.stderr}`);
    return JSON.parse(pingpong.stdout) as Measurement;
  }
  const result = spawnSync(binary, [workload, String(iterations)], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${binary} ${workload} failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as Measurement;
}

/**
 * Runs a measurement in a child process: usocket 1.1.0 has been seen to abort
 * its process on a failed assertion, which must not take the bench with it.
 */
function isolated(workload: string): (iterations: number) => Measurement {
  return (iterations) => {
    const child = spawnSync(process.execPath, [__filename, '--measure', workload, String(iterations)], { encoding: 'utf8', timeout: 60_000 });
    if (child.status !== 0) {
      const reason = (child.stderr.split('\n').find((line) => /Assertion|Error/.test(line)) ?? `exit status ${child.status ?? child.signal}`).trim();
      throw Object.assign(new Error(reason), { isolatedFailure: true });
    }
    return JSON.parse(child.stdout) as Measurement;
  };
}

async function main(): Promise<void> {
  if (process.argv[2] === '--measure') {
    const measurement = await fdPassUsocket(Number(process.argv[4]));
    process.stdout.write(JSON.stringify(measurement));
    return;
  }
  const binary = process.env.DMABUF_BENCH_C;
  if (!binary) throw new Error('DMABUF_BENCH_C names the C baseline binary (bench/run.ts sets it)');
  const only = process.argv.slice(2);
  for (const [name, workload] of Object.entries(workloads)) {
    if (only.length > 0 && !only.includes(name)) continue;
    let bestJs = 0;
    let bestC = 0;
    try {
      await workload.run(workload.warmup ?? Math.ceil(workload.iterations / 10)); // warm-up: JIT and page cache
      runC(binary, name, Math.ceil(workload.iterations / 10));
      for (let round = 0; round < rounds; round += 1) {
        const js = await workload.run(workload.iterations);
        const c = runC(binary, name, workload.iterations);
        bestJs = Math.max(bestJs, js.ops / js.seconds);
        bestC = Math.max(bestC, c.ops / c.seconds);
      }
    } catch (error) {
      if (!(error as { isolatedFailure?: boolean }).isolatedFailure) throw error;
      process.stdout.write(`${JSON.stringify({ workload: name, error: (error as Error).message })}\n`);
      continue;
    }
    process.stdout.write(`${JSON.stringify({ workload: name, js: bestJs, c: bestC })}\n`);
  }
  await closePeers();
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
