import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { codedError } from '../errors';
import * as validate from '../validate';
import { installHint } from './errors';
import { moduleLoadFailedStatus, renderJobScript } from './job';
import { buildKernel, isKernelImage, type BuiltKernel, type KernelProfile } from './kernel';
import { describeProblems, scanKernelLog, type KernelProblem } from './log-scan';
import { prepareModules, type ModuleSpec } from './modules';
import { guestInitScript } from './paths';

export interface VmRunOptions {
  /** An argv run as is, or a string run by `sh -c`, in the guest. */
  command: string | readonly string[];
  /** Out-of-tree modules to build (from source) and load before the command. */
  modules?: readonly ModuleSpec[];
  /** Wall-clock limit for the whole boot, command and power-off; QEMU is killed past it. Default 10 minutes. */
  timeoutMs?: number;
  memoryMiB?: number;
  cpus?: number;
  /** Working directory in the guest; the host's root is the guest's, so host paths work. Default: process.cwd(). */
  cwd?: string;
  /** Extra environment for the command. PATH comes from the host; HOME and TMPDIR point at guest scratch. */
  env?: Record<string, string>;
  profile?: KernelProfile;
  /**
   * Which kernel: a tested generation (`6.1`, `6.12`, `7.2`; default 6.12),
   * the path of a kernel source tarball or tree (built with the runner's
   * fragments and cached), or the path of a bzImage of your own (with
   * `kernelTree` to build modules against).
   */
  kernel?: string;
  kernelTree?: string;
  /** `tcg` (default, works everywhere) or `kvm`. */
  accel?: 'tcg' | 'kvm';
  /** Receives the command's output as it happens (the result holds all of it too). */
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  /** Kernel-build progress lines. */
  onProgress?: (line: string) => void;
  /** Keep the results directory (console log, dmesg, job script) for inspection. */
  keepResults?: boolean;
  qemuBinary?: string;
}

export type VmFailure = 'exit-status' | 'timeout' | 'kernel-problem' | 'no-exit-status' | 'module-load';

export interface VmRunResult {
  /** True when the command exited 0, in time, and the kernel log is clean. */
  ok: boolean;
  /** Every reason the run failed, in the order found. */
  failures: VmFailure[];
  /** The command's exit status, or null when the guest never reported one (timeout, panic). */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** Everything the kernel printed on the serial console. */
  console: string;
  /** Lines of the kernel log that show a panic, oops, WARN, BUG, lockdep, KASAN, kmemleak or DMA-API report. */
  kernelProblems: KernelProblem[];
  /**
   * /sys/kernel/debug/kmemleak as read after the job (scanned twice, see
   * vm/guest-init.sh): '' when it found no leak, undefined on a kernel
   * without kmemleak. A report also fails the run through the log scan.
   */
  kmemleak?: string;
  timedOut: boolean;
  durationMs: number;
  kernel: BuiltKernel;
  /** Where the console log, dmesg and job script are kept, when `keepResults` was set. */
  resultsDir?: string;
  /** A paragraph for a person: what went wrong, with the offending kernel lines. */
  summary: string;
}

const defaultTimeoutMs = 10 * 60_000;

function findQemu(binary: string): string {
  const found = spawnSync('sh', ['-c', `command -v ${binary}`], { encoding: 'utf8' });
  if (found.status !== 0) throw codedError('ERR_DMABUF_VM_SETUP', `QEMU (${binary}) is not installed; the runner boots its kernel with it.`, installHint('qemu-system-x86'));
  return found.stdout.trim();
}

/** Resolves the kernel a run boots: the user's own image, or one the runner builds (once, cached) from a generation or a source. */
export async function resolveKernel(options: Pick<VmRunOptions, 'kernel' | 'kernelTree' | 'profile' | 'onProgress'>): Promise<BuiltKernel> {
  const image = options.kernel !== undefined && isKernelImage(options.kernel) ? options.kernel : options.kernel === undefined ? process.env.DMABUF_VM_KERNEL : undefined;
  if (image) {
    const bzImage = resolve(image);
    if (!existsSync(bzImage)) throw codedError('ERR_DMABUF_VM_SETUP', `Kernel image ${bzImage} does not exist.`, 'Pass the path of a bzImage, or leave --kernel out to use the runner\'s own kernel.');
    const tree = options.kernelTree ?? process.env.DMABUF_VM_KERNEL_TREE;
    return { bzImage, tree: tree ? resolve(tree) : undefined, profile: 'custom', cached: true };
  }
  return buildKernel({ kernel: options.kernel, profile: options.profile ?? 'base', onProgress: options.onProgress });
}

function treeFile(kernel: BuiltKernel, path: string): string {
  if (!kernel.tree) return '';
  try {
    return readFileSync(join(kernel.tree, path), 'utf8');
  } catch {
    return '';
  }
}

