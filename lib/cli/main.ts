import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatDevices, listDevices } from '../devices';
import { formatProcessReport, formatSystemReport, inspectProcess, inspectSystem } from '../inspect';
import { VmSetupError } from '../vm/errors';
import { buildKernel, findCachedKernel, kernelProfiles, listCacheEntries, profilesOf, resolveKernelSource, type KernelProfile } from '../vm/kernel';
import { defaultGeneration, fetchKernelSource, generationNames, isKernelGeneration, kernelGenerations, sourceTarballOf, type KernelGeneration } from '../vm/sources';
import { cacheRoot, packageRoot } from '../vm/paths';
import { run, type VmRunResult } from '../vm/run';
import type { ModuleSpec } from '../vm/modules';

const usage = `Usage: dmabuf <command> [options]

Commands:
  devices [--json] [--host | --vm]
      Show what this kernel offers for dma-buf (udmabuf, heaps, sw_sync, debugfs).
      Without --host, a host that lacks /dev/udmabuf is answered from inside the VM.
  ls [--pid <pid>] [--json]
      Every dma-buf in the system, once, with the processes holding it by fd or mapping,
      totals per process and per exporter, and debugfs's attachments and fences where
      readable (root). With --pid, one process. Unreadable processes are listed, not fatal.
  vm run [options] -- <command> [args...]
      Boot the test VM (the host's root, read-only), run a command in it, return its exit
      status. The run fails on a kernel panic, oops, WARN, BUG or lockdep report.
        --timeout <seconds>     kill the VM after this long (default 600)
        --memory <MiB>          guest memory (default 2048)
        --cpus <n>              guest CPUs (default 2)
        --module <dir|ko>[:p=v,...]  build (from a source dir) and insmod a module first; repeatable
        --kernel <which>        ${generationNames.join(', ')} (default ${defaultGeneration}): Debian's source of that
                                generation, fetched and built once; or the path of a kernel source
                                tarball or tree to build the same way; or a bzImage of your own ...
        --kernel-tree <dir>     ... with its build tree, to build modules against
        --profile <name>        kernel profile: ${Object.keys(kernelProfiles).join(', ')} (default base;
                                no-move-notify only where the kernel has that option: 6.1, 6.12)
        --accel <tcg|kvm>       QEMU accelerator (default tcg, which works everywhere)
        --keep-results          keep the console log, dmesg and job script, and print where
        --quiet                 print nothing but the command's own output
  vm build-kernel [--kernel <which>] [--profile <name>]
      Build the VM kernel into the cache now (the first run does it otherwise).
  vm fetch-source [--kernel <generation>]... [--all]
      Fetch Debian's kernel source of a generation into the cache (no root, no system change).
  vm info [--json]
      Show the kernel sources, the built kernels per generation and profile, and the cache's size.
  help
      This text.

Environment: DMABUF_CACHE_DIR (kernel cache, default ~/.cache/dmabuf), DMABUF_KERNEL (the
default --kernel; DMABUF_KERNEL_SOURCE is its older name), DMABUF_VM_KERNEL and DMABUF_VM_KERNEL_TREE (your own bzImage and tree).`;

class UsageError extends Error {}

function parseProfile(value: string | undefined): KernelProfile {
  const profile = value ?? 'base';
  if (!(profile in kernelProfiles)) throw new UsageError(`unknown profile '${profile}' (expected ${Object.keys(kernelProfiles).join(', ')})`);
  return profile as KernelProfile;
}

function parsePositiveInteger(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number <= 0) throw new UsageError(`${name} takes a positive whole number, got '${value}'`);
  return number;
}

function parseModule(spec: string): ModuleSpec {
  const colon = spec.indexOf(':');
  if (colon < 0) return { path: spec };
  return { path: spec.slice(0, colon), params: spec.slice(colon + 1).split(',').filter(Boolean) };
}

const progress = (line: string) => process.stderr.write(`dmabuf: ${line}\n`);

function report(result: VmRunResult, quiet: boolean): number {
  if (!quiet) {
    const seconds = (result.durationMs / 1000).toFixed(1);
    process.stderr.write(`dmabuf: vm ${result.ok ? 'ok' : `failed (${result.failures.join(', ')})`} in ${seconds}s\n`);
    if (result.resultsDir) process.stderr.write(`dmabuf: results kept in ${result.resultsDir}\n`);
  }
  if (!result.ok) process.stderr.write(`${result.summary}\n`);
  if (result.ok) return 0;
  if (result.timedOut) return 124;
  if (result.exitCode !== null && result.exitCode !== 0) return result.exitCode;
  return 1;
}

