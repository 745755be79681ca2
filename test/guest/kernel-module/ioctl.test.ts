import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { closeSync } from 'node:fs';
import { basename } from 'node:path';
import { errnoName, Memfd, udmabuf } from '../../../lib';
import { KernelTestDevice, kernelTest } from '../../../lib/kernel-test';
import { native } from '../../../lib/native';
import { openFdCount } from '../helpers';
import { requireModule } from './helpers';

const commands = KernelTestDevice.commands;
const dbt = native().dmabufTestValues;

interface EfaultOutcomes {
  copyIn: Record<string, string>;
  copyOut: Record<string, {
    result: string;
    fds: [number, number];
    refcnt: [number, number];
    /** pin_count, attachments, held_moves and the call counters, before and after. */
    exporter: [number[], number[]];
    retry: string;
    mappedAfter?: boolean;
  }>;
}
const sizeOf = (command: number) => (command >>> 16) & 0x3fff;
const numberOf = (command: number) => command & 0xff;
/** _IOC(dir, DBT_IOC_MAGIC, nr, size) */
const ioc = (direction: number, nr: number, size: number) => ((direction << 30) | (size << 16) | (dbt.DBT_IOC_MAGIC << 8) | nr) >>> 0;

function words(...values: number[]): Buffer {
  const buffer = Buffer.alloc(values.length * 4);
  values.forEach((value, index) => buffer.writeInt32LE(value | 0, index * 4));
  return buffer;
}

function expectErrno(device: KernelTestDevice, command: number, argument: Buffer, code: string): void {
  const padded = Buffer.concat([argument, Buffer.alloc(Math.max(0, sizeOf(command) - argument.length))]);
  assert.equal(errnoName(-device.rawIoctl(command, padded)), code, `command 0x${command.toString(16)} with ${argument.toString('hex')}`);
}

