import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fstatSync, readdirSync, readSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DmaBuf, FdChannel, Memfd, pidfdGetFd, type KernelError } from '../../lib';
import { closeFd } from '../../lib/handle';
import { native } from '../../lib/native';
import { loadSecondCopy } from '../support/second-copy';

// Memfds pass through SCM_RIGHTS exactly as dma-bufs do, so the channel's
// mechanics are tested on the host; test/guest/sharing.test.ts uses real dma-bufs.
const childScript = join(__dirname, '..', 'fixtures', 'scripts', 'channel-child.js');
const openFds = () => readdirSync('/proc/self/fd').length;

/** An FdChannel frame built under the channel, for peers that misbehave: magic, JSON length, handle count, JSON. */
function rawFrame(announcedLength: number, handleCount: number, json = Buffer.alloc(0)): Buffer {
  const frame = Buffer.alloc(12 + Math.max(announcedLength, json.length));
  frame.writeUInt32LE(0x44424348, 0);
  frame.writeUInt32LE(announcedLength, 4);
  frame.writeUInt32LE(handleCount, 8);
  json.copy(frame, 12);
  return frame;
}

async function noLeak(fn: () => Promise<void>): Promise<void> {
  const before = openFds();
  await fn();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(openFds(), before, 'open fds before and after');
}

