import { existsSync } from 'node:fs';
import { diagnoseHost, formatDevices, listDevices, readHostFacts } from '../devices';
import { formatProcessReport, formatSystemReport, inspectProcess, inspectSystem } from '../inspect';
import { VmSetupError } from '../vm/errors';
import { buildKernel, findCachedKernel, listCacheEntries, profilesOf, resolveKernelSource, type BuiltKernel, type KernelProfile } from '../vm/kernel';
import { defaultGeneration, fetchKernelSource, generationNames, isKernelGeneration, kernelGenerations, sourceTarballOf, type KernelGeneration } from '../vm/sources';
import { cacheRoot, packageRoot } from '../vm/paths';
import { run, type VmRunResult } from '../vm/run';
import type { ModuleSpec } from '../vm/modules';
import { commandHelp, commandNames, commands, flag, generalHelp, parseCommand, UsageError, usageLine, type CommandName, type OptionName, type ParsedCommand } from './commands';
import { formatHostDiagnosis } from './format';
import { progressDisplay } from './progress';

const say = (line: string) => process.stderr.write(`dmabuf: ${line}\n`);
const printJson = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

function positiveInteger<C extends CommandName>(command: C, name: OptionName<C>, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number <= 0) throw new UsageError(`${flag(command, name)} takes a positive whole number, got '${value}'`, command);
  return number;
}

function parseModule(spec: string): ModuleSpec {
  const colon = spec.indexOf(':');
  if (colon < 0) return { path: spec };
  return { path: spec.slice(0, colon), params: spec.slice(colon + 1).split(',').filter(Boolean) };
}

function checkKernelChoice(command: 'vm run' | 'vm build-kernel', kernel: string | undefined, profile: KernelProfile): void {
  if (kernel !== undefined && /^\d+\.\d+$/.test(kernel) && !isKernelGeneration(kernel)) {
    throw new UsageError(`kernel ${kernel} is not one of the tested generations (${generationNames.join(', ')}); pass the path of its source tarball or tree instead`, command);
  }
  const generation = kernel === undefined ? defaultGeneration : kernel;
  if (isKernelGeneration(generation) && !profilesOf(generation).includes(profile)) {
    throw new UsageError(`kernel ${generation} has no '${profile}' profile (it has ${profilesOf(generation).join(', ')})`, command);
  }
}

function report(result: VmRunResult, quiet: boolean): number {
  if (!quiet) {
    const seconds = (result.durationMs / 1000).toFixed(1);
    say(`vm ${result.ok ? 'ok' : `failed (${result.failures.join(', ')})`} in ${seconds}s`);
    if (result.resultsDir) say(`results kept in ${result.resultsDir}`);
  }
  if (!result.ok) process.stderr.write(`${result.summary}\n`);
  if (result.ok) return 0;
  if (result.timedOut) return 124;
  if (result.exitCode !== null && result.exitCode !== 0) return result.exitCode;
  return 1;
}

/** What `vm run --json` prints: the result without the outputs, which were streamed already. */
function runSummary(result: VmRunResult) {
  const { kernel } = result;
  return {
    ok: result.ok,
    failures: result.failures,
    exitCode: result.exitCode,
    timedOut: result.timedOut,
    durationMs: result.durationMs,
    kernel: { release: kernel.release ?? null, generation: kernel.generation ?? null, profile: kernel.profile ?? null, bzImage: kernel.bzImage },
    kernelProblems: result.kernelProblems,
    resultsDir: result.resultsDir ?? null,
  };
}

