/**
 * `npm test`: the lint checks (`npm run lint`), the host suite, then the VM
 * suites (host tests that boot the VM, then mocha inside the guest, on the
 * compiled tests: loading TypeScript under TCG costs seconds per boot), and
 * closing lines that add them up. A suite that cannot run (its kernel did
 * not build, ...) is reported and counted as failed, and the suites after it
 * still run: nothing is skipped quietly.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildKernel, run, type BuiltKernel, type KernelGeneration, type KernelProfile } from '../lib/vm';
import { buildDmabufKunitModule, buildDmabufSelftestsModule, buildEfaultProgram, buildKernelSelftests, hasDmabufSelftestsModule } from './support/kernel-selftests';
import { debugGeneration, noMoveNotifyGenerations, runnerGeneration, testedGenerations } from './support/matrix';
import { summarizeSuites, type MochaSummary, type SuiteOutcome } from './support/suite-summary';

type Outcome = Omit<SuiteOutcome, 'name'>;

const root = resolve(__dirname, '..', '..');
const mochaBin = require.resolve('mocha/bin/mocha.js');
const say = (line: string) => process.stdout.write(`\n=== ${line}\n`);
const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

function readSummary(path: string): MochaSummary | undefined {
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as MochaSummary) : undefined;
}

/**
 * Each kernel is built (or found in the cache) once, on first use, one at a
 * time (the machine's cores are the limit); a build that fails fails every
 * suite that needs that kernel, with its reason. Every kernel the chosen
 * suites need is queued at the start, so the next one builds while a suite
 * runs in the VM (a guest keeps about one of the two cores busy); the build
 * runs at nice 10, so the VM under test keeps the CPU it asks for. A base
 * kernel whose generation also has a no-move-notify suite builds that kernel
 * from its own objects (see `buildKernel`'s variants).
 */
const kernels = new Map<string, Promise<BuiltKernel>>();
let buildQueue: Promise<unknown> = Promise.resolve();
const buildNiceness = 10;
let variantsOf: (generation: KernelGeneration, profile: KernelProfile) => KernelProfile[] = () => [];
const seconds = (value: number | undefined) => (value === undefined ? '?' : `${Math.round(value)}s`);
function kernelFor(generation: KernelGeneration, profile: KernelProfile): Promise<BuiltKernel> {
  const name = `${generation} ${profile}`;
  let kernel = kernels.get(name);
  if (!kernel) {
    kernel = buildQueue.then(() => {
      const started = Date.now();
      return buildKernel({ kernel: generation, profile, variants: variantsOf(generation, profile), nice: buildNiceness, onProgress: (line) => process.stdout.write(`${line}\n`) }).then(
        (built) => {
          const how = built.cached ? 'from the cache' : `built in ${((Date.now() - started) / 1000).toFixed(1)}s, make used ${seconds(built.compileCpuSeconds)} of CPU`;
          process.stdout.write(`kernel ${built.release} (${name}): ${how} (${built.bzImage})\n`);
          return built;
        },
        (error: unknown) => {
          throw new Error(`the ${name} kernel did not build: ${messageOf(error)}`);
        },
      );
    });
    buildQueue = kernel.catch(() => undefined);
    kernels.set(name, kernel);
  }
  return kernel;
}

/** Builds a helper once, for the suites that share it; a failure fails each of them. */
function once<T>(build: () => Promise<T>): () => Promise<T> {
  let built: Promise<T> | undefined;
  return () => (built ??= build());
}

/** A node script on the host that writes its counts where DMABUF_TEST_SUMMARY says. */
function hostScript(what: string, args: string[], summaryPath: string, env: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit', env: { ...process.env, DMABUF_TEST_SUMMARY: summaryPath, ...env } });
    child.on('error', (error) => resolvePromise({ notRun: `${what} did not start: ${error.message}` }));
    child.on('close', (code) => resolvePromise({ status: code ?? 1, mocha: readSummary(summaryPath) }));
  });
}

function hostMocha(config: string, summaryPath: string, env: Record<string, string> = {}): Promise<Outcome> {
  return hostScript('mocha', [mochaBin, '--config', config], summaryPath, env);
}

/**
 * Whether the kernel moves buffers under dynamic importers without pinning:
 * CONFIG_DMABUF_MOVE_NOTIFY on, or a kernel (7.x) that removed the option and
 * always invalidates. Only an explicit "is not set" means pinning.
 */
function moveNotifyOf(kernel: BuiltKernel): 'y' | 'n' {
  return /^# CONFIG_DMABUF_MOVE_NOTIFY is not set$/m.test(readFileSync(join(kernel.tree!, '.config'), 'utf8')) ? 'n' : 'y';
}

