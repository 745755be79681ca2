import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { constants } from 'node:os';
import { fourccFromString, fourccToString, V4l2Device, type KernelError } from '../../lib';
import { native } from '../../lib/native';

// The host has no V4L2 device: these hold the bindings on exports.v4l2 to
// the addon's rule (a bad argument is a TypeError or RangeError before any
// ioctl, never a crash) and the parts of V4l2Device that need no device.
// test/guest/v4l2.test.ts drives vivid.

type Kind = 'fd' | 'uint32' | 'bufferType' | 'boolean' | 'bigint';

const closedFd = 999999;
const base: Record<Kind, () => unknown> = { fd: () => closedFd, uint32: () => 0, bufferType: () => native().constants.V4L2_BUF_TYPE_VIDEO_CAPTURE, boolean: () => false, bigint: () => 0n };
const abuses: Record<Kind, [unknown, TypeErrorConstructor | RangeErrorConstructor][]> = {
  fd: [...['3', 3n, null, undefined, {}].map((value): [unknown, TypeErrorConstructor] => [value, TypeError]), ...[NaN, 1.5, 2 ** 31, -(2 ** 31) - 1].map((value): [unknown, RangeErrorConstructor] => [value, RangeError])],
  uint32: [...['0', 0n, null, undefined, {}].map((value): [unknown, TypeErrorConstructor] => [value, TypeError]), ...[NaN, 0.5, -1, 2 ** 32].map((value): [unknown, RangeErrorConstructor] => [value, RangeError])],
  // Only the single-planar video queues: another type's buffer union holds a pointer (m.planes).
  bufferType: [...['1', 1n, null, undefined].map((value): [unknown, TypeErrorConstructor] => [value, TypeError]), ...[NaN, 1.5, -1, 0, 3, 9, 10, 2 ** 32].map((value): [unknown, RangeErrorConstructor] => [value, RangeError])],
  boolean: [1, 'true', null, undefined, 0n].map((value) => [value, TypeError]),
  bigint: [...[0, '0', null, undefined].map((value): [unknown, TypeErrorConstructor] => [value, TypeError]), ...[1n << 63n, -(1n << 63n) - 1n].map((value): [unknown, RangeErrorConstructor] => [value, RangeError])],
};

const signatures: Record<string, Kind[]> = {
  queryCapabilities: ['fd'],
  enumFormat: ['fd', 'bufferType', 'uint32'],
  getFormat: ['fd', 'bufferType'],
  setFormat: ['fd', 'uint32', 'bufferType', 'uint32', 'uint32', 'uint32', 'uint32', 'uint32', 'uint32'],
  enumIo: ['fd', 'boolean', 'uint32'],
  getIo: ['fd', 'boolean'],
  setIo: ['fd', 'boolean', 'uint32'],
  frameInterval: ['fd', 'bufferType', 'uint32', 'uint32'],
  requestBuffers: ['fd', 'bufferType', 'uint32', 'uint32'],
  queryBuffer: ['fd', 'bufferType', 'uint32', 'uint32'],
  queueBuffer: ['fd', 'bufferType', 'uint32', 'uint32', 'fd', 'uint32', 'uint32', 'uint32'],
  dequeueBuffer: ['fd', 'bufferType', 'uint32'],
  exportBuffer: ['fd', 'bufferType', 'uint32', 'uint32'],
  stream: ['fd', 'boolean', 'bufferType'],
  queryControl: ['fd', 'uint32'],
  queryMenu: ['fd', 'uint32', 'uint32'],
  getControl: ['fd', 'uint32', 'boolean'],
  setControl: ['fd', 'uint32', 'bigint', 'boolean'],
};

function validArgs(name: string): unknown[] {
  const args = signatures[name]!.map((kind) => base[kind]());
  if (name === 'setFormat') args[1] = native().constants.VIDIOC_S_FMT;
  return args;
}

const openFds = () => readdirSync('/proc/self/fd').length;

