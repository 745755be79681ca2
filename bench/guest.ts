/**
 * Runs inside the VM (bench/run.ts boots it). Every row is measured in its
 * own Node process by one helper, measureRow() in bench/measure.ts: the
 * JavaScript session and the C session are each opened once (peers
 * included), given the same warm-up rounds, then the same measured rounds,
 * alternating; the row reports min/median/max of the measured rounds. A
 * row whose process dies (usocket 1.1.0 has aborted on its own assertion) is
 * reported as failed with the reason, and the other rows go on. Prints one
 * JSON line per row.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FdChannel, FdSocket, SwSyncTimeline, udmabuf, type DmaBuf } from '../lib';
import { primitivesEndpoint } from './primitives';
import { native } from '../lib/native';
import { measureRow, timed, type Measurement, type Row, type Session } from './measure';

interface Workload {
  iterations: number;
  open(): Promise<Session>;
  /** The C counterpart, as bench/run.ts built it; none for a reference row. */
  c?: { binary: 'baseline' | 'pingpong'; workload?: string };
  /** Reference sessions measured in this row's rounds (Row.alongside). */
  alongside?: Record<string, () => Promise<Session>>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

const peer = join(__dirname, 'fd-peer.js');

/**
 * Spawns a peer for a row and ends the row's process if the peer dies before
 * the row closes it: a round trip waiting on a dead peer would wait forever.
 * The peer's stderr (an assertion, say) is the row's, so the reason shows.
 */
function spawnPeer(name: string, args: string[], stdio: StdioOptions): { pid: number; close(signal?: NodeJS.Signals): Promise<void> } {
  const child = spawn(process.execPath, args, { stdio });
  let closing = false;
  child.once('exit', (code, signal) => {
    if (closing) return;
    process.stderr.write(`Error: the ${name} peer ended during the row (${signal ?? `exit status ${code}`})\n`);
    process.exit(1);
  });
  return {
    pid: child.pid!,
    async close(signal) {
      closing = true;
      if (signal) child.kill(signal);
      await exited(child);
    },
  };
}

const workloads: Record<string, Workload> = {
  // The library's default checks for pending fences before START, so that
  // the kernel never blocks the event loop; C does the same poll(2) here.
  'sync-checked': {
    iterations: 20000,
    c: { binary: 'baseline', workload: 'sync-checked' },
    async open() {
      const buffer = udmabuf.create(1 << 20);
      return {
        run: (iterations) => timed(iterations, () => {
          for (let index = 0; index < iterations; index += 1) {
            buffer.beginCpuAccess('readwrite');
            buffer.endCpuAccess('readwrite');
          }
        }),
        close: async () => buffer.close(),
      };
    },
  },
  sync: {
    iterations: 20000,
    c: { binary: 'baseline', workload: 'sync' },
    async open() {
      const buffer = udmabuf.create(1 << 20);
      const blocking = { block: true };
      return {
        run: (iterations) => timed(iterations, () => {
          for (let index = 0; index < iterations; index += 1) {
            buffer.beginCpuAccess('readwrite', blocking);
            buffer.endCpuAccess('readwrite');
          }
        }),
        close: async () => buffer.close(),
      };
    },
  },
  create: {
    iterations: 2000,
    c: { binary: 'baseline', workload: 'create' },
    async open() {
      const device = udmabuf.open();
      return {
        run: (iterations) => timed(iterations, () => {
          for (let index = 0; index < iterations; index += 1) device.create(16 * 4096).close();
        }),
        close: async () => device.close(),
      };
    },
  },
  memcpy: {
    iterations: 40,
    c: { binary: 'baseline', workload: 'memcpy' },
    async open() {
      const size = 16 << 20;
      const buffer = udmabuf.create(size);
      const source = Buffer.alloc(size, 0x5a);
      const target = buffer.map();
      target.fill(0);
      return {
        // ops are bytes here: the row is a bandwidth
        run: (iterations) => timed(iterations * size, () => {
          for (let index = 0; index < iterations; index += 1) {
            source[index % size] = index & 0xff;
            source.copy(target);
          }
        }),
        close: async () => buffer.close(),
      };
    },
  },
  fence: {
    iterations: 2000,
    c: { binary: 'baseline', workload: 'fence' },
    async open() {
      const timeline = SwSyncTimeline.open();
      const buffer = udmabuf.create(4096);
      return {
        run: (iterations) => timed(iterations, async () => {
          for (let index = 0; index < iterations; index += 1) {
            using fence = timeline.createFence(timeline.value + 1, 'bench');
            buffer.importSyncFile(fence, 'write');
            using exported = buffer.exportSyncFile('read');
            timeline.advance(1);
            await exported.wait();
          }
        }),
        async close() {
          buffer.close();
          timeline.close();
        },
      };
    },
  },
  // Measured alongside, in the same rounds: Node's own stream sockets doing
  // the same ping-pong with the same bytes and no fds (what an event-loop
  // round trip costs), the addon's primitives alone on the channel's path
  // (a Poller that reads, closeFd, sendFds; no framing or JSON), and
  // FdSocket (a promise per send and receive, no JSON or handle objects).
  fdpass: { iterations: 2000, c: { binary: 'pingpong' }, open: channelSession, alongside: { 'node-net': netSession, floor: floorSession, 'fd-socket': socketSession } },
  ...(process.env.DMABUF_BENCH_USOCKET ? { 'fdpass-usocket': { iterations: 2000, c: { binary: 'pingpong' }, open: usocketSession } as Workload } : {}),
};

