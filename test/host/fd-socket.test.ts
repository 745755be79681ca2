import assert from 'node:assert/strict';
import { fstatSync, readdirSync, readFileSync, readSync, writeSync } from 'node:fs';
import { spawn, spawnSync, type StdioOptions } from 'node:child_process';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { FdSocket, Memfd, type SocketType } from '../../lib';
import { closeFd } from '../../lib/handle';
import { native } from '../../lib/native';

// Memfds pass through SCM_RIGHTS exactly as dma-bufs do, so these run on
// the host; test/guest/two-copies.test.ts and the channel's guest tests send
// real dma-bufs.
const openFds = () => readdirSync('/proc/self/fd').length;
/** A compiled module of the library, as a string literal for a child's script (npm test compiles first). */
const compiled = (file: string) => JSON.stringify(join(__dirname, '..', '..', 'dist', 'lib', file));
/** The file's status flags (O_NONBLOCK, ...), as the kernel reports them. */
const statusFlags = (fd: number) => /^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];

async function noLeak(fn: () => Promise<void>): Promise<void> {
  const before = openFds();
  await fn();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(openFds(), before, 'open fds before and after');
}

function contentOf(fd: number, length: number): string {
  const bytes = Buffer.alloc(length);
  readSync(fd, bytes, 0, length, 0);
  return bytes.toString();
}

