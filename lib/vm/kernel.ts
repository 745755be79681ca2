import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, createWriteStream, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { codedError } from '../errors';
import { invalidValue } from '../validate';
import { installHint } from './errors';
import { cacheRoot, packageRoot } from './paths';
import { runLogged } from './process';
import { defaultGeneration, fetchKernelSource, generationNames, isKernelGeneration, kernelGenerations, sourceTarballOf, type KernelGeneration } from './sources';

/**
 * Kernel profiles: each is a list of config fragments applied on top of
 * `allnoconfig`, after the fragment of the source's generation (see
 * `eraFragments`). `debug` adds the checkers kernel CI runs dma-buf code
 * under; `no-move-notify` exists only where the kernel has that option.
 */
export const kernelProfiles = {
  base: ['kernel-base.config'],
  debug: ['kernel-base.config', 'kernel-debug.config'],
  'no-move-notify': ['kernel-base.config', 'kernel-no-move-notify.config'],
} as const;

export type KernelProfile = keyof typeof kernelProfiles;

/**
 * Options that differ between generations, one fragment per era. A source
 * gets the first fragment whose every option its Kconfig declares: a feature
 * test, so a tree between the generations we test (or a driver developer's
 * own) gets the right one without a version table.
 */
export const eraFragments = ['kernel-6.x.config', 'kernel-7.x.config'] as const;

/** The profiles a generation offers: 7.x has no MOVE_NOTIFY option to turn off. */
export function profilesOf(generation: KernelGeneration): KernelProfile[] {
  return (Object.keys(kernelProfiles) as KernelProfile[]).filter((profile) => profile !== 'no-move-notify' || kernelGenerations[generation].hasMoveNotifyOption);
}

/** Which kernel to build: one of the tested generations, or a source of the user's own. */
export type KernelSource =
  | { generation: KernelGeneration; /** undefined until fetched */ path: string | undefined }
  | { generation: undefined; path: string };

/**
 * `kernel` is a generation name (`6.1`, `6.12`, `7.2`) or the path of a
 * kernel source tarball or tree. Without it: `DMABUF_KERNEL` (or its older name `DMABUF_KERNEL_SOURCE`), else the
 * default generation.
 */
export function resolveKernelSource(kernel?: string, env: NodeJS.ProcessEnv = process.env): KernelSource {
  const chosen = kernel ?? env.DMABUF_KERNEL ?? env.DMABUF_KERNEL_SOURCE ?? defaultGeneration;
  if (isKernelGeneration(chosen)) return { generation: chosen, path: sourceTarballOf(chosen, env) };
  if (/^\d+\.\d+$/.test(chosen)) throw invalidValue('kernel', `one of the tested generations (${generationNames.join(', ')}), or the path of a kernel source tarball or tree`, chosen);
  return { generation: undefined, path: resolve(chosen) };
}

const labelOf = (source: KernelSource) => source.generation ?? 'custom';

/** Bumped whenever the way a kernel is built changes, so old cache entries are not reused. */
const buildRecipeVersion = 4;

export interface BuiltKernel {
  /** The image QEMU boots. */
  bzImage: string;
  /** The configured build tree (pruned to what out-of-tree modules and the kernel's selftests need); absent for a user's own bzImage without one. */
  tree?: string;
  /** `uname -r` of the kernel, where known. */
  release?: string;
  /**
   * The kernel's own modules (vgem, vkms, vivid and what they need), installed
   * under `lib/modules/<release>` with their dependency map: load one in the
   * guest with `modprobe -d <modulesDir> <name>`. Absent for a user's own bzImage.
   */
  modulesDir?: string;
  profile?: KernelProfile | 'custom';
  /** The tested generation it was built from; undefined for a source or image of the user's own. */
  generation?: KernelGeneration;
  /** True when this call found the kernel in the cache instead of building it. */
  cached: boolean;
  /** How long its build took (wall and make's CPU), as recorded in the cache entry. */
  buildSeconds?: number;
  compileCpuSeconds?: number;
}

/** The steps of a kernel build, in order; `done` is reported once, at the end. */
export const kernelBuildPhases = ['unpack', 'configure', 'compile', 'headers', 'prune', 'done'] as const;
export type KernelBuildPhase = (typeof kernelBuildPhases)[number];

