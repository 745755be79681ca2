import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, readdirSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { native, type NativeBinding } from '../../lib/native';

// Every binding of the addon, called as JavaScript outside the library could
// call it: each abusive value in each argument position must be refused with
// a TypeError (wrong type: ERR_INVALID_ARG_TYPE) or a RangeError (NaN, a
// fraction, a number out of range: ERR_OUT_OF_RANGE; a list of the wrong
// length: ERR_INVALID_ARG_VALUE) before any syscall. The other arguments are valid in type but name nothing
// (fd 999999 is not open), so a check that let a value through would reach a
// harmless EBADF, and the assertion fails on the returned number instead.

type Kind = 'int32' | 'uint32' | 'size' | 'string' | 'buffer' | 'int32Array' | 'int32Array1' | 'fds' | 'function' | 'boolean' | 'segments' | 'events' | 'deadline';

const closedFd = 999999;
const base: Record<Kind, () => unknown> = {
  int32: () => closedFd,
  uint32: () => 0,
  events: () => 1,
  size: () => 0,
  string: () => 'dmabuf-abuse',
  buffer: () => Buffer.alloc(64),
  int32Array: () => new Int32Array(8),
  int32Array1: () => new Int32Array(1),
  fds: () => [],
  function: () => () => {},
  boolean: () => true,
  segments: () => [closedFd, 0, 4096],
  deadline: () => 0n,
};

const wrongTypes: unknown[] = ['3', 3n, Symbol('fd'), null, undefined, {}, [], true, () => 3];
const numbers: Record<'int32' | 'uint32' | 'size' | 'events', unknown[]> = {
  int32: [NaN, 1.5, -0.5, 2 ** 31, -(2 ** 31) - 1, 2 ** 53, Infinity, -Infinity],
  uint32: [NaN, 1.5, -1, 2 ** 32, 2 ** 53, Infinity],
  events: [NaN, 0.5, -1, 0x10000, 2 ** 53],
  size: [NaN, 1.5, -1, 2 ** 53, 2 ** 64, Infinity],
};
const withThrowingGetter = (length = 1): unknown[] => {
  const list: unknown[] = [];
  list.length = length;
  Object.defineProperty(list, 0, { get: () => { throw new Error('getter'); }, enumerable: true });
  return list;
};
const sparse = (length: number): unknown[] => {
  const list: unknown[] = [];
  list.length = length;
  return list;
};

type Expected = ErrorConstructor | RangeErrorConstructor | TypeErrorConstructor | 'bad length';

