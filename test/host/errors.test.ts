import assert from 'node:assert/strict';
import { ftruncateSync, readdirSync, readFileSync } from 'node:fs';
import { constants, totalmem } from 'node:os';
import { join } from 'node:path';
import { FdChannel, heap, SyncFile, udmabuf, type MemfdSegment } from '../../lib';
import { KernelTestDevice } from '../../lib/kernel-test';
import {
  codedError,
  errnoError,
  errnoName,
  errorCodes,
  kernelError,
  libraryErrnos,
  PolicyRuleError,
  relayedError,
  VmSetupError,
  type ErrorArgs,
  type ErrorCode,
} from '../../lib/errors';
import { native } from '../../lib/native';

const root = join(__dirname, '..', '..');

// One set of arguments per code: a code added to the registry without one
// here does not compile.
const sampleArgs: { [C in ErrorCode]: ErrorArgs<C> } = {
  ERR_INVALID_ARG_TYPE: ['size', 'an integer', '4096'],
  ERR_INVALID_ARG_VALUE: ['mode', "one of 'read', 'write', 'readwrite'", 'rw'],
  ERR_OUT_OF_RANGE: ['fd', 'an integer from 0 to 2147483647', -1],
  ERR_MISSING_OPTION: ['options.buffer', 'with options.usage'],
  ERR_INCOMPATIBLE_OPTION_PAIR: ['options.revocable', 'options.dynamic: false', 'leave options.dynamic out'],
  ERR_INVALID_THIS: ['Mapping'],
  ERR_ILLEGAL_CONSTRUCTOR: ['Mapping', 'mapShared()'],
  ERR_DMABUF_NOT_A_DMABUF: [3, 0x1021994],
  ERR_DMABUF_UNSAFE_MAPPING: ['6.1.0'],
  ERR_DMABUF_ACCESS_BEGUN: ['read'],
  ERR_DMABUF_ACCESS_NOT_BEGUN: [],
  ERR_DMABUF_ACCESS_MISMATCH: ['write', 'read'],
  ERR_DMABUF_FENCES_PENDING: ['read'],
  ERR_DMABUF_CHANNEL_FDS_LOST: [],
  ERR_DMABUF_SOCKET_FDS_LOST: [Buffer.from('frame'), 1],
  ERR_DMABUF_CHANNEL_TRUNCATED: [5, 1],
  ERR_DMABUF_CHANNEL_PROTOCOL: ['the peer sent bytes without the frame magic'],
  ERR_DMABUF_CHANNEL_BAD_HANDLE: [0, 'dmabuf', 'not a dma-buf'],
  ERR_DMABUF_NOT_TEST_DEVICE: ['/dev/null', 'character device 1:3'],
  ERR_DMABUF_ADDON_MISMATCH: ['the argument of DBT_IOCTL_EXPORT', 16, 24],
  ERR_DMABUF_POLICY_RULE: ['dma_buf_pin', 'a static importer'],
  ERR_DMABUF_POLICY_NO_PROFILE: ['5.15.0', 'it is older than any modelled generation (6.1)'],
  ERR_DMABUF_VM_SETUP: ['QEMU is not installed.', 'Install it.', '/tmp/log'],
};

const codes = Object.keys(errorCodes) as ErrorCode[];

function make<C extends ErrorCode>(code: C) {
  return codedError(code, ...sampleArgs[code]);
}