describe('FdChannel', () => {
  it('carries a message with fds: the receiver gets the same file, close-on-exec', () =>
    noLeak(async () => {
      const [a, b] = FdChannel.pair();
      using memfd = Memfd.create(4096);
      writeSync(memfd.fd, Buffer.from('across'), 0, 6, 0);
      await a.send({ kind: 'frame', n: 7 }, [memfd.fd]);
      const { message, handles } = await b.receive();
      assert.deepEqual(message, { kind: 'frame', n: 7 });
      const received = handles[0] as number;
      assert.notEqual(received, memfd.fd);
      assert.equal(fstatSync(received).ino, fstatSync(memfd.fd).ino);
      assert.equal(native().fdFlags(received) & 1, 1, 'FD_CLOEXEC');
      const text = Buffer.alloc(6);
      readSync(received, text, 0, 6, 0);
      assert.equal(text.toString(), 'across');
      closeFd(received);
      a.close();
      b.close();
    }));

  it('delivers messages in order, to receive() and to listeners', async () => {
    const [a, b] = FdChannel.pair();
    for (let index = 0; index < 50; index += 1) void a.send(index);
    const first = await b.receive<number>();
    assert.equal(first.message, 0);
    const rest: number[] = [];
    await new Promise<void>((resolve) => {
      b.on('message', ({ message }) => {
        rest.push(message as number);
        if (rest.length === 49) resolve();
      });
    });
    assert.deepEqual(rest, Array.from({ length: 49 }, (_, index) => index + 1));
    a.close();
    b.close();
  });

  it('moves a large message through partial writes and reads', async () => {
    const [a, b] = FdChannel.pair();
    const big = { data: 'x'.repeat(6 * 1024 * 1024), tail: 'end' };
    using memfd = Memfd.create(4096);
    const receiving = b.receive<typeof big>();
    await a.send(big, [memfd.fd]);
    const { message, handles } = await receiving;
    assert.equal(message.data.length, big.data.length);
    assert.equal(message.tail, 'end');
    assert.equal(handles.length, 1);
    closeFd(handles[0] as number);
    a.close();
    b.close();
  });

  it('carries SCM_MAX_FD (253) fds in one message, and refuses one more before sending', () =>
    noLeak(async () => {
      const [a, b] = FdChannel.pair();
      using memfd = Memfd.create(4096);
      const many = Array.from({ length: 253 }, () => memfd.fd);
      await a.send('many', many);
      const { handles } = await b.receive();
      assert.equal(handles.length, 253);
      assert.ok(handles.every((fd) => fstatSync(fd as number).ino === fstatSync(memfd.fd).ino));
      for (const fd of handles) closeFd(fd as number);
      assert.throws(() => a.send('too many', [...many, memfd.fd]), (error: Error) => error instanceof RangeError && /SCM_MAX_FD/.test(error.message));
      a.close();
      b.close();
    }));

  // Room for 1 fd is a control buffer of CMSG_SPACE(4) = 24 bytes, which
  // holds 2: the kernel installs both, and the one beyond the room must be closed.
  for (const room of [1, 2]) {
    it(`detects fds the kernel dropped (MSG_CTRUNC) with room for ${room}, and leaks none`, () =>
      noLeak(async () => {
        const [a, bFull] = FdChannel.pair();
        const fd = bFull.detach();
        const b = FdChannel.fromFd(fd, { maxFdsPerRead: room });
        using memfd = Memfd.create(4096);
        await a.send('five', [memfd.fd, memfd.fd, memfd.fd, memfd.fd, memfd.fd]);
        await assert.rejects(b.receive(), { code: 'ERR_DMABUF_CHANNEL_FDS_LOST' });
        a.close();
        b.close();
      }));
  }

  it('with room for 1 fd, a message of 2 fds is refused as lost: the second fd the kernel installed is closed, not kept', () =>
    noLeak(async () => {
      const [a, bFull] = FdChannel.pair();
      const b = FdChannel.fromFd(bFull.detach(), { maxFdsPerRead: 1 });
      using memfd = Memfd.create(4096);
      await a.send('two', [memfd.fd, memfd.fd]);
      await assert.rejects(b.receive(), { code: 'ERR_DMABUF_CHANNEL_FDS_LOST' });
      a.close();
      b.close();
    }));

  it('reports a peer that vanishes mid-message, instead of hanging', () =>
    noLeak(async () => {
      const [a, b] = FdChannel.pair();
      using memfd = Memfd.create(4096);
      // Half a frame, with an fd, written under the channel, then the end closed.
      const frame = rawFrame(100, 1);
      assert.equal(native().sendFds(a.fd, frame, 0, 40, [memfd.fd]), 40);
      a.close();
      await assert.rejects(b.receive(), { code: 'ERR_DMABUF_CHANNEL_TRUNCATED' });
      b.close();
    }));

  it('refuses a handle sent as a dma-buf that is not one, and closes its fds', () =>
    noLeak(async () => {
      const [a, b] = FdChannel.pair();
      using memfd = Memfd.create(4096);
      const json = Buffer.from(JSON.stringify({ message: 'lie', kinds: ['dmabuf'] }));
      const frame = rawFrame(json.length, 1, json);
      const errors: Error[] = [];
      b.on('error', (error) => errors.push(error));
      assert.equal(native().sendFds(a.fd, frame, 0, frame.length, [memfd.fd]), frame.length);
      await a.send('after the lie');
      const { message } = await b.receive();
      assert.equal(message, 'after the lie', 'the channel goes on after a refused message');
      assert.equal(errors.length, 1);
      assert.equal((errors[0] as Error & { code: string }).code, 'ERR_DMABUF_CHANNEL_BAD_HANDLE');
      a.close();
      b.close();
    }));

  /** A message whose handle is declared a dma-buf but is a memfd: refused by the receiver. */
  function sendLie(a: FdChannel, memfd: Memfd): void {
    const json = Buffer.from(JSON.stringify({ message: 'lie', kinds: ['dmabuf'] }));
    const frame = rawFrame(json.length, 1, json);
    assert.equal(native().sendFds(a.fd, frame, 0, frame.length, [memfd.fd]), frame.length);
  }

  /** Collects the process warnings emitted while `fn` runs, and the unhandled rejections. */
  async function watchProcess(fn: () => Promise<void>): Promise<{ warnings: Error[]; unhandled: unknown[] }> {
    const warnings: Error[] = [];
    const unhandled: unknown[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('warning', onWarning);
    process.on('unhandledRejection', onUnhandled);
    try {
      await fn();
      await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      process.off('warning', onWarning);
      process.off('unhandledRejection', onUnhandled);
    }
    return { warnings, unhandled };
  }

  it('with no error listener, a refused message rejects the pending receive() with its code and the channel delivers the next message', () =>
    noLeak(async () => {
      const [a, b] = FdChannel.pair();
      using memfd = Memfd.create(4096);
      const pending = b.receive();
      sendLie(a, memfd);
      await assert.rejects(pending, { code: 'ERR_DMABUF_CHANNEL_BAD_HANDLE' });
      await a.send('after the lie');
      assert.equal((await b.receive()).message, 'after the lie');
      a.close();
      b.close();
    }));

  it('with no listener and no pending receive(), a refused message rejects the next receive(), in its place in the stream', () =>
    noLeak(async () => {
      const [a, b] = FdChannel.pair();
      using memfd = Memfd.create(4096);
      await a.send('before');
      sendLie(a, memfd);
      await a.send('after');
      // The channel reads in libuv's poll phase; setImmediate runs right after it.
      for (let turn = 0; turn < 3; turn += 1) await new Promise((resolve) => setImmediate(resolve));
      assert.equal((await b.receive()).message, 'before');
      await assert.rejects(b.receive(), { code: 'ERR_DMABUF_CHANNEL_BAD_HANDLE' });
      assert.equal((await b.receive()).message, 'after');
      a.close();
      b.close();
    }));

  it('with only a message listener, a refused message is a process warning, no unhandled rejection, and the listener gets the next message', async () => {
    const { warnings, unhandled } = await watchProcess(() =>
      noLeak(async () => {
        const [a, b] = FdChannel.pair();
        using memfd = Memfd.create(4096);
        const next = new Promise((resolve) => b.once('message', ({ message }) => resolve(message)));
        sendLie(a, memfd);
        await a.send('after the lie');
        assert.equal(await next, 'after the lie');
        assert.equal(b.closed, false);
        a.close();
        b.close();
      }),
    );
    assert.deepEqual(warnings.map((warning) => (warning as Error & { code?: string }).code), ['ERR_DMABUF_CHANNEL_BAD_HANDLE']);
    assert.deepEqual(unhandled, []);
  });

  it('a channel that fails with no error listener and nothing pending warns once, and every later receive() rejects with the failure', async () => {
    const { warnings, unhandled } = await watchProcess(() =>
      noLeak(async () => {
        const [a, b] = FdChannel.pair();
        const closed = new Promise<void>((resolve) => b.once('close', () => resolve()));
        assert.equal(native().sendFds(a.fd, Buffer.from('not a frame at all'), 0, 18, []), 18);
        await closed;
        await assert.rejects(b.receive(), { code: 'ERR_DMABUF_CHANNEL_PROTOCOL', message: /frame magic/ });
        await assert.rejects(b.receive(), { code: 'ERR_DMABUF_CHANNEL_PROTOCOL' });
        a.close();
        b.close();
      }),
    );
    assert.deepEqual(warnings.map((warning) => (warning as Error & { code?: string }).code), ['ERR_DMABUF_CHANNEL_PROTOCOL']);
    assert.deepEqual(unhandled, []);
  });

  it('refuses an event it does not have (ERR_INVALID_ARG_VALUE) and a listener that is not a function (TypeError)', () => {
    const [a, b] = FdChannel.pair();
    try {
      assert.throws(() => a.on('mesage' as 'message', () => {}), { code: 'ERR_INVALID_ARG_VALUE', message: /'message', 'error', 'close'/ });
      assert.throws(() => a.on('message', 'listener' as unknown as () => void), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      using server = FdChannel.listen(`@dmabuf-events-${process.pid}`);
      assert.throws(() => server.on('close' as 'error', () => {}), { code: 'ERR_INVALID_ARG_VALUE' });
    } finally {
      a.close();
      b.close();
    }
  });

  it('takes a Memfd made by a second copy of the package as a Memfd (the brand), where instanceof says it is not one', async () => {
    const second = loadSecondCopy();
    try {
      using theirs = second.lib.Memfd.create(4096);
      assert.equal(theirs instanceof Memfd, false);
      assert.equal(Memfd.isMemfd(theirs), true);
      using ours = Memfd.create(4096);
      assert.equal(second.lib.Memfd.isMemfd(ours), true);
      assert.equal(Memfd.isMemfd({ fd: 3 }), false);
      assert.equal(DmaBuf.isDmaBuf(theirs), false, 'a Memfd is not a DmaBuf in any copy');
      await noLeak(async () => {
        const [a, b] = FdChannel.pair();
        writeSync(theirs.fd, Buffer.from('second copy'), 0, 11, 0);
        await a.send('theirs', [theirs.fd]);
        const received = (await b.receive()).handles[0] as number;
        const bytes = Buffer.alloc(11);
        readSync(received, bytes, 0, 11, 0);
        assert.equal(bytes.toString(), 'second copy');
        closeFd(received);
        a.close();
        b.close();
      });
    } finally {
      second.remove();
    }
  });

  /** A frame with `kinds` in its JSON, written under the channel with `fds` on its sendmsg. */
  function sendRaw(a: FdChannel, kinds: string[], fds: number[]): void {
    const json = Buffer.from(JSON.stringify({ message: 'raw', kinds }));
    const frame = rawFrame(json.length, kinds.length, json);
    assert.equal(native().sendFds(a.fd, frame, 0, frame.length, fds), frame.length);
  }

  it('a frame that came with fewer fds than it announced is refused at once, and the next frame keeps its own fd', () =>
    noLeak(async () => {
      const [a, b] = FdChannel.pair();
      using memfd = Memfd.create(4096);
      sendRaw(a, ['fd'], []);
      await assert.rejects(b.receive(), { code: 'ERR_DMABUF_CHANNEL_PROTOCOL', message: /announced 1 handles and came with 0 fds/ });
      await a.send('next', [memfd.fd]);
      const { message, handles } = await b.receive();
      assert.equal(message, 'next');
      assert.equal(fstatSync(handles[0] as number).ino, fstatSync(memfd.fd).ino, 'the next frame\'s own file');
      closeFd(handles[0] as number);
      a.close();
      b.close();
    }));

  it('fds sent with a frame that announced none are closed as strays, and the next frame keeps its own fd', () =>
    noLeak(async () => {
      const [a, b] = FdChannel.pair();
      using stray = Memfd.create(4096);
      using memfd = Memfd.create(8192);
      sendRaw(a, [], [stray.fd, stray.fd]);
      assert.equal((await b.receive()).message, 'raw', 'the frame itself is whole');
      await a.send('next', [memfd.fd]);
      await assert.rejects(b.receive(), { code: 'ERR_DMABUF_CHANNEL_PROTOCOL', message: /2 fds came that no frame announced/ });
      const { message, handles } = await b.receive();
      assert.equal(message, 'next');
      assert.equal(fstatSync(handles[0] as number).size, 8192, 'the next frame\'s own file, not a stray');
      closeFd(handles[0] as number);
      a.close();
      b.close();
    }));

  it('a handle kind the channel does not know is refused, not taken as a plain fd', () =>
    noLeak(async () => {
      const [a, b] = FdChannel.pair();
      using memfd = Memfd.create(4096);
      sendRaw(a, ['gem'], [memfd.fd]);
      await assert.rejects(b.receive(), { code: 'ERR_DMABUF_CHANNEL_PROTOCOL', message: /none of dmabuf, syncfile, fd/ });
      a.close();
      b.close();
    }));

  it('a message listener that calls receive() gets the next message, not its own again, and none is lost', () =>
    noLeak(async () => {
      const [a, b] = FdChannel.pair();
      for (const n of [1, 2, 3]) await a.send(n);
      await new Promise((resolve) => setTimeout(resolve, 20));
      const seen: unknown[] = [];
      const inner = new Promise<unknown>((resolve) => {
        b.once('message', ({ message }) => {
          seen.push(message);
          resolve(b.receive().then((next) => next.message));
        });
      });
      seen.push(await inner);
      seen.push((await b.receive()).message);
      assert.deepEqual(seen, [1, 2, 3]);
      a.close();
      b.close();
    }));

  it('a message listener that closes the channel keeps the handles it was given, and hears of no later message', () =>
    noLeak(async () => {
      const [a, b] = FdChannel.pair();
      using memfd = Memfd.create(4096);
      await a.send('m1', [memfd.fd]);
      await a.send('m2', [memfd.fd]);
      const given: number[] = [];
      const inode = await new Promise<number>((resolve) => {
        b.on('message', ({ handles }) => {
          given.push(handles[0] as number);
          b.close();
          resolve(fstatSync(handles[0] as number).ino);
        });
      });
      assert.equal(inode, fstatSync(memfd.fd).ino, 'the handle is open after close()');
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(given.length, 1);
      closeFd(given[0]!);
      a.close();
    }));

  it('a frame that announced 2 handles and came with 1 fd is refused once, with nothing reported as a stray', () =>
    noLeak(async () => {
      const [a, b] = FdChannel.pair();
      using memfd = Memfd.create(4096);
      sendRaw(a, ['fd', 'fd'], [memfd.fd]);
      await assert.rejects(b.receive(), { message: /announced 2 handles and came with 1 fds/ });
      await a.send('next');
      assert.equal((await b.receive()).message, 'next', 'no stray error came between');
      a.close();
      b.close();
    }));

  it('rejects pending receives and sends when closed', async () => {
    const [a, b] = FdChannel.pair();
    const pending = b.receive();
    b.close();
    await assert.rejects(pending, { code: 'ECANCELED' });
    await assert.rejects(a.send('to nobody').then(() => a.send('x'.repeat(8 * 1024 * 1024))), (error: KernelError) => error.code === 'EPIPE' || error.code === 'ECONNRESET');
    a.close();
  });

  for (const [label, path] of [['a file system path', join(tmpdir(), `dmabuf-test-${process.pid}.sock`)], ['an abstract name', `@dmabuf-test-${process.pid}`]] as const) {
    it(`listens and connects on ${label}`, async () => {
      const { rmSync } = await import('node:fs');
      rmSync(path, { force: true });
      const server = FdChannel.listen(path);
      try {
        const accepted = server.accept();
        const client = await FdChannel.connect(path);
        const peer = await accepted;
        await client.send({ hello: 'server' });
        assert.deepEqual((await peer.receive()).message, { hello: 'server' });
        await peer.send({ hello: 'client' });
        assert.deepEqual((await client.receive()).message, { hello: 'client' });
        client.close();
        peer.close();
      } finally {
        server.close();
        rmSync(path, { force: true });
      }
    });
  }

  it('a server whose last connection listener left leaves the next connection to accept()', async () => {
    const path = `@dmabuf-accept-after-off-${process.pid}`;
    using server = FdChannel.listen(path);
    const listener = (channel: FdChannel) => channel.close();
    server.on('connection', listener);
    await new Promise((resolve) => setImmediate(resolve));
    server.off('connection', listener);
    await new Promise((resolve) => setImmediate(resolve));
    const accepting = server.accept();
    using client = await FdChannel.connect(path);
    using accepted = await accepting;
    await client.send('to accept()');
    assert.equal((await accepted.receive()).message, 'to accept()');
  });

  it('says nothing listens when connecting to nowhere, and leaks no socket', () =>
    noLeak(async () => {
      await assert.rejects(FdChannel.connect('@dmabuf-nobody-here'), (error: KernelError) => error.code === 'ECONNREFUSED' && /nothing listens/.test(error.message));
    }));

  // A connect to a full backlog used to block in connect(2): with the
  // listener in the same process, forever. The scenario runs in a child, so
  // a blocked event loop is a killed child and a failed test, not a hung suite.
  it('waits on a full backlog without blocking the event loop, completes once the listener accepts, and an abort leaks no fd', async function () {
    this.timeout(30000);
    const script = `
      const { readdirSync } = require('node:fs');
      const { FdChannel } = require(${JSON.stringify(join(__dirname, '..', '..', 'dist', 'lib', 'index.js'))});
      const openFds = () => readdirSync('/proc/self/fd').length;
      const settled = (promise, ms) => Promise.race([Promise.resolve(promise).then(() => 'resolved', () => 'rejected'), new Promise((resolve) => setTimeout(() => resolve('pending'), ms))]);
      (async () => {
        const path = '@dmabuf-backlog-' + process.pid;
        const server = FdChannel.listen(path, { backlog: 1 });
        const filled = [];
        let waiting;
        while (!waiting && filled.length < 16) {
          const attempt = FdChannel.connect(path);
          if ((await settled(attempt, 200)) === 'pending') waiting = attempt;
          else filled.push(await attempt);
        }
        let ticks = 0;
        const ticker = setInterval(() => (ticks += 1), 10);
        const stillPending = await settled(waiting, 300);
        clearInterval(ticker);
        // Room in the backlog: the waiting connect completes, and carries messages.
        const accepted = await server.accept();
        const client = await waiting;
        const peers = [accepted];
        for (let i = 0; i < filled.length; i += 1) peers.push(await server.accept());
        await client.send('hello');
        const received = (await peers[peers.length - 1].receive()).message;
        // Full again: an aborted connect rejects with the signal's reason and closes its socket.
        const more = [];
        let blocked;
        const controller = new AbortController();
        const fdsBefore = openFds();
        while (!blocked && more.length < 16) {
          const attempt = FdChannel.connect(path, { signal: controller.signal });
          if ((await settled(attempt, 200)) === 'pending') blocked = attempt;
          else more.push(await attempt);
        }
        const fdsWhileBlocked = openFds();
        controller.abort(new Error('given up'));
        const abortError = await blocked.then(() => 'resolved', (error) => error.message);
        const fdsAfterAbort = openFds();
        console.log(JSON.stringify({ filled: filled.length, stillPending, ticks, received, abortError, socketWhileBlocked: fdsWhileBlocked - fdsBefore - more.length, socketAfterAbort: fdsAfterAbort - fdsBefore - more.length }));
        for (const channel of [...filled, ...peers, client, ...more]) channel.close();
        server.close();
      })().catch((error) => { console.error(error); process.exit(1); });`;
    const { spawnSync } = await import('node:child_process');
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
    assert.equal(child.signal, null, 'the child was killed: its event loop was blocked in connect');
    assert.equal(child.status, 0, child.stderr);
    const result = JSON.parse(child.stdout) as Record<string, unknown>;
    assert.ok((result.filled as number) >= 1, 'connects complete while the backlog has room');
    assert.equal(result.stillPending, 'pending', 'a connect to the full backlog waits');
    assert.ok((result.ticks as number) >= 10, `timers ran while it waited (${String(result.ticks)} ticks of 10 ms in 300 ms)`);
    assert.equal(result.received, 'hello', 'the connect completed once the listener accepted');
    assert.equal(result.abortError, 'given up', 'the abort rejects with the signal\'s reason');
    assert.equal(result.socketWhileBlocked, 1, 'the waiting connect holds one socket');
    assert.equal(result.socketAfterAbort, 0, 'the aborted connect closed it');
  });

  it('refuses an aborted signal and a wrong one before making a socket', () =>
    noLeak(async () => {
      await assert.rejects(FdChannel.connect('@dmabuf-nobody-here', { signal: AbortSignal.abort(new Error('early')) }), /early/);
      await assert.rejects(FdChannel.connect('@dmabuf-nobody-here', { signal: {} as AbortSignal }), TypeError);
    }));

  it('works with a child process: the child opens its end with one call', () =>
    noLeak(async () => {
      const [parent, childEnd] = FdChannel.pair();
      const child = spawn(process.execPath, [childScript, 'echo-memfd'], { stdio: ['ignore', 'inherit', 'inherit', childEnd.fd] });
      childEnd.close();
      using memfd = Memfd.create(8192);
      writeSync(memfd.fd, Buffer.from('from the parent'), 0, 15, 0);
      await parent.send({ length: 15 }, [memfd.fd]);
      const { message } = await parent.receive<{ saw: string; pid: number }>();
      assert.equal(message.saw, 'from the parent');
      assert.equal(message.pid, child.pid);
      const reply = Buffer.alloc(26);
      readSync(memfd.fd, reply, 0, 26, 4096);
      assert.equal(reply.toString(), 'child saw: from the parent');
      await new Promise((resolve) => child.on('exit', resolve));
      parent.close();
    }));

  it('a receiver killed mid-transfer leaks nothing in the sender', () =>
    noLeak(async () => {
      const [parent, childEnd] = FdChannel.pair();
      const child = spawn(process.execPath, [childScript, 'hold'], { stdio: ['ignore', 'inherit', 'inherit', childEnd.fd] });
      childEnd.close();
      using memfd = Memfd.create(4096);
      await parent.send('hold this', [memfd.fd]);
      await parent.receive();
      const sending = (async () => {
        for (;;) await parent.send({ filler: 'y'.repeat(1024 * 1024) }, [memfd.fd, memfd.fd]);
      })();
      child.kill('SIGKILL');
      await assert.rejects(sending, (error: KernelError) => error.code === 'EPIPE' || error.code === 'ECONNRESET');
      await new Promise((resolve) => child.on('exit', resolve));
      parent.close();
    }));
});

describe('pidfdGetFd', () => {
  it('takes an fd from another process, close-on-exec', () =>
    noLeak(async () => {
      using memfd = Memfd.create(4096);
      const child = spawn('sleep', ['30'], { stdio: ['ignore', 'ignore', 'ignore', memfd.fd] });
      try {
        await new Promise((resolve) => child.on('spawn', resolve));
        const taken = pidfdGetFd(child.pid!, 3);
        assert.equal(fstatSync(taken).ino, fstatSync(memfd.fd).ino);
        assert.equal(native().fdFlags(taken) & 1, 1);
        closeFd(taken);
        assert.throws(() => pidfdGetFd(child.pid!, 999), (error: KernelError) => error.code === 'EBADF' && error.syscall === 'pidfd_getfd');
      } finally {
        child.kill();
        await new Promise((resolve) => child.on('exit', resolve));
      }
      assert.throws(() => pidfdGetFd(child.pid!, 3), (error: KernelError) => error.code === 'ESRCH' && error.syscall === 'pidfd_open');
    }));

  it('checks its arguments', () => {
    assert.throws(() => pidfdGetFd(0, 3), RangeError);
    assert.throws(() => pidfdGetFd('1' as unknown as number, 3), TypeError);
  });
});