/**
 * Mocha inside the VM on one kernel profile, with the test module built
 * against it and loaded, and the kernel's DMABUF_SELFTESTS module built for
 * the tests to load.
 */
async function guestMocha(generation: KernelGeneration, profile: KernelProfile, config: string, scratch: string, env: Record<string, string>): Promise<Outcome> {
  const kernel = await kernelFor(generation, profile);
  // The kernel's in-kernel dma-buf tests: the DMABUF_SELFTESTS module on 6.x,
  // the dmabuf_kunit KUnit suites that replaced it on 7.x.
  const inKernelTests: Record<string, string> = {};
  if (profile === 'debug' && !hasDmabufSelftestsModule(kernel)) {
    // Measured on 7.2.13's debug kernel: one dmabuf_kunit case (comm
    // kunit_try_catch) leaves two mock fences, the array of their pointers,
    // the dma_fence_array made of them and two more fences unreferenced
    // (kmemleak, 6 objects), and KUnit's waits for its cases pass the 120 s
    // hung-task limit under TCG. The suites run on the 7.2 base kernel
    // (guest-7.2); this suite checks our module under the checkers.
    inKernelTests.DMABUF_KERNEL_TESTS_ELSEWHERE = `7.2.13's debug kernel showed dmabuf_kunit leaking 6 objects (kmemleak) and its KUnit waits passing the 120 s hung-task limit under TCG; its suites run in guest-${generation}`;
  } else if (hasDmabufSelftestsModule(kernel)) {
    inKernelTests.DMABUF_KERNEL_SELFTESTS_KO = await buildDmabufSelftestsModule(kernel, join(scratch, `${generation}-${profile}`));
  } else {
    inKernelTests.DMABUF_KUNIT_KO = await buildDmabufKunitModule(kernel, join(scratch, `${generation}-${profile}`));
  }
  const result = await run({
    // --expose-gc: the guest suite checks what garbage collection does to leaked handles.
    command: [process.execPath, '--expose-gc', mochaBin, '--config', config],
    cwd: root,
    kernel: generation,
    profile,
    modules: [{ path: join(root, 'kernel-module') }],
    env: { DMABUF_TEST_SUMMARY: '/run/results/summary.json', DMABUF_MOVE_NOTIFY: moveNotifyOf(kernel), ...inKernelTests, ...env },
    // udmabuf selftests 6 and 7 reserve 2 GiB of huge pages on 6.12 and later.
    memoryMiB: 4096,
    keepResults: true,
    timeoutMs: 30 * 60_000,
    onStdout: (chunk) => process.stdout.write(chunk),
    onStderr: (chunk) => process.stderr.write(chunk),
  });
  const mocha = result.resultsDir ? readSummary(join(result.resultsDir, 'summary.json')) : undefined;
  if (result.resultsDir) rmSync(result.resultsDir, { recursive: true, force: true });
  process.stdout.write(`guest (${generation} ${profile}): VM run ${result.ok ? 'clean' : `failed (${result.failures.join(', ')})`} in ${(result.durationMs / 1000).toFixed(1)}s, kernel ${result.kernel.release}\n`);
  if (!result.ok) process.stdout.write(`${result.summary}\n`);
  return { kernel: result.kernel.release, status: result.exitCode ?? undefined, mocha, vmFailures: result.failures };
}

interface Suite {
  name: string;
  title: string;
  /** The kernels it boots, so that they can be built ahead of it. */
  kernels: ReadonlyArray<readonly [KernelGeneration, KernelProfile]>;
  run(): Promise<Outcome>;
}

/**
 * In the order the kernels can be ready: each generation's guest suite, then
 * its no-move-notify module suite (that kernel is built from the base one's
 * objects, right after it), and last the suites that need the debug kernel,
 * the slowest to build.
 */