async function vmRun(parsed: ParsedCommand<OptionName<'vm run'>>): Promise<number> {
  const words = [...parsed.positionals, ...parsed.rest];
  if (words.length === 0) throw new UsageError(`needs a command: ${usageLine(commands['vm run'])}`, 'vm run');
  const timeout = positiveInteger('vm run', 'timeout', parsed.string('timeout'));
  const quiet = parsed.boolean('quiet');
  const profile = parsed.string('profile') as KernelProfile;
  const kernel = parsed.string('kernel');
  checkKernelChoice('vm run', kernel, profile);
  const display = progressDisplay(process.stderr);
  let endsWithNewline = true;
  let result: VmRunResult;
  try {
    result = await run({
      command: words,
      timeoutMs: timeout === undefined ? undefined : timeout * 1000,
      memoryMiB: positiveInteger('vm run', 'memory', parsed.string('memory')),
      cpus: positiveInteger('vm run', 'cpus', parsed.string('cpus')),
      modules: parsed.strings('module').map(parseModule),
      profile,
      kernel,
      kernelTree: parsed.string('kernel-tree'),
      accel: parsed.string('accel') as 'tcg' | 'kvm',
      keepResults: parsed.boolean('keep-results'),
      onStdout: (chunk) => {
        if (chunk.length > 0) endsWithNewline = chunk[chunk.length - 1] === 0x0a;
        process.stdout.write(chunk);
      },
      onStderr: (chunk) => process.stderr.write(chunk),
      onProgress: quiet ? undefined : display.onProgress,
    });
  } finally {
    display.finish();
  }
  // The summary is the last line of stdout, on a line of its own, so that a script can take it without parsing the command's output.
  if (parsed.boolean('json')) process.stdout.write(`${endsWithNewline ? '' : '\n'}${JSON.stringify(runSummary(result))}\n`);
  return report(result, quiet);
}

async function devices(parsed: ParsedCommand<OptionName<'devices'>>): Promise<number> {
  const json = parsed.boolean('json');
  if (parsed.boolean('host') && parsed.boolean('vm')) throw new UsageError(`takes ${flag('devices', 'host')} or ${flag('devices', 'vm')}, not both`, 'devices');
  const here = { ...listDevices(), diagnosis: diagnoseHost(readHostFacts()) };
  const inGuest = process.env.DMABUF_IN_VM === '1';
  const useVm = !inGuest && (parsed.boolean('vm') || (!parsed.boolean('host') && !existsSync('/dev/udmabuf')));
  if (!useVm) {
    if (json) printJson({ answeredBy: 'host', ...here });
    else process.stdout.write(`${formatDevices(here)}\n${here.diagnosis.steps.length > 0 ? `\n${formatHostDiagnosis(here.diagnosis)}\n` : ''}`);
    return 0;
  }
  if (!json) process.stdout.write(`${formatHostDiagnosis(here.diagnosis)}\n\nthe test VM:\n`);
  say(`${existsSync('/dev/udmabuf') ? 'asked for the VM' : 'this host has no /dev/udmabuf'}: asking the test VM`);
  const display = progressDisplay(process.stderr);
  let result: VmRunResult;
  try {
    result = await run({
      command: [process.execPath, `${packageRoot()}/bin/dmabuf.js`, 'devices', '--host', ...(json ? ['--json'] : [])],
      onStdout: json ? undefined : (chunk) => process.stdout.write(chunk),
      onStderr: (chunk) => process.stderr.write(chunk),
      onProgress: display.onProgress,
    });
  } finally {
    display.finish();
  }
  if (json && result.ok) printJson({ ...(JSON.parse(result.stdout) as object), answeredBy: 'vm', host: here });
  return report(result, true);
}

function list(parsed: ParsedCommand<OptionName<'ls'>>): number {
  const json = parsed.boolean('json');
  const pid = positiveInteger('ls', 'pid', parsed.string('pid'));
  if (pid !== undefined) {
    const found = inspectProcess(pid);
    if (json) printJson(found);
    else process.stdout.write(`${formatProcessReport(found)}\n`);
    return found.error ? 1 : 0;
  }
  const found = inspectSystem();
  if (json) printJson(found);
  else process.stdout.write(`${formatSystemReport(found)}\n`);
  return 0;
}

async function vmBuildKernel(parsed: ParsedCommand<OptionName<'vm build-kernel'>>): Promise<number> {
  const profile = parsed.string('profile') as KernelProfile;
  const kernelChoice = parsed.string('kernel');
  checkKernelChoice('vm build-kernel', kernelChoice, profile);
  const display = progressDisplay(process.stderr);
  let kernel: BuiltKernel;
  try {
    kernel = await buildKernel({ kernel: kernelChoice, profile, onProgress: display.onProgress, progressIntervalMs: display.intervalMs });
  } finally {
    display.finish();
  }
  if (parsed.boolean('json')) printJson({ bzImage: kernel.bzImage, tree: kernel.tree ?? null, release: kernel.release ?? null, profile: kernel.profile ?? null, generation: kernel.generation ?? null, cached: kernel.cached });
  else process.stdout.write(`${kernel.bzImage}\n`);
  return 0;
}

