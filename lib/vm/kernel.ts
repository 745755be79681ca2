import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { VmSetupError, installHint } from './errors';
import { cacheRoot, packageRoot } from './paths';

/**
 * Kernel profiles: each is a list of config fragments applied on top of
 * `allnoconfig`. `debug` adds the checkers kernel CI runs dma-buf code under.
 */
export const kernelProfiles = {
  base: ['kernel-base.config'],
  debug: ['kernel-base.config', 'kernel-debug.config'],
  'no-move-notify': ['kernel-base.config', 'kernel-no-move-notify.config'],
} as const;

export type KernelProfile = keyof typeof kernelProfiles;

export const preferredKernelSource = '/usr/src/linux-source-6.1.tar.xz';

/**
 * The kernel source to build: `DMABUF_KERNEL_SOURCE`, else Debian's 6.1 (what
 * the fragments are written and tested for), else the newest `linux-source-*`
 * tarball under /usr/src in Debian's or Ubuntu's layout. An option a different
 * version lacks is reported by name when the config is checked.
 */
export function defaultKernelSource(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DMABUF_KERNEL_SOURCE) return env.DMABUF_KERNEL_SOURCE;
  if (existsSync(preferredKernelSource)) return preferredKernelSource;
  const candidates: string[] = [];
  const tarball = /^linux-source-[\d.]+\.tar\.(xz|bz2|gz)$/;
  try {
    for (const entry of readdirSync('/usr/src', { withFileTypes: true })) {
      if (entry.isFile() && tarball.test(entry.name)) candidates.push(join('/usr/src', entry.name));
      if (entry.isDirectory() && entry.name.startsWith('linux-source-')) {
        for (const inner of readdirSync(join('/usr/src', entry.name))) if (tarball.test(inner)) candidates.push(join('/usr/src', entry.name, inner));
      }
    }
  } catch {
    // No /usr/src: fall through to the preferred path, whose absence is reported with an install hint.
  }
  const version = (path: string) => (/linux-source-([\d.]+)\.tar/.exec(path)?.[1] ?? '0').split('.').map(Number);
  candidates.sort((a, b) => {
    const [va, vb] = [version(a), version(b)];
    for (let index = 0; index < Math.max(va.length, vb.length); index += 1) if ((va[index] ?? 0) !== (vb[index] ?? 0)) return (vb[index] ?? 0) - (va[index] ?? 0);
    return 0;
  });
  return candidates[0] ?? preferredKernelSource;
}

/** Bumped whenever the way a kernel is built changes, so old cache entries are not reused. */
const buildRecipeVersion = 2;

export interface BuiltKernel {
  /** The image QEMU boots. */
  bzImage: string;
  /** The configured and built source tree, for building out-of-tree modules; absent for a user's own bzImage without one. */
  tree?: string;
  /** `uname -r` of the kernel, where known. */
  release?: string;
  profile?: KernelProfile | 'custom';
  /** True when this call found the kernel in the cache instead of building it. */
  cached: boolean;
}

export interface BuildKernelOptions {
  profile?: KernelProfile;
  /** The kernel source: a tarball or an unpacked tree. Defaults to Debian's linux-source-6.1. */
  source?: string;
  /** Progress lines for a person; the full build output goes to the log file. */
  onProgress?: (line: string) => void;
  jobs?: number;
}

export function fragmentPaths(profile: KernelProfile): string[] {
  const names = kernelProfiles[profile];
  if (!names) throw new TypeError(`Unknown kernel profile '${profile}': expected one of ${Object.keys(kernelProfiles).join(', ')}`);
  return names.map((name) => join(packageRoot, 'vm', name));
}

function compilerIdentity(): string {
  const result = spawnSync('gcc', ['--version'], { encoding: 'utf8' });
  if (result.error) throw new VmSetupError('gcc is not installed; it builds the test kernel.', installHint('gcc make flex bison bc libelf-dev libssl-dev'));
  return result.stdout.split('\n')[0] ?? '';
}

/**
 * The cache key names everything a built kernel depends on: the source (by
 * name, size and time, which a new package version changes), every fragment's
 * text, the compiler (out-of-tree modules must match it) and this recipe.
 */