/** Every `ERR_*` string in the files under `dir` with one of `extensions`, with where it is. */
function codesIn(dir: string, extensions: string[]): Map<string, string> {
  const found = new Map<string, string>();
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !extensions.some((extension) => entry.name.endsWith(extension))) continue;
    const path = join(entry.parentPath, entry.name);
    for (const match of readFileSync(path, 'utf8').matchAll(/['"](ERR_[A-Z_]+)['"]/g)) found.set(match[1]!, path.slice(root.length + 1));
  }
  return found;
}

describe('errno names', () => {
  it('names the errnos libuv does not know, which dma-buf returns: ETIME, and EBADFD from the addon', () => {
    assert.equal(errnoName(constants.errno.ETIME), 'ETIME');
    assert.equal(errnoName(native().errnos.EBADFD!), 'EBADFD');
    assert.match(kernelError(-native().errnos.EBADFD!, 'ioctl(UDMABUF_CREATE)').message, /EBADFD \(file descriptor in bad state\)/);
  });

  it('names ordinary errnos as Node does, and an unknown one E<number>', () => {
    assert.equal(errnoName(constants.errno.EINVAL), 'EINVAL');
    assert.equal(errnoName(constants.errno.ENOTTY), 'ENOTTY');
    assert.equal(errnoName(100000), 'E100000');
  });

  it('for every errno of os.constants.errno, the error made from it has a code whose os.constants.errno value is that errno', () => {
    for (const [name, value] of Object.entries(constants.errno)) {
      const error = kernelError(-value, 'test');
      assert.equal(error.errno, -value, name);
      assert.equal(constants.errno[error.code as keyof typeof constants.errno], -error.errno, `${name} became ${error.code}`);
    }
  });
});

describe('kernel errors', () => {
  it('are shaped like Node fs errors: code, errno, syscall, and a message with the hint', () => {
    const error = kernelError(-constants.errno.EINVAL, 'ioctl(DMA_BUF_IOCTL_SYNC)', { hint: 'flags must name a direction' });
    assert.ok(error instanceof Error);
    assert.equal(error.code, 'EINVAL');
    assert.equal(error.errno, -constants.errno.EINVAL);
    assert.equal(error.syscall, 'ioctl(DMA_BUF_IOCTL_SYNC)');
    assert.equal(error.message, 'ioctl(DMA_BUF_IOCTL_SYNC) EINVAL (invalid argument): flags must name a direction');
  });

  it('carry a path when one is involved', () => {
    const error = kernelError(constants.errno.ENOENT, 'open', { path: '/dev/udmabuf' });
    assert.equal(error.path, '/dev/udmabuf');
    assert.match(error.message, /^open '\/dev\/udmabuf' ENOENT/);
  });

  it('every errno error the library raises itself has its code, and os.constants.errno[code] === -errno', () => {
    for (const code of libraryErrnos) {
      const error = errnoError(code, 'test', { hint: 'why' });
      assert.equal(error.code, code);
      assert.equal(constants.errno[code], -error.errno, code);
      assert.equal(error.syscall, 'test');
    }
  });

  it('an error relayed by code from another process gets this system errno for an errno code, its class for a registry code', () => {
    const busy = relayedError('EBUSY', 'refused', 'remote pin') as Error & { code: string; errno?: number; syscall?: string };
    assert.deepEqual([busy.code, busy.errno, busy.syscall], ['EBUSY', -constants.errno.EBUSY, 'remote pin']);
    const rule = relayedError('ERR_DMABUF_POLICY_RULE', 'dma_buf_pin: a static importer', 'remote pin');
    assert.ok(rule instanceof PolicyRuleError);
    assert.equal(rule.code, 'ERR_DMABUF_POLICY_RULE');
    assert.equal(relayedError('ERR_FROM_ELSEWHERE', 'odd', 'remote map').code, 'ERR_FROM_ELSEWHERE');
  });
});

describe('the error registry', () => {
  it('makes each code as its class, with that code, a message, and no errno', () => {
    for (const code of codes) {
      const error = make(code);
      assert.ok(error instanceof errorCodes[code].type, code);
      assert.equal(error.code, code);
      assert.equal(error.name, errorCodes[code].type.name, code);
      assert.ok(error.message.length > 0, code);
      assert.equal((error as { errno?: unknown }).errno, undefined, code);
    }
  });

  it('uses one prefix: Node\'s codes as Node names them, the library\'s own as ERR_DMABUF_*', () => {
    const node = ['ERR_INVALID_ARG_TYPE', 'ERR_INVALID_ARG_VALUE', 'ERR_OUT_OF_RANGE', 'ERR_MISSING_OPTION', 'ERR_INCOMPATIBLE_OPTION_PAIR', 'ERR_INVALID_THIS', 'ERR_ILLEGAL_CONSTRUCTOR'];
    assert.deepEqual(codes.filter((code) => !code.startsWith('ERR_DMABUF_')), node);
  });

  it('gives the classed errors their extra fields: VmSetupError hint and logPath, the test device path', () => {
    const setup = make('ERR_DMABUF_VM_SETUP');
    assert.ok(setup instanceof VmSetupError);
    assert.deepEqual([setup.message, setup.hint, setup.logPath], ['QEMU is not installed.\n  Install it.', 'Install it.', '/tmp/log']);
    assert.equal(make('ERR_DMABUF_NOT_TEST_DEVICE').path, '/dev/null');
  });

  it('holds every ERR_* code that lib/ and native/ use (no code is made outside it)', () => {
    // lib/cli parses arguments with Node's util.parseArgs and reads (never makes) its ERR_PARSE_ARGS_* codes.
    const used = new Map([...codesIn(join(root, 'lib'), ['.ts']), ...codesIn(join(root, 'native'), ['.cc', '.h'])]);
    const unknown = [...used].filter(([code]) => !Object.hasOwn(errorCodes, code) && !/^ERR_PARSE_ARGS(_[A-Z_]+)?$/.test(code));
    assert.deepEqual(unknown, []);
  });

  it('is the only place in lib/ that constructs an Error, TypeError or RangeError', () => {
    const makers: string[] = [];
    for (const entry of readdirSync(join(root, 'lib'), { withFileTypes: true, recursive: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
      const path = join(entry.parentPath, entry.name).slice(root.length + 1);
      if (path === join('lib', 'errors.ts')) continue;
      readFileSync(join(root, path), 'utf8').split('\n').forEach((line, index) => {
        if (/new (Error|TypeError|RangeError)\(/.test(line)) makers.push(`${path}:${index + 1}: ${line.trim()}`);
      });
    }
    assert.deepEqual(makers, []);
  });

  it('has the messages the addon makes for ERR_INVALID_THIS and ERR_ILLEGAL_CONSTRUCTOR', () => {
    const fd = native().memfdCreate('errors-test', 0);
    try {
      ftruncateSync(fd, 4096);
      const made = native().mapShared(fd, 4096, true);
      assert.ok(typeof made === 'object');
      const Mapping = made.mapping.constructor as new () => object;
      const unmap = (Object.getPrototypeOf(made.mapping) as { unmap: (this: unknown) => number }).unmap;
      assert.throws(() => unmap.call({}), { name: 'TypeError', code: 'ERR_INVALID_THIS', message: make('ERR_INVALID_THIS').message });
      assert.throws(() => new Mapping(), { name: 'TypeError', code: 'ERR_ILLEGAL_CONSTRUCTOR', message: make('ERR_ILLEGAL_CONSTRUCTOR').message });
      made.mapping.unmap();
    } finally {
      native().closeFd(fd);
    }
  });
});

describe('the README table of error codes', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Error codes'), readme.indexOf('\n## ', readme.indexOf('### Error codes')));
  const rows = [...section.matchAll(/^\| `([A-Z_]+)` \| ([A-Za-z]+) \| (.+?) \| (.+?) \|$/gm)].map(([, code, type, when, what]) => ({ code: code!, type: type!, when: when!, what: what! }));

  it('lists every registry code and every errno the library raises, once each, and nothing else', () => {
    assert.deepEqual(rows.map((row) => row.code), [...codes, ...libraryErrnos]);
  });

  it('gives each code its class, and says when it is thrown and what to do', () => {
    for (const row of rows) {
      const expected = Object.hasOwn(errorCodes, row.code) ? errorCodes[row.code as ErrorCode].type.name : 'Error';
      assert.equal(row.type, expected, row.code);
      assert.ok(row.when.length > 10 && row.what.length > 5, row.code);
    }
  });
});

// The gaps the registry closed: each of these threw a TypeError without a code,
// or had no bound at all.
describe('argument errors of public calls, before any syscall', () => {
  const type = (message: RegExp) => ({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message });

  it('udmabuf.fromMemfd: segments that are not objects are ERR_INVALID_ARG_TYPE, an empty list ERR_INVALID_ARG_VALUE', () => {
    assert.throws(() => udmabuf.fromMemfd(null as never), type(/a segment or an array of segments for segments but received null/));
    assert.throws(() => udmabuf.fromMemfd([5 as unknown as MemfdSegment]), type(/an object for segments\[0\] but received 5/));
    assert.throws(() => udmabuf.fromMemfd([]), { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' });
  });

  it('SyncFile.merge and udmabuf.mapsPageFrames: objects of the wrong class are ERR_INVALID_ARG_TYPE', () => {
    assert.throws(() => SyncFile.merge('x', {} as SyncFile, {} as SyncFile), type(/a SyncFile for first but received an instance of Object/));
    assert.throws(() => udmabuf.mapsPageFrames({} as never), type(/a DmaBuf for buffer/));
  });

  it('FdChannel.send: handles that are not a list, or not handles, are ERR_INVALID_ARG_TYPE', async () => {
    const [a, b] = FdChannel.pair();
    try {
      assert.throws(() => a.send('x', 'nope' as never), type(/an array for handles/));
      assert.throws(() => a.send('x', [{} as never]), type(/a DmaBuf, a SyncFile or an fd for handles\[0\]/));
      assert.throws(() => a.send('x', [-1]), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    } finally {
      a.close();
      b.close();
    }
  });

  it('KernelTestDevice: option pairs and raw arguments are checked before the device is used', () => {
    // The checks run before the fd is read: a device object that never opened shows it.
    const device = Object.create(KernelTestDevice.prototype) as KernelTestDevice;
    assert.throws(() => device.createFence({ usage: 'read' }), { name: 'TypeError', code: 'ERR_MISSING_OPTION', message: /options\.buffer is required with options\.usage/ });
    assert.throws(() => device.attach(3, { revocable: true, dynamic: false }), { name: 'TypeError', code: 'ERR_INCOMPATIBLE_OPTION_PAIR' });
    assert.throws(() => device.rawIoctl(0, 'x' as never), type(/a Buffer for argument/));
  });

  it('heap.allocate refuses a size above MemTotal with RangeError ERR_OUT_OF_RANGE, before opening any heap', () => {
    // A heap name that cannot exist: the size is judged before the open, or this would be ENOENT.
    assert.throws(() => heap.allocate('no-such-heap', totalmem() + 1), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: new RegExp(`MemTotal, ${totalmem()} bytes`) });
    assert.throws(() => heap.allocate('no-such-heap', totalmem()), { code: 'ENOENT', syscall: 'open' });
  });
});
