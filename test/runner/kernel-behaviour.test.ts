import assert from 'node:assert/strict';
import { join } from 'node:path';
import { run } from '../../lib/vm';

// Kernel behaviour the library is designed around, shown on the VM's kernel.
// Each case needs its own boot: a splat taints the kernel for the rest of a run.
const script = join(__dirname, '..', 'fixtures', 'scripts', 'udmabuf-memory.js');

describe('Linux 6.1 udmabuf and the memfd behind it', () => {
  for (const safeCase of ['memfd-closed-before-mapping', 'memfd-closed-after-unmap', 'memfd-closed-while-mapped']) {
    it(`${safeCase}: clean`, async () => {
      const result = await run({ command: [process.execPath, script, safeCase] });
      assert.equal(result.ok, true, result.summary);
      assert.equal(result.stdout, 'done\n');
    });
  }

  // The same hazard, reached by the public API alone: each mapping must hold
  // the memfds itself, whoever made the mapping and whoever closes the memfd.
  const keepAlive = join(__dirname, '..', 'fixtures', 'scripts', 'udmabuf-keepalive.js');
  for (const safeCase of ['fromFd-wrapper-mapped-original-closed', 'fromMemfd-mapped-memfds-closed']) {
    it(`${safeCase}: clean`, async () => {
      const result = await run({ command: [process.execPath, keepAlive, safeCase] });
      assert.equal(result.ok, true, result.summary);
      assert.equal(result.stdout, 'done\n');
    });
  }

  // udmabuf_vm_fault maps the memfd's page-cache pages into the dma-buf's
  // mapping; evicting the memfd's inode while they are mapped corrupts the
  // page state. This is why the library's mappings hold the memfd open
  // themselves (the case above, clean). If this test starts failing, the
  // kernel was fixed (upstream moved udmabuf to pinned folios and pfn mappings).
  it('memfd-closed-while-mapped-raw, under the library: the kernel reports bad page state', async () => {
    const result = await run({ command: [process.execPath, script, 'memfd-closed-while-mapped-raw'] });
    assert.equal(result.exitCode, 0);
    assert.deepEqual(result.failures, ['kernel-problem']);
    assert.ok(result.kernelProblems.some((problem) => /BUG: Bad page (cache|map)/.test(problem.text)), result.summary);
  });
});

describe('Linux 6.1 udmabuf over huge pages', () => {
  // Why Udmabuf.map refuses hugetlb-backed buffers before 6.12: faulting one
  // in leaves a tail page's mapcount behind, found when the page is freed.
  it('a CPU mapping faulted in corrupts page state', async () => {
    const result = await run({ command: [process.execPath, script, 'hugetlb-mapping-faulted'] });
    assert.equal(result.exitCode, 0);
    assert.deepEqual(result.failures, ['kernel-problem']);
    assert.ok(result.kernelProblems.some((problem) => /BUG: Bad page state/.test(problem.text)), result.summary);
  });
});