async function vmRun(argv: string[]): Promise<number> {
  const separator = argv.indexOf('--');
  const optionWords = separator < 0 ? argv : argv.slice(0, separator);
  const command = separator < 0 ? [] : argv.slice(separator + 1);
  const { values, positionals } = parseArgs({
    args: optionWords,
    allowPositionals: true,
    options: {
      timeout: { type: 'string' }, memory: { type: 'string' }, cpus: { type: 'string' },
      module: { type: 'string', multiple: true }, profile: { type: 'string' },
      kernel: { type: 'string' }, 'kernel-tree': { type: 'string' }, accel: { type: 'string' },
      'keep-results': { type: 'boolean' }, quiet: { type: 'boolean' },
    },
  });
  const words = [...positionals, ...command];
  if (words.length === 0) throw new UsageError('vm run needs a command: dmabuf vm run [options] -- <command> [args...]');
  if (values.accel !== undefined && values.accel !== 'tcg' && values.accel !== 'kvm') throw new UsageError(`--accel takes tcg or kvm, got '${values.accel}'`);
  const timeout = parsePositiveInteger('--timeout', values.timeout);
  const quiet = values.quiet ?? false;
  const profile = parseProfile(values.profile);
  checkKernelChoice(values.kernel, profile);
  const result = await run({
    command: words,
    timeoutMs: timeout === undefined ? undefined : timeout * 1000,
    memoryMiB: parsePositiveInteger('--memory', values.memory),
    cpus: parsePositiveInteger('--cpus', values.cpus),
    modules: (values.module ?? []).map(parseModule),
    profile,
    kernel: values.kernel,
    kernelTree: values['kernel-tree'],
    accel: values.accel as 'tcg' | 'kvm' | undefined,
    keepResults: values['keep-results'],
    onStdout: (chunk) => process.stdout.write(chunk),
    onStderr: (chunk) => process.stderr.write(chunk),
    onProgress: quiet ? undefined : progress,
  });
  return report(result, quiet);
}

async function devices(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, host: { type: 'boolean' }, vm: { type: 'boolean' } } });
  if (values.host && values.vm) throw new UsageError('devices takes --host or --vm, not both');
  const inGuest = process.env.DMABUF_IN_VM === '1';
  const useVm = !inGuest && (values.vm || (!values.host && !existsSync('/dev/udmabuf')));
  if (!useVm) {
    const found = listDevices();
    process.stdout.write(values.json ? `${JSON.stringify(found, null, 2)}\n` : `${formatDevices(found)}\n`);
    return 0;
  }
  progress('this host has no /dev/udmabuf: asking the test VM');
  const result = await run({
    command: [process.execPath, `${packageRoot}/bin/dmabuf.js`, 'devices', '--host', ...(values.json ? ['--json'] : [])],
    onStdout: (chunk) => process.stdout.write(chunk),
    onStderr: (chunk) => process.stderr.write(chunk),
    onProgress: progress,
  });
  return report(result, true);
}

function list(argv: string[]): number {
  const { values } = parseArgs({ args: argv, options: { pid: { type: 'string' }, json: { type: 'boolean' } } });
  if (values.pid !== undefined) {
    const report = inspectProcess(parsePositiveInteger('--pid', values.pid)!);
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatProcessReport(report)}\n`);
    return report.error ? 1 : 0;
  }
  const report = inspectSystem();
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatSystemReport(report)}\n`);
  return 0;
}

function checkKernelChoice(kernel: string | undefined, profile: KernelProfile): void {
  if (kernel !== undefined && /^\d+\.\d+$/.test(kernel) && !isKernelGeneration(kernel)) {
    throw new UsageError(`kernel ${kernel} is not one of the tested generations (${generationNames.join(', ')}); pass the path of its source tarball or tree instead`);
  }
  const generation = kernel === undefined ? defaultGeneration : kernel;
  if (isKernelGeneration(generation) && !profilesOf(generation).includes(profile)) {
    throw new UsageError(`kernel ${generation} has no '${profile}' profile (it has ${profilesOf(generation).join(', ')})`);
  }
}

