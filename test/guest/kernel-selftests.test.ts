import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { dirname, join } from 'node:path';
import Mocha from 'mocha';
import { udmabuf } from '../../lib/udmabuf';
import { requireVm } from './helpers';

// The kernel's own dma-buf tests, built on the host from the VM kernel's
// source tree by the suite runner (test/support/kernel-selftests.ts). Each
// sub-test the kernel reports becomes its own mocha case under the kernel's
// title, added once the program has run, so that a regression names the
// sub-test; a sub-test the program planned but never reported fails too.

const [major = 0, minor = 0] = release().split(/[.-]/).map(Number);
const kernelAtLeast = (wantMajor: number, wantMinor: number) => major > wantMajor || (major === wantMajor && minor >= wantMinor);

// Mapping a hugetlb-backed udmabuf corrupts page state where udmabuf hands
// out the memfd's own pages (6.1); a kernel that maps page frames (VM_PFNMAP,
// 6.12 on) is safe. The library's probe decides, as it does for map().
function hugetlbMappingIsUnsafe(): boolean {
  using probe = udmabuf.create(4096);
  return !udmabuf.mapsPageFrames(probe);
}

interface TapResult {
  number: number;
  ok: boolean;
  description: string;
  skip?: string;
}

/** kselftest's TAP: "ok 3 desc", "not ok 3 desc", "ok 3 # SKIP reason"; the plan "1..N". */
export function parseTap(output: string): { plan?: number; results: TapResult[] } {
  const plan = /^1\.\.(\d+)$/m.exec(output);
  const results = [...output.matchAll(/^(not )?ok (\d+) ?(.*)$/gm)].map((match): TapResult => {
    const skip = /^# SKIP ?(.*)$/.exec(match[3]!);
    return { number: Number(match[2]), ok: !match[1], description: skip ? '' : match[3]!.trim(), skip: skip?.[1]!.trim() };
  });
  return { plan: plan ? Number(plan[1]) : undefined, results };
}

function indent(text: string): string {
  return `      ${text.trim().replace(/\n/g, '\n      ')}`;
}

/** Adds a case to the suite of a running hook: mocha runs it after the suite's before() hooks. */
function addCase(hook: Mocha.Context, title: string, fn: (this: Mocha.Context) => void): void {
  hook.test!.parent!.addTest(new Mocha.Test(title, fn));
}

/** The import case needs DRM_VGEM, which the VM kernels lack: no /dev/dri/card* at all. */
function drmCardPresent(): boolean {
  return existsSync('/dev/dri') && readdirSync('/dev/dri').some((name) => name.startsWith('card'));
}

function hugePages(): { total: number; sizeKiB: number } {
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  return { total: Number(/^HugePages_Total:\s+(\d+)/m.exec(meminfo)?.[1]), sizeKiB: Number(/^Hugepagesize:\s+(\d+)/m.exec(meminfo)?.[1]) };
}