const kernelHasKunit = (kernel: BuiltKernel) => /^CONFIG_KUNIT=[ym]$/m.test(treeFile(kernel, '.config'));

/**
 * A kernel whose kmemleak cannot see leaked slab objects unless slab
 * debugging is on: SLUB with per-CPU sheaves (7.x) hands an object out of an
 * array and leaves its pointer in that array, which kmemleak scans, so a
 * leaked object still looks referenced. Caches with debug flags get no
 * sheaves; 'U' (store the allocating and freeing call sites) is the
 * cheapest such flag.
 */
const kmemleakNeedsSlabDebug = (kernel: BuiltKernel) =>
  /^CONFIG_DEBUG_KMEMLEAK=y$/m.test(treeFile(kernel, '.config')) && /^CONFIG_SLUB_DEBUG=y$/m.test(treeFile(kernel, '.config')) && /\bsheaf_capacity\b/.test(treeFile(kernel, 'include/linux/slab.h'));

/** Follows a file that another process appends to, handing new bytes to a callback. */
function follow(path: string, onData: (chunk: Buffer) => void): { poll(): void } {
  let offset = 0;
  return {
    poll() {
      if (!existsSync(path)) return;
      const fd = openSync(path, 'r');
      try {
        const size = statSync(path).size;
        while (offset < size) {
          const chunk = Buffer.alloc(Math.min(size - offset, 1 << 16));
          const read = readSync(fd, chunk, 0, chunk.length, offset);
          if (read <= 0) break;
          offset += read;
          onData(chunk.subarray(0, read));
        }
      } finally {
        closeSync(fd);
      }
    },
  };
}

function readIfExists(path: string): string {
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
}

/**
 * Boots the VM, runs one command in it, and reports what happened. Resolves
 * for anything the guest did (failed command, timeout, kernel splat: see
 * `ok` and `failures`); rejects only when the host cannot run the VM at all.
 */
