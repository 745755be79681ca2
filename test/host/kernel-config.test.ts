import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cacheKeyOf, fragmentPaths, kernelProfiles, parseFragment, unmetOptions, type KernelProfile } from '../../lib/vm/kernel';

describe('kernel config fragments', () => {
  it('turns on every dma-buf user interface in the base profile', () => {
    const wanted = parseFragment(readFileSync(fragmentPaths('base')[0]!, 'utf8'));
    for (const option of ['CONFIG_UDMABUF', 'CONFIG_DMABUF_HEAPS_SYSTEM', 'CONFIG_SW_SYNC', 'CONFIG_DMABUF_MOVE_NOTIFY', 'CONFIG_DEBUG_FS', 'CONFIG_9P_FS', 'CONFIG_MODULES']) {
      assert.equal(wanted.get(option), 'y', option);
    }
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

  it('keys the cache on the fragments, the source and the compiler', () => {
    const base = { profile: 'base', sourceIdentity: 'linux-source-6.1.tar.xz 1 2', fragments: ['CONFIG_A=y'], compiler: 'gcc 12' };
    const key = cacheKeyOf(base);
    assert.match(key, /^base-[0-9a-f]{16}$/);
    assert.equal(cacheKeyOf({ ...base }), key);
    assert.notEqual(cacheKeyOf({ ...base, fragments: ['CONFIG_A=n'] }), key);
    assert.notEqual(cacheKeyOf({ ...base, sourceIdentity: 'linux-source-6.1.tar.xz 1 3' }), key);
    assert.notEqual(cacheKeyOf({ ...base, compiler: 'gcc 13' }), key);
  });
});
