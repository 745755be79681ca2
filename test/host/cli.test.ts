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
    assert.match(result.stderr, /apt-get install -y linux-source-6\.1/);
  });
});

describe('VM runner preconditions', () => {
  it('says how to install a missing QEMU', async () => {
    await assert.rejects(run({ command: 'true', qemuBinary: 'qemu-system-nonexistent' }), (error: unknown) => {
      assert.ok(error instanceof VmSetupError);
      assert.match(error.message, /QEMU \(qemu-system-nonexistent\) is not installed/);
      assert.match(error.hint, /apt-get install -y qemu-system-x86/);
      return true;
    });
  });

  it('rejects bad options before booting anything', async () => {
    await assert.rejects(run({ command: [] }), TypeError);
    await assert.rejects(run({ command: 'true', cpus: 0 }), RangeError);
    await assert.rejects(run({ command: 'true', timeoutMs: 1.5 }), RangeError);
  });
});