async function vmBuildKernel(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { profile: { type: 'string' }, kernel: { type: 'string' } } });
  const profile = parseProfile(values.profile);
  checkKernelChoice(values.kernel, profile);
  const kernel = await buildKernel({ kernel: values.kernel, profile, onProgress: progress });
  process.stdout.write(`${kernel.bzImage}\n`);
  return 0;
}

async function vmFetchSource(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { kernel: { type: 'string', multiple: true }, all: { type: 'boolean' } } });
  const wanted = values.all ? generationNames : (values.kernel ?? [defaultGeneration]);
  for (const generation of wanted) {
    if (!isKernelGeneration(generation)) throw new UsageError(`fetch-source takes a generation (${generationNames.join(', ')}), got '${generation}'`);
  }
  for (const generation of wanted as KernelGeneration[]) process.stdout.write(`${generation} ${await fetchKernelSource(generation, progress)}\n`);
  return 0;
}

function formatBytes(bytes: number): string {
  return bytes >= 1 << 30 ? `${(bytes / (1 << 30)).toFixed(1)} GiB` : `${Math.round(bytes / (1 << 20))} MiB`;
}

function vmInfo(argv: string[]): number {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' } } });
  const entries = listCacheEntries();
  const generations = generationNames.map((generation) => ({
    generation,
    sourcePackage: kernelGenerations[generation].sourcePackage,
    debianSuite: kernelGenerations[generation].suite,
    source: sourceTarballOf(generation) ?? null,
    profiles: Object.fromEntries(profilesOf(generation).map((profile) => {
      const cached = findCachedKernel(profile, generation);
      const entry = cached && entries.find((candidate) => cached.bzImage.includes(`/${candidate.key}/`));
      return [profile, cached ? { built: true, release: cached.release, bzImage: cached.bzImage, bytes: entry?.bytes ?? null } : { built: false }];
    })),
  }));
  const chosen = process.env.DMABUF_KERNEL ?? process.env.DMABUF_KERNEL_SOURCE;
  const custom = chosen && !isKernelGeneration(chosen) ? resolveKernelSource(chosen).path : null;
  const info = {
    cacheDir: cacheRoot(),
    defaultKernel: chosen ?? defaultGeneration,
    customSource: custom,
    generations,
    cacheEntries: entries.map(({ key, bytes, info: entryInfo }) => ({ key, bytes, release: entryInfo?.release ?? null, stale: !entryInfo })),
    cacheBytes: entries.reduce((sum, entry) => sum + entry.bytes, 0),
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
    return 0;
  }
  const lines = [`cache      ${info.cacheDir} (${formatBytes(info.cacheBytes)} in ${entries.length} kernel(s))`, `default    --kernel ${info.defaultKernel}`];
  for (const generation of generations) {
    lines.push(`kernel ${generation.generation.padEnd(4)} source ${generation.source ?? `not fetched yet (${generation.sourcePackage} from Debian ${generation.debianSuite}, on first build)`}`);
    for (const [profile, state] of Object.entries(generation.profiles)) {
      lines.push(`  ${profile.padEnd(15)} ${'release' in state ? `built, ${state.release}, ${typeof state.bytes === 'number' ? formatBytes(state.bytes) : '?'} (${state.bzImage})` : 'not built yet'}`);
    }
  }
  const stale = info.cacheEntries.filter((entry) => entry.stale);
  if (stale.length > 0) lines.push(`stale      ${stale.map((entry) => `${entry.key} (${formatBytes(entry.bytes)})`).join(', ')}: from an older recipe; safe to delete`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'devices':
        return await devices(rest);
      case 'ls':
        return list(rest);
      case 'vm': {
        const [sub, ...subArgs] = rest;
        if (sub === 'run') return await vmRun(subArgs);
        if (sub === 'build-kernel') return await vmBuildKernel(subArgs);
        if (sub === 'info') return vmInfo(subArgs);
        if (sub === 'fetch-source') return await vmFetchSource(subArgs);
        throw new UsageError(sub ? `unknown vm command '${sub}'` : 'vm needs a command: run, build-kernel, fetch-source or info');
      }
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(`${usage}\n`);
        return 0;
      case undefined:
        throw new UsageError('no command given');
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`dmabuf: ${(error as Error).message}\nRun 'dmabuf help' for usage.\n`);
      return 2;
    }
    if (error instanceof VmSetupError) {
      process.stderr.write(`dmabuf: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}