function suites(scratch: string): Suite[] {
  const efault = once(async () => buildEfaultProgram(root, scratch));
  const selftestsDirs = new Map<KernelGeneration, () => Promise<string>>();
  const selftestsDir = (generation: KernelGeneration) => {
    if (!selftestsDirs.has(generation)) {
      selftestsDirs.set(generation, once(async () => {
        const dir = join(scratch, `selftests-${generation}`);
        await buildKernelSelftests(await kernelFor(generation, 'base'), dir);
        return dir;
      }));
    }
    return selftestsDirs.get(generation)!();
  };
  const runner = runnerGeneration();
  const debug = debugGeneration();
  const withoutMoveNotify = noMoveNotifyGenerations();
  const generations = [runner, ...testedGenerations().filter((generation) => generation !== runner)];
  return [
    // Each of npm run lint's checks (eslint, clang-format, typedoc) counts as one test.
    { name: 'lint', title: 'lint (eslint, clang-format on native/, typedoc validation)', kernels: [], run: () => hostScript('npm run lint', [join(root, 'scripts', 'lint.js')], join(scratch, 'lint.json')) },
    { name: 'host', title: 'host suite (no dma-buf needed)', kernels: [], run: () => hostMocha('.mocharc.host.json', join(scratch, 'host.json')) },
    ...generations.flatMap((generation): Suite[] => [
      {
        name: `guest-${generation}`,
        title: `guest suite on ${generation} (mocha inside the VM, base kernel, test module loaded)`,
        kernels: [[generation, 'base']],
        run: async () => guestMocha(generation, 'base', '.mocharc.guest.json', scratch, { DMABUF_SELFTESTS_DIR: await selftestsDir(generation), DMABUF_DBT_EFAULT: await efault() }),
      },
      // The kernel-module suite again with CONFIG_DMABUF_MOVE_NOTIFY off
      // where the option exists (7.x has none).
      ...(withoutMoveNotify.includes(generation)
        ? [{
            name: `module-${generation}-no-move-notify`,
            title: `kernel-module suite on ${generation} with MOVE_NOTIFY off`,
            kernels: [[generation, 'no-move-notify']] as const,
            run: async () => guestMocha(generation, 'no-move-notify', '.mocharc.module.json', scratch, { DMABUF_DBT_EFAULT: await efault() }),
          }]
        : []),
    ]),
    {
      name: 'runner',
      title: `runner suite (host tests that boot the VM: ${runner} base, ${debug} debug)`,
      kernels: [[runner, 'base'], [debug, 'debug']],
      run: async () => {
        const kernel = await kernelFor(runner, 'base');
        await kernelFor(debug, 'debug');
        return { kernel: kernel.release, ...(await hostMocha('.mocharc.runner.json', join(scratch, 'runner.json'), { DMABUF_KERNEL: runner })) };
      },
    },
    // Where kernel CI would run such code: under lockdep, KASAN,
    // DMABUF_DEBUG and kmemleak.
    {
      name: `module-${debug}-debug`,
      title: `kernel-module suite on the ${debug} debug kernel`,
      kernels: [[debug, 'debug']],
      run: async () => guestMocha(debug, 'debug', '.mocharc.module.json', scratch, { DMABUF_DBT_EFAULT: await efault() }),
    },
  ];
}

async function main(): Promise<number> {
  const runStarted = Date.now();
  const scratch = mkdtempSync(join(tmpdir(), 'dmabuf-tests-'));
  const outcomes: SuiteOutcome[] = [];
  try {
    // DMABUF_TEST_SUITES=host,guest-7.2 runs only the named suites (a local
    // narrowing, like DMABUF_TEST_KERNELS); the summary lists what ran.
    const only = process.env.DMABUF_TEST_SUITES?.split(',').map((name) => name.trim()).filter(Boolean);
    const all = suites(scratch);
    for (const name of only ?? []) if (!all.some((suite) => suite.name === name)) throw new Error(`DMABUF_TEST_SUITES names '${name}'; the suites are ${all.map((suite) => suite.name).join(', ')}`);
    const chosen = all.filter((candidate) => !only || only.includes(candidate.name));
    const needed = new Set(chosen.flatMap((suite) => suite.kernels.map(([generation, profile]) => `${generation} ${profile}`)));
    variantsOf = (generation, profile) => (profile === 'base' && needed.has(`${generation} no-move-notify`) ? ['no-move-notify'] : []);
    // Queued now, in the suites' order; a failure is reported by the suite
    // that needs the kernel.
    for (const suite of chosen) for (const [generation, profile] of suite.kernels) kernelFor(generation, profile).catch(() => undefined);
    for (const suite of chosen) {
      say(suite.title);
      const started = Date.now();
      let outcome: Outcome;
      try {
        outcome = await suite.run();
      } catch (error) {
        outcome = { notRun: messageOf(error) };
        process.stdout.write(`${suite.name}: could not run: ${outcome.notRun}\n`);
      }
      process.stdout.write(`${suite.name}: took ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
      outcomes.push({ name: suite.name, ...outcome });
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }

  process.stdout.write(`\nnpm test: ${outcomes.length} suites in ${((Date.now() - runStarted) / 60_000).toFixed(1)} min\n`);
  say('summary');
  const summary = summarizeSuites(outcomes);
  for (const line of summary.lines) process.stdout.write(`${line}\n`);
  return summary.ok ? 0 : 1;
}

main().then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    // Only the scratch directory's handling is left outside the suites; the
    // closing line still says the run failed, in the form CI reads.
    process.stderr.write(`npm test: ${messageOf(error)}\n`);
    process.stdout.write('verdict: FAILED (npm test itself failed, see above)\ntests: 0 passed, 1 failed, 0 skipped\n');
    process.exitCode = 1;
  },
);
