import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheKeyOf, declaredSymbols, eraFragmentFor, eraFragments, fragmentPaths, isKernelImage, kernelProfiles, parseFragment, profilesOf, resolveKernelSource, unmetOptions, type KernelProfile } from '../../lib/vm/kernel';
import { packageRoot } from '../../lib/vm/paths';

describe('kernel config fragments', () => {
  it('turns on every dma-buf user interface in the base profile', () => {
    const wanted = parseFragment(readFileSync(fragmentPaths('base')[0]!, 'utf8'));
    for (const option of ['CONFIG_UDMABUF', 'CONFIG_DMABUF_HEAPS_SYSTEM', 'CONFIG_SW_SYNC', 'CONFIG_DEBUG_FS', 'CONFIG_9P_FS', 'CONFIG_MODULES']) {
      assert.equal(wanted.get(option), 'y', option);
    }
  });

  it('turns MOVE_NOTIFY on in the 6.x era fragment and leaves the generation options out of the base', () => {
    const base = parseFragment(readFileSync(fragmentPaths('base')[0]!, 'utf8'));
    const era6 = parseFragment(readFileSync(join(packageRoot(), 'vm', 'kernel-6.x.config'), 'utf8'));
    const era7 = parseFragment(readFileSync(join(packageRoot(), 'vm', 'kernel-7.x.config'), 'utf8'));
    assert.equal(era6.get('CONFIG_DMABUF_MOVE_NOTIFY'), 'y');
    assert.equal(era7.get('CONFIG_DMABUF_KUNIT_TEST'), 'm');
    for (const option of [...era6.keys(), ...era7.keys()]) assert.equal(base.has(option), false, option);
  });

  it('lets a later fragment turn an option off', () => {
    const merged = fragmentPaths('no-move-notify').map((path) => readFileSync(path, 'utf8')).join('\n');
    assert.equal(parseFragment(merged).get('CONFIG_DMABUF_MOVE_NOTIFY'), 'n');
  });

  it('every profile names fragments that exist', () => {
    for (const profile of Object.keys(kernelProfiles) as KernelProfile[]) {
      for (const path of fragmentPaths(profile)) assert.ok(readFileSync(path, 'utf8').length > 0, path);
    }
  });

  it('reports options the resolved config did not honour', () => {
    const wanted = parseFragment('CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=8');
    const resolved = 'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_D=8\n';
    assert.deepEqual(unmetOptions(wanted, resolved), ['CONFIG_B: wanted m, got n', 'CONFIG_C: wanted n, got y']);
  });

  it('fails an option the kernel does not declare, even one asked to be off', () => {
    const wanted = parseFragment('CONFIG_A=y\n# CONFIG_GONE is not set');
    assert.deepEqual(unmetOptions(wanted, 'CONFIG_A=y\n', new Set(['A'])), ["CONFIG_GONE: this kernel's Kconfig does not declare it"]);
  });

  it('picks the era fragment whose options the Kconfig declares, and none when neither fits', () => {
    const tree = mkdtempSync(join(tmpdir(), 'kconfig-'));
    try {
      mkdirSync(join(tree, 'drivers', 'dma-buf'), { recursive: true });
      const write = (text: string) => writeFileSync(join(tree, 'drivers', 'dma-buf', 'Kconfig'), text);
      write('config DMABUF_MOVE_NOTIFY\n\tbool\nmenuconfig DMABUF_SYSFS_STATS\n  bool\nconfig DMABUF_SELFTESTS\nmenuconfig FB\n');
      assert.equal(eraFragmentFor(declaredSymbols(tree))?.name, eraFragments[0]);
      write('menuconfig KUNIT\nconfig KUNIT_DEBUGFS\nconfig DMABUF_KUNIT_TEST\n');
      assert.equal(eraFragmentFor(declaredSymbols(tree))?.name, eraFragments[1]);
      write('config DMABUF_MOVE_NOTIFY\n');
      assert.equal(eraFragmentFor(declaredSymbols(tree)), undefined);
    } finally {
      rmSync(tree, { recursive: true, force: true });
    }
  });

  it('offers no-move-notify only on the generations that have the option', () => {
    assert.deepEqual(profilesOf('6.1'), ['base', 'debug', 'no-move-notify']);
    assert.deepEqual(profilesOf('6.12'), ['base', 'debug', 'no-move-notify']);
    assert.deepEqual(profilesOf('7.2'), ['base', 'debug']);
  });

  it('resolves a generation, a path and an untested version number', () => {
    assert.equal(resolveKernelSource('7.2', {}).generation, '7.2');
    assert.equal(resolveKernelSource(undefined, {}).generation, '6.12');
    assert.deepEqual(resolveKernelSource(undefined, { DMABUF_KERNEL_SOURCE: '/src/linux' }), { generation: undefined, path: '/src/linux' });
    assert.throws(() => resolveKernelSource('6.6', {}), { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE', message: /one of the tested generations \(6\.1, 6\.12, 7\.2\).* but received '6\.6'/ });
  });

  it('tells a bzImage from a source tarball by the boot header', () => {
    const dir = mkdtempSync(join(tmpdir(), 'image-'));
    try {
      const image = Buffer.alloc(0x300);
      image.write('HdrS', 0x202, 'latin1');
      writeFileSync(join(dir, 'bzImage'), image);
      writeFileSync(join(dir, 'linux.tar.xz'), Buffer.alloc(0x300));
      assert.equal(isKernelImage(join(dir, 'bzImage')), true);
      assert.equal(isKernelImage(join(dir, 'linux.tar.xz')), false);
      assert.equal(isKernelImage(dir), false);
      assert.equal(isKernelImage(join(dir, 'missing')), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keys the cache on the fragments, the source and the compiler', () => {
    const base = { label: '6.1', profile: 'base', sourceIdentity: 'linux-source-6.1.tar.xz 1', fragments: ['CONFIG_A=y'], compiler: 'gcc 12' };
    const key = cacheKeyOf(base);
    assert.match(key, /^6\.1-base-[0-9a-f]{16}$/);
    assert.equal(cacheKeyOf({ ...base }), key);
    assert.notEqual(cacheKeyOf({ ...base, fragments: ['CONFIG_A=n'] }), key);
    assert.notEqual(cacheKeyOf({ ...base, sourceIdentity: 'linux-source-6.1.tar.xz 2' }), key);
    assert.notEqual(cacheKeyOf({ ...base, compiler: 'gcc 13' }), key);
  });
});