/**
 * The bytes of the FdChannel row's frame (docs/fd-channel-wire-format.md: a
 * 12-byte header, then the JSON): the other rows send as many, so that every
 * row moves the same bytes and differs only in what carries them.
 */
const frameBytes = 12 + Buffer.byteLength(JSON.stringify({ message: 'ping', kinds: ['dmabuf'] }));

async function channelSession(): Promise<Session> {
  const [mine, theirs] = FdChannel.pair();
  const child = spawnPeer('FdChannel', [peer, 'channel'], ['ignore', 'inherit', 'inherit', theirs.fd]);
  theirs.close();
  const buffer = udmabuf.create(4096);
  return {
    run: (iterations) => timed(iterations, async () => {
      for (let index = 0; index < iterations; index += 1) {
        await mine.send('ping', [buffer]);
        ((await mine.receive()).handles[0] as DmaBuf).close();
      }
    }, [child.pid]),
    async close() {
      mine.close();
      buffer.close();
      await child.close();
    },
  };
}

async function floorSession(): Promise<Session> {
  const [mine, theirs] = native().socketPair(native().constants.SOCK_STREAM) as [number, number];
  const child = spawnPeer('floor', [peer, 'floor', String(frameBytes)], ['ignore', 'inherit', 'inherit', theirs]);
  native().closeFd(theirs);
  const buffer = udmabuf.create(4096);
  const frame = Buffer.alloc(frameBytes, 2);
  let left = 0;
  let done: (() => void) | undefined;
  const send = () => native().sendFds(mine, frame, 0, frame.length, [buffer.fd]);
  const endpoint = primitivesEndpoint(mine, () => {
    left -= 1;
    if (left > 0) send();
    else done?.();
  }, () => undefined);
  return {
    run: (iterations) => timed(iterations, () => new Promise<void>((resolve) => {
      done = resolve;
      left = iterations;
      send();
    }), [child.pid]),
    async close() {
      endpoint.close();
      native().closeFd(mine);
      buffer.close();
      await child.close();
    },
  };
}

/** FdSocket, the library's bytes-and-fds API: the same frame's bytes and a dma-buf fd each way, no JSON and no handle objects. */
async function socketSession(): Promise<Session> {
  const [mine, theirs] = FdSocket.pair('stream');
  const child = spawnPeer('FdSocket', [peer, 'socket'], ['ignore', 'inherit', 'inherit', theirs.fd]);
  theirs.close();
  const buffer = udmabuf.create(4096);
  const frame = Buffer.alloc(frameBytes, 3);
  return {
    run: (iterations) => timed(iterations, async () => {
      for (let index = 0; index < iterations; index += 1) {
        await mine.send(frame, [buffer]);
        for (const fd of (await mine.receive()).fds) closeSync(fd);
      }
    }, [child.pid]),
    async close() {
      mine.close();
      buffer.close();
      await child.close();
    },
  };
}

async function netSession(): Promise<Session> {
  const path = join(tmpdir(), `dmabuf-bench-net-${process.pid}.sock`);
  rmSync(path, { force: true });
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const child = spawnPeer('net', ['-e', `const s = require('node:net').connect(${JSON.stringify(path)}); s.on('data', (d) => s.write(d)); s.on('end', () => s.end());`], 'inherit');
  const socket = await new Promise<Socket>((resolve) => server.once('connection', resolve));
  const frame = Buffer.alloc(frameBytes, 1);
  return {
    run: (iterations) => timed(iterations, async () => {
      for (let index = 0; index < iterations; index += 1) {
        socket.write(frame);
        await new Promise((resolve) => socket.once('data', resolve));
      }
    }, [child.pid]),
    async close() {
      socket.end();
      await child.close();
      server.close();
      rmSync(path, { force: true });
    },
  };
}

interface USocketLike {
  on(event: string, listener: (socket: USocketLike) => void): void;
  removeAllListeners(event: string): void;
  read(size: number, fdCount: number): { data: Buffer; fds: number[] } | null;
  write(message: { data: Buffer; fds: number[] }): void;
  listen(path: string, callback: () => void): void;
}

