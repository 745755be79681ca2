import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { requireVm } from './helpers';

// The kernel's own selftest programs, built on the host against the VM
// kernel's headers by the suite runner (test/support/kernel-selftests.ts).
describe('the kernel\'s own dma-buf selftests, run in the VM', () => {
  requireVm();
  const dir = process.env.DMABUF_SELFTESTS_DIR;

  before(function () {
    if (!dir) throw new Error('DMABUF_SELFTESTS_DIR is not set: run the guest suite through npm test, which builds the selftests');
  });

  it('drivers/dma-buf/udmabuf passes', () => {
    const result = spawnSync(join(dir!, 'udmabuf'), { encoding: 'utf8' });
    process.stdout.write(`      ${(result.stdout + result.stderr).trim().replace(/\n/g, '\n      ')}\n`);
    assert.equal(result.status, 0);
    assert.match(result.stderr, /drivers\/dma-buf\/udmabuf: ok/);
  });

  it('dmabuf-heaps/dmabuf-heap passes on every heap', () => {
    const result = spawnSync(join(dir!, 'dmabuf-heap'), { encoding: 'utf8' });
    process.stdout.write(`      ${result.stdout.trim().replace(/\n/g, '\n      ')}\n`);
    assert.equal(result.status, 0);
    assert.match(result.stdout, /Testing heap: system/);
    assert.doesNotMatch(result.stdout, /FAIL/);
    assert.equal(result.stdout.match(/OK/g)?.length, 6, 'all six checks report OK');
  });
});
