import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DrmDevice, type KernelError } from '../../lib';
import { native } from '../../lib/native';

// No DRM device on the host: these hold native/drm.cc's values to the
// headers they come from, and show that no argument from JavaScript reaches
// an ioctl unchecked or crashes the process.

const root = join(__dirname, '..', '..');
const kernels = '/root/.cache/dmabuf/kernels';
const drm = () => native().drm;

/** gcc's values for `expressions` with `includes`, from a program it builds. */
function fromCompiler(includeDirs: string[], includes: string[], expressions: Record<string, string>): Record<string, number> {
  const directory = mkdtempSync(join(tmpdir(), 'dmabuf-drm-'));
  try {
    const source = join(directory, 'values.c');
    const program = join(directory, 'values');
    writeFileSync(
      source,
      [
        ...['fcntl.h', 'stdio.h', ...includes].map((header) => `#include <${header}>`),
        'int main(void) {',
        ...Object.entries(expressions).map(([name, expression]) => `  printf("%s %lld\\n", "${name}", (long long)(${expression}));`),
        '  return 0;',
        '}',
      ].join('\n'),
    );
    const compiled = spawnSync('cc', ['-Wall', '-Werror', ...includeDirs.flatMap((dir) => ['-I', dir]), '-o', program, source], { encoding: 'utf8' });
    assert.equal(compiled.status, 0, `cc could not build the values:\n${compiled.error ?? compiled.stderr}`);
    const run = spawnSync(program, { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    return Object.fromEntries(run.stdout.trim().split('\n').map((line) => line.split(' ')).map(([name, value]) => [name!, Number(value)]));
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

const vgemNames = ['VGEM_FENCE_WRITE', 'DRM_IOCTL_VGEM_FENCE_ATTACH', 'DRM_IOCTL_VGEM_FENCE_SIGNAL'];

/** The exported uapi headers of every built kernel (make headers_install's usr/include). */
function builtKernelHeaders(): string[] {
  if (!existsSync(kernels)) return [];
  return readdirSync(kernels)
    .filter((entry) => /-base-[0-9a-f]+$/.test(entry))
    .map((entry) => join(kernels, entry, 'tree', 'usr', 'include'))
    .filter((dir) => existsSync(join(dir, 'drm', 'vgem_drm.h')));
}

describe('DRM: native/drm.cc\'s values', () => {
  before(function () {
    if (!drm().available) {
      console.log('      skipped: the addon was built without libdrm-dev\'s headers');
      this.skip();
    }
  });

  it('the constants table holds exactly the names lib/native.ts types NativeDrmConstantName with, and is frozen', () => {
    const declaration = /export type NativeDrmConstantName =([\s\S]*?);/.exec(readFileSync(join(root, 'lib', 'native.ts'), 'utf8'));
    assert.ok(declaration);
    const typed = [...declaration[1]!.matchAll(/'(\w+)'/g)].map(([, name]) => name!);
    assert.deepEqual(Object.keys(drm().constants).sort(), typed.sort());
    assert.ok(Object.isFrozen(drm().constants) && Object.isFrozen(drm()));
  });

  it('every libdrm-dev value equals what cc evaluates from drm.h, drm_mode.h and drm_fourcc.h', () => {
    const names = Object.keys(drm().constants).filter((name) => !vgemNames.includes(name));
    const expected = fromCompiler(['/usr/include/libdrm'], ['drm.h', 'drm_mode.h', 'drm_fourcc.h'], Object.fromEntries(names.map((name) => [name, name])));
    assert.deepEqual(Object.fromEntries(names.map((name) => [name, drm().constants[name as keyof ReturnType<typeof drm>['constants']]])), expected);
  });

  it('the vgem ioctls and struct sizes drm.cc declares equal every built kernel\'s include/uapi/drm/vgem_drm.h', function () {
    const trees = builtKernelHeaders();
    if (trees.length === 0) {
      console.log(`      skipped: no built kernel with exported headers under ${kernels} (the VM runner builds them)`);
      this.skip();
    }
    const declared = {
      ...Object.fromEntries(vgemNames.map((name) => [name, drm().constants[name as 'VGEM_FENCE_WRITE']])),
      sizeof_drm_vgem_fence_attach: drm().vgemSizes.drm_vgem_fence_attach,
      sizeof_drm_vgem_fence_signal: drm().vgemSizes.drm_vgem_fence_signal,
    };
    const expression = (name: string) => name.replace(/^sizeof_(\w+)$/, 'sizeof(struct $1)');
    for (const tree of trees) {
      const fromHeader = fromCompiler([tree], ['drm/vgem_drm.h'], Object.fromEntries(Object.keys(declared).map((name) => [name, expression(name)])));
      assert.deepEqual(declared, fromHeader, tree);
    }
  });
});

type Kind = 'int32' | 'uint32' | 'u32list' | 'mode' | 'modeOrNull' | 'u32array' | 'u64array' | 'i32array';

const closedFd = 999999;
const aMode = () => ({ clock: 0, hdisplay: 0, hsyncStart: 0, hsyncEnd: 0, htotal: 0, hskew: 0, vdisplay: 0, vsyncStart: 0, vsyncEnd: 0, vtotal: 0, vscan: 0, vrefresh: 0, flags: 0, type: 0, name: 'm' });
const base: Record<Kind, () => unknown> = {
  int32: () => closedFd,
  uint32: () => 0,
  u32list: () => [0, 0, 0],
  mode: aMode,
  modeOrNull: () => null,
  u32array: () => new Uint32Array(0),
  u64array: () => new BigUint64Array(0),
  i32array: () => new Int32Array(0),
};

const wrongTypes: unknown[] = ['3', 3n, Symbol('x'), undefined, {}, [], true, () => 3];
const throwingMode = () => Object.defineProperty(aMode(), 'vtotal', { get: () => { throw new Error('getter'); } });

/** The abusive values for a kind, each with the error class (and code) it must raise. */
function abuses(kind: Kind): [unknown, ErrorConstructor, string | undefined][] {
  const type = (value: unknown): [unknown, ErrorConstructor, string] => [value, TypeError, 'ERR_INVALID_ARG_TYPE'];
  const range = (value: unknown): [unknown, ErrorConstructor, string] => [value, RangeError, 'ERR_OUT_OF_RANGE'];
  switch (kind) {
    case 'int32':
      return [...wrongTypes, null].map(type).concat([NaN, 1.5, 2 ** 31, -(2 ** 31) - 1, Infinity].map(range));
    case 'uint32':
      return [...wrongTypes, null].map(type).concat([NaN, 1.5, -1, 2 ** 32, Infinity].map(range));
    case 'u32list':
      return [type('x'), type(null), type(5), type(['1']), type([3n]), range([-1]), range([2 ** 32]), range([0.5]), [Array(65).fill(0), RangeError, 'ERR_INVALID_ARG_VALUE']];
    case 'mode':
    case 'modeOrNull':
      return [
        ...(kind === 'mode' ? [type(null)] : []),
        type(undefined),
        type(5),
        type({ ...aMode(), clock: '1' }),
        type({ ...aMode(), name: 5 }),
        range({ ...aMode(), hdisplay: 65536 }),
        range({ ...aMode(), flags: -1 }),
        [{ ...aMode(), name: 'x'.repeat(32) }, RangeError, 'ERR_INVALID_ARG_VALUE'],
        [throwingMode(), Error, undefined],
      ];
    case 'u32array':
      return [type([]), type(new Int32Array(0)), type(null), type(new Uint8Array(0))];
    case 'u64array':
      return [type([]), type(new BigInt64Array(0)), type(new Uint32Array(0))];
    case 'i32array':
      return [type([]), type(new Uint32Array(0)), type(null)];
  }
}

const signatures: Record<string, Kind[]> = {
  version: ['int32'],
  getCap: ['int32', 'uint32'],
  setClientCap: ['int32', 'uint32', 'uint32'],
  createDumb: ['int32', 'uint32', 'uint32', 'uint32', 'uint32'],
  mapDumb: ['int32', 'uint32'],
  destroyDumb: ['int32', 'uint32'],
  gemClose: ['int32', 'uint32'],
  primeHandleToFd: ['int32', 'uint32', 'uint32'],
  primeFdToHandle: ['int32', 'int32'],
  vgemFenceAttach: ['int32', 'uint32', 'uint32'],
  vgemFenceSignal: ['int32', 'uint32', 'uint32'],
  getResources: ['int32'],
  getConnector: ['int32', 'uint32'],
  getEncoder: ['int32', 'uint32'],
  getCrtc: ['int32', 'uint32'],
  setCrtc: ['int32', 'uint32', 'uint32', 'uint32', 'uint32', 'u32list', 'modeOrNull'],
  getPlaneResources: ['int32'],
  getPlane: ['int32', 'uint32'],
  addFb2: ['int32', 'uint32', 'uint32', 'uint32', 'uint32', 'u32list'],
  rmFb: ['int32', 'uint32'],
  objectProperties: ['int32', 'uint32', 'uint32'],
  getProperty: ['int32', 'uint32'],
  createModeBlob: ['int32', 'mode'],
  destroyBlob: ['int32', 'uint32'],
  atomicCommit: ['int32', 'uint32', 'u32array', 'u32array', 'u32array', 'u64array', 'i32array'],
};

describe('DRM: native bindings under abuse', () => {
  before(function () {
    if (!drm().available) this.skip();
  });

  it('the table names every function of native().drm', () => {
    const exported = Object.entries(drm())
      .filter(([, value]) => typeof value === 'function')
      .map(([name]) => name)
      .sort();
    assert.deepEqual(exported, Object.keys(signatures).sort());
  });

  for (const [name, kinds] of Object.entries(signatures)) {
    it(`${name}: refuses every abusive argument with its class and code, and valid ones reach the kernel (EBADF on a closed fd)`, () => {
      const fn = (drm() as unknown as Record<string, (...args: unknown[]) => unknown>)[name]!;
      assert.equal(fn(...kinds.map((kind) => base[kind]())), -constants.errno.EBADF);
      for (let position = 0; position < kinds.length; position += 1) {
        for (const [value, type, code] of abuses(kinds[position]!)) {
          const args = kinds.map((kind) => base[kind]());
          args[position] = value;
          assert.throws(() => fn(...args), (error: Error & { code?: string }) => {
            assert.ok(error instanceof type, `${name} argument ${position}: ${error.constructor.name} ${error.message}`);
            assert.equal(error.code, code, `${name} argument ${position}: ${error.message}`);
            return true;
          });
        }
      }
    });
  }

  it('addFb2 takes 1 to 4 [handle, pitch, offset] triples, atomicCommit lists that agree', () => {
    const invalid = { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' };
    assert.throws(() => drm().addFb2(closedFd, 1, 1, 0, 0, []), invalid);
    assert.throws(() => drm().addFb2(closedFd, 1, 1, 0, 0, [1, 2]), invalid);
    const commit = (objects: number, counts: number[], props: number, values: number, fences = 0, indexes?: number[]) =>
      drm().atomicCommit(closedFd, 0, new Uint32Array(objects), Uint32Array.from(counts), new Uint32Array(props), new BigUint64Array(values), new Int32Array(fences), indexes);
    assert.throws(() => commit(1, [], 0, 0), invalid, 'a count per object');
    assert.throws(() => commit(1, [2], 1, 1), invalid, 'the counts sum to the props');
    assert.throws(() => commit(1, [1], 1, 0), invalid, 'a value per prop');
    assert.throws(() => commit(1, [1], 1, 1, 0, [0]), invalid, 'room for each out-fence');
    assert.throws(() => commit(1, [1], 1, 1, 1, [1]), invalid, 'a fence index names a prop');
    assert.throws(() => commit(1, [1], 1, 1, 1, [-1]), RangeError);
    assert.equal(commit(1, [1], 1, 1, 1, [0]), -constants.errno.EBADF);
  });

  it('atomicCommit reads its fence index list before it looks at any typed array: a getter there that transfers or rewrites the arrays is seen by the checks, not by the kernel', () => {
    const invalid = { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' };
    const props = new Uint32Array(1 << 20);
    const transferring: number[] = [];
    Object.defineProperty(transferring, 0, {
      enumerable: true,
      get() {
        structuredClone(props.buffer, { transfer: [props.buffer] });
        return 0;
      },
    });
    // Detached before the lists are read: no props for the one count.
    assert.throws(() => drm().atomicCommit(closedFd, 0, Uint32Array.of(1), Uint32Array.of(1), props, BigUint64Array.of(0n), Int32Array.of(0), transferring), invalid);
    const counts = Uint32Array.of(1);
    const rewriting: number[] = [];
    Object.defineProperty(rewriting, 0, {
      enumerable: true,
      get() {
        counts[0] = 1_000_000;
        return 0;
      },
    });
    assert.throws(() => drm().atomicCommit(closedFd, 0, Uint32Array.of(1), counts, Uint32Array.of(1), BigUint64Array.of(0n), Int32Array.of(0), rewriting), invalid);
  });

  it('mapShared\'s offset is refused unless a non-negative safe integer', () => {
    for (const offset of [-1, 1.5, 2 ** 53, NaN]) assert.throws(() => native().mapShared(closedFd, 4096, true, undefined, offset), RangeError);
    for (const offset of ['0', 0n, null]) assert.throws(() => native().mapShared(closedFd, 4096, true, undefined, offset as unknown as number), TypeError);
    assert.equal(native().mapShared(closedFd, 4096, true, undefined, 4096), -constants.errno.EBADF);
  });
});

describe('DRM: DrmDevice arguments and refusals (no device needed)', () => {
  it('open and find check their arguments before any syscall', () => {
    assert.throws(() => DrmDevice.open(3 as unknown as string), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => DrmDevice.find(3 as unknown as string), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => DrmDevice.find('vgem', { node: 'gpu' as 'card' }), { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => DrmDevice.find('vgem', 5 as unknown as { node: 'card' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  });

  it('a file that is not a DRM device is refused by DRM_IOCTL_VERSION, and its fd closed', () => {
    const fds = readdirSync('/proc/self/fd').length;
    assert.throws(() => DrmDevice.open('/dev/null'), (error: KernelError) => {
      assert.equal(error.code, 'ENOTTY');
      assert.equal(error.syscall, 'ioctl(DRM_IOCTL_VERSION)');
      assert.match(error.message, /\/dev\/null is not a DRM device/);
      return true;
    });
    assert.equal(readdirSync('/proc/self/fd').length, fds);
  });

  it('a missing node is ENOENT naming the nodes there are', () => {
    assert.throws(() => DrmDevice.open('/dev/dri/card99'), (error: KernelError) => error.code === 'ENOENT' && /no such DRM node; this system has: /.test(error.message));
  });
});
