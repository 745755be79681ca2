import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DmaBuf, FdChannel, SwSyncTimeline, SyncFile, maxMessageBytes, udmabuf, type Handle } from '../../lib';
import { closeFd } from '../../lib/handle';
import { native } from '../../lib/native';
import { expectNoLeak, openFdCount, pageSize, requireVm, settledWithin } from './helpers';

// Peers not written in Node (examples/peer.c, examples/peer.py) at the other
// end of an FdChannel: the frame format (docs/fd-channel-wire-format.md) is
// all they share with the library.

const examples = join(__dirname, '..', '..', '..', 'examples');
const run = promisify(execFile);

interface PeerOutput {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** FNV-1a, 32 bits, as hex: what the peers report of the bytes they read. */
function fnv1a32(bytes: Buffer): string {
  let hash = 0x811c9dc5;
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash.toString(16).padStart(8, '0');
}

/** The bytes a seed stands for: byte i is the low byte of xorshift32's (i+1)th state. */
function pattern(seed: number, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  let state = seed >>> 0;
  for (let index = 0; index < length; index += 1) {
    state = (state ^ (state << 13)) >>> 0;
    state = (state ^ (state >>> 17)) >>> 0;
    state = (state ^ (state << 5)) >>> 0;
    bytes[index] = state & 0xff;
  }
  return bytes;
}

function firstDifference(actual: Buffer, expected: Buffer): string | undefined {
  if (actual.length !== expected.length) return `${actual.length} bytes, expected ${expected.length}`;
  const index = actual.findIndex((byte, at) => byte !== expected[at]);
  return index < 0 ? undefined : `byte ${index} is ${actual[index]}, expected ${expected[index]}`;
}

function indent(text: string): string {
  return text.trimEnd().replace(/^/gm, '      ');
}

/**
 * Runs `command` with the channel's other end as fd 3, gives `body` this
 * end, then closes it (the peer's end of stream) and waits for the peer to
 * exit, which must be with 0. A failure carries what the peer printed.
 */
async function withPeer(command: string[], body: (channel: FdChannel, pid: number) => Promise<void>): Promise<PeerOutput> {
  const [channel, peerEnd] = FdChannel.pair();
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe', peerEnd.fd] });
  peerEnd.close();
  const output: PeerOutput = { status: null, stdout: '', stderr: '' };
  child.stdout!.on('data', (chunk) => (output.stdout += String(chunk)));
  child.stderr!.on('data', (chunk) => (output.stderr += String(chunk)));
  // 'close': the peer has exited and its stdout and stderr pipes are closed here.
  const closed = new Promise<number | null>((resolve, reject) => {
    child.on('close', resolve);
    child.on('error', reject);
  });
  let failure: unknown;
  try {
    await body(channel, child.pid!);
  } catch (error) {
    failure = error;
  } finally {
    channel.close();
  }
  output.status = await closed;
  const printed = `${command.join(' ')} printed:\n${output.stdout}${output.stderr}`;
  if (failure !== undefined) {
    const error = failure instanceof Error ? failure : new Error(`the test threw ${JSON.stringify(failure)}`);
    error.message += `\n${printed}`;
    throw error;
  }
  assert.equal(output.status, 0, `the peer exits 0 at the end of the stream; ${printed}`);
  assert.equal(output.stderr, '', 'the peer printed nothing on stderr');
  process.stdout.write(`${indent(output.stdout)}\n`);
  return output;
}

async function hello(channel: FdChannel, peer: string): Promise<void> {
  await channel.send({ op: 'hello' });
  const { message, handles } = await channel.receive();
  assert.deepEqual([message, handles], [{ op: 'hello', peer }, []]);
}

function closeAll(handles: Handle[]): void {
  for (const handle of handles) {
    if (typeof handle === 'number') closeFd(handle);
    else handle.close();
  }
}

interface Peer {
  /** The name it gives itself in its replies and messages. */
  name: string;
  /** Makes it runnable, or says why it cannot run here; gives the command. */
  prepare(scratch: string): Promise<string[]>;
}

const peers: Peer[] = [
  {
    name: 'peer.c',
    async prepare(scratch) {
      const binary = join(scratch, 'peer');
      try {
        await run('gcc', ['-Wall', '-Wextra', '-Werror', '-O2', '-o', binary, join(examples, 'peer.c')]);
      } catch (error) {
        const { code, stderr } = error as { code?: string; stderr?: string };
        throw new Error(code === 'ENOENT' ? 'gcc is not installed: the C peer cannot be built (the guest runs the host\'s root: install gcc there)' : `gcc could not build examples/peer.c:\n${stderr}`);
      }
      return [binary];
    },
  },
  {
    name: 'peer.py',
    async prepare() {
      let version: string;
      try {
        version = (await run('python3', ['-c', 'import sys; print("%d.%d" % sys.version_info[:2])'])).stdout.trim();
      } catch (error) {
        throw new Error(`python3 does not run (${(error as Error).message}): the Python peer needs Python 3.9 or later on the guest (the host's root)`);
      }
      const [major, minor] = version.split('.').map(Number) as [number, number];
      if (major < 3 || (major === 3 && minor < 9)) throw new Error(`python3 is ${version}: the Python peer needs 3.9 or later (socket.send_fds, recv_fds)`);
      return ['python3', join(examples, 'peer.py')];
    },
  },
];

for (const peer of peers) {
  describe(`${peer.name}: a peer not written in Node, over an FdChannel`, () => {
    requireVm();
    let scratch: string;
    let command: string[];
    before(async function () {
      this.timeout(120_000);
      scratch = mkdtempSync(join(tmpdir(), 'peers-'));
      // Its own spawn also sets up what this process keeps for any child
      // (SIGCHLD handling), before a test counts fds.
      command = await peer.prepare(scratch);
    });
    after(() => rmSync(scratch, { recursive: true, force: true }));

    it(`Node to ${peer.name}: it waits on the sync_file Node sent (no reply while the fence is pending), then reports the fnv1a32 and first 16 bytes of what Node wrote as the fence signalled, and lets go of the buffer`, async () => {
      await expectNoLeak(async () => {
        await withPeer(command, async (channel) => {
          await hello(channel, peer.name);
          using timeline = SwSyncTimeline.open();
          using buffer = udmabuf.create(4 * pageSize, { name: 'node-to-peer' });
          using fence = timeline.createFence(1, 'node-writes');
          // The fence rides along, not in the buffer's reservation: only the
          // peer's own wait on the sync_file can hold its read back.
          const length = 3 * pageSize + 123;
          buffer.withCpuAccess('write', (bytes) => bytes.fill(0x5a));
          const ownReferences = buffer.info().count;
          await channel.send({ op: 'check', length }, [buffer, fence]);
          const reply = channel.receive();
          const repliedEarly = await settledWithin(reply, 1000);
          const fresh = randomBytes(length);
          buffer.withCpuAccess('write', (bytes) => fresh.copy(bytes));
          timeline.advance(1);
          const { message, handles } = await reply;
          assert.equal(repliedEarly, false, `the peer replied before the fence signalled: ${JSON.stringify(message)}`);
          assert.deepEqual(handles, []);
          assert.deepEqual(message, { op: 'checked', length, fnv1a32: fnv1a32(fresh), first: fresh.subarray(0, 16).toString('hex') });
          assert.equal(buffer.info().count, ownReferences, 'the peer closed its fd and unmapped before replying');
        });
      });
    });

    it(`${peer.name} to Node: its udmabuf and sw_sync fence arrive as a DmaBuf (exporter udmabuf, close-on-exec) and a SyncFile of its own timeline, active until Node says signal; then wait() resolves, the bytes are the seed's pattern and Node holds the buffer's only reference`, async () => {
      await expectNoLeak(async () => {
        await withPeer(command, async (channel, pid) => {
          const seed = randomInt(1, 2 ** 32);
          const length = 4 * pageSize;
          await channel.send({ op: 'make', seed, length });
          const { message, handles } = await channel.receive();
          try {
            assert.deepEqual(message, { op: 'yours', seed, length });
            assert.equal(handles.length, 2);
            const [buffer, fence] = handles;
            assert.ok(DmaBuf.isDmaBuf(buffer), 'handles[0] is a DmaBuf');
            assert.ok(SyncFile.isSyncFile(fence), 'handles[1] is a SyncFile');
            const info = buffer.info();
            assert.deepEqual([info.exporter, info.size], ['udmabuf', length]);
            assert.equal(native().fdFlags(buffer.fd), 1 /* FD_CLOEXEC */, 'the received dma-buf fd is close-on-exec');
            assert.equal(native().fdFlags(fence.fd), 1 /* FD_CLOEXEC */, 'the received sync_file fd is close-on-exec');
            // sw_sync names a debugfs timeline after the process that opened it.
            const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
            const fenceInfo = fence.info();
            assert.deepEqual(
              fenceInfo.fences.map((item) => [item.driver, item.timeline, item.status]),
              [['sw_sync', comm, 'active']],
            );
            const waiting = fence.wait({ timeoutMs: 20_000 });
            assert.equal(await settledWithin(waiting, 500), false, 'the fence is still active half a second later');
            assert.equal(fence.status, 'active');
            await channel.send({ op: 'signal' });
            await waiting;
            assert.equal(fence.status, 'signaled');
            // The peer closed its fd and unmapped right after sending, before it read 'signal'.
            assert.equal(buffer.info().count, 1, 'Node holds the only reference');
            const bytes = buffer.withCpuAccess('read', (view) => Buffer.from(view.subarray(0, length)));
            assert.equal(firstDifference(bytes, pattern(seed, length)), undefined, `the bytes of seed ${seed}'s pattern`);
          } finally {
            closeAll(handles);
          }
        });
      });
    });

    it(`frames a receiver can skip, from ${peer.name}: bad JSON and kinds that do not match the fds reject receive() with ERR_DMABUF_CHANNEL_PROTOCOL, a memfd sent as a dmabuf with ERR_DMABUF_CHANNEL_BAD_HANDLE; no fd is left open and the channel goes on`, async () => {
      const fds = openFdCount();
      await withPeer(command, async (channel) => {
        const expected = [
          { how: 'json', code: 'ERR_DMABUF_CHANNEL_PROTOCOL', message: /its JSON does not parse/ },
          { how: 'kind', code: 'ERR_DMABUF_CHANNEL_BAD_HANDLE', message: /handle 0 was sent as a dmabuf but is not one/ },
          { how: 'count', code: 'ERR_DMABUF_CHANNEL_PROTOCOL', message: /its handle kinds do not match the fds/ },
        ];
        for (const { how, code, message } of expected) {
          const refused = channel.receive();
          await channel.send({ op: 'malformed', how });
          await assert.rejects(refused, (error: Error & { code?: string }) => {
            assert.equal(error.code, code, `${how}: ${error.message}`);
            assert.match(error.message, message);
            return true;
          });
        }
        await hello(channel, peer.name);
      });
      assert.equal(openFdCount(), fds, 'open fds before and after');
    });

    const fatal = [
      { how: 'magic', code: 'ERR_DMABUF_CHANNEL_PROTOCOL', message: /without the frame magic/, what: 'another magic (an unknown version)' },
      { how: 'limits', code: 'ERR_DMABUF_CHANNEL_PROTOCOL', message: new RegExp(`announced ${maxMessageBytes + 1} bytes and 0 handles, beyond the limits`), what: 'a header announcing 64 MiB + 1 of JSON' },
      { how: 'truncated', code: 'ERR_DMABUF_CHANNEL_TRUNCATED', message: /in the middle of a message \(\d+ bytes and 1 fds left over\)/, what: 'a frame cut short by the peer\'s end of stream' },
    ];
    for (const { how, code, message, what } of fatal) {
      it(`${what} from ${peer.name} rejects receive() with ${code} and ends the channel (close, and the next receive() rejects the same); no fd is left open`, async () => {
        const fds = openFdCount();
        await withPeer(command, async (channel) => {
          let closeEvents = 0;
          channel.on('close', () => (closeEvents += 1));
          const refused = channel.receive();
          await channel.send({ op: 'malformed', how });
          const error = await refused.then(
            () => assert.fail('receive() resolved'),
            (reason: Error & { code?: string }) => reason,
          );
          assert.equal(error.code, code, error.message);
          assert.match(error.message, message);
          assert.equal(closeEvents, 1);
          await assert.rejects(channel.receive(), (again) => again === error);
        });
        assert.equal(openFdCount(), fds, 'open fds before and after');
      });
    }
  });
}
