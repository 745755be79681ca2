import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatDevices, listDevices } from '../devices';
import { formatProcessReport, formatSystemReport, inspectProcess, inspectSystem } from '../inspect';
import { VmSetupError } from '../vm/errors';
import { buildKernel, defaultKernelSource, findCachedKernel, kernelProfiles, type KernelProfile } from '../vm/kernel';
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
        --profile <name>        kernel profile: ${Object.keys(kernelProfiles).join(', ')} (default base)
        --kernel <bzImage>      boot your own kernel ...
        --kernel-tree <dir>     ... with its build tree, to build modules against
        --accel <tcg|kvm>       QEMU accelerator (default tcg, which works everywhere)
        --keep-results          keep the console log, dmesg and job script, and print where
        --quiet                 print nothing but the command's own output
  vm build-kernel [--profile <name>]
      Build the VM kernel into the cache now (the first run does it otherwise).
  vm info [--json]
      Show the kernel cache, its profiles and the tools the runner uses.
  help
      This text.

Environment: DMABUF_CACHE_DIR (kernel cache, default ~/.cache/dmabuf), DMABUF_KERNEL_SOURCE,
DMABUF_VM_KERNEL and DMABUF_VM_KERNEL_TREE (your own kernel).`;

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
  const result = await run({
    command: words,
    timeoutMs: timeout === undefined ? undefined : timeout * 1000,
    memoryMiB: parsePositiveInteger('--memory', values.memory),
    cpus: parsePositiveInteger('--cpus', values.cpus),
    modules: (values.module ?? []).map(parseModule),
    profile: parseProfile(values.profile),
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

async function vmBuildKernel(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { profile: { type: 'string' } } });
  const kernel = await buildKernel({ profile: parseProfile(values.profile), onProgress: progress });
  process.stdout.write(`${kernel.bzImage}\n`);
  return 0;
}

function vmInfo(argv: string[]): number {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' } } });
  const source = defaultKernelSource();
  const info = {
    cacheDir: cacheRoot(),
    kernelSource: { path: source, present: existsSync(source) },
    profiles: Object.fromEntries(Object.keys(kernelProfiles).map((name) => {
      const cached = findCachedKernel(name as KernelProfile, source);
      return [name, cached ? { cached: true, bzImage: cached.bzImage, release: cached.release } : { cached: false }];
    })),
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`cache      ${info.cacheDir}\nsource     ${source}${info.kernelSource.present ? '' : ' (missing: apt-get install linux-source-6.1, or set DMABUF_KERNEL_SOURCE)'}\n`);
  for (const [name, state] of Object.entries(info.profiles)) {
    process.stdout.write(`profile    ${name.padEnd(15)} ${'bzImage' in state ? `built, ${state.release} (${state.bzImage})` : 'not built yet'}\n`);
  }
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
        throw new UsageError(sub ? `unknown vm command '${sub}'` : 'vm needs a command: run, build-kernel or info');
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