export function cacheKeyOf(parts: { profile: string; sourceIdentity: string; fragments: readonly string[]; compiler: string }): string {
  const hash = createHash('sha256');
  hash.update(`recipe ${buildRecipeVersion}\n`);
  hash.update(`source ${parts.sourceIdentity}\n`);
  for (const fragment of parts.fragments) hash.update(`fragment ${fragment}\n`);
  hash.update(`cc ${parts.compiler}\n`);
  return `${parts.profile}-${hash.digest('hex').slice(0, 16)}`;
}

export function kernelCacheKey(profile: KernelProfile, source: string): { key: string; dir: string } {
  const sourceStat = statSync(source);
  const key = cacheKeyOf({
    profile,
    sourceIdentity: `${source} ${sourceStat.size} ${sourceStat.mtimeMs}`,
    fragments: fragmentPaths(profile).map((path) => readFileSync(path, 'utf8')),
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

/** Lists the fragment options that the resolved `.config` did not honour (a dependency was missing). */
export function unmetOptions(wanted: Map<string, string>, dotConfig: string): string[] {
  const got = parseFragment(dotConfig);
  const unmet: string[] = [];
  for (const [name, value] of wanted) {
    const actual = got.get(name) ?? 'n';
    if (actual !== value) unmet.push(`${name}: wanted ${value}, got ${actual}`);
  }
  return unmet;
}

function requireBuildTools(source: string): void {
  if (!existsSync(source)) {
    throw new VmSetupError(`Kernel source ${source} not found.`, installHint('linux-source-6.1') + ' Or pass your own: --kernel-source <tarball or tree>, or --kernel <bzImage>.');
  }
  const missing = ['make', 'gcc', 'flex', 'bison', 'bc', 'tar', 'xz', 'perl'].filter(
    (tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0,
  );
  if (missing.length > 0) {
    throw new VmSetupError(`Tools needed to build the kernel are missing: ${missing.join(', ')}.`, installHint('make gcc flex bison bc xz-utils perl libelf-dev libssl-dev'));
  }
  if (!existsSync('/usr/include/libelf.h') && !existsSync('/usr/include/elfutils/libelf.h')) {
    throw new VmSetupError('libelf headers are missing (the x86-64 kernel build needs them for objtool).', installHint('libelf-dev'));
  }
}

/** Runs a build tool, its output into `log` (and line by line to `onLine`); resolves with its exit status. */
export function runLogged(command: string, args: string[], cwd: string, log: NodeJS.WritableStream, onLine?: (line: string) => void): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let pending = '';
    const forward = (chunk: Buffer) => {
      log.write(chunk);
      if (!onLine) return;
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    };
    child.stdout.on('data', forward);
    child.stderr.on('data', forward);
    child.on('error', reject);
    child.on('close', (code, signal) => resolvePromise(code ?? (signal ? 128 : 1)));
  });
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

/** Returns the cached kernel for a profile, or undefined when it has not been built. */
export function findCachedKernel(profile: KernelProfile = 'base', source = defaultKernelSource()): BuiltKernel | undefined {
  if (!existsSync(source)) return undefined;
  const { dir } = kernelCacheKey(profile, source);
  const bzImage = join(dir, 'bzImage');
  if (!existsSync(join(dir, 'complete')) || !existsSync(bzImage)) return undefined;
  return { bzImage, tree: join(dir, 'tree'), release: readFileSync(join(dir, 'release'), 'utf8').trim(), profile, cached: true };
}

/**
 * Builds the kernel for a profile unless the cache has it. The build happens
 * in a scratch directory beside the final one and is renamed into place only
 * when complete, so an interrupted build never leaves a half entry behind.
 */
export async function buildKernel(options: BuildKernelOptions = {}): Promise<BuiltKernel> {
  const profile = options.profile ?? 'base';
  const source = options.source ?? defaultKernelSource();
  const progress = options.onProgress ?? (() => {});
  requireBuildTools(source);
  const cached = findCachedKernel(profile, source);
  if (cached) return cached;

  const { key, dir } = kernelCacheKey(profile, source);
  const scratch = `${dir}.partial-${process.pid}`;
  const tree = join(scratch, 'tree');
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(tree, { recursive: true });
  const logPath = `${dir}.build.log`;
  const log = createWriteStream(logPath);
  const started = Date.now();
  const elapsed = () => {
    const seconds = Math.round((Date.now() - started) / 1000);
    return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
  };
  const fail = (what: string): never => {
    log.end();
    throw new VmSetupError(`Kernel build failed: ${what} (log: ${logPath}).\n${lastLines(logPath, 25)}`, `Read ${logPath}; fix the cause and run again (the partial build in ${scratch} is removed).`, logPath);
  };

  try {
    progress(`kernel ${key}: building from ${source} (a few minutes, once; log: ${logPath})`);
    if (statSync(source).isDirectory()) {
      if ((await runLogged('cp', ['-a', `${source}/.`, tree], tree, log)) !== 0) fail('copying the source tree');
    } else if ((await runLogged('tar', ['-xf', source, '--strip-components=1', '-C', tree], tree, log)) !== 0) {
      fail('unpacking the source');
    }
    progress(`kernel ${key}: source unpacked (${elapsed()})`);

    const wanted = new Map<string, string>();
    const merged = fragmentPaths(profile).map((path) => readFileSync(path, 'utf8')).join('\n');
    for (const [name, value] of parseFragment(merged)) wanted.set(name, value);
    const fragmentFile = join(scratch, 'fragment.config');
    writeFileSync(fragmentFile, merged);
    if ((await runLogged('make', ['allnoconfig', `KCONFIG_ALLCONFIG=${fragmentFile}`], tree, log)) !== 0) fail('make allnoconfig');
    const unmet = unmetOptions(wanted, readFileSync(join(tree, '.config'), 'utf8'));
    if (unmet.length > 0) fail(`the config fragment did not apply:\n  ${unmet.join('\n  ')}`);

    const jobs = options.jobs ?? cpus().length + 1;
    let compiled = 0;
    let lastReport = Date.now();
    const status = await runLogged('make', [`-j${jobs}`, 'bzImage', 'modules'], tree, log, (line) => {
      if (/^\s+(CC|AS|LD|AR)\b/.test(line)) compiled += 1;
      if (Date.now() - lastReport >= 15_000) {
        lastReport = Date.now();
        progress(`kernel ${key}: ${compiled} objects built (${elapsed()})`);
      }
    });
    if (status !== 0) fail(`make exited with status ${status}`);
    // `make clean` keeps the config, headers, scripts and Module.symvers that
    // out-of-tree modules build against, and drops ~1.4 GB of objects.
    copyFileSync(join(tree, 'arch', 'x86', 'boot', 'bzImage'), join(scratch, 'bzImage'));
    const release = readRelease(tree) ?? '';
    if ((await runLogged('make', ['clean'], tree, log)) !== 0) fail('make clean');
    writeFileSync(join(scratch, 'release'), `${release}\n`);
    log.end();

    writeFileSync(join(scratch, 'complete'), `${new Date().toISOString()}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(scratch, dir);
    progress(`kernel ${key}: built in ${elapsed()}`);
  } catch (error) {
    rmSync(scratch, { recursive: true, force: true });
    throw error;
  }
  const built = findCachedKernel(profile, source);
  if (!built) throw new VmSetupError(`Kernel build finished but ${dir} holds no bzImage.`, `Remove ${dir} and run again.`);
  return { ...built, cached: false };
}

/**
 * The kernel's exported uapi headers (`make headers` in the build tree),
 * made on first use: userspace built against them sees exactly the
 * interfaces of the kernel the VM boots.
 */
export async function kernelHeaders(kernel: BuiltKernel): Promise<string> {
  if (!kernel.tree) throw new VmSetupError('This kernel has no build tree to export headers from.', 'Use the runner\'s own kernel, or pass --kernel-tree.');
  const include = join(kernel.tree, 'usr', 'include');
  if (existsSync(join(include, 'linux', 'dma-buf.h'))) return include;
  const logPath = join(kernel.tree, '..', 'headers.log');
  const log = createWriteStream(logPath);
  const status = await runLogged('make', ['headers'], kernel.tree, log);
  log.end();
  if (status !== 0) throw new VmSetupError(`make headers failed in ${kernel.tree} (log: ${logPath}).\n${lastLines(logPath, 20)}`, `Read ${logPath}.`, logPath);
  return include;
}
