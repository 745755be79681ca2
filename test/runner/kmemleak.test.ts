import assert from 'node:assert/strict';
import { join } from 'node:path';
import { buildKernel, run } from '../../lib/vm';
import { debugGeneration } from '../support/matrix';

// The debug kernel is slow to boot under TCG (KASAN, lockdep, kmemleak): one boot.
const fixtureModule = join(__dirname, '..', 'fixtures', 'kmemleak-fixture-module');
const kernel = debugGeneration();

describe(`VM runner on the ${kernel} debug kernel (kmemleak)`, () => {
  before(async function () {
    this.timeout(60 * 60_000); // the first run on a machine builds the kernel
    await buildKernel({ kernel, profile: 'debug', onProgress: (line) => process.stderr.write(`      ${line}\n`) });
  });

  it('fails the run when a module leaks a kmalloc, with kmemleak\'s report of it, although the command exited 0', async function () {
    this.timeout(45 * 60_000);
    // The debug kernel boots slowly under TCG, and kmemleak's two scans take a while more.
    const result = await run({ command: 'true', kernel, profile: 'debug', modules: [{ path: fixtureModule }], timeoutMs: 40 * 60_000 });
    assert.equal(result.exitCode, 0);
    assert.deepEqual(result.failures, ['kernel-problem'], result.summary);
    assert.match(result.console, /kmemleak_fixture: leaked 1234 bytes/);
    // The report, as read from debugfs after the job: the object (kmalloc(1234)
    // is served from the 2048-byte cache, the size kmemleak gives), made by
    // insmod from a module's init (whose symbols are gone once init memory is
    // freed, so only do_init_module is named), holding the fixture's 0x5a bytes.
    const report = result.kmemleak ?? '';
    assert.match(report, /unreferenced object 0x[0-9a-f]+ \(size 2048\):\n\s+comm "insmod"/);
    assert.match(report, /hex dump \(first 32 bytes\):\n\s+(5a ){16}/);
    assert.match(report, /do_init_module/);
    assert.ok(result.kernelProblems.some((problem) => /kmemleak report: unreferenced object 0x[0-9a-f]+ \(size 2048\)/.test(problem.text)), result.summary);
    assert.match(result.console, /dmabuf-vm: kmemleak scanned at the end of the job: [1-9]\d* unreferenced object/);
  });
});