/** usocket, the existing Node fd-passing module: the peer to beat. */
async function usocketSession(): Promise<Session> {
  const installedAt = process.env.DMABUF_BENCH_USOCKET!;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { UServer } = require(require.resolve('usocket', { paths: [installedAt] })) as { UServer: new () => USocketLike };
  const path = join(tmpdir(), `usocket-bench-${process.pid}.sock`);
  rmSync(path, { force: true });
  const server = new UServer();
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const child = spawnPeer('usocket', [peer, 'usocket', path, installedAt, String(frameBytes)], 'inherit');
  const connection = await new Promise<USocketLike>((resolve) => server.on('connection', resolve));
  const buffer = udmabuf.create(4096);
  let pending: (() => void) | undefined;
  connection.on('readable', () => {
    for (;;) {
      const message = connection.read(frameBytes, 1);
      if (!message) return;
      for (const fd of message.fds) closeSync(fd);
      pending?.();
    }
  });
  const roundTrip = () => new Promise<void>((resolve) => {
    pending = resolve;
    connection.write({ data: Buffer.alloc(frameBytes, 2), fds: [buffer.fd] });
  });
  return {
    run: (iterations) => timed(iterations, async () => {
      for (let index = 0; index < iterations; index += 1) await roundTrip();
    }, [child.pid]),
    async close() {
      // usocket 1.1.0 aborts the process (a failed assertion in uwrap.cc)
      // when end() or close() meets a pending read: stop reading, let the
      // peer go, and leave the server to the row process's exit.
      pending = undefined;
      connection.removeAllListeners('readable');
      connection.on('error', () => undefined);
      server.on('error', () => undefined);
      await child.close('SIGKILL');
      buffer.close();
      rmSync(path, { force: true });
    },
  };
}

/** The C side of a row: one baseline process (one fork()ed pair for fd passing) for the whole row. */
function cSession(c: NonNullable<Workload['c']>): Session {
  const binary = c.binary === 'pingpong' ? process.env.DMABUF_BENCH_PINGPONG : process.env.DMABUF_BENCH_C;
  if (!binary) throw new Error('DMABUF_BENCH_C and DMABUF_BENCH_PINGPONG name the C baselines (bench/run.ts sets them)');
  const child = spawn(binary, c.workload ? [c.workload] : [], { stdio: ['pipe', 'pipe', 'inherit'] });
  let output = '';
  let waiting: { resolve: (line: string) => void; reject: (error: Error) => void } | undefined;
  const failed = new Promise<Error>((resolve) => {
    child.once('error', resolve);
    child.once('exit', (code, signal) => resolve(new Error(`${binary} ${c.workload ?? ''} ended (${signal ?? `exit status ${code}`})`)));
  });
  void failed.then((error) => waiting?.reject(error));
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
    const newline = output.indexOf('\n');
    if (newline < 0 || !waiting) return;
    const line = output.slice(0, newline);
    output = output.slice(newline + 1);
    const { resolve } = waiting;
    waiting = undefined;
    resolve(line);
  });
  return {
    async run(iterations) {
      const line = new Promise<string>((resolve, reject) => {
        waiting = { resolve, reject };
      });
      child.stdin!.write(`${iterations}\n`);
      return JSON.parse(await line) as Measurement;
    },
    async close() {
      waiting = undefined;
      child.stdin!.end();
      await exited(child);
      if (child.exitCode !== 0) throw await failed;
    },
  };
}

/** Runs one row in its own Node process, so that a module that aborts takes only its row with it. */
function isolatedRow(name: string): Promise<Row> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [__filename, '--row', name], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      process.stderr.write(chunk);
    });
    const timeout = setTimeout(() => child.kill('SIGKILL'), 15 * 60_000);
    child.on('close', (code, signal) => {
      clearTimeout(timeout);
      const last = stdout.trim().split('\n').pop() ?? '';
      if (code === 0 && last.startsWith('{')) {
        resolve(JSON.parse(last) as Row);
        return;
      }
      // The line that says why: an assertion (usocket's), V8's fatal error, or a thrown error's first line.
      const reason = stderr.split('\n').find((line) => /Assertion|FATAL ERROR|^\s*\w*Error\b/.test(line))?.trim() ?? `its process ended with ${signal ?? `exit status ${code}`}`;
      resolve({ workload: name, error: reason });
    });
  });
}

async function main(): Promise<void> {
  if (process.argv[2] === '--row') {
    const name = process.argv[3]!;
    const workload = workloads[name];
    if (!workload) throw new Error(`no workload ${name}`);
    const sides = [() => workload.open(), ...(workload.c ? [() => cSession(workload.c!)] : [])];
    process.stdout.write(`${JSON.stringify(await measureRow(name, workload.iterations, sides, workload.alongside))}\n`);
    // usocket's server cannot be closed without risking its assertion: the
    // row is written (stdout is a pipe, written synchronously), so end here.
    process.exit(0);
  }
  const only = process.argv.slice(2);
  for (const name of Object.keys(workloads)) {
    if (only.length > 0 && !only.includes(name)) continue;
    process.stdout.write(`${JSON.stringify(await isolatedRow(name))}\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  // A row process may hold handles (usocket's server) that keep it alive.
  if (process.argv[2] === '--row') process.exit(1);
  process.exitCode = 1;
});
