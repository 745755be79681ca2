import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { run, VmSetupError } from '../../lib/vm';

const bin = join(__dirname, '..', '..', 'bin', 'dmabuf.js');
const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });

describe('command line', () => {
  it('prints usage for help', () => {
    const result = cli(['help']);
    assert.equal(result.status, 0);
    assert.match(result.stdout, /vm run \[options\] -- <command>/);
  });

  for (const [args, message] of [
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['vm', 'run'], /vm run needs a command/],
    [['vm', 'run', '--timeout', 'soon', '--', 'true'], /--timeout takes a positive whole number/],
    [['vm', 'run', '--profile', 'huge', '--', 'true'], /unknown profile 'huge'/],
    [['vm', 'run', '--bogus', '--', 'true'], /Unknown option '--bogus'/],
    [['vm', 'run', '--kernel', '7.2', '--profile', 'no-move-notify', '--', 'true'], /kernel 7\.2 has no 'no-move-notify' profile \(it has base, debug\)/],
    [['vm', 'build-kernel', '--kernel', '6.6'], /kernel 6\.6 is not one of the tested generations \(6\.1, 6\.12, 7\.2\)/],
    [['vm', 'fetch-source', '--kernel', '5.10'], /fetch-source takes a generation \(6\.1, 6\.12, 7\.2\), got '5\.10'/],
  ] as const) {
    it(`exits 2 with a usage message for: ${args.join(' ')}`, () => {
      const result = cli([...args]);
      assert.equal(result.status, 2);
      assert.match(result.stderr, message);
    });
  }

  it('says how to get a missing kernel source', () => {
    const result = cli(['vm', 'run', '--', 'true'], { DMABUF_KERNEL_SOURCE: '/nonexistent/linux.tar.xz' });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /Kernel source \/nonexistent\/linux\.tar\.xz not found/);
    assert.match(result.stderr, /--kernel 6\.1\|6\.12\|7\.2/);
  });

  it('lists every generation and profile in vm info --json, with the cache size', () => {
    const result = cli(['vm', 'info', '--json']);
    assert.equal(result.status, 0, result.stderr);
    const info = JSON.parse(result.stdout) as { generations: Array<{ generation: string; sourcePackage: string; profiles: Record<string, unknown> }>; cacheBytes: number };
    assert.deepEqual(info.generations.map((entry) => [entry.generation, entry.sourcePackage, Object.keys(entry.profiles)]), [
      ['6.1', 'linux-source-6.1', ['base', 'debug', 'no-move-notify']],
      ['6.12', 'linux-source-6.12', ['base', 'debug', 'no-move-notify']],
      ['7.2', 'linux-source-7.2', ['base', 'debug']],
    ]);
    assert.equal(typeof info.cacheBytes, 'number');
  });
});

describe('VM runner preconditions', () => {
  it('says how to install a missing QEMU', async () => {
    await assert.rejects(run({ command: 'true', qemuBinary: 'qemu-system-nonexistent' }), (error: unknown) => {
      assert.ok(error instanceof VmSetupError);
      assert.equal(error.code, 'ERR_DMABUF_VM_SETUP');
      assert.match(error.message, /QEMU \(qemu-system-nonexistent\) is not installed/);
      assert.match(error.hint, /apt-get install -y qemu-system-x86/);
      return true;
    });
  });

  it('rejects bad options before booting anything', async () => {
    await assert.rejects(run({ command: 5 as unknown as string }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    await assert.rejects(run({ command: ['true', 5 as unknown as string] }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /options\.command\[1\]/ });
    await assert.rejects(run({ command: [] }), { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' });
    await assert.rejects(run({ command: 'true', cpus: 0 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    await assert.rejects(run({ command: 'true', timeoutMs: 1.5 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  });
});
