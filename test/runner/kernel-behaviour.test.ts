import assert from 'node:assert/strict';
import { join } from 'node:path';
import { run } from '../../lib/vm';

// Kernel behaviour the library is designed around, shown on the VM's kernel
// (the runner's own, or DMABUF_VM_KERNEL with DMABUF_VM_KERNEL_TREE: run this
// file once per kernel generation). Each case needs its own boot: a splat
// taints the kernel for the rest of a run.
//
// The library keeps two Linux 6.1 workarounds only where its feature probe
// says they are needed: whether udmabuf maps page frames (VM_PFNMAP, `pf` in
// the mapping's VmFlags) or the memfd's struct pages. Each hazard below must
// show exactly where the probe says so.
const script = join(__dirname, '..', 'fixtures', 'scripts', 'udmabuf-memory.js');

interface Probe {
  release: string;
  vmFlags: string[];
  libraryMapsPageFrames: boolean;
}

async function runCase(name: string) {
  return run({ command: [process.execPath, script, name] });
}

function expectClean(result: Awaited<ReturnType<typeof runCase>>, output = 'done\n'): void {
  assert.equal(result.ok, true, result.summary);
  assert.equal(result.stdout, output);
}

function expectBadPage(result: Awaited<ReturnType<typeof runCase>>, pattern: RegExp): void {
  assert.equal(result.exitCode, 0);
  assert.deepEqual(result.failures, ['kernel-problem']);
  assert.ok(result.kernelProblems.some((problem) => pattern.test(problem.text)), result.summary);
}

describe('udmabuf memory on this kernel: the 6.1 workarounds, and the probe that decides them', () => {
  let probe: Probe;
  before(async function () {
    const result = await runCase('probe');
    assert.equal(result.ok, true, result.summary);
    probe = JSON.parse(result.stdout.split('\n')[0]!) as Probe;
    this.test!.parent!.title += ` (Linux ${probe.release}: VmFlags ${probe.vmFlags.join(' ')})`;
  });

  it('the library\'s probe (an untouched one-page mapping) agrees with a faulted mapping\'s VmFlags', () => {
    assert.equal(probe.libraryMapsPageFrames, probe.vmFlags.includes('pf'));
  });

  for (const safeCase of ['memfd-closed-before-mapping', 'memfd-closed-after-unmap', 'memfd-closed-while-mapped']) {
    it(`${safeCase}, through the library: clean`, async () => {
      expectClean(await runCase(safeCase));
    });
  }

  // The same hazard, reached by the public API alone: where the kernel maps
  // struct pages each mapping must hold the memfds itself, whoever made the
  // mapping and whoever closes the memfd.
  const keepAlive = join(__dirname, '..', 'fixtures', 'scripts', 'udmabuf-keepalive.js');
  for (const safeCase of ['fromFd-wrapper-mapped-original-closed', 'fromMemfd-mapped-memfds-closed']) {
    it(`${safeCase}, through the library: clean`, async () => {
      const result = await run({ command: [process.execPath, keepAlive, safeCase] });
      expectClean(result);
    });
  }

  // Linux 6.1's udmabuf_vm_fault maps the memfd's page-cache pages; evicting
  // the memfd's inode while they are mapped corrupts the page state. 6.12
  // pins the folios (memfd_pin_folios) and inserts pfns (VM_PFNMAP).
  it('memfd closed under a raw mapping (no memfd held): bad page state exactly where udmabuf maps struct pages (no pf)', async () => {
    const result = await runCase('memfd-closed-while-mapped-raw');
    if (probe.vmFlags.includes('pf')) expectClean(result);
    else expectBadPage(result, /BUG: Bad page (cache|map)/);
  });

  // Why Udmabuf.map refuses hugetlb-backed buffers where udmabuf maps struct
  // pages: faulting one in leaves a tail page's mapcount behind, found when
  // the page is freed.
  it('a hugetlb udmabuf\'s CPU mapping faulted in: bad page state exactly where udmabuf maps struct pages (no pf)', async () => {
    const result = await runCase('hugetlb-mapping-faulted');
    if (probe.vmFlags.includes('pf')) expectClean(result);
    else expectBadPage(result, /BUG: Bad page state/);
  });

  // Not a workaround of the library's (Memfd.create allocates huge pages
  // before UDMABUF_CREATE on every kernel, to fail cleanly when none are
  // reserved), but a difference for callers of fromMemfd: 6.1 looks the huge
  // pages up and finds none; 6.12's memfd_pin_folios allocates them.
  it('a hugetlb memfd whose pages were never allocated: EINVAL where udmabuf maps struct pages, created where it pins folios', async () => {
    expectClean(await runCase('hugetlb-untouched-memfd'), `${probe.vmFlags.includes('pf') ? 'created' : 'EINVAL'}\ndone\n`);
  });
});