describe('V4L2 bindings (exports.v4l2) under abuse', () => {
  it('the table names every function on exports.v4l2, which is frozen', () => {
    assert.deepEqual(Object.keys(native().v4l2).sort(), Object.keys(signatures).sort());
    assert.ok(Object.isFrozen(native().v4l2));
  });

  for (const [name, kinds] of Object.entries(signatures)) {
    it(`${name}: refuses every abusive argument with its class and code, and reaches the kernel (EBADF) with valid ones`, () => {
      const fn = (native().v4l2 as unknown as Record<string, (...args: unknown[]) => unknown>)[name]!;
      const before = openFds();
      kinds.forEach((kind, position) => {
        for (const [value, type] of abuses[kind]) {
          const args = validArgs(name);
          args[position] = value;
          assert.throws(() => fn(...args), (error: Error & { code?: string }) => {
            assert.ok(error instanceof type, `${name} argument ${position} = ${String(value)}: ${error.constructor.name} ${error.message}`);
            assert.equal(error.code, type === TypeError ? 'ERR_INVALID_ARG_TYPE' : 'ERR_OUT_OF_RANGE', error.message);
            return true;
          });
        }
      });
      assert.equal(fn(...validArgs(name)), -constants.errno.EBADF, 'valid arguments reach the ioctl, which finds no fd');
      const typeAt = kinds.indexOf('bufferType');
      if (typeAt >= 0) {
        const output = validArgs(name);
        output[typeAt] = native().constants.V4L2_BUF_TYPE_VIDEO_OUTPUT;
        assert.equal(fn(...output), -constants.errno.EBADF, 'the output type reaches the ioctl too');
      }
      assert.equal(openFds(), before);
    });
  }

  it('setFormat refuses any command but VIDIOC_S_FMT and VIDIOC_TRY_FMT: another would read or write a struct of another size', () => {
    const args = validArgs('setFormat');
    const setFormat = (...values: unknown[]) => (native().v4l2 as unknown as Record<string, (...rest: unknown[]) => unknown>).setFormat!(...values);
    for (const command of [0, native().constants.VIDIOC_S_FMT + 1, 0xc0d05604]) {
      args[1] = command;
      assert.throws(() => setFormat(...args), { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' });
    }
    args[1] = native().constants.VIDIOC_TRY_FMT;
    assert.equal(setFormat(...args), -constants.errno.EBADF);
  });

  it('setControl refuses a 32-bit control value outside int32 (RangeError), and takes the whole int64 range for 64-bit ones', () => {
    assert.throws(() => native().v4l2.setControl(closedFd, 0, 1n << 31n, false), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    assert.throws(() => native().v4l2.setControl(closedFd, 0, -(1n << 31n) - 1n, false), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    assert.equal(native().v4l2.setControl(closedFd, 0, (1n << 63n) - 1n, true), -constants.errno.EBADF);
    assert.equal(native().v4l2.setControl(closedFd, 0, -(1n << 31n), false), -constants.errno.EBADF);
  });
});

describe('V4l2Device without a device', () => {
  it('fourcc strings round-trip, the big-endian bit as a -BE suffix', () => {
    for (const name of ['YUYV', 'RGB3', 'Y16 ', 'Y16 -BE', 'XR15-BE']) assert.equal(fourccToString(fourccFromString(name)), name);
    // v4l2_fourcc('Y','U','Y','V'): the first character in the low byte.
    assert.equal(fourccFromString('YUYV') & 0xff, 'Y'.charCodeAt(0));
    assert.equal(fourccFromString('YUYV') >>> 24, 'V'.charCodeAt(0));
    assert.equal(fourccFromString('Y16 -BE') >>> 31, 1);
  });

  it('a fourcc that is not four printable characters is a RangeError; a non-string a TypeError', () => {
    for (const bad of ['YUY', 'YUYVV', 'YU\nV', '', 'ÿUYV', 'YUYV-LE']) assert.throws(() => fourccFromString(bad), { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' });
    for (const bad of [0x56595559, null, undefined]) assert.throws(() => fourccFromString(bad as unknown as string), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  });

  it('open() of a file that is not a V4L2 device is ENOTTY from VIDIOC_QUERYCAP, and closes what it opened', () => {
    const before = openFds();
    assert.throws(() => V4l2Device.open('/dev/null'), (error: KernelError) => {
      assert.equal(error.code, 'ENOTTY');
      assert.equal(error.syscall, 'ioctl(VIDIOC_QUERYCAP)');
      assert.match(error.message, /\/dev\/null is not a V4L2 device/);
      return true;
    });
    assert.equal(openFds(), before);
  });

  it('open() of a missing node is ENOENT with the path', () => {
    assert.throws(() => V4l2Device.open('/dev/video-none'), { code: 'ENOENT', syscall: 'open', path: '/dev/video-none' });
    assert.throws(() => V4l2Device.open(3 as unknown as string), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  });

  it('find() with no matching node is ENODEV naming the driver to load; bad options are Type/RangeErrors', () => {
    const before = openFds();
    assert.throws(() => V4l2Device.find({ driver: 'no-such-driver', capability: 'video-output' }), (error: KernelError) => {
      assert.equal(error.code, 'ENODEV');
      assert.match(error.message, /no V4L2 device with driver 'no-such-driver' and capability 'video-output' among \d+ \/dev\/video\* nodes.*: load no-such-driver$/);
      return true;
    });
    assert.equal(openFds(), before, 'every node tried was closed');
    assert.throws(() => V4l2Device.find({ capability: 'capture' as 'video-capture' }), { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => V4l2Device.find({ driver: 5 as unknown as string }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => V4l2Device.find('vivid' as unknown as object), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.equal(V4l2Device.isV4l2Device({}), false);
  });
});