export async function run(options: VmRunOptions): Promise<VmRunResult> {
  const { command } = options;
  if (typeof command !== 'string') {
    validate.array('options.command', command).forEach((word, index) => validate.string(`options.command[${index}]`, word));
    if (command.length === 0) throw validate.invalidValue('options.command', 'a string or a non-empty array of strings', command);
  }
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  const memoryMiB = options.memoryMiB ?? 2048;
  const cpus = options.cpus ?? 2;
  for (const [name, value, min] of [['timeoutMs', timeoutMs, 1], ['memoryMiB', memoryMiB, 256], ['cpus', cpus, 1]] as const) {
    validate.integer(`options.${name}`, value, min);
  }
  const qemu = findQemu(options.qemuBinary ?? 'qemu-system-x86_64');
  const kernel = await resolveKernel(options);
  const modules = await prepareModules(options.modules ?? [], kernel);

  const resultsDir = mkdtempSync(join(tmpdir(), 'dmabuf-vm-'));
  const guestResults = '/run/results';
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: '/run/home',
    TMPDIR: '/run/tmp',
    LANG: 'C.UTF-8',
    DMABUF_IN_VM: '1',
    DMABUF_VM_RESULTS: guestResults,
    // The kernel's own modules (vgem, vkms, vivid), for `modprobe -d`.
    ...(kernel.modulesDir ? { DMABUF_KERNEL_MODULES: kernel.modulesDir } : {}),
    ...(process.env.CI ? { CI: process.env.CI } : {}),
    ...options.env,
  };
  writeFileSync(join(resultsDir, 'job.sh'), renderJobScript({ command, cwd: resolve(options.cwd ?? process.cwd()), env, modules, resultsDir: guestResults }));
  const consolePath = join(resultsDir, 'console.log');

  const cmdline = [
    'console=ttyS0',
    'root=hostroot',
    'rootfstype=9p',
    'rootflags=trans=virtio,version=9p2000.L,cache=loose,msize=262144',
    'ro',
    `init=${guestInitScript()}`,
    'panic=-1',
    'oops=panic',
    'printk.devkmsg=on',
    // RCU's stall warning fires when a CPU has not passed a quiescent state
    // for 21 s of wall time: under TCG on a busy host (the debug kernel's
    // KASAN, lockdep and kmemleak make it ~50x slower than a real CPU), boot
    // and insmod alone were seen to cross that. 120 s still catches a CPU
    // that really spins; under KVM the kernel's own default stands.
    ...((options.accel ?? 'tcg') === 'tcg' ? ['rcupdate.rcu_cpu_stall_timeout=120'] : []),
    // allnoconfig leaves KUNIT_DEFAULT_ENABLED and KUNIT_AUTORUN_ENABLED off,
    // and a KUnit suite loaded as a module then prints "kunit: disabled" or
    // runs nothing; a test VM wants the suites it loads to run.
    ...(kernelHasKunit(kernel) ? ['kunit.enable=1', 'kunit.autorun=1'] : []),
    ...(kmemleakNeedsSlabDebug(kernel) ? ['slab_debug=U'] : []),
  ].join(' ');
  const args = [
    // q35, not QEMU's default i440fx: i440fx's ACPI _PRT builds the PCI
    // interrupt routing table in an AML While loop, which under TCG with the
    // debug kernel's checkers ran past ACPICA's 30 s loop timeout
    // ("AE_AML_LOOP_TIMEOUT", "PCI INT A: no GSI"): virtio-9p never got an
    // interrupt and the root mount waited forever (7.2 debug every boot, 6.1
    // debug under load). q35's table is a static package; a 6.12 base kernel
    // reached init in 1.0 s on q35 against 5.9 s on i440fx.
    '-machine', 'q35',
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    '-accel', options.accel ?? 'tcg',
    '-cpu', 'max',
    '-smp', String(cpus),
    '-m', `${memoryMiB}M`,
    '-kernel', kernel.bzImage,
    '-append', cmdline,
    '-serial', `file:${consolePath}`,
    '-monitor', 'none',
    '-fsdev', 'local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap',
    '-device', 'virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot',
    '-fsdev', `local,id=results,path=${resultsDir},security_model=none`,
    '-device', 'virtio-9p-pci,fsdev=results,mount_tag=results',
  ];

  const started = Date.now();
  const stdoutFollower = follow(join(resultsDir, 'stdout'), (chunk) => options.onStdout?.(chunk));
  const stderrFollower = follow(join(resultsDir, 'stderr'), (chunk) => options.onStderr?.(chunk));
  let timedOut = false;
  const qemuOutput: Buffer[] = [];
  const qemuStatus = await new Promise<number | null>((resolvePromise, reject) => {
    const child = spawn(qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (chunk: Buffer) => qemuOutput.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => qemuOutput.push(chunk));
    const ticker = setInterval(() => {
      stdoutFollower.poll();
      stderrFollower.poll();
    }, 200);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (error) => {
      clearInterval(ticker);
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code) => {
      clearInterval(ticker);
      clearTimeout(timer);
      resolvePromise(code);
    });
  });
  stdoutFollower.poll();
  stderrFollower.poll();
  const durationMs = Date.now() - started;

  const consoleLog = readIfExists(consolePath);
  const exitText = readIfExists(join(resultsDir, 'exit-status')).trim();
  const exitCode = exitText === '' ? null : Number(exitText);
  if (exitCode === null && !timedOut && consoleLog === '') {
    rmSync(resultsDir, { recursive: true, force: true });
    throw codedError('ERR_DMABUF_VM_SETUP', `QEMU exited with status ${qemuStatus} before the kernel printed anything:\n${Buffer.concat(qemuOutput).toString('utf8').trim()}`, 'Check the QEMU installation and the kernel image; `dmabuf vm run --keep-results` keeps the logs.');
  }
  const kernelProblems = scanKernelLog(consoleLog);
  const moduleError = readIfExists(join(resultsDir, 'module-error')).trim();

  const failures: VmFailure[] = [];
  const explain: string[] = [];
  if (timedOut) {
    failures.push('timeout');
    explain.push(`The VM did not finish within ${timeoutMs} ms; QEMU was killed.`);
  }
  if (moduleError && exitCode === moduleLoadFailedStatus) {
    failures.push('module-load');
    explain.push(`${moduleError} (see the kernel log below).`);
  } else if (exitCode !== null && exitCode !== 0) {
    failures.push('exit-status');
    explain.push(`The command exited with status ${exitCode}.`);
  }
  if (exitCode === null && !timedOut) {
    failures.push('no-exit-status');
    explain.push('The guest stopped without reporting an exit status (a kernel panic, or the command killed init).');
  }
  if (kernelProblems.length > 0) {
    failures.push('kernel-problem');
    explain.push(`The kernel log shows ${kernelProblems.length} problem line(s):\n${describeProblems(consoleLog, kernelProblems)}`);
  }
  if (exitCode === null) explain.push(`Last console lines:\n${consoleLog.trimEnd().split('\n').slice(-20).map((line) => `  | ${line}`).join('\n')}`);

  const result: VmRunResult = {
    ok: failures.length === 0,
    failures,
    exitCode,
    stdout: readIfExists(join(resultsDir, 'stdout')),
    stderr: readIfExists(join(resultsDir, 'stderr')),
    console: consoleLog,
    kernelProblems,
    ...(existsSync(join(resultsDir, 'kmemleak')) ? { kmemleak: readFileSync(join(resultsDir, 'kmemleak'), 'utf8') } : {}),
    timedOut,
    durationMs,
    kernel,
    summary: explain.join('\n'),
  };
  if (options.keepResults) result.resultsDir = resultsDir;
  else rmSync(resultsDir, { recursive: true, force: true });
  return result;
}