/** Where a kernel build is: data for a display to format (`describeBuildProgress` makes the plain line). */
export interface KernelBuildProgress {
  /** The cache entry being built. */
  key: string;
  phase: KernelBuildPhase;
  /** Objects compiled so far (make's CC, AS, LD and AR steps), from the compile phase on. */
  done?: number;
  /**
   * The objects the latest earlier build of the same generation (or source)
   * and profile compiled, read from its cache entry: the basis of a percent.
   * Undefined when no such build is left to compare with.
   */
  total?: number;
  elapsedMs: number;
  source: string;
  /** The full build output. */
  logPath: string;
}

export interface BuildKernelOptions {
  profile?: KernelProfile;
  /** A generation (`6.1`, `6.12`, `7.2`) or the path of a kernel source tarball or tree; see `resolveKernelSource`. */
  kernel?: string;
  /**
   * Progress for a person: a plain line, and for the build's own steps the
   * same as data (source-fetch lines come without). The full build output
   * goes to the log file.
   */
  onProgress?: (line: string, progress?: KernelBuildProgress) => void;
  /** How often the compile phase reports, in ms (default 15 s); every other phase reports when it starts. */
  progressIntervalMs?: number;
  jobs?: number;
  /** Niceness of the compile (0 to 19): a build running beside a VM that is being measured or tested yields to it. */
  nice?: number;
  /** Other profiles of the same source to build incrementally from this build's objects (see `buildKernel`). */
  variants?: readonly KernelProfile[];
}

export function formatElapsed(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
}

/**
 * The compile phase's percent, where there is an honest basis: undefined
 * without an earlier build to compare with, or once this build has compiled
 * more than that one did.
 */
export function buildPercent(progress: Pick<KernelBuildProgress, 'done' | 'total'>): number | undefined {
  const { done, total } = progress;
  if (done === undefined || total === undefined || total <= 0 || done > total) return undefined;
  return Math.floor((done / total) * 100);
}

/** The plain line for a progress report, as a log shows it. */
export function describeBuildProgress(progress: KernelBuildProgress): string {
  const head = `kernel ${progress.key}:`;
  const elapsed = formatElapsed(progress.elapsedMs);
  switch (progress.phase) {
    case 'unpack':
      return `${head} building from ${progress.source} (once; log: ${progress.logPath})`;
    case 'compile': {
      const percent = buildPercent(progress);
      const count = percent !== undefined ? `${progress.done}/${progress.total} objects, ${percent}%`
        : progress.total !== undefined ? `${progress.done} objects, more than the previous build's ${progress.total}`
        : `${progress.done} objects (no earlier build to compare with)`;
      return `${head} compile ${count} (${elapsed})`;
    }
    case 'done':
      return `${head} built in ${elapsed} (${progress.done} objects)`;
    default:
      return `${head} ${progress.phase} (${elapsed})`;
  }
}

/** make's line for a step that produces an object (` CC [M]  drivers/...`, ` LD  vmlinux`), the unit of the compile phase's count. */
const objectStep = /^\s+(CC|AS|LD|AR)\b/;

export function fragmentPaths(profile: KernelProfile): string[] {
  const names = Object.hasOwn(kernelProfiles, profile) ? kernelProfiles[profile] : undefined;
  if (!names) throw invalidValue('profile', `a kernel profile (${Object.keys(kernelProfiles).join(', ')})`, profile);
  return names.map((name) => join(packageRoot(), 'vm', name));
}

function compilerIdentity(): string {
  const result = spawnSync('gcc', ['--version'], { encoding: 'utf8' });
  if (result.error) throw codedError('ERR_DMABUF_VM_SETUP', 'gcc is not installed; it builds the test kernel.', installHint('gcc make flex bison bc libelf-dev libssl-dev'));
  return result.stdout.split('\n')[0] ?? '';
}

/**
 * The cache key names everything a built kernel depends on: the source, every
 * fragment's text (the era fragments included: which one applies is decided
 * from the source), the compiler (out-of-tree modules must match it) and this
 * recipe.
 */
export function cacheKeyOf(parts: { label: string; profile: string; sourceIdentity: string; fragments: readonly string[]; compiler: string }): string {
  const hash = createHash('sha256');
  hash.update(`recipe ${buildRecipeVersion}\n`);
  hash.update(`source ${parts.sourceIdentity}\n`);
  for (const fragment of parts.fragments) hash.update(`fragment ${fragment}\n`);
  hash.update(`cc ${parts.compiler}\n`);
  return `${parts.label}-${parts.profile}-${hash.digest('hex').slice(0, 16)}`;
}

