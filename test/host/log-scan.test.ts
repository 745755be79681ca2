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

// The debug kernel's kmemleak and DMA_API_DEBUG, as 6.1 prints them; the
// report lines are what vm/guest-init.sh copies from /sys/kernel/debug/kmemleak.
const debugBoot = `[    0.000000] kmemleak: Kernel memory leak detector initialized (mem pool available: 14326)
[    0.000001] kmemleak: Automatic memory scanning thread started
[    0.210000] DMA-API: preallocated 65536 debug entries
[    0.210001] DMA-API: debugging enabled by kernel config
[    9.000000] DMA-API: dma_debug_entry pool grown to 131072 (200%)
[   30.000000] dmabuf-vm: kmemleak scanned at the end of the job: 0 unreferenced object(s)`;
const kmemleakReport = `[   30.000000] kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)
[   36.000000] kmemleak report: unreferenced object 0xffff888004a3c000 (size 1000):
[   36.000001] kmemleak report:   comm "insmod", pid 75, jiffies 4294893090 (age 9.120s)
[   36.000002] kmemleak report:   backtrace:
[   36.000003] kmemleak report:     [<000000003ea1c6a4>] kmalloc_trace+0x26/0x60`;
const dmaApiWarn = `[   20.000000] ------------[ cut here ]------------
[   20.000001] DMA-API: dmabuf_test dmabuf_test: device driver tries to free DMA memory it has not allocated [device address=0x0000000004a3c000] [size=4096 bytes]
[   20.000002] WARNING: CPU: 1 PID: 80 at kernel/dma/debug.c:973 check_unmap+0x1b0/0x870`;
const dmaApiOff = '[   20.000000] DMA-API: debugging out of memory - disabling';

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

  it('passes the boot and scan lines of kmemleak and DMA_API_DEBUG', () => {
    assert.deepEqual(scanKernelLog(debugBoot), []);
  });

  it('finds a kmemleak report: the scan\'s count and each unreferenced object', () => {
    assert.deepEqual(scanKernelLog(kmemleakReport).map((problem) => problem.line), [1, 2]);
  });

  it('finds a DMA-API error (its message and its WARN) and DMA-API debugging turning itself off', () => {
    assert.deepEqual(scanKernelLog(dmaApiWarn).map((problem) => problem.line), [2, 3]);
    assert.equal(scanKernelLog(dmaApiOff).length, 1);
  });

  it('shows the problem lines with the lines that follow', () => {
    const text = describeProblems(warnSplat, scanKernelLog(warnSplat), 3);
    assert.match(text, /3 \| \[ {4}3\.100200\] WARNING/);
    assert.match(text, /4 \| \[ {4}3\.100300\] Modules linked in/);
  });
});