describe('FdSocket: bytes with fds on any Unix socket', () => {
  for (const type of ['stream', 'seqpacket', 'datagram'] as SocketType[]) {
    it(`${type}: bytes and a memfd arrive, the fd close-on-exec and the same file`, () =>
      noLeak(async () => {
        const [a, b] = FdSocket.pair(type);
        using memfd = Memfd.create(4096);
        writeSync(memfd.fd, Buffer.from('payload'), 0, 7, 0);
        await a.send(Buffer.from('hello'), [memfd.fd]);
        const { bytes, fds, truncated, ended } = await b.receive();
        assert.equal(bytes.toString(), 'hello');
        assert.deepEqual([truncated, ended], [false, false]);
        assert.equal(fds.length, 1);
        assert.equal(fstatSync(fds[0]!).ino, fstatSync(memfd.fd).ino);
        assert.equal(contentOf(fds[0]!, 7), 'payload');
        assert.equal(native().fdFlags(fds[0]!) & 1, 1, 'FD_CLOEXEC');
        closeFd(fds[0]!);
        a.close();
        b.close();
      }));
  }

  for (const type of ['seqpacket', 'datagram'] as SocketType[]) {
    it(`${type}: keeps message boundaries, and a message longer than maxBytes is cut (truncated) without touching the next`, () =>
      noLeak(async () => {
        const [a, b] = FdSocket.pair(type);
        await a.send(Buffer.from('first message'));
        await a.send(Buffer.from('second'));
        const cut = await b.receive({ maxBytes: 5 });
        assert.deepEqual([cut.bytes.toString(), cut.truncated], ['first', true]);
        const next = await b.receive();
        assert.deepEqual([next.bytes.toString(), next.truncated], ['second', false]);
        a.close();
        b.close();
      }));
  }

  it('stream: a receive waits in the event loop until bytes come, and reports the peer\'s end', () =>
    noLeak(async () => {
      const [a, b] = FdSocket.pair();
      const receiving = b.receive();
      let settled = false;
      void receiving.finally(() => (settled = true));
      // A receive that blocked the thread would keep this timer from firing.
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(settled, false, 'still waiting, and the timer ran meanwhile');
      await a.send(Buffer.from('late'));
      assert.equal((await receiving).bytes.toString(), 'late');
      a.close();
      const end = await b.receive();
      assert.deepEqual([end.bytes.length, end.fds, end.ended], [0, [], true]);
      b.close();
    }));

  it('stream: a send larger than the socket buffer goes out whole over several sendmsg calls, in order with the next send', () =>
    noLeak(async () => {
      const [a, b] = FdSocket.pair();
      const big = Buffer.alloc(4 * 1024 * 1024, 0x61);
      const sending = [a.send(big), a.send(Buffer.from('z'))];
      const chunks: Buffer[] = [];
      let total = 0;
      while (total < big.length + 1) {
        const { bytes } = await b.receive({ maxBytes: 1 << 20 });
        chunks.push(bytes);
        total += bytes.length;
      }
      await Promise.all(sending);
      const all = Buffer.concat(chunks);
      assert.equal(all.length, big.length + 1);
      assert.ok(all.subarray(0, big.length).equals(big));
      assert.equal(all.at(-1), 0x7a);
      a.close();
      b.close();
    }));

  it('a send queued behind a full socket sends the file it was given even when the caller closes the handle at once', () =>
    noLeak(async () => {
      const [a, b] = FdSocket.pair('seqpacket');
      // Filled under the FdSocket until sendmsg says EAGAIN, so that the next send waits in the queue.
      const filler = Buffer.alloc(16 * 1024);
      let filled = 0;
      while (native().sendFds(a.fd, filler, 0, filler.length, []) === filler.length) filled += 1;
      assert.ok(filled > 0);
      const given = Memfd.create(4096);
      const sending = a.send(Buffer.from('fd'), [given]);
      given.close();
      using reusing = Memfd.create(8192); // may take the closed fd's number
      const received: number[] = [];
      for (;;) {
        const { bytes, fds } = await b.receive({ maxBytes: filler.length });
        received.push(...fds);
        if (bytes.toString() === 'fd') break;
      }
      await sending;
      assert.equal(received.length, 1);
      assert.equal(fstatSync(received[0]!).size, 4096, 'the memfd given to send(), not the one that reused its number');
      assert.notEqual(fstatSync(received[0]!).ino, fstatSync(reusing.fd).ino);
      closeFd(received[0]!);
      a.close();
      b.close();
    }));

  it('a receive queued behind another gives up at once when its signal aborts, and takes nothing', () =>
    noLeak(async () => {
      const [a, b] = FdSocket.pair('datagram');
      const first = b.receive();
      const controller = new AbortController();
      const second = b.receive({ signal: controller.signal });
      controller.abort(new Error('given up'));
      await assert.rejects(second, /given up/);
      await a.send(Buffer.from('one'));
      await a.send(Buffer.from('two'));
      assert.equal((await first).bytes.toString(), 'one');
      assert.equal((await b.receive()).bytes.toString(), 'two', 'the aborted receive took nothing');
      a.close();
      b.close();
    }));

  it('a waiting receive whose signal aborts leaves the queue: the message sent after it goes to the receive behind', () =>
    noLeak(async () => {
      const [a, b] = FdSocket.pair('seqpacket');
      const controller = new AbortController();
      const first = b.receive({ signal: controller.signal });
      const second = b.receive();
      controller.abort(new Error('given up'));
      await assert.rejects(first, /given up/);
      await a.send(Buffer.from('one'));
      assert.equal((await second).bytes.toString(), 'one');
      a.close();
      b.close();
    }));

  it('messages that come while no receive waits are kept in the socket, in order, for the next receives', () =>
    noLeak(async () => {
      const [a, b] = FdSocket.pair('seqpacket');
      const first = b.receive();
      await a.send(Buffer.from('one'));
      assert.equal((await first).bytes.toString(), 'one');
      // Two messages and turns of the event loop with nobody receiving, with
      // the poll left armed after the first receive.
      await a.send(Buffer.from('two'));
      await a.send(Buffer.from('three'));
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual([(await b.receive()).bytes.toString(), (await b.receive()).bytes.toString()], ['two', 'three']);
      const later = b.receive();
      await a.send(Buffer.from('four'));
      assert.equal((await later).bytes.toString(), 'four', 'a receive after the poll stopped arms it again');
      a.close();
      b.close();
    }));

  it('closing the socket rejects the receives still waiting with ECANCELED', () =>
    noLeak(async () => {
      const [a, b] = FdSocket.pair();
      const waiting = [b.receive(), b.receive()];
      b.close();
      for (const receive of waiting) await assert.rejects(receive, { code: 'ECANCELED', syscall: 'close' });
      a.close();
    }));

  it('a waiting receive or a queued send holds the process until the peer acts, and a process with neither (answered, aborted) exits', async function () {
    this.timeout(30_000);
    // Each child's only handle is its socket: what keeps it alive is a waiting receive, or nothing.
    const run = (script: string, stdio: StdioOptions = 'pipe') => {
      const child = spawn(process.execPath, ['-e', `const { FdSocket } = require(${compiled('index.js')}); ${script}`], { stdio });
      let stdout = '';
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      const timer = setTimeout(() => child.kill(), 20_000);
      return new Promise<{ status: number | null; signal: string | null; stdout: string }>((resolve) =>
        child.on('close', (status, signal) => {
          clearTimeout(timer);
          resolve({ status, signal, stdout: stdout.trim() });
        }),
      );
    };
    const [mine, theirs] = FdSocket.pair('seqpacket');
    const held = run("const socket = FdSocket.fromFd(3); socket.receive().then(({ bytes }) => { console.log(bytes.toString()); socket.close(); });", ['ignore', 'pipe', 'inherit', theirs.fd]);
    theirs.close();
    // Sent by this process once the child has long had time to exit, had nothing held it.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await mine.send(Buffer.from('late'));
    assert.deepEqual(await held, { status: 0, signal: null, stdout: 'late' });
    mine.close();
    // The receive waits first, so that the poll is armed, and is answered through it.
    const answered = run("const [a, b] = FdSocket.pair('seqpacket'); b.receive().then(({ bytes }) => console.log(bytes.toString())); setImmediate(() => a.send(Buffer.from('now')));");
    assert.deepEqual(await answered, { status: 0, signal: null, stdout: 'now' }, 'both sockets open, the poll armed, no receive waiting: the child exits');
    // A send queued behind a full socket holds the child until this process reads.
    const [ours, childs] = FdSocket.pair('seqpacket');
    const queued = run(
      `const { native } = require(${compiled('native.js')});
      const socket = FdSocket.fromFd(3);
      const filler = Buffer.alloc(16 * 1024);
      while (native().sendFds(3, filler, 0, filler.length, []) === filler.length);
      socket.send(Buffer.from('last')).then(() => { console.log('sent'); socket.close(); });`,
      ['ignore', 'pipe', 'inherit', childs.fd],
    );
    childs.close();
    await new Promise((resolve) => setTimeout(resolve, 500));
    // A seqpacket socket reads its peer's close as empty messages: one ends the loop.
    for (let text = 'none yet'; text !== '' && text !== 'last'; ) text = (await ours.receive({ maxBytes: 16 * 1024 })).bytes.toString();
    assert.deepEqual(await queued, { status: 0, signal: null, stdout: 'sent' }, 'the queued send held the child until it went out');
    ours.close();
    // Aborted from a timer, with the socket quiet: the armed poll must let go, or the child blocks in epoll for good.
    const aborted = run("const [a, b] = FdSocket.pair('seqpacket'); const controller = new AbortController(); b.receive({ signal: controller.signal }).catch(() => console.log('aborted')); setTimeout(() => controller.abort(), 50);");
    assert.deepEqual(await aborted, { status: 0, signal: null, stdout: 'aborted' }, 'the only waiting receive aborted: the child exits');
    const unreferenced = run("const [a, b] = FdSocket.pair('seqpacket'); b.unref(); b.receive().then(() => console.log('received'));");
    assert.deepEqual(await unreferenced, { status: 0, signal: null, stdout: '' }, 'unref(): the waiting receive does not hold the child');
  });

  it('a socket dropped without close() after its receive was answered is collected: the leak warning comes and its fd is closed', function () {
    this.timeout(30_000);
    const script = `const { FdSocket } = require(${compiled('index.js')});
      const { fstatSync, readdirSync, readlinkSync } = require('node:fs');
      const socketsOpen = () => readdirSync('/proc/self/fd').map((fd) => { try { return readlinkSync('/proc/self/fd/' + fd); } catch { return ''; } }).filter((link) => link.startsWith('socket:'));
      const codes = [];
      process.on('warning', (warning) => codes.push(warning.code));
      const turns = (count) => new Promise((resolve) => setTimeout(resolve, 10 * count));
      (async () => {
        let droppedSocket;
        // Only the inner function knows the dropped end.
        const kept = await (async () => {
          const [kept, dropped] = FdSocket.pair('seqpacket');
          droppedSocket = 'socket:[' + fstatSync(dropped.fd).ino + ']';
          // Answered through the poll, which is armed while it waits; the peer stays open, so no hang-up stops it.
          const waiting = dropped.receive();
          setImmediate(() => kept.send(Buffer.from('x')));
          await waiting;
          return kept;
        })();
        await turns(5);
        for (let round = 0; round < 5 && !codes.includes('DMABUF_LEAKED_HANDLE'); round += 1) {
          global.gc();
          await turns(5);
        }
        console.log(JSON.stringify({ codes, droppedOpen: socketsOpen().includes(droppedSocket), keptOpen: socketsOpen().includes('socket:[' + fstatSync(kept.fd).ino + ']') }));
        kept.close();
      })();`;
    const child = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(child.status, 0, child.stderr);
    assert.deepEqual(JSON.parse(child.stdout), { codes: ['DMABUF_LEAKED_HANDLE'], droppedOpen: false, keptOpen: true });
  });

  it('more fds than maxFds is ERR_DMABUF_SOCKET_FDS_LOST (MSG_CTRUNC) with the bytes on the error, and the fds that arrived are closed', () =>
    noLeak(async () => {
      const [a, b] = FdSocket.pair('seqpacket');
      const memfds = [Memfd.create(4096), Memfd.create(4096), Memfd.create(4096)];
      await a.send(Buffer.from('three'), memfds);
      await assert.rejects(b.receive({ maxFds: 1 }), (error: Error & { code?: string; bytes?: Buffer }) => {
        assert.equal(error.code, 'ERR_DMABUF_SOCKET_FDS_LOST');
        assert.equal(error.bytes?.toString(), 'three');
        return true;
      });
      for (const memfd of memfds) memfd.close();
      a.close();
      b.close();
    }));

  it('on a socket with SO_PASSCRED (the credentials share the control buffer), a message\'s one fd arrives with room for one', function () {
    this.timeout(30_000);
    // Python sets the option (Node has no setsockopt), sends one fd, and execs
    // Node with the receiving end as fd 3.
    const node = `
      const { FdSocket } = require(${compiled('index.js')});
      const socket = FdSocket.fromFd(3);
      socket.receive({ maxFds: 1 }).then(({ bytes, fds }) => { console.log(JSON.stringify({ bytes: bytes.toString(), fds: fds.length })); socket.close(); },
        (error) => { console.log(JSON.stringify({ error: error.code })); socket.close(); });`;
    const python = `
import os, socket, sys
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
r, w = os.pipe()
socket.send_fds(a, [b"with creds"], [r])
os.dup2(b.fileno(), 3)
os.execvp(sys.argv[1], [sys.argv[1], "-e", sys.argv[2]])
`;
    const child = spawnSync('python3', ['-c', python, process.execPath, node], { encoding: 'utf8' });
    assert.equal(child.status, 0, child.stderr);
    assert.deepEqual(JSON.parse(child.stdout), { bytes: 'with creds', fds: 1 });
  });

  it('refuses before sending: 254 fds (SCM_MAX_FD is 253), fds with no byte on a stream, bytes that are not a Uint8Array', () => {
    const [a, b] = FdSocket.pair();
    try {
      assert.throws(() => a.send(Buffer.from('x'), new Array<number>(254).fill(a.fd)), { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' });
      assert.throws(() => a.send(Buffer.alloc(0), [a.fd]), { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE', message: /at least one byte/ });
      assert.throws(() => a.send('text' as unknown as Buffer), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => a.receive({ maxBytes: 0 }), { name: 'RangeError' });
      assert.throws(() => a.receive({ maxFds: 254 }), { name: 'RangeError' });
      assert.throws(() => FdSocket.pair('raw' as SocketType), { code: 'ERR_INVALID_ARG_VALUE' });
    } finally {
      a.close();
      b.close();
    }
  });

  it('fromFd refuses a file that is not a socket and a socket that is not a Unix one, naming the fd', async () => {
    using memfd = Memfd.create(4096);
    assert.throws(() => FdSocket.fromFd(memfd.fd), { code: 'ERR_INVALID_ARG_VALUE', message: new RegExp(`fd ${memfd.fd}, which is not a socket`) });
    const tcp = createServer();
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    try {
      const fd = (tcp as unknown as { _handle: { fd: number } })._handle.fd;
      assert.throws(() => FdSocket.fromFd(fd, { dup: true }), { code: 'ERR_INVALID_ARG_VALUE', message: /a socket of domain 2/ });
    } finally {
      tcp.close();
    }
  });

  it('fromFd with dup takes a Node net server\'s accepted Unix socket: reads what the Node client wrote, leaves the socket\'s flags and fd alone', async () => {
    const path = `\0dmabuf-fd-socket-${process.pid}`;
    // pauseOnConnect: Node does not read the accepted socket, so its bytes are ours.
    const server: Server = createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
    const client = createConnection(path);
    try {
      const peer = await accepted;
      const fd = (peer as unknown as { _handle: { fd: number } })._handle.fd;
      const flags = statusFlags(fd);
      assert.ok(flags !== undefined);
      await noLeak(async () => {
        using socket = FdSocket.fromFd(fd, { dup: true });
        assert.equal(socket.type, 'stream');
        assert.notEqual(socket.fd, fd);
        client.write('from node');
        assert.equal((await socket.receive()).bytes.toString(), 'from node');
      });
      assert.equal(statusFlags(fd), flags);
      assert.ok(fstatSync(fd).isSocket(), 'Node\'s fd is still open');
      peer.destroy();
    } finally {
      client.destroy();
      server.close();
    }
  });
});
