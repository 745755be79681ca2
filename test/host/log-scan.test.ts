import assert from 'node:assert/strict';
import { describeProblems, scanKernelLog } from '../../lib/vm/log-scan';

// Excerpts in the exact form Linux 6.1 prints them.
const cleanBoot = `[    0.551455] PCI: Using host bridge windows from ACPI; if necessary, use "pci=nocrs" and report a bug
[    1.012942] Run /work/main/vm/guest-init.sh as init process
[    2.952328] random: crng init done
[    4.173573] sysrq: Resetting`;

const warnSplat = `[    3.100000] vm_fixture: loaded, answer=0
[    3.100100] ------------[ cut here ]------------
[    3.100200] WARNING: CPU: 0 PID: 73 at /tmp/x/vm_fixture.c:24 vm_fixture_init+0x1d/0x1000 [vm_fixture]
[    3.100300] Modules linked in: vm_fixture(O+)
[    3.100400] Call Trace:
[    3.100500]  <TASK>`;

const lockdep = `[   12.000000] ======================================================
[   12.000001] WARNING: possible circular locking dependency detected
[   12.000002] 6.1.192 #1 Not tainted`;

const kasan = '[    9.000000] BUG: KASAN: use-after-free in dmabuf_test_ioctl+0x42/0x100';
const panic = '[    5.000000] Kernel panic - not syncing: sysrq triggered crash';
const hung = '[  120.000000] INFO: task node:81 blocked for more than 120 seconds.';

describe('kernel log scan', () => {
  it('finds nothing in a clean boot, even where a line says "report a bug"', () => {
    assert.deepEqual(scanKernelLog(cleanBoot), []);
  });

  it('finds a WARN and its call trace', () => {
    const problems = scanKernelLog(warnSplat);
    assert.deepEqual(problems.map((problem) => problem.line), [3, 5]);
    assert.match(problems[0]!.text, /WARNING: CPU: 0 PID: 73/);
  });

  for (const [name, log] of [['lockdep report', lockdep], ['KASAN report', kasan], ['panic', panic], ['hung task', hung]] as const) {
    it(`finds a ${name}`, () => {
      assert.equal(scanKernelLog(log).length, 1);
    });
  }

  it('shows the problem lines with the lines that follow', () => {
    const text = describeProblems(warnSplat, scanKernelLog(warnSplat), 3);
    assert.match(text, /3 \| \[    3\.100200\] WARNING/);
    assert.match(text, /4 \| \[    3\.100300\] Modules linked in/);
  });
});