/**
 * A Debian tarball is identified by its name and size (a new package version
 * changes the size), wherever it lies; a tree by its path and time.
 */
function sourceIdentity(path: string): string {
  const stat = statSync(path);
  return stat.isDirectory() ? `${path} ${stat.mtimeMs}` : `${basename(path)} ${stat.size}`;
}

export function kernelCacheKey(profile: KernelProfile, source: KernelSource & { path: string }): { key: string; dir: string } {
  const key = cacheKeyOf({
    label: labelOf(source),
    profile,
    sourceIdentity: sourceIdentity(source.path),
    fragments: [...fragmentPaths(profile), ...eraFragments.map((name) => join(packageRoot(), 'vm', name))].map((path) => readFileSync(path, 'utf8')),
    compiler: compilerIdentity(),
  });
  return { key, dir: join(cacheRoot(), 'kernels', key) };
}

/** Options a fragment asks for, as `NAME=value` with `n` for "is not set". */
export function parseFragment(text: string): Map<string, string> {
  const wanted = new Map<string, string>();
  for (const line of text.split('\n')) {
    const set = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line.trim());
    const unset = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line.trim());
    if (set) wanted.set(set[1]!, set[2]!);
    else if (unset) wanted.set(unset[1]!, 'n');
  }
  return wanted;
}

/**
 * Lists the fragment options that the resolved `.config` did not honour (a
 * dependency was missing) and, given the symbols the source's Kconfig
 * declares, those it does not know at all: an option that was renamed or
 * removed fails the build by name instead of drifting silently to "off".
 */
export function unmetOptions(wanted: Map<string, string>, dotConfig: string, declared?: ReadonlySet<string>): string[] {
  const got = parseFragment(dotConfig);
  const unmet: string[] = [];
  for (const [name, value] of wanted) {
    if (declared && !declared.has(name.slice('CONFIG_'.length))) {
      unmet.push(`${name}: this kernel's Kconfig does not declare it`);
      continue;
    }
    const actual = got.get(name) ?? 'n';
    if (actual !== value) unmet.push(`${name}: wanted ${value}, got ${actual}`);
  }
  return unmet;
}

/** Every symbol a source tree's Kconfig files declare (`config FOO`, `menuconfig FOO`). */
export function declaredSymbols(tree: string): Set<string> {
  const found = spawnSync('grep', ['-rhoE', '--include=Kconfig*', '^[[:space:]]*(menu)?config[[:space:]]+[A-Za-z0-9_]+', tree], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const symbols = new Set<string>();
  for (const line of found.stdout.split('\n')) {
    const name = /config\s+([A-Za-z0-9_]+)/.exec(line)?.[1];
    if (name) symbols.add(name);
  }
  return symbols;
}

/** The era fragment for a source: the first whose every option the tree declares. */
export function eraFragmentFor(declared: ReadonlySet<string>): { name: string; text: string } | undefined {
  for (const name of eraFragments) {
    const text = readFileSync(join(packageRoot(), 'vm', name), 'utf8');
    if ([...parseFragment(text).keys()].every((option) => declared.has(option.slice('CONFIG_'.length)))) return { name, text };
  }
  return undefined;
}

/**
 * ccache, when installed, shares objects between the profiles of one source:
 * the no-move-notify kernel differs from the base one in a handful of files,
 * so its build is mostly cache hits. Paths are made relative to each build's
 * own scratch tree so that two builds of the same source can hit each other.
 */
function compilerCache(): { makeArgs: string[]; env(tree: string): NodeJS.ProcessEnv } {
  if (spawnSync('sh', ['-c', 'command -v ccache']).status !== 0) return { makeArgs: [], env: () => ({}) };
  return {
    makeArgs: ['CC=ccache gcc'],
    env: (tree) => ({ CCACHE_DIR: join(cacheRoot(), 'ccache'), CCACHE_BASEDIR: tree, CCACHE_NOHASHDIR: '1', CCACHE_MAXSIZE: '3G', CCACHE_COMPILERCHECK: 'content' }),
  };
}

/** depmod lives in sbin, which a user's PATH often lacks. */
function depmodPath(): string | undefined {
  const found = spawnSync('sh', ['-c', 'PATH="$PATH:/usr/sbin:/sbin" command -v depmod'], { encoding: 'utf8' });
  return found.status === 0 ? found.stdout.trim() || undefined : undefined;
}

function requireBuildTools(): void {
  const missing = ['make', 'gcc', 'flex', 'bison', 'bc', 'tar', 'xz', 'perl'].filter(
    (tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0,
  );
  if (missing.length > 0) {
    throw codedError('ERR_DMABUF_VM_SETUP', `Tools needed to build the kernel are missing: ${missing.join(', ')}.`, installHint('make gcc flex bison bc xz-utils perl libelf-dev libssl-dev'));
  }
  if (!depmodPath()) throw codedError('ERR_DMABUF_VM_SETUP', 'depmod is missing (the kernel\'s modules are installed with their dependency map).', installHint('kmod'));
  if (!existsSync('/usr/include/libelf.h') && !existsSync('/usr/include/elfutils/libelf.h')) {
    throw codedError('ERR_DMABUF_VM_SETUP', 'libelf headers are missing (the x86-64 kernel build needs them for objtool).', installHint('libelf-dev'));
  }
}

function lastLines(path: string, count: number): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-count).join('\n');
  } catch {
    return '';
  }
}

