import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { buildKernel, run } from '../../lib/vm';
import { runnerGeneration } from '../support/matrix';

// These tests boot the real VM from the host, a few seconds each under TCG.
const fixtureModule = join(__dirname, '..', 'fixtures', 'vm-fixture-module');
const progress = (line: string) => process.stderr.write(`      ${line}\n`);

describe('VM runner', () => {
  before(async function () {
    this.timeout(30 * 60_000); // the first run on a machine builds the kernel
    await buildKernel({ onProgress: progress });
  });

  it(`finds the default kernel (${runnerGeneration()}) in the cache once built, with its generation's release`, async () => {
    const kernel = await buildKernel();
    assert.equal(kernel.cached, true);
    assert.equal(kernel.generation, runnerGeneration());
    assert.ok(kernel.release?.startsWith(`${runnerGeneration()}.`), kernel.release);
  });

  it('returns the command exit status, stdout and stderr', async () => {
    const result = await run({ command: 'echo to-stdout; echo to-stderr >&2; exit 7' });
    assert.equal(result.exitCode, 7);
    assert.equal(result.stdout, 'to-stdout\n');
    assert.equal(result.stderr, 'to-stderr\n');
    assert.equal(result.ok, false);
    assert.deepEqual(result.failures, ['exit-status']);
  });

  it('runs in the guest kernel, with the host cwd, argv and environment', async () => {
    const chunks: Buffer[] = [];
    const result = await run({
      command: [process.execPath, '-e', 'console.log(JSON.stringify([require("os").release(), process.cwd(), process.argv.slice(1), process.env.GREETING, process.env.DMABUF_IN_VM]))', 'two words', "it's"],
      cwd: __dirname,
      env: { GREETING: 'hello $world' },
      onStdout: (chunk) => chunks.push(chunk),
    });
    assert.equal(result.ok, true, result.summary);
    const [release, cwd, argv, greeting, inVm] = JSON.parse(result.stdout) as [string, string, string[], string, string];
    assert.equal(release, result.kernel.release);
    assert.equal(cwd, __dirname);
    assert.deepEqual(argv, ['two words', "it's"]);
    assert.equal(greeting, 'hello $world');
    assert.equal(inVm, '1');
    assert.equal(Buffer.concat(chunks).toString('utf8'), result.stdout, 'streamed output equals the collected output');
  });

  it('kills the VM at the timeout and says so', async () => {
    const result = await run({ command: ['sleep', '600'], timeoutMs: 15_000 });
    assert.equal(result.timedOut, true);
    assert.equal(result.exitCode, null);
    assert.deepEqual(result.failures, ['timeout']);
    assert.match(result.summary, /did not finish within 15000 ms; QEMU was killed/);
  });

  it('builds and loads an out-of-tree module with parameters', async () => {
    const result = await run({ command: 'cat /sys/module/vm_fixture/parameters/answer', modules: [{ path: fixtureModule, params: ['answer=42'] }] });
    assert.equal(result.ok, true, result.summary);
    assert.equal(result.stdout, '42\n');
    assert.match(result.console, /vm_fixture: loaded, answer=42/);
  });

  it('fails the run when a module WARNs, although the command exited 0', async () => {
    const result = await run({ command: 'true', modules: [{ path: fixtureModule, params: ['warn=1'] }] });
    assert.equal(result.exitCode, 0);
    assert.equal(result.ok, false);
    assert.deepEqual(result.failures, ['kernel-problem']);
    assert.ok(result.kernelProblems.some((problem) => /WARNING: .* vm_fixture_init/.test(problem.text)), result.summary);
    assert.match(result.summary, /WARNING:/);
  });

  it('reports a module that does not load, with the kernel\'s reason', async () => {
    // Linux loads a module despite an unknown parameter, but not with a value its type cannot parse.
    const result = await run({ command: ['echo', 'not reached'], modules: [{ path: fixtureModule, params: ['answer=forty-two'] }] });
    assert.deepEqual(result.failures, ['module-load']);
    assert.equal(result.stdout, '');
    assert.match(result.summary, /insmod .*vm_fixture\.ko failed/);
    assert.match(result.console, /`forty-two' invalid for parameter `answer'/);
  });

  it('fails a run whose kernel panics, without waiting for the timeout', async () => {
    const result = await run({ command: 'echo c > /proc/sysrq-trigger; sleep 600', timeoutMs: 120_000 });
    assert.equal(result.timedOut, false);
    assert.equal(result.exitCode, null);
    assert.deepEqual(result.failures, ['no-exit-status', 'kernel-problem']);
    assert.ok(result.kernelProblems.some((problem) => /Kernel panic/.test(problem.text)));
  });

  it('gives the command exit status to the CLI caller', () => {
    const bin = join(__dirname, '..', '..', 'bin', 'dmabuf.js');
    const result = spawnSync(process.execPath, [bin, 'vm', 'run', '--', 'sh', '-c', 'echo in-guest; exit 3'], { encoding: 'utf8' });
    assert.equal(result.status, 3);
    assert.equal(result.stdout, 'in-guest\n');
    assert.match(result.stderr, /vm failed \(exit-status\)/);
  });

  it('exits 124 from the CLI when the command outlives --timeout, with the reason on stderr', () => {
    const bin = join(__dirname, '..', '..', 'bin', 'dmabuf.js');
    const started = Date.now();
    // 30 s leaves a loaded machine time to boot, so the kill lands while the command runs.
    const result = spawnSync(process.execPath, [bin, 'vm', 'run', '--timeout', '30', '--', 'sh', '-c', 'echo started; sleep 600'], { encoding: 'utf8' });
    const seconds = (Date.now() - started) / 1000;
    assert.equal(result.status, 124, result.stderr);
    assert.equal(result.stdout, 'started\n');
    assert.match(result.stderr, /vm failed \(timeout\)/);
    assert.match(result.stderr, /did not finish within 30000 ms; QEMU was killed/);
    assert.ok(seconds < 120, `the CLI returned after ${seconds.toFixed(1)} s, not at the timeout`);
  });
});