describe('kernel module: every ioctl argument is checked', () => {
  requireModule();
  let device: KernelTestDevice;
  beforeEach(() => {
    device = kernelTest.open();
  });
  afterEach(() => device.close());

  it('unknown commands, and known numbers with another size, are ENOTTY', () => {
    expectErrno(device, ioc(3, 0x7f, 16), Buffer.alloc(16), 'ENOTTY');
    expectErrno(device, ioc(3, numberOf(commands.EXPORT), 8), Buffer.alloc(8), 'ENOTTY');
    expectErrno(device, ioc(0, numberOf(commands.DETACH), 0), Buffer.alloc(0), 'ENOTTY');
  });

  it('unknown flags, nonzero padding and out-of-range values are EINVAL', () => {
    expectErrno(device, commands.EXPORT, words(1, dbt.DBT_EXPORT_DYNAMIC << 1), 'EINVAL'); // flags
    expectErrno(device, commands.EXPORT, words(0, 0), 'EINVAL'); // no pages
    expectErrno(device, commands.EXPORT, words(dbt.DBT_MAX_PAGES + 1, 0), 'EINVAL'); // above DBT_MAX_PAGES
    expectErrno(device, commands.ATTACH, words(0, 0, 0, 1), 'EINVAL'); // pad
    expectErrno(device, commands.ATTACH, words(0, dbt.DBT_ATTACH_REVOCABLE << 1), 'EINVAL'); // flags
    expectErrno(device, commands.ATTACH, words(0, dbt.DBT_ATTACH_REVOCABLE), 'EINVAL'); // revocable without dynamic
    expectErrno(device, commands.MAP, words(1, dbt.DBT_DIR_FROM_DEVICE + 1), 'EINVAL'); // direction
    expectErrno(device, commands.DETACH, words(1, 1), 'EINVAL'); // pad
    expectErrno(device, commands.ATTACHMENT_INFO, words(1, 0, 0, 0, 0, 1), 'EINVAL'); // pad
    expectErrno(device, commands.MOVE, words(1, dbt.DBT_MOVE_REVOKE << 1), 'EINVAL'); // flags
    expectErrno(device, commands.MOVE, words(1, dbt.DBT_MOVE_FENCED | dbt.DBT_MOVE_REVOKE), 'EINVAL'); // a fenced revoke
    expectErrno(device, commands.MOVE, words(1, 0, 0, 1), 'EINVAL'); // pad
    expectErrno(device, commands.FENCE_CREATE, words(-1, dbt.DBT_USAGE_BOOKKEEP + 1, dbt.DBT_FENCE_ADD), 'EINVAL'); // usage
    expectErrno(device, commands.FENCE_CREATE, words(-1, dbt.DBT_USAGE_WRITE, 0), 'EINVAL'); // usage without DBT_FENCE_ADD
    expectErrno(device, commands.FENCE_CREATE, words(-1, 0, dbt.DBT_FENCE_SYNC_FILE << 1), 'EINVAL'); // flags
    expectErrno(device, commands.FENCE_SIGNAL, words(1, 1), 'EINVAL'); // a positive error
    expectErrno(device, commands.FENCE_SIGNAL, words(1, -4096), 'EINVAL'); // beyond MAX_ERRNO
  });

  it('ids that name nothing are ENOENT; fds that are not dma-bufs are EBADF or EINVAL', () => {
    for (const command of [commands.MOVE, commands.EXPORTER_INFO, commands.DETACH, commands.MAP, commands.UNMAP, commands.PIN, commands.UNPIN, commands.ATTACHMENT_INFO, commands.FENCE_SIGNAL]) {
      expectErrno(device, command, words(12345), 'ENOENT');
    }
    // An exporter id is not an attachment id.
    const exporter = device.export({ pages: 1, dynamic: true });
    using _buffer = exporter.dmabuf;
    expectErrno(device, commands.MAP, words(exporter.id), 'ENOENT');
    expectErrno(device, commands.ATTACH, words(-1), 'EBADF');
    using memfd = Memfd.create(4096);
    expectErrno(device, commands.ATTACH, words(memfd.fd), 'EINVAL');
    expectErrno(device, commands.FENCE_CREATE, words(memfd.fd, 1, 1), 'EINVAL');
    expectErrno(device, commands.FENCE_CREATE, words(1_000_000, 1, 1), 'EBADF');
  });

  /** What test/fixtures/dbt_efault.c saw: it alone can pass pointers the kernel cannot use. */
  function efaultOutcomes(): EfaultOutcomes {
    const program = process.env.DMABUF_DBT_EFAULT;
    if (!program) throw new Error('DMABUF_DBT_EFAULT names the compiled test/fixtures/dbt_efault.c; npm test builds it');
    const result = spawnSync(program, [kernelTest.devicePath], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    return JSON.parse(result.stdout) as EfaultOutcomes;
  }

  it('an argument the kernel cannot read is EFAULT, for every command (from C: JavaScript cannot pass a bad pointer)', () => {
    const { copyIn } = efaultOutcomes();
    assert.deepEqual(Object.keys(copyIn).sort(), Object.keys(commands).sort());
    for (const [name, outcome] of Object.entries(copyIn)) assert.equal(outcome, 'EFAULT', name);
  });

  it('an argument on a read-only page is EFAULT for every command that writes one back, and the failed call leaves nothing behind: no fd, module reference, exporter call, move, fence or mapping, and the same call then succeeds', () => {
    const { copyOut } = efaultOutcomes();
    // Every command whose ioctl number says the kernel writes the argument (_IOC_READ), and MOVE once more with a fence.
    const writing = Object.entries(commands).filter(([, command]) => (command >>> 30) & 2).map(([name]) => name);
    assert.deepEqual(Object.keys(copyOut).sort(), [...writing, 'MOVE_FENCED'].sort());
    for (const [name, outcome] of Object.entries(copyOut)) {
      assert.equal(outcome.result, 'EFAULT', name);
      assert.equal(outcome.fds[1], outcome.fds[0], `${name}: open fds`);
      assert.equal(outcome.refcnt[1], outcome.refcnt[0], `${name}: the module's reference count`);
      assert.deepEqual(outcome.exporter[1], outcome.exporter[0], `${name}: the exporter's pin count, attachments, held moves and call counters`);
      assert.equal(outcome.retry, 'ok', `${name}: the same call with a writable argument`);
    }
    assert.equal(copyOut.MAP!.mappedAfter, false, 'MAP: the attachment is left unmapped');
  });

  it('the addon refuses commands of other types and arguments smaller than the command says', () => {
    assert.throws(() => device.rawIoctl(0x40086401, Buffer.alloc(8)), RangeError);
    assert.throws(() => device.rawIoctl(commands.EXPORTER_INFO, Buffer.alloc(8)), RangeError);
    assert.throws(() => device.rawIoctl(-1, Buffer.alloc(8)), RangeError);
    assert.throws(() => device.rawIoctl(commands.EXPORT, 'x' as unknown as Buffer), TypeError);
  });

  it('fuzz: random commands and arguments for a bounded time, with nothing leaked (the runner checks the kernel log)', () => {
    const deadline = Date.now() + Number(process.env.DMABUF_FUZZ_MS ?? 5000);
    const fdsBefore = openFdCount();
    using memory = udmabuf.create(2 * 4096);
    using memfd = Memfd.create(4096);
    const known = Object.values(commands);
    const outcomes = new Map<string, number>();
    let fuzzDevice = kernelTest.open();
    let calls = 0;
    // Values that hit the checks' edges: small ids, real fds, flags bits, limits.
    const pool = () => [0, 1, 2, 3, 1, 2, -1, 0xffffffff, memory.fd, memfd.fd, fuzzDevice.fd, dbt.DBT_MAX_PAGES, dbt.DBT_MAX_PAGES + 1, 4, randomInt(0, 2 ** 32) | 0][randomInt(0, 15)]!;
    while (Date.now() < deadline) {
      const command = randomInt(0, 4) === 0 ? ioc(randomInt(0, 4), randomInt(0, 16), randomInt(0, 64)) : known[randomInt(0, known.length)]!;
      const argument = Buffer.alloc(Math.max(sizeOf(command), 4));
      for (let offset = 0; offset + 4 <= argument.length; offset += 4) argument.writeInt32LE(pool() | 0, offset);
      const result = fuzzDevice.rawIoctl(command, argument);
      calls += 1;
      const outcome = result < 0 ? errnoName(-result) : 'ok';
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      if (result === 0) release(command, argument);
      // A fresh file now and then, so that created objects do not pile up.
      if (calls % 200 === 0) {
        fuzzDevice.close();
        fuzzDevice = kernelTest.open();
      }
    }
    fuzzDevice.close();
    process.stdout.write(`      ${calls} calls: ${[...outcomes].map(([outcome, count]) => `${outcome} ${count}`).join(', ')}\n`);
    assert.ok(calls > 1000, `only ${calls} calls`);
    assert.ok((outcomes.get('ok') ?? 0) > 0, 'some calls succeed, so the fuzzer reaches past the checks');
    // ENOTSUP (EOPNOTSUPP): a revocable attach where the kernel has none; ENODEV: a revoked attachment.
    for (const outcome of outcomes.keys()) assert.ok(['ok', 'ENOTTY', 'EINVAL', 'ENOENT', 'EBADF', 'EBUSY', 'EOVERFLOW', 'ENOTSUP', 'ENODEV'].includes(outcome), `unexpected ${outcome}`);
    assert.equal(openFdCount(), fdsBefore + 2, 'only the two buffers of this test are open');

    // What a successful call handed out is closed at once, and its fences
    // signalled, so that no later static map waits on one forever.
    function release(command: number, argument: Buffer): void {
      if (command === commands.EXPORT) closeSync(argument.readInt32LE(8));
      if (command === commands.FENCE_CREATE) {
        if (argument.readUInt32LE(8) & dbt.DBT_FENCE_SYNC_FILE) closeSync(argument.readInt32LE(16));
        fuzzDevice.rawIoctl(commands.FENCE_SIGNAL, words(argument.readUInt32LE(12), 0));
      }
      if (command === commands.MOVE && argument.readUInt32LE(4) & dbt.DBT_MOVE_FENCED) fuzzDevice.rawIoctl(commands.FENCE_SIGNAL, words(argument.readUInt32LE(8), 0));
    }
  });
});

describe("the kernel's own dma-buf tests", () => {
  // Set by npm test where these tests run in another suite, with the reason (see test/run-suites.ts).
  const elsewhere = process.env.DMABUF_KERNEL_TESTS_ELSEWHERE;
  (elsewhere ? it.skip : it)(`DMABUF_SELFTESTS (dmabuf_selftests.ko) or, where the kernel replaced them, the DMABUF_KUNIT_TEST suites (dmabuf_kunit.ko), built from this kernel's drivers/dma-buf: the module loads and every test passes${elsewhere ? ` (skipped here: ${elsewhere})` : ''}`, function () {
    this.timeout(300_000);
    const module = process.env.DMABUF_KERNEL_SELFTESTS_KO ?? process.env.DMABUF_KUNIT_KO;
    if (!module) throw new Error('DMABUF_KERNEL_SELFTESTS_KO (dmabuf_selftests.ko) or DMABUF_KUNIT_KO (dmabuf_kunit.ko) names the built module; npm test builds it');
    const name = basename(module, '.ko');
    const insmod = spawnSync('insmod', [module], { encoding: 'utf8' });
    const log = spawnSync('dmesg', [], { encoding: 'utf8' }).stdout;
    spawnSync('rmmod', [name]);
    if (name === 'dmabuf_kunit') {
      // KUnit runs the suites at load and reports in KTAP; insmod succeeds whatever they find.
      assert.equal(insmod.status, 0, `insmod: ${insmod.stderr}`);
      const run = log.slice(log.lastIndexOf('# Subtest: dma-buf-fence\n'));
      assert.ok(log.includes('# Subtest: dma-buf-fence\n') || !log.includes('kunit: disabled'), 'KUnit is disabled in this kernel (CONFIG_KUNIT_DEFAULT_ENABLED=n): boot it with kunit.enable=1 so that the suites run at load');
      const results = new Map([...run.matchAll(/\] (not ok|ok) \d+ (dma-buf-[\w-]+)\n/g)].map((match) => [match[2]!, match[1]!]));
      assert.deepEqual([...results.keys()].sort(), ['dma-buf-fence', 'dma-buf-fence-chain', 'dma-buf-fence-unwrap', 'dma-buf-resv'], run);
      for (const [suite, result] of results) assert.equal(result, 'ok', `${suite}\n${run}`);
      const cases = [...run.matchAll(/\] # dma-buf-[\w-]+: pass:(\d+) fail:(\d+) skip:\d+ total:\d+/g)];
      assert.ok(cases.every((match) => match[2] === '0'), run);
      const passed = cases.reduce((sum, match) => sum + Number(match[1]), 0);
      process.stdout.write(`      ${results.size} KUnit suites, ${passed} cases passed\n`);
      assert.ok(passed > 20);
      return;
    }
    // The module runs its tests in its init: insmod fails with the first failure's errno.
    const run = log.slice(log.lastIndexOf('dma-buf: Running sanitycheck'));
    assert.equal(insmod.status, 0, `insmod: ${insmod.stderr}\n${run}`);
    const ran = [...run.matchAll(/dma-buf: Running (\w+)\n/g)].map((match) => match[1]);
    assert.deepEqual(ran, ['sanitycheck', 'dma_fence', 'dma_fence_chain', 'dma_fence_unwrap', 'dma_resv']);
    assert.equal(/dma-buf\/.* failed/.test(run), false, run);
    const subtests = [...run.matchAll(/dma-buf: Running \w+\/\w+/g)].length;
    process.stdout.write(`      ${ran.length} selftests, ${subtests} subtests passed\n`);
    assert.ok(subtests > 20);
  });
});