function readRelease(tree: string): string | undefined {
  try {
    return readFileSync(join(tree, 'include', 'config', 'kernel.release'), 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * What a built tree keeps: the top-level build files, the configured headers
 * and scripts (out-of-tree modules), the x86 arch files, `tools/` (the
 * kernel's selftests and objtool), `drivers/dma-buf` (the in-kernel selftest
 * module is built from it) and `usr/include` (exported uapi headers). The
 * rest of the source, about 90% of it, no later run reads.
 */
const keptTopLevel = new Set(['Makefile', 'Kbuild', 'Kconfig', '.config', 'Module.symvers', 'include', 'arch', 'scripts', 'tools', 'drivers', 'usr']);

function pruneTree(tree: string): void {
  for (const name of readdirSync(tree)) if (!keptTopLevel.has(name)) rmSync(join(tree, name), { recursive: true, force: true });
  for (const name of readdirSync(join(tree, 'arch'))) if (name !== 'x86') rmSync(join(tree, 'arch', name), { recursive: true, force: true });
  for (const name of readdirSync(join(tree, 'drivers'))) if (name !== 'dma-buf') rmSync(join(tree, 'drivers', name), { recursive: true, force: true });
}

/** What the cache records about a built kernel (`listCacheEntries`). */
export interface CacheEntryInfo {
  release: string;
  profile: KernelProfile;
  generation?: KernelGeneration;
  source: string;
  era: string;
  builtAt: string;
  /** Wall time of the build, and the CPU time make and its compilers used (independent of the machine's other load). */
  buildSeconds?: number;
  compileCpuSeconds?: number;
  /** Objects the build compiled: the next build's basis for a percent. Entries from before it was recorded lack it. */
  objects?: number;
}

/**
 * The objects the latest earlier build of the same generation (or, for a
 * source of the user's own, the same path) and profile compiled. It is still
 * there while a new build runs: superseded entries are removed only once the
 * new one is complete. An entry that predates the `objects` field is counted
 * from its build log, which is the same make output.
 */
export function earlierBuildObjects(key: string, profile: KernelProfile, source: KernelSource & { path: string }): number | undefined {
  const kernels = join(cacheRoot(), 'kernels');
  const prefix = key.slice(0, key.lastIndexOf('-') + 1);
  if (!existsSync(kernels)) return undefined;
  const earlier: Array<{ name: string; info: CacheEntryInfo }> = [];
  for (const name of readdirSync(kernels)) {
    if (!name.startsWith(prefix) || name === key || name.includes('.partial-') || name.endsWith('.build.log')) continue;
    try {
      const info = JSON.parse(readFileSync(join(kernels, name, 'kernel.json'), 'utf8')) as CacheEntryInfo;
      if (info.profile === profile && (source.generation ? info.generation === source.generation : info.source === source.path)) earlier.push({ name, info });
    } catch {
      // An entry without a readable kernel.json never completed: no basis.
    }
  }
  earlier.sort((a, b) => b.info.builtAt.localeCompare(a.info.builtAt));
  for (const { name, info } of earlier) {
    if (typeof info.objects === 'number' && info.objects > 0) return info.objects;
    try {
      const counted = readFileSync(join(kernels, `${name}.build.log`), 'utf8').split('\n').filter((line) => objectStep.test(line)).length;
      if (counted > 0) return counted;
    } catch {
      // No log either: try an older entry.
    }
  }
  return undefined;
}

/** Returns the cached kernel for a profile and source, or undefined when it has not been built. */
export function findCachedKernel(profile: KernelProfile = 'base', kernel?: string): BuiltKernel | undefined {
  const source = resolveKernelSource(kernel);
  if (source.path === undefined || !existsSync(source.path)) return undefined;
  const { dir } = kernelCacheKey(profile, source as KernelSource & { path: string });
  const bzImage = join(dir, 'bzImage');
  if (!existsSync(join(dir, 'kernel.json')) || !existsSync(bzImage)) return undefined;
  const info = JSON.parse(readFileSync(join(dir, 'kernel.json'), 'utf8')) as CacheEntryInfo;
  const modulesDir = join(dir, 'modules');
  return { bzImage, tree: join(dir, 'tree'), modulesDir: existsSync(modulesDir) ? modulesDir : undefined, release: info.release, profile, generation: source.generation, cached: true, buildSeconds: info.buildSeconds, compileCpuSeconds: info.compileCpuSeconds };
}

/** Bytes under a path, without following links. */
export function diskUsage(path: string): number {
  let total = 0;
  const visit = (entry: string) => {
    const stat = lstatSync(entry, { throwIfNoEntry: false });
    if (!stat) return;
    total += stat.blocks * 512;
    if (stat.isDirectory()) for (const name of readdirSync(entry)) visit(join(entry, name));
  };
  visit(path);
  return total;
}

/** One kernel being built: its cache entry, scratch tree, log and progress. */
interface BuildStep {
  key: string;
  dir: string;
  scratch: string;
  tree: string;
  logPath: string;
  log: NodeJS.WritableStream & { end(): void };
  started: number;
  source: string;
  /** The earlier build's object count, the basis of a percent (see `earlierBuildObjects`). */
  total: number | undefined;
  onProgress: NonNullable<BuildKernelOptions['onProgress']>;
}

function startStep(profile: KernelProfile, source: KernelSource & { path: string }, total: number | undefined, onProgress: BuildStep['onProgress']): BuildStep {
  const { key, dir } = kernelCacheKey(profile, source);
  const scratch = `${dir}.partial-${process.pid}`;
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const logPath = `${dir}.build.log`;
  return { key, dir, scratch, tree: join(scratch, 'tree'), logPath, log: createWriteStream(logPath), started: Date.now(), source: source.path, total, onProgress };
}

function report(step: BuildStep, phase: KernelBuildPhase, done?: number): void {
  const state: KernelBuildProgress = { key: step.key, phase, ...(done === undefined ? {} : { done }), ...(step.total === undefined ? {} : { total: step.total }), elapsedMs: Date.now() - step.started, source: step.source, logPath: step.logPath };
  step.onProgress(describeBuildProgress(state), state);
}

function failStep(step: BuildStep, what: string): never {
  step.log.end();
  throw codedError('ERR_DMABUF_VM_SETUP', `Kernel build failed: ${what} (log: ${step.logPath}).\n${lastLines(step.logPath, 25)}`, `Read ${step.logPath}; fix the cause and run again (the partial build in ${step.scratch} is removed).`, step.logPath);
}

/** `make allnoconfig` with the era's and the profile's fragments; an option they ask for that the result lacks fails the build by name. */
async function configureStep(step: BuildStep, profile: KernelProfile, declared: ReadonlySet<string>): Promise<string> {
  report(step, 'configure');
  const era = eraFragmentFor(declared);
  if (!era) failStep(step, `no era fragment fits this source: each of ${eraFragments.join(', ')} names an option its Kconfig does not declare`);
  const merged = [era!.text, ...fragmentPaths(profile).map((fragment) => readFileSync(fragment, 'utf8'))].join('\n');
  const fragmentFile = join(step.scratch, 'fragment.config');
  writeFileSync(fragmentFile, merged);
  if ((await runLogged('make', ['allnoconfig', `KCONFIG_ALLCONFIG=${fragmentFile}`], step.tree, step.log)) !== 0) failStep(step, 'make allnoconfig');
  const unmet = unmetOptions(parseFragment(merged), readFileSync(join(step.tree, '.config'), 'utf8'), declared);
  if (unmet.length > 0) failStep(step, `the config fragments (${era!.name}, ${kernelProfiles[profile].join(', ')}) did not apply:\n  ${unmet.join('\n  ')}`);
  return era!.name;
}

/**
 * make, with the objects it compiled and the CPU time it and every compiler
 * it ran used: that figure, unlike the wall time, does not depend on what
 * else the machine was doing. The shell reads its own stat after make has
 * been reaped (the children's user and system ticks, fields 16 and 17).
 */
async function compileStep(step: BuildStep, options: { jobs: number; nice: number; intervalMs: number }): Promise<{ objects: number; cpuSeconds: number | undefined }> {
  let compiled = 0;
  let cpuTicks: number | undefined;
  let lastReport = Date.now();
  const compiler = compilerCache();
  const makeArgs = [`-j${options.jobs}`, ...compiler.makeArgs, 'bzImage', 'modules'];
  report(step, 'compile', compiled);
  const status = await runLogged('sh', ['-c', 'n=$1; shift; nice -n "$n" make "$@"; status=$?; echo "dmabuf-build-cpu $(cut -d" " -f16,17 /proc/$$/stat)"; exit $status', 'sh', String(options.nice), ...makeArgs], step.tree, step.log, (line) => {
    if (objectStep.test(line)) compiled += 1;
    const cpu = /^dmabuf-build-cpu (\d+) (\d+)$/.exec(line);
    if (cpu) cpuTicks = Number(cpu[1]) + Number(cpu[2]);
    if (Date.now() - lastReport >= options.intervalMs) {
      lastReport = Date.now();
      report(step, 'compile', compiled);
    }
  }, { ...process.env, ...compiler.env(step.tree) });
  if (status !== 0) failStep(step, `make exited with status ${status}`);
  copyFileSync(join(step.tree, 'arch', 'x86', 'boot', 'bzImage'), join(step.scratch, 'bzImage'));
  const ticksPerSecond = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim());
  return { objects: compiled, cpuSeconds: cpuTicks === undefined || !(ticksPerSecond > 0) ? undefined : cpuTicks / ticksPerSecond };
}

/** Prunes the tree to what later runs need and renames the entry into place. */
async function finishStep(step: BuildStep, info: Omit<CacheEntryInfo, 'release' | 'builtAt' | 'buildSeconds'>, generation: KernelGeneration | undefined): Promise<void> {
  const release = readRelease(step.tree) ?? '';
  // `make clean` keeps the config, headers, scripts and Module.symvers that
  // out-of-tree modules build against; the uapi headers are exported now,
  // while the whole source is still there.
  // The in-tree modules are installed first: the clean deletes every .ko and
  // the prune deletes their sources, and vkms or vivid need about twenty
  // other modules that only the whole tree can rebuild.
  report(step, 'headers', info.objects);
  if ((await runLogged('make', ['modules_install', `INSTALL_MOD_PATH=${join(step.scratch, 'modules')}`, 'INSTALL_MOD_STRIP=1', `DEPMOD=${depmodPath() ?? 'depmod'}`], step.tree, step.log)) !== 0) failStep(step, 'make modules_install');
  if ((await runLogged('make', ['clean'], step.tree, step.log)) !== 0) failStep(step, 'make clean');
  if ((await runLogged('make', ['headers'], step.tree, step.log)) !== 0) failStep(step, 'make headers');
  report(step, 'prune', info.objects);
  pruneTree(step.tree);
  step.log.end();
  const entry: CacheEntryInfo = { ...info, release, builtAt: new Date().toISOString(), buildSeconds: Math.round((Date.now() - step.started) / 1000) };
  writeFileSync(join(step.scratch, 'kernel.json'), `${JSON.stringify(entry, null, 2)}\n`);
  rmSync(step.dir, { recursive: true, force: true });
  renameSync(step.scratch, step.dir);
  if (generation) removeSupersededEntries(step.key);
  report(step, 'done', info.objects);
}

/**
 * Builds the kernel for a profile unless the cache has it, fetching a
 * generation's source first when needed. The build happens in a scratch
 * directory beside the final one and is renamed into place only when
 * complete, so an interrupted build never leaves a half entry behind. A newer
 * entry of the same generation and profile replaces the older ones.
 *
 * `variants` are other profiles of the same source to build from this
 * build's objects, before its tree is pruned: the no-move-notify kernel
 * differs from the base one in a handful of files, so its build is a copy of
 * the tree, a new config and an incremental make (Kbuild rebuilds exactly
 * the objects that depend on the options that changed) instead of a second
 * build from nothing. A variant already cached is left alone, and none is
 * built when this profile's kernel is found in the cache.
 */
export async function buildKernel(options: BuildKernelOptions = {}): Promise<BuiltKernel> {
  const profile = options.profile ?? 'base';
  fragmentPaths(profile);
  const progress = options.onProgress ?? (() => {});
  const resolved = resolveKernelSource(options.kernel);
  for (const wanted of [profile, ...(options.variants ?? [])]) {
    fragmentPaths(wanted);
    if (resolved.generation && !profilesOf(resolved.generation).includes(wanted)) {
      throw codedError('ERR_DMABUF_VM_SETUP', `Kernel ${resolved.generation} has no '${wanted}' profile.`, `Its profiles: ${profilesOf(resolved.generation).join(', ')} (7.x removed CONFIG_DMABUF_MOVE_NOTIFY: importers are always told to invalidate).`);
    }
  }
  requireBuildTools();
  const path = resolved.path ?? (await fetchKernelSource(resolved.generation!, progress));
  if (!existsSync(path)) throw codedError('ERR_DMABUF_VM_SETUP', `Kernel source ${path} not found.`, `Pass a kernel source tarball or tree, or one of the tested generations: --kernel ${generationNames.join('|')}.`);
  const source = { ...resolved, path } as KernelSource & { path: string };
  const which = source.generation ?? path;
  const variants = [...new Set(options.variants ?? [])].filter((variant) => variant !== profile && !findCachedKernel(variant, which));
  // A cached kernel's objects are gone with its pruned tree: its variants
  // are then built on their own, when asked for.
  const cached = findCachedKernel(profile, which);
  if (cached) return cached;

  const make = { jobs: options.jobs ?? cpus().length + 1, nice: options.nice ?? 0, intervalMs: options.progressIntervalMs ?? 15_000 };
  if (!Number.isInteger(make.nice) || make.nice < 0 || make.nice > 19) throw codedError('ERR_OUT_OF_RANGE', 'options.nice', 'an integer from 0 to 19', options.nice);
  const steps: BuildStep[] = [];
  const { key, dir } = kernelCacheKey(profile, source);
  // The tree is compiled in a work directory, and a variant's make runs in
  // the same directory after it: objtool's build records absolute paths, so
  // a compiled tree copied elsewhere rebuilds objtool and then every object
  // objtool checks (1237 of 6.1's 1559 objects, measured). Each entry gets
  // its tree by copy (the base, when variants follow) or by rename (the last).
  const work = `${dir}.work-${process.pid}`;
  const workTree = join(work, 'tree');
  const intoEntry = async (step: BuildStep, keepWork: boolean) => {
    const entryTree = join(step.scratch, 'tree');
    if (!keepWork) renameSync(workTree, entryTree);
    else if ((await runLogged('cp', ['-a', workTree, entryTree], step.scratch, step.log)) !== 0) failStep(step, 'copying the compiled tree into its entry');
    step.tree = entryTree;
  };
  try {
    rmSync(work, { recursive: true, force: true });
    mkdirSync(workTree, { recursive: true });
    const step = startStep(profile, source, earlierBuildObjects(key, profile, source), progress);
    step.tree = workTree;
    steps.push(step);
    report(step, 'unpack');
    if (statSync(path).isDirectory()) {
      if ((await runLogged('cp', ['-a', `${path}/.`, step.tree], step.tree, step.log)) !== 0) failStep(step, 'copying the source tree');
    } else if ((await runLogged('tar', ['-xf', path, '--strip-components=1', '-C', step.tree], step.tree, step.log)) !== 0) {
      failStep(step, 'unpacking the source');
    }
    const declared = declaredSymbols(step.tree);
    const era = await configureStep(step, profile, declared);
    const compiled = await compileStep(step, make);
    // The base entry is in the cache before a variant is tried: a variant
    // that fails to build never costs the kernel it derives from.
    await intoEntry(step, variants.length > 0);
    await finishStep(step, { profile, generation: source.generation, source: path, era, objects: compiled.objects, compileCpuSeconds: compiled.cpuSeconds }, source.generation);
    steps.shift();
    for (const [index, variant] of variants.entries()) {
      // An incremental build compiles a few objects: a from-nothing count is no basis for its percent.
      const derived = startStep(variant, source, undefined, progress);
      derived.tree = workTree;
      progress(`kernel ${derived.key}: building from ${step.key}'s objects (a new config, an incremental make)`);
      try {
        const variantEra = await configureStep(derived, variant, declared);
        const variantCompiled = await compileStep(derived, make);
        await intoEntry(derived, index < variants.length - 1);
        await finishStep(derived, { profile: variant, generation: source.generation, source: path, era: variantEra, objects: variantCompiled.objects, compileCpuSeconds: variantCompiled.cpuSeconds }, source.generation);
      } catch (error) {
        // Not this call's kernel: asking for the variant itself builds it
        // from nothing and reports why it fails there.
        rmSync(derived.scratch, { recursive: true, force: true });
        progress(`kernel ${derived.key}: not built from ${step.key}'s objects: ${error instanceof Error ? error.message : String(error)}`);
        break;
      }
    }
  } catch (error) {
    for (const step of steps) rmSync(step.scratch, { recursive: true, force: true });
    throw error;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const built = findCachedKernel(profile, which);
  if (!built) throw codedError('ERR_DMABUF_VM_SETUP', `Kernel build finished but ${dir} holds no bzImage.`, `Remove ${dir} and run again.`);
  return { ...built, cached: false };
}

/**
 * Removes the older builds of the same generation and profile (a previous
 * recipe, fragment or package version): no later run can ask for them. A
 * custom source's builds are left alone, since several trees may be in use.
 */
function removeSupersededEntries(key: string): void {
  const prefix = key.slice(0, key.lastIndexOf('-') + 1);
  const kernels = join(cacheRoot(), 'kernels');
  for (const name of readdirSync(kernels)) {
    if (!name.startsWith(prefix) || name.startsWith(key) || name.includes('.partial-')) continue;
    rmSync(join(kernels, name), { recursive: true, force: true });
  }
}

/** Every cache entry with its size, for `vm info`. */
export function listCacheEntries(): Array<{ key: string; bytes: number; info?: CacheEntryInfo }> {
  const kernels = join(cacheRoot(), 'kernels');
  if (!existsSync(kernels)) return [];
  return readdirSync(kernels, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && !entry.name.includes('.partial-'))
    .map((entry) => {
      const infoPath = join(kernels, entry.name, 'kernel.json');
      return { key: entry.name, bytes: diskUsage(join(kernels, entry.name)), info: existsSync(infoPath) ? (JSON.parse(readFileSync(infoPath, 'utf8')) as CacheEntryInfo) : undefined };
    });
}

/**
 * The kernel's exported uapi headers (`make headers` in the build tree),
 * made on first use: userspace built against them sees exactly the
 * interfaces of the kernel the VM boots.
 */
export async function kernelHeaders(kernel: BuiltKernel): Promise<string> {
  if (!kernel.tree) throw codedError('ERR_DMABUF_VM_SETUP', 'This kernel has no build tree to export headers from.', 'Use the runner\'s own kernel, or pass --kernel-tree.');
  const include = join(kernel.tree, 'usr', 'include');
  if (existsSync(join(include, 'linux', 'dma-buf.h'))) return include;
  const logPath = join(kernel.tree, '..', 'headers.log');
  const log = createWriteStream(logPath);
  const status = await runLogged('make', ['headers'], kernel.tree, log);
  log.end();
  if (status !== 0) throw codedError('ERR_DMABUF_VM_SETUP', `make headers failed in ${kernel.tree} (log: ${logPath}).\n${lastLines(logPath, 20)}`, `Read ${logPath}.`, logPath);
  return include;
}

/** True for an x86 boot image (a bzImage carries "HdrS" at 0x202), as opposed to a source tarball or tree. */
export function isKernelImage(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    const fd = openSync(path, 'r');
    try {
      const magic = Buffer.alloc(4);
      return readSync(fd, magic, 0, 4, 0x202) === 4 && magic.toString('latin1') === 'HdrS';
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}
