/**
 * `npm test`: the host suite, then the VM suites (host tests that boot the VM,
 * then mocha inside the guest, on the compiled tests: loading TypeScript under
 * TCG costs seconds per boot), and one closing line that adds them up. A
 * suite that cannot run fails the whole run: nothing is skipped quietly.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildKernel, run, type BuiltKernel, type KernelProfile } from '../lib/vm';
import { buildDmabufSelftestsModule, buildEfaultProgram, buildKernelSelftests } from './support/kernel-selftests';

interface Summary {
  passes: number;
  failures: number;
  pending: number;
  skipped: string[];
}

const root = resolve(__dirname, '..', '..');
const mochaBin = require.resolve('mocha/bin/mocha.js');
const say = (line: string) => process.stdout.write(`\n=== ${line}\n`);

function readSummary(path: string): Summary | undefined {
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Summary) : undefined;
}

function hostMocha(config: string, summaryPath: string): Promise<number> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [mochaBin, '--config', config], { cwd: root, stdio: 'inherit', env: { ...process.env, DMABUF_TEST_SUMMARY: summaryPath } });
    child.on('close', (code) => resolvePromise(code ?? 1));
  });
}

/** CONFIG_DMABUF_MOVE_NOTIFY of a built kernel, for the tests whose expectations depend on it. */
function moveNotifyOf(kernel: BuiltKernel): 'y' | 'n' {
  return /^CONFIG_DMABUF_MOVE_NOTIFY=y$/m.test(readFileSync(join(kernel.tree!, '.config'), 'utf8')) ? 'y' : 'n';
}

/**
 * Mocha inside the VM on one kernel profile, with the test module built
 * against it and loaded, and the kernel's DMABUF_SELFTESTS module built for
 * the tests to load.
 */
async function guestMocha(profile: KernelProfile, config: string, scratch: string, env: Record<string, string>): Promise<{ status: number; summary?: Summary }> {
  const kernel = await buildKernel({ profile, onProgress: (line) => process.stdout.write(`${line}\n`) });
  const selftestsModule = await buildDmabufSelftestsModule(kernel, join(scratch, profile));
  const result = await run({
    // --expose-gc: the guest suite checks what garbage collection does to leaked handles.
    command: [process.execPath, '--expose-gc', mochaBin, '--config', config],
    cwd: root,
    profile,
    modules: [{ path: join(root, 'kernel-module') }],
    env: { DMABUF_TEST_SUMMARY: '/run/results/summary.json', DMABUF_MOVE_NOTIFY: moveNotifyOf(kernel), DMABUF_KERNEL_SELFTESTS_KO: selftestsModule, ...env },
    keepResults: true,
    timeoutMs: 30 * 60_000,
    onStdout: (chunk) => process.stdout.write(chunk),
    onStderr: (chunk) => process.stderr.write(chunk),
  });
  const summary = readSummary(join(result.resultsDir!, 'summary.json'));
  rmSync(result.resultsDir!, { recursive: true, force: true });
  process.stdout.write(`guest (${profile}): VM run ${result.ok ? 'clean' : `failed (${result.failures.join(', ')})`} in ${(result.durationMs / 1000).toFixed(1)}s, kernel ${result.kernel.release}\n`);
  if (!result.ok) process.stdout.write(`${result.summary}\n`);
  return { status: result.ok ? 0 : 1, summary };
}

async function main(): Promise<number> {
  const scratch = mkdtempSync(join(tmpdir(), 'dmabuf-tests-'));
  const suites: { name: string; status: number; summary?: Summary }[] = [];
  try {
    say('host suite (no dma-buf needed)');
    suites.push({ name: 'host', status: await hostMocha('.mocharc.host.json', join(scratch, 'host.json')), summary: readSummary(join(scratch, 'host.json')) });

    say('VM kernel');
    const started = Date.now();
    const kernel = await buildKernel({ onProgress: (line) => process.stdout.write(`${line}\n`) });
    process.stdout.write(`kernel ${kernel.release}: ${kernel.cached ? 'from the cache' : 'built'} in ${((Date.now() - started) / 1000).toFixed(1)}s (${kernel.bzImage})\n`);

    say('runner suite (host tests that boot the VM)');
    suites.push({ name: 'runner', status: await hostMocha('.mocharc.runner.json', join(scratch, 'runner.json')), summary: readSummary(join(scratch, 'runner.json')) });

    say('guest suite (mocha inside the VM, base kernel, test module loaded)');
    const selftestsDir = join(scratch, 'selftests');
    await buildKernelSelftests(kernel, selftestsDir);
    const efault = buildEfaultProgram(root, scratch);
    suites.push({ name: 'guest', ...(await guestMocha('base', '.mocharc.guest.json', scratch, { DMABUF_SELFTESTS_DIR: selftestsDir, DMABUF_DBT_EFAULT: efault })) });

    // The kernel-module suite again where kernel CI would run such code: under
    // lockdep, KASAN and DMABUF_DEBUG, and with CONFIG_DMABUF_MOVE_NOTIFY off.
    for (const profile of ['debug', 'no-move-notify'] as const) {
      say(`kernel-module suite on the ${profile} kernel`);
      const started = Date.now();
      const outcome = await guestMocha(profile, '.mocharc.module.json', scratch, { DMABUF_DBT_EFAULT: efault });
      process.stdout.write(`${profile}: kernel and suite took ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
      suites.push({ name: `guest-${profile}`, ...outcome });
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }

  say('summary');
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  let ok = true;
  for (const suite of suites) {
    const { summary } = suite;
    if (!summary) {
      process.stdout.write(`${suite.name}: did not report results (exit status ${suite.status}): counted as failed\n`);
      ok = false;
      continue;
    }
    passed += summary.passes;
    failed += summary.failures;
    skipped += summary.pending;
    process.stdout.write(`${suite.name}: ${summary.passes} passed, ${summary.failures} failed, ${summary.pending} skipped\n`);
    for (const title of summary.skipped) process.stdout.write(`  skipped: ${title}\n`);
    if (suite.status !== 0 || summary.failures > 0) ok = false;
    if (summary.passes === 0) {
      process.stdout.write(`${suite.name}: ran no test: counted as failed\n`);
      ok = false;
    }
  }
  process.stdout.write(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  return ok ? 0 : 1;
}

main().then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    process.stderr.write(`npm test: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