async function vmFetchSource(parsed: ParsedCommand<OptionName<'vm fetch-source'>>): Promise<number> {
  const wanted = (parsed.boolean('all') ? generationNames : parsed.strings('kernel')) as KernelGeneration[];
  const sources: Array<{ generation: KernelGeneration; path: string }> = [];
  for (const generation of wanted) {
    const path = await fetchKernelSource(generation, (line) => say(line), { update: parsed.boolean('update') });
    sources.push({ generation, path });
    if (!parsed.boolean('json')) process.stdout.write(`${generation} ${path}\n`);
  }
  if (parsed.boolean('json')) printJson({ sources });
  return 0;
}

function formatBytes(bytes: number): string {
  return bytes >= 1 << 30 ? `${(bytes / (1 << 30)).toFixed(1)} GiB` : `${Math.round(bytes / (1 << 20))} MiB`;
}

function vmInfo(parsed: ParsedCommand<OptionName<'vm info'>>): number {
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
  if (parsed.boolean('json')) {
    printJson(info);
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

const handlers: { [C in Exclude<CommandName, 'help'>]: (parsed: ParsedCommand<OptionName<C>>) => number | Promise<number> } = {
  devices,
  ls: list,
  'vm run': vmRun,
  'vm build-kernel': vmBuildKernel,
  'vm fetch-source': vmFetchSource,
  'vm info': vmInfo,
};

const isHelpWord = (word: string | undefined) => word === 'help' || word === '--help' || word === '-h';
const isCommandName = (name: string): name is CommandName => (commandNames as string[]).includes(name);

/** `dmabuf help [<command>]`: the list of commands, the vm group's, or one command's help. */
function help(words: string[]): number {
  const parsed = parseCommand('help', words);
  const name = parsed.positionals.join(' ');
  if (parsed.help) process.stdout.write(`${commandHelp(commands.help)}\n`);
  else if (name === '') process.stdout.write(`${generalHelp()}\n`);
  else if (name === 'vm') process.stdout.write(`${generalHelp('vm ')}\n`);
  else if (isCommandName(name)) process.stdout.write(`${commandHelp(commands[name])}\n`);
  else throw new UsageError(`unknown command '${name}'`);
  return 0;
}

async function dispatch(argv: string[]): Promise<number> {
  const [first, second, ...more] = argv;
  if (first === undefined) throw new UsageError('no command given');
  if (isHelpWord(first)) return help(argv.slice(1));
  let name: string;
  let words: string[];
  if (first === 'vm') {
    if (second === undefined) throw new UsageError(`needs a command: ${Object.keys(commands).filter((key) => key.startsWith('vm ')).map((key) => key.slice(3)).join(', ')}`, 'vm');
    if (isHelpWord(second)) return help(['vm']);
    name = `vm ${second}`;
    words = more;
  } else {
    name = first;
    words = argv.slice(1);
  }
  if (!isCommandName(name) || name === 'help') throw new UsageError(`unknown command '${name}'`, first === 'vm' ? 'vm' : undefined);
  const parsed = parseCommand(name, words);
  if (parsed.help) {
    process.stdout.write(`${commandHelp(commands[name])}\n`);
    return 0;
  }
  return (handlers[name] as (parsed: ParsedCommand<string>) => number | Promise<number>)(parsed);
}

export async function main(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (error) {
    if (error instanceof UsageError) {
      const helpCommand = error.command ? `dmabuf ${error.command} --help` : 'dmabuf help';
      process.stderr.write(`dmabuf${error.command ? ` ${error.command}` : ''}: ${error.message}\nRun '${helpCommand}' for ${error.command ? 'its usage' : 'the commands'}.\n`);
      return 2;
    }
    if (error instanceof VmSetupError) {
      process.stderr.write(`dmabuf: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}
