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
const buildRecipeVersion = 3;

export interface BuiltKernel {
  /** The image QEMU boots. */
  bzImage: string;
  /** The configured build tree (pruned to what out-of-tree modules and the kernel's selftests need); absent for a user's own bzImage without one. */
  tree?: string;
  /** `uname -r` of the kernel, where known. */
  release?: string;
  profile?: KernelProfile | 'custom';
  /** The tested generation it was built from; undefined for a source or image of the user's own. */
  generation?: KernelGeneration;
  /** True when this call found the kernel in the cache instead of building it. */
  cached: boolean;
}

export interface BuildKernelOptions {
  profile?: KernelProfile;
  /** A generation (`6.1`, `6.12`, `7.2`) or the path of a kernel source tarball or tree; see `resolveKernelSource`. */
  kernel?: string;
  /** Progress lines for a person; the full build output goes to the log file. */
  onProgress?: (line: string) => void;
  jobs?: number;
}

export function fragmentPaths(profile: KernelProfile): string[] {
  const names = Object.hasOwn(kernelProfiles, profile) ? kernelProfiles[profile] : undefined;
  if (!names) throw invalidValue('profile', `a kernel profile (${Object.keys(kernelProfiles).join(', ')})`, profile);
  return names.map((name) => join(packageRoot, 'vm', name));
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
    fragments: [...fragmentPaths(profile), ...eraFragments.map((name) => join(packageRoot, 'vm', name))].map((path) => readFileSync(path, 'utf8')),
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
    const text = readFileSync(join(packageRoot, 'vm', name), 'utf8');
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

function requireBuildTools(): void {
  const missing = ['make', 'gcc', 'flex', 'bison', 'bc', 'tar', 'xz', 'perl'].filter(
    (tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0,
  );
  if (missing.length > 0) {
    throw codedError('ERR_DMABUF_VM_SETUP', `Tools needed to build the kernel are missing: ${missing.join(', ')}.`, installHint('make gcc flex bison bc xz-utils perl libelf-dev libssl-dev'));
  }
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

interface CacheEntryInfo {
  release: string;
  profile: KernelProfile;
  generation?: KernelGeneration;
  source: string;
  era: string;
  builtAt: string;
}

/** Returns the cached kernel for a profile and source, or undefined when it has not been built. */
export function findCachedKernel(profile: KernelProfile = 'base', kernel?: string): BuiltKernel | undefined {
  const source = resolveKernelSource(kernel);
  if (source.path === undefined || !existsSync(source.path)) return undefined;
  const { dir } = kernelCacheKey(profile, source as KernelSource & { path: string });
  const bzImage = join(dir, 'bzImage');
  if (!existsSync(join(dir, 'kernel.json')) || !existsSync(bzImage)) return undefined;
  const info = JSON.parse(readFileSync(join(dir, 'kernel.json'), 'utf8')) as CacheEntryInfo;
  return { bzImage, tree: join(dir, 'tree'), release: info.release, profile, generation: source.generation, cached: true };
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

/**
 * Builds the kernel for a profile unless the cache has it, fetching a
 * generation's source first when needed. The build happens in a scratch
 * directory beside the final one and is renamed into place only when
 * complete, so an interrupted build never leaves a half entry behind. A newer
 * entry of the same generation and profile replaces the older ones.
 */
export async function buildKernel(options: BuildKernelOptions = {}): Promise<BuiltKernel> {
  const profile = options.profile ?? 'base';
  fragmentPaths(profile);
  const progress = options.onProgress ?? (() => {});
  const resolved = resolveKernelSource(options.kernel);
  if (resolved.generation && !profilesOf(resolved.generation).includes(profile)) {
    throw codedError('ERR_DMABUF_VM_SETUP', `Kernel ${resolved.generation} has no '${profile}' profile.`, `Its profiles: ${profilesOf(resolved.generation).join(', ')} (7.x removed CONFIG_DMABUF_MOVE_NOTIFY: importers are always told to invalidate).`);
  }
  requireBuildTools();
  const path = resolved.path ?? (await fetchKernelSource(resolved.generation!, progress));
  if (!existsSync(path)) throw codedError('ERR_DMABUF_VM_SETUP', `Kernel source ${path} not found.`, `Pass a kernel source tarball or tree, or one of the tested generations: --kernel ${generationNames.join('|')}.`);
  const source = { ...resolved, path } as KernelSource & { path: string };
  const cached = findCachedKernel(profile, source.generation ?? path);
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
    throw codedError('ERR_DMABUF_VM_SETUP', `Kernel build failed: ${what} (log: ${logPath}).\n${lastLines(logPath, 25)}`, `Read ${logPath}; fix the cause and run again (the partial build in ${scratch} is removed).`, logPath);
  };

  try {
    progress(`kernel ${key}: building from ${path} (a few minutes, once; log: ${logPath})`);
    if (statSync(path).isDirectory()) {
      if ((await runLogged('cp', ['-a', `${path}/.`, tree], tree, log)) !== 0) fail('copying the source tree');
    } else if ((await runLogged('tar', ['-xf', path, '--strip-components=1', '-C', tree], tree, log)) !== 0) {
      fail('unpacking the source');
    }
    progress(`kernel ${key}: source unpacked (${elapsed()})`);

    const declared = declaredSymbols(tree);
    const era = eraFragmentFor(declared);
    if (!era) fail(`no era fragment fits this source: each of ${eraFragments.join(', ')} names an option its Kconfig does not declare`);
    const merged = [era!.text, ...fragmentPaths(profile).map((fragment) => readFileSync(fragment, 'utf8'))].join('\n');
    const wanted = parseFragment(merged);
    const fragmentFile = join(scratch, 'fragment.config');
    writeFileSync(fragmentFile, merged);
    if ((await runLogged('make', ['allnoconfig', `KCONFIG_ALLCONFIG=${fragmentFile}`], tree, log)) !== 0) fail('make allnoconfig');
    const unmet = unmetOptions(wanted, readFileSync(join(tree, '.config'), 'utf8'), declared);
    if (unmet.length > 0) fail(`the config fragments (${era!.name}, ${kernelProfiles[profile].join(', ')}) did not apply:\n  ${unmet.join('\n  ')}`);

    const jobs = options.jobs ?? cpus().length + 1;
    let compiled = 0;
    let lastReport = Date.now();
    const compiler = compilerCache();
    const status = await runLogged('make', [`-j${jobs}`, ...compiler.makeArgs, 'bzImage', 'modules'], tree, log, (line) => {
      if (/^\s+(CC|AS|LD|AR)\b/.test(line)) compiled += 1;
      if (Date.now() - lastReport >= 15_000) {
        lastReport = Date.now();
        progress(`kernel ${key}: ${compiled} objects built (${elapsed()})`);
      }
    }, { ...process.env, ...compiler.env(tree) });
    if (status !== 0) fail(`make exited with status ${status}`);
    copyFileSync(join(tree, 'arch', 'x86', 'boot', 'bzImage'), join(scratch, 'bzImage'));
    const release = readRelease(tree) ?? '';
    // `make clean` keeps the config, headers, scripts and Module.symvers that
    // out-of-tree modules build against; the uapi headers are exported now,
    // while the whole source is still there.
    if ((await runLogged('make', ['clean'], tree, log)) !== 0) fail('make clean');
    if ((await runLogged('make', ['headers'], tree, log)) !== 0) fail('make headers');
    pruneTree(tree);
    log.end();

    const info: CacheEntryInfo = { release, profile, generation: source.generation, source: path, era: era!.name, builtAt: new Date().toISOString() };
    writeFileSync(join(scratch, 'kernel.json'), `${JSON.stringify(info, null, 2)}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(scratch, dir);
    if (source.generation) removeSupersededEntries(key);
    progress(`kernel ${key}: built in ${elapsed()}`);
  } catch (error) {
    rmSync(scratch, { recursive: true, force: true });
    throw error;
  }
  const built = findCachedKernel(profile, source.generation ?? path);
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