/** The abusive values for a kind, each with the error class it must raise ('bad length': a RangeError for the list's length). */
function abuses(kind: Kind): [unknown, Expected][] {
  switch (kind) {
    case 'int32':
    case 'uint32':
    case 'size':
    case 'events':
      return [...wrongTypes.map((value) => [value, TypeError] as [unknown, TypeErrorConstructor]), ...numbers[kind].map((value) => [value, RangeError] as [unknown, RangeErrorConstructor])];
    case 'string':
      return [3, 3n, Symbol('name'), null, undefined, {}, Buffer.from('x')].map((value) => [value, TypeError]);
    case 'buffer':
      return ['x', [], new Uint16Array(4), new ArrayBuffer(4), null, undefined, 5].map((value) => [value, TypeError]);
    case 'int32Array':
    case 'int32Array1':
      return [new Int32Array(0), new Uint32Array(8), [0, 0, 0], null, undefined].map((value) => [value, TypeError]);
    case 'function':
      return [5, 'x', null, undefined, {}, Symbol('f')].map((value) => [value, TypeError]);
    case 'boolean':
      return [1, 'true', null, undefined, 0n].map((value) => [value, TypeError]);
    case 'fds':
      return [
        ...[[NaN], [1.5], [-1], [2 ** 31], [2 ** 53], [0, Infinity]].map((value) => [value, RangeError] as [unknown, RangeErrorConstructor]),
        [sparse(2 ** 31), 'bad length'],
        ...[['0'], [Symbol('fd')], [3n], [null], [undefined], sparse(1), 5, 'x', { length: 1, 0: 1 }, null].map((value) => [value, TypeError] as [unknown, TypeErrorConstructor]),
        [withThrowingGetter(), Error],
      ];
    case 'deadline':
      // The kernel reads a signed ktime: above 2^63 - 1 it would be a time in the past.
      return [
        ...[-1n, 1n << 63n, 1n << 64n, -(1n << 64n)].map((value) => [value, RangeError] as [unknown, RangeErrorConstructor]),
        ...[0, 1.5, '0', null, undefined, {}, Symbol('t')].map((value) => [value, TypeError] as [unknown, TypeErrorConstructor]),
      ];
    case 'segments':
      return [
        ...[[NaN, 0, 4096], [1.5, 0, 4096], [-1, 0, 4096], [2 ** 31, 0, 4096], [2 ** 32, 0, 4096], [closedFd, -1, 4096], [closedFd, 0, 2 ** 53], [closedFd, 0.5, 4096]].map(
          (value) => [value, RangeError] as [unknown, RangeErrorConstructor],
        ),
        [sparse(3 * 2 ** 21), 'bad length'],
        [[closedFd, 0], 'bad length'],
        ...[['0', 0, 4096], [closedFd, 0n, 4096], [closedFd, 0, null], sparse(3), 'x', null, { length: 3 }].map((value) => [value, TypeError] as [unknown, TypeErrorConstructor]),
        [withThrowingGetter(3), Error],
      ];
  }
}

// Each binding's parameters, in order. Bindings without any are called with junk to show they ignore it.
const signatures: Record<string, Kind[]> = {
  kernelRelease: [],
  probeMemfdCreate: [],
  pageSize: [],
  openFile: ['string', 'uint32'],
  closeFd: ['int32'],
  ownFd: ['int32'],
  disownFd: ['int32'],
  fsMagic: ['int32'],
  dupCloexec: ['int32'],
  fdFlags: ['int32'],
  pollNow: ['int32', 'events'],
  readInto: ['int32', 'buffer'],
  memfdCreate: ['string', 'uint32'],
  addSeals: ['int32', 'uint32'],
  getSeals: ['int32'],
  fallocate: ['int32', 'size', 'size'],
  udmabufCreate: ['int32', 'int32', 'size', 'size'],
  udmabufCreateList: ['int32', 'segments'],
  heapAllocate: ['int32', 'size', 'uint32', 'uint32'],
  dmaBufSync: ['int32', 'uint32', 'events'],
  dmaBufSetName: ['int32', 'string'],
  dmaBufExportSyncFile: ['int32', 'uint32'],
  dmaBufImportSyncFile: ['int32', 'int32', 'uint32'],
  syncFileMerge: ['string', 'int32', 'int32'],
  syncFileInfo: ['int32'],
  syncFileStatus: ['int32', 'int32Array1'],
  swSyncCreateFence: ['int32', 'uint32', 'string'],
  swSyncIncrement: ['int32', 'uint32'],
  syncFileSetDeadline: ['int32', 'deadline'],
  swSyncGetDeadline: ['int32', 'int32'],
  mapShared: ['int32', 'size', 'boolean', 'fds'],
  socketPair: ['int32'],
  unixSocket: [],
  unixListen: ['string', 'uint32'],
  unixConnect: ['int32', 'string'],
  accept: ['int32'],
  sendFds: ['int32', 'buffer', 'size', 'size', 'fds'],
  recvFds: ['int32', 'buffer', 'size', 'size', 'int32Array'],
  socketInfo: ['int32'],
  pidfdOpen: ['int32'],
  pidfdGetFd: ['int32', 'int32'],
  dmabufTestIoctl: ['int32', 'uint32', 'buffer'],
};