describe('the kernel\'s own dma-buf selftests, run in the VM', () => {
  requireVm();
  const dir = process.env.DMABUF_SELFTESTS_DIR;

  before(function () {
    if (!dir) throw new Error('DMABUF_SELFTESTS_DIR is not set: run the guest suite through npm test, which builds the selftests');
  });

  describe('tools/testing/selftests/drivers/dma-buf/udmabuf', () => {
    // Tests 6 and 7 (6.12 and later) each map a hugetlb memfd of 1024 2 MiB
    // pages: 2 GiB of huge pages, which a VM needs more than 2 GiB of memory for.
    // On 6.1 neither maps any: test-6 is skipped there, and test-7's
    // UDMABUF_CREATE_LIST is refused before the memfd is mapped.
    const wantedHugePages = 1024;
    const needsHugePages = !hugetlbMappingIsUnsafe();
    let savedHugePages: string | undefined;
    let reserved = 0;
    let output = '';
    let status: number | null = null;

    before(function () {
      this.timeout(600_000);
      if (needsHugePages) {
        savedHugePages = readFileSync('/proc/sys/vm/nr_hugepages', 'utf8');
        writeFileSync('/proc/sys/vm/nr_hugepages', String(wantedHugePages));
        reserved = hugePages().total;
      }
      const run = spawnSync(join(dir!, 'udmabuf'), { encoding: 'utf8' });
      status = run.status;
      output = run.stdout + run.stderr;
      process.stdout.write(`${indent(output)}\n`);
      const { plan, results } = parseTap(run.stdout);
      const reported = new Set<number>();
      if (plan === undefined) {
        // 6.1's program is not TAP: it exits at the first failed test,
        // printing "[FAIL,test-N]", or prints "udmabuf: ok" after test-4.
        const failed = Number(/\[FAIL,test-(\d+)\]/.exec(output)?.[1] ?? 0);
        for (const number of [1, 2, 3, 4]) {
          reported.add(number);
          addCase(this, `test-${number} (6.1's program, no TAP) passes`, () => {
            assert.notEqual(failed, number, output);
            assert.ok(failed === 0 || failed > number, `the program stopped at test-${failed} before reaching test-${number}:\n${output}`);
            assert.match(output, /drivers\/dma-buf\/udmabuf: ok/);
          });
        }
      } else {
        for (const result of results) {
          reported.add(result.number);
          addCase(this, `${result.number} ${result.description}`, () => assert.ok(result.ok, output));
        }
        for (let number = 1; number <= plan; number++) {
          if (!reported.has(number)) {
            reported.add(number);
            addCase(this, `${number} (planned by the program, never reported)`, () => assert.fail(`the program stopped before test ${number}:\n${output}`));
          }
        }
      }
      // Tests 5-7 of 7.2's program, on the kernels whose own program stops
      // before them, by test/fixtures/udmabuf_later_tests.c.
      for (const number of [5, 6, 7].filter((test) => !reported.has(test))) {
        const title = `test-${number} of 7.2's program (not in this kernel's)`;
        if (number === 6 && hugetlbMappingIsUnsafe()) {
          addCase(this, `${title}: skipped, faulting in a hugetlb udmabuf mapping corrupts page state on ${release()} (test/runner/kernel-behaviour.test.ts)`, function () {
            this.skip();
          });
          continue;
        }
        const pinFirstRefused = number === 7 && !kernelAtLeast(6, 12);
        // 6.12's memfd_alloc_folio takes the huge page without reserving it
        // (6.12 mm/memfd.c:88; 7.2 calls hugetlb_reserve_pages first,
        // mm/memfd.c:89): with every huge page pinned by the udmabuf, the
        // memfd's own mmap then finds none left to reserve. The fix that
        // 7.2's test-7 was written for is not in 6.12, and the VM showed it.
        const pinFirstUnreserved = number === 7 && kernelAtLeast(6, 12) && !kernelAtLeast(6, 13);
        const expectation = pinFirstRefused
          ? 'a hugetlb udmabuf of a memfd not yet touched is refused with EINVAL'
          : pinFirstUnreserved
            ? 'the udmabuf is made, but the memfd\'s mmap fails with ENOMEM: the pinned huge pages were never reserved (fixed after 6.12)'
            : "UDMABUF_CREATE_LIST succeeds and the buffer shows the memfd's later writes";
        addCase(this, `${title}: ${expectation}`, () => {
          const later = spawnSync(join(dir!, 'udmabuf_later_tests'), [String(number)], { encoding: 'utf8' });
          const text = later.stdout + later.stderr;
          if (pinFirstUnreserved) {
            assert.equal(text.trim(), 'create: ok\nmmap memfd: ENOMEM');
            return;
          }
          assert.equal(later.status, 0, text);
          if (pinFirstRefused) assert.equal(text.trim(), 'create: EINVAL');
          else assert.equal(text.trim(), 'create: ok\ncompare: ok');
        });
      }
    });

    it('the program exits with status 0', () => assert.equal(status, 0, output));

    after(() => {
      if (savedHugePages !== undefined) writeFileSync('/proc/sys/vm/nr_hugepages', savedHugePages);
    });

    if (needsHugePages) {
      it(`${wantedHugePages} huge pages of 2 MiB could be reserved for tests 6 and 7 (VM memory > 2 GiB)`, () => {
        assert.equal(hugePages().sizeKiB, 2048);
        assert.equal(reserved, wantedHugePages, `only ${reserved} huge pages could be reserved: boot the VM with --memory 4096`);
      });
    }
  });

  describe('tools/testing/selftests/dmabuf-heaps/dmabuf-heap', () => {
    let output = '';
    let status: number | null = null;

    before(function () {
      this.timeout(300_000);
      const run = spawnSync(join(dir!, 'dmabuf-heap'), { encoding: 'utf8' });
      status = run.status;
      output = run.stdout + run.stderr;
      process.stdout.write(`${indent(output)}\n`);
      const { plan, results } = parseTap(run.stdout);
      if (plan === undefined) {
        // 6.1's program is not TAP: one line of checks per heap, each "OK" or "FAIL (...)".
        for (const heap of output.matchAll(/^Testing heap: (\S+)\n=+\n((?: {2}.*\n?)*)/gm)) {
          for (const check of heap[2]!.matchAll(/^ {2}Testing (.*?):\s+(.*)$/gm)) {
            const vgemSkipped = check[2]!.startsWith('(Could not open vgem - skipping)');
            addCase(this, `${heap[1]}: ${check[1]} (6.1's program, no TAP)${vgemSkipped ? ': OK, its import into vgem skipped by the program (no vgem)' : ''}`, () => {
              assert.match(check[2]!, /OK$/, output);
              if (vgemSkipped) assert.equal(drmCardPresent(), false, 'a DRM device exists, yet vgem was not found');
            });
          }
        }
        addCase(this, 'every heap in /dev/dma_heap reports its six checks', () => {
          const heaps = readdirSync('/dev/dma_heap');
          assert.equal(output.match(/OK/g)?.length, 6 * heaps.length, output);
        });
      } else {
        // The heap under test is named by the "# Testing heap:" line before its results.
        const heapBefore = (index: number) => [...run.stdout.slice(0, index).matchAll(/^# Testing heap: (\S+)$/gm)].pop()?.[1] ?? '?';
        const lines = [...run.stdout.matchAll(/^(not )?ok \d+ .*$/gm)];
        results.forEach((result, index) => {
          const heap = heapBefore(lines[index]!.index!);
          if (result.skip !== undefined) {
            // The one skip the program has: the import case, with no vgem to import into.
            addCase(this, `${heap}: ${result.number} (import into vgem) skipped by the program: ${result.skip}`, function () {
              assert.match(result.skip!, /^Could not open vgem/);
              assert.equal(drmCardPresent(), false, 'a DRM device exists, yet vgem was not found');
              this.skip();
            });
          } else {
            addCase(this, `${heap}: ${result.number} ${result.description}`, () => assert.ok(result.ok, output));
          }
        });
        addCase(this, `the program reports its plan (1..${plan}), 11 results per heap`, () => {
          assert.equal(results.length, plan, output);
          assert.equal(plan, 11 * readdirSync('/dev/dma_heap').length);
        });
      }
      addCase(this, 'the program exits with status 0', () => assert.equal(status, 0, output));
    });

    it('/dev/dma_heap has the system heap the program tests', () => {
      assert.ok(readdirSync('/dev/dma_heap').includes('system'));
    });
  });

  describe('drivers/dma-buf in-kernel tests (DMABUF_SELFTESTS module, 6.1 and 6.12)', () => {
    const module = process.env.DMABUF_KERNEL_SELFTESTS_KO;

    if (!module) {
      it(`skipped: Linux ${release()} has no DMABUF_SELFTESTS (7.x made them the dmabuf_kunit KUnit suites); DMABUF_KERNEL_SELFTESTS_KO unset`, function () {
        assert.ok(kernelAtLeast(6, 13), 'this kernel has DMABUF_SELFTESTS: set DMABUF_KERNEL_SELFTESTS_KO');
        this.skip();
      });
      return;
    }

    let insmod: ReturnType<typeof spawnSync>;
    before(function () {
      this.timeout(600_000);
      // The module runs its tests in its init: insmod fails with the first failure's errno.
      insmod = spawnSync('insmod', [module], { encoding: 'utf8' });
      const log = spawnSync('dmesg', [], { encoding: 'utf8' }).stdout;
      spawnSync('rmmod', ['dmabuf_selftests']);
      const run = log.slice(log.lastIndexOf('dma-buf: Running sanitycheck'));
      process.stdout.write(`${indent(run)}\n`);
      // The sub-tests each st-*.c lists (SUBTEST(name)), from the sources the module was built from.
      const sourceDir = dirname(module);
      const selftests = [...readFileSync(join(sourceDir, 'selftests.h'), 'utf8').matchAll(/^selftest\((\w+), (\w+)\)/gm)].map((match) => match[1]!);
      for (const selftest of selftests.filter((name) => name !== 'sanitycheck')) {
        const file = readdirSync(sourceDir).find((name) => name.endsWith('.c') && new RegExp(`^int ${selftest}\\(void\\)`, 'm').test(readFileSync(join(sourceDir, name), 'utf8')));
        assert.ok(file, `no source defines ${selftest}()`);
        const subtests = [...readFileSync(join(sourceDir, file), 'utf8').matchAll(/^\s*SUBTEST\((\w+)\),/gm)].map((match) => match[1]!);
        for (const subtest of subtests) {
          addCase(this, `${selftest}/${subtest} passes`, () => {
            assert.match(run, new RegExp(`dma-buf: Running ${selftest}/${subtest}\\n`), `never ran: an earlier sub-test failed\n${run}`);
            assert.doesNotMatch(run, new RegExp(`dma-buf/${selftest}: ${subtest} failed`), run);
          });
        }
      }
      addCase(this, 'insmod succeeds: every selftest passed', () => assert.equal(insmod.status, 0, `insmod: ${String(insmod.stderr)}\n${run}`));
    });

    it('the module ran every selftest its selftests.h lists, in order', () => {
      const log = spawnSync('dmesg', [], { encoding: 'utf8' }).stdout;
      const run = log.slice(log.lastIndexOf('dma-buf: Running sanitycheck'));
      const ran = [...run.matchAll(/dma-buf: Running (\w+)\n/g)].map((match) => match[1]);
      assert.deepEqual(ran, ['sanitycheck', 'dma_fence', 'dma_fence_chain', 'dma_fence_unwrap', 'dma_resv']);
    });
  });

  describe('drivers/dma-buf KUnit suites (dmabuf_kunit module, 7.x)', () => {
    const module = process.env.DMABUF_KUNIT_KO;

    if (!module) {
      it(`skipped: Linux ${release()} has no DMABUF_KUNIT_TEST (its in-kernel tests are the DMABUF_SELFTESTS module); DMABUF_KUNIT_KO unset`, function () {
        assert.ok(!kernelAtLeast(6, 13), 'this kernel has the KUnit suites: set DMABUF_KUNIT_KO');
        this.skip();
      });
      return;
    }

    const suites = ['dma-buf-fence', 'dma-buf-fence-chain', 'dma-buf-fence-unwrap', 'dma-buf-resv'];
    const results = new Map<string, string>();
    let insmod: ReturnType<typeof spawnSync>;
    let missing: string | undefined;

    before(function () {
      this.timeout(600_000);
      const logBefore = spawnSync('dmesg', [], { encoding: 'utf8' }).stdout.length;
      const logSince = () => spawnSync('dmesg', [], { encoding: 'utf8' }).stdout.slice(logBefore).replace(/^\[[^\]]*\] /gm, '');
      // The module suite's own check loads and unloads it too; never inherit it loaded.
      spawnSync('rmmod', ['dmabuf_kunit']);
      insmod = spawnSync('insmod', [module], { encoding: 'utf8' });
      // With kunit.autorun off (CONFIG_KUNIT_AUTORUN_ENABLED=n) loading runs
      // nothing; KUNIT_DEBUGFS's run file runs a suite on demand.
      for (const suite of suites) {
        const run = `/sys/kernel/debug/kunit/${suite}/run`;
        if (!logSince().includes(`# Subtest: ${suite}\n`) && existsSync(run)) writeFileSync(run, '1');
      }
      spawnSync('rmmod', ['dmabuf_kunit']);
      // The KTAP comes from the kernel log: KUNIT_DEBUGFS's results file
      // showed 7.2.13 only each suite's header and verdict, no case lines.
      const log = logSince();
      // Without CONFIG_KUNIT_DEFAULT_ENABLED the module loads and runs nothing.
      if (log.includes('kunit: disabled')) {
        missing = 'KUnit is disabled in this kernel ("kunit: disabled" on insmod): build it with CONFIG_KUNIT_DEFAULT_ENABLED=y or boot it with kunit.enable=1';
      }
      for (const suite of suites) {
        const begin = log.indexOf(`    # Subtest: ${suite}\n`);
        const verdict = new RegExp(`^(not )?ok \\d+ ${suite}$`, 'm').exec(log.slice(begin));
        if (begin >= 0 && verdict) results.set(suite, log.slice(begin, begin + verdict.index + verdict[0].length));
      }
      process.stdout.write(`${indent([...results.values()].join('\n'))}\n`);
      // The cases each suite lists (KUNIT_CASE, KUNIT_CASE_PARAM), from the sources the module was built from.
      const sourceDir = dirname(module);
      for (const file of readdirSync(sourceDir).filter((name) => /^st-.*\.c$/.test(name)).sort()) {
        const source = readFileSync(join(sourceDir, file), 'utf8');
        const suite = /\.name\s*=\s*"([^"]+)"/.exec(source)?.[1];
        assert.ok(suite, `${file} names no KUnit suite`);
        for (const [, name] of source.matchAll(/KUNIT_CASE(?:_PARAM)?\((\w+)/g)) {
          addCase(this, `${suite}: ${name} passes`, () => {
            const ktap = results.get(suite);
            assert.ok(ktap, missing ?? `the kernel log has no KTAP for ${suite}`);
            // A case's own result line sits at the suite's level, after its parameters' (indented deeper).
            const line = new RegExp(`^ {4}(not )?ok \\d+ ${name}(?: # (\\w+).*)?$`, 'm').exec(ktap);
            assert.ok(line, `${name} has no result in the suite's KTAP:\n${ktap}`);
            assert.equal(line[1], undefined, ktap);
            assert.notEqual(line[2], 'SKIP', ktap);
          });
        }
      }
      addCase(this, 'insmod succeeds', () => assert.equal(insmod.status, 0, String(insmod.stderr)));
    });

    it('each of the four suites reports "ok" in its KTAP in the kernel log', () => {
      assert.deepEqual([...results.keys()], suites, missing);
      for (const [suite, ktap] of results) assert.match(ktap, new RegExp(`^ok \\d+ ${suite}$`, 'm'), ktap);
    });
  });
});