function bindings(): Record<string, unknown> {
  return native() as unknown as Record<string, unknown>;
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

describe('native bindings under abuse', () => {
  it('the table names every function the addon exports', () => {
    const exported = Object.entries(bindings())
      .filter(([, value]) => typeof value === 'function' && value !== native().Poller)
      .map(([name]) => name)
      .sort();
    assert.deepEqual(exported, Object.keys(signatures).sort());
  });

  for (const [name, kinds] of Object.entries(signatures)) {
    it(`${name}: refuses every abusive argument with its class and code, before any syscall`, () => {
      const fn = bindings()[name] as (...args: unknown[]) => unknown;
      const before = openFds();
      if (kinds.length === 0) {
        for (const junk of [NaN, Symbol('x'), 3n, {}]) {
          const result = fn(junk);
          if (name === 'socketPair' && Array.isArray(result)) for (const fd of result as number[]) native().closeFd(fd);
          if (name === 'unixSocket' && typeof result === 'number' && result >= 0) native().closeFd(result);
        }
        assert.equal(openFds(), before);
        return;
      }
      for (let position = 0; position < kinds.length; position += 1) {
        for (const [value, expected] of abuses(kinds[position]!)) {
          const args = kinds.map((kind) => base[kind]());
          if (name === 'dmabufTestIoctl') args[1] = native().dmabufTestCommands.EXPORT;
          args[position] = value;
          const label = `${name} argument ${position} (${kinds[position]}) = ${show(value)}`;
          const type = expected === 'bad length' ? RangeError : expected;
          const code = expected === 'bad length' ? 'ERR_INVALID_ARG_VALUE' : expected === TypeError ? 'ERR_INVALID_ARG_TYPE' : expected === RangeError ? 'ERR_OUT_OF_RANGE' : undefined;
          assert.throws(() => fn(...args), (error: Error) => {
            assert.ok(error instanceof type, `${label}: ${error.constructor.name} ${error.message}, expected a ${type.name}`);
            assert.equal((error as Error & { code?: string }).code, code, `${label}: ${error.message}`);
            return true;
          }, label);
        }
        // A missing argument is undefined.
        if (position === kinds.length - 1 && name !== 'mapShared') {
          const args = kinds.slice(0, position).map((kind) => base[kind]());
          assert.throws(() => fn(...args), TypeError, `${name} without argument ${position}`);
        }
      }
      assert.equal(openFds(), before, 'no fd was opened');
    });
  }

  it('huge strings are refused (RangeError ERR_INVALID_ARG_VALUE) or fail in the kernel, never crash', () => {
    const huge = 'x'.repeat(16 * 1024 * 1024);
    const invalid = { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' };
    assert.throws(() => native().dmaBufSetName(closedFd, huge), invalid);
    assert.throws(() => native().syncFileMerge(huge, closedFd, closedFd), invalid);
    assert.throws(() => native().swSyncCreateFence(closedFd, 0, huge), invalid);
    assert.throws(() => native().unixListen(huge, 1), invalid);
    assert.throws(() => native().unixConnect(closedFd, huge), invalid);
    assert.equal(native().openFile(`/${huge}`, native().constants.O_RDONLY), -constants.errno.ENAMETOOLONG);
    assert.equal(native().memfdCreate(huge, 0), -constants.errno.EINVAL, 'memfd names are at most 249 bytes');
  });

  it('dmabufTestIoctl refuses a command of another type and an argument smaller than the command (RangeError ERR_INVALID_ARG_VALUE)', () => {
    const invalid = { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' };
    assert.throws(() => native().dmabufTestIoctl(closedFd, 0x40086401, Buffer.alloc(64)), { ...invalid, message: /type 0xDB/ });
    assert.throws(() => native().dmabufTestIoctl(closedFd, native().dmabufTestCommands.EXPORT!, Buffer.alloc(0)), { ...invalid, message: /smaller than the command's size/ });
  });

  it('a list of fds never turns NaN or 1.5 into fd 0 (stdin)', () => {
    const [a, b] = native().socketPair(native().constants.SOCK_STREAM) as [number, number];
    try {
      for (const bad of [NaN, 1.5, -0.5]) {
        assert.throws(() => native().sendFds(a, Buffer.from('x'), 0, 1, [bad]), RangeError);
        assert.throws(() => native().mapShared(closedFd, 4096, true, [bad]), RangeError);
      }
      assert.equal(native().recvFds(b, Buffer.alloc(8), 0, 8, new Int32Array(4)), -constants.errno.EAGAIN, 'nothing was sent');
    } finally {
      native().closeFd(a);
      native().closeFd(b);
    }
  });
});

describe('native classes under abuse', () => {
  const [left, right] = native().socketPair(native().constants.SOCK_STREAM) as [number, number];
  after(() => {
    native().closeFd(left);
    native().closeFd(right);
  });

  function aMapping(): { mapping: object; buffer: ArrayBuffer; constructor: new (...args: unknown[]) => object } {
    const fd = native().memfdCreate('abuse', 0);
    ftruncateSync(fd, 4096);
    const result = native().mapShared(fd, 4096, true);
    native().closeFd(fd);
    assert.ok(typeof result === 'object');
    return { ...result, constructor: result.mapping.constructor as new (...args: unknown[]) => object };
  }

  it('Mapping cannot be constructed from JavaScript, however it is reached', () => {
    const { mapping, constructor: Mapping } = aMapping();
    const illegal = { name: 'TypeError', code: 'ERR_ILLEGAL_CONSTRUCTOR' };
    assert.throws(() => new Mapping(), illegal);
    assert.throws(() => new Mapping({}), illegal);
    assert.throws(() => new Mapping(1, 2), illegal);
    assert.throws(() => Reflect.construct(Mapping, [], Object), illegal);
    class Sub extends Mapping {}
    assert.throws(() => new Sub(), illegal);
    assert.throws(() => (Mapping as unknown as () => void)(), TypeError);
    (mapping as { unmap(): number }).unmap();
  });

  it('Poller refuses to be called without new, and bad arguments', () => {
    const { Poller } = native();
    assert.throws(() => (Poller as unknown as (fd: number, cb: () => void) => void)(left, () => {}), TypeError);
    for (const fd of [NaN, 1.5, 2 ** 31, '3', 3n, Symbol('fd'), undefined]) assert.throws(() => new Poller(fd as number, () => {}), /must be/);
    for (const callback of [undefined, 5, {}, Symbol('cb')]) assert.throws(() => new Poller(left, callback as () => void), TypeError);
    const poller = new Poller(left, () => {});
    for (const events of [NaN, 1.5, -1, 2 ** 32, 'x', 3n]) assert.throws(() => poller.start(events as number), /must be/);
    poller.close();
  });

  it('Poller on an fd epoll cannot watch throws a Node-shaped error: code, errno and syscall agree', () => {
    const fd = openSync('/proc/self/stat', 'r');
    try {
      assert.throws(() => new (native().Poller)(fd, () => {}), { code: 'EPERM', errno: -constants.errno.EPERM, syscall: 'uv_poll_init', message: /^uv_poll_init EPERM/ });
    } finally {
      closeSync(fd);
    }
  });

  it('every method and accessor refuses a `this` of another class, a plain object or a primitive', () => {
    const { mapping, buffer } = aMapping();
    const poller = new (native().Poller)(left, () => {});
    const mappingProto = Object.getPrototypeOf(mapping) as Record<string, unknown>;
    const pollerProto = Object.getPrototypeOf(poller) as Record<string, unknown>;
    const strangers: unknown[] = [{}, Object.create(mappingProto), Object.create(pollerProto), 5, 'x', null, undefined, Symbol('this'), buffer, () => {}];
    const calls: [string, (self: unknown) => unknown][] = [
      ['Mapping.unmap', (self) => (mappingProto.unmap as () => unknown).call(self)],
      ['Mapping.buffer', (self) => Object.getOwnPropertyDescriptor(mappingProto, 'buffer')!.get!.call(self) as unknown],
      ...['start', 'stop', 'close', 'ref', 'unref'].map((method): [string, (self: unknown) => unknown] => [`Poller.${method}`, (self) => (pollerProto[method] as (events: number) => unknown).call(self, 1)]),
    ];
    for (const [label, call] of calls) {
      const foreign = label.startsWith('Mapping') ? poller : mapping;
      for (const self of [foreign, ...strangers]) {
        assert.throws(() => call(self), { name: 'TypeError', code: 'ERR_INVALID_THIS' }, `${label} with this = ${show(self)}`);
      }
    }
    // The real objects still work after all that.
    assert.equal(new Uint8Array((mapping as { buffer: ArrayBuffer }).buffer).length, 4096);
    assert.equal((mapping as { unmap(): number }).unmap(), 0);
    assert.equal(poller.start(1), 0);
    poller.close();
  });

  it('Poller.receiveInto: an io array shrunk, or a buffer transferred away, after the call is not written, and the process lives', () => {
    // In a child: before the fix each read wrote through the pointers that
    // receiveInto kept, into the shrunk array's released pages (SIGSEGV) or
    // into the memory the transfer moved to another ArrayBuffer.
    const script = `
      const { native } = require(${JSON.stringify(join(__dirname, '..', '..', 'dist', 'lib', 'native.js'))});
      const n = native();
      const results = [];
      function readOnce(prepare, done) {
        const [left, right] = n.socketPair(n.constants.SOCK_STREAM);
        const { buffer, io, afterCall } = prepare();
        const poller = new n.Poller(left, () => {
          poller.close();
          n.closeFd(left);
          n.closeFd(right);
          done();
        });
        poller.receiveInto(buffer, io);
        afterCall();
        poller.start(n.Poller.READABLE, true);
        n.sendFds(right, Buffer.from('hello'), 0, 5, []);
      }
      const resizable = new ArrayBuffer(4096, { maxByteLength: 1 << 20 });
      const shrunk = new Int32Array(resizable);
      readOnce(() => ({ buffer: Buffer.alloc(4096), io: shrunk, afterCall: () => resizable.resize(0) }), () => {
        results.push(shrunk.length);
        const io = new Int32Array(8);
        const buffer = Buffer.alloc(4096);
        let moved;
        readOnce(() => ({ buffer, io, afterCall: () => { moved = new Uint8Array(structuredClone(buffer.buffer, { transfer: [buffer.buffer] })).fill(7); } }), () => {
          results.push(io[1], moved.every((byte) => byte === 7));
          process.stdout.write(JSON.stringify(results));
        });
      });`;
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10000 });
    assert.equal(child.signal, null, `the child was killed by ${child.signal}`);
    assert.equal(child.status, 0, child.stderr);
    assert.deepEqual(JSON.parse(child.stdout), [0, -constants.errno.ENOBUFS, true], 'io shrunk to 0 elements; then the read refused with ENOBUFS and the transferred bytes untouched');
  });
});

function show(value: unknown): string {
  if (typeof value === 'symbol' || typeof value === 'bigint') return String(value) + (typeof value === 'bigint' ? 'n' : '');
  if (Array.isArray(value)) return value.length > 8 || Object.getOwnPropertyDescriptor(value, 0)?.get ? `array of length ${value.length}` : `[${value.map((item) => show(item)).join(', ')}]`;
  if (typeof value === 'function') return 'a function';
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return value.constructor.name;
  if (typeof value === 'object' && value !== null) return 'an object';
  return String(value);
}

export type { NativeBinding };
