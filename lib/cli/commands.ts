import { parseArgs, type ParseArgsConfig } from 'node:util';
import { kernelProfiles } from '../vm/kernel';
import { defaultGeneration, generationNames } from '../vm/sources';

/**
 * The command line, declared once: each command's options drive both
 * `util.parseArgs` and its help text, so the two cannot drift apart.
 */
export interface OptionSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  /** The value's placeholder in help: `<seconds>`. */
  value?: string;
  /** The only values accepted; the parser refuses any other. */
  choices?: readonly string[];
  /** Handed to parseArgs, so the help's default is the one used. */
  default?: string | string[];
  /** A default decided elsewhere (an environment variable, the library), for help only. */
  defaultText?: string;
  description: string;
}

export interface CommandSpec {
  /** The words after `dmabuf`. */
  name: string;
  summary: string;
  /** What follows the options in the usage line, when the command takes arguments. */
  positionals?: string;
  /** Everything after a bare `--` is the command's, not ours (vm run). */
  passThrough?: boolean;
  /** Paragraphs after the summary. */
  details?: readonly string[];
  options: Readonly<Record<string, OptionSpec>>;
}

const profileNames = Object.keys(kernelProfiles);
const json: OptionSpec = { type: 'boolean', description: 'print the result as JSON on stdout (progress and diagnostics stay on stderr)' };

export const commands = {
  devices: {
    name: 'devices',
    summary: 'Show what this kernel offers for dma-buf (udmabuf, dma-heaps, sw_sync, debugfs).',
    details: [
      'On a host without /dev/udmabuf it first says what this host lacks and what it would take (kernel options, the udmabuf module, device permissions and your groups), then answers from inside the test VM.',
    ],
    options: {
      json: { ...json, description: 'print the report as JSON: the answering kernel\'s devices and diagnosis, with answeredBy (host or vm) and, when the VM answered, this host\'s report under host' },
      host: { type: 'boolean', description: 'answer for this host only, never boot the VM' },
      vm: { type: 'boolean', description: 'answer from inside the VM even when this host has /dev/udmabuf' },
    },
  },
  ls: {
    name: 'ls',
    summary: 'List every dma-buf in the system once, with the processes holding it by fd or mapping.',
    details: [
      'Totals per process and per exporter, and debugfs\'s attachments and fences where readable (root). Processes that cannot be read are listed, not fatal.',
    ],
    options: {
      pid: { type: 'string', value: '<pid>', description: 'only this process' },
      json: { ...json, description: 'print the report as JSON' },
    },
  },
  'vm run': {
    name: 'vm run',
    summary: 'Boot the test VM (the host\'s root, read-only), run a command in it, and exit with its status.',
    positionals: '-- <command> [args...]',
    passThrough: true,
    details: [
      'The run fails on a kernel panic, oops, WARN, BUG, lockdep, KASAN or kmemleak report even when the command exited 0. Exit status: the command\'s; 124 when it timed out; 1 for any other failure.',
      'A kernel that is not in the cache yet is built first (see dmabuf vm build-kernel).',
    ],
    options: {
      timeout: { type: 'string', value: '<seconds>', default: '600', description: 'kill the VM after this long' },
      memory: { type: 'string', value: '<MiB>', default: '2048', description: 'guest memory' },
      cpus: { type: 'string', value: '<n>', default: '2', description: 'guest CPUs' },
      module: { type: 'string', multiple: true, value: '<dir|ko>[:p=v,...]', description: 'build (from a source directory with a Kbuild) and insmod a module before the command, with these parameters; repeatable' },
      kernel: {
        type: 'string',
        value: '<which>',
        defaultText: `${defaultGeneration}, or $DMABUF_KERNEL`,
        description: `a tested generation (${generationNames.join(', ')}: Debian's source, fetched and built once), the path of a kernel source tarball or tree to build the same way, or a bzImage of your own`,
      },
      'kernel-tree': { type: 'string', value: '<dir>', description: 'the build tree of your own bzImage, to build modules against' },
      profile: { type: 'string', value: '<name>', choices: profileNames, default: 'base', description: 'kernel profile; no-move-notify only on 6.1 and 6.12, as 7.x has no such option' },
      accel: { type: 'string', value: '<name>', choices: ['tcg', 'kvm'], default: 'tcg', description: 'QEMU accelerator: tcg works everywhere, kvm where KVM works' },
      'keep-results': { type: 'boolean', description: 'keep the console log, dmesg and job script, and say where' },
      quiet: { type: 'boolean', description: 'print nothing but the command\'s own output (and --json\'s line)' },
      json: { ...json, description: 'after the command\'s output, print one line of JSON on stdout: ok, failures, exitCode, timedOut, durationMs, kernel (release, generation, profile, bzImage), kernelProblems, resultsDir' },
    },
  },
  'vm build-kernel': {
    name: 'vm build-kernel',
    summary: 'Build the VM kernel into the cache now (the first run does it otherwise).',
    details: [
      'Progress goes to stderr: one updating line on a terminal, a line per update otherwise. The compile phase shows a percent only when an earlier build of the same generation and profile is in the cache to compare with; without one it counts objects.',
      'Prints the bzImage\'s path, or with --json the built kernel.',
    ],
    options: {
      kernel: { type: 'string', value: '<which>', defaultText: `${defaultGeneration}, or $DMABUF_KERNEL`, description: `a tested generation (${generationNames.join(', ')}) or the path of a kernel source tarball or tree` },
      profile: { type: 'string', value: '<name>', choices: profileNames, default: 'base', description: 'kernel profile; no-move-notify only on 6.1 and 6.12' },
      json: { ...json, description: 'print the built kernel as JSON: bzImage, tree, release, profile, generation, cached' },
    },
  },
  'vm fetch-source': {
    name: 'vm fetch-source',
    summary: 'Fetch Debian\'s kernel source of a generation into the cache (no root, no system change).',
    options: {
      kernel: { type: 'string', multiple: true, value: '<generation>', choices: generationNames, default: [defaultGeneration], description: 'the generation to fetch; repeatable' },
      all: { type: 'boolean', description: `every tested generation (${generationNames.join(', ')})` },
      update: { type: 'boolean', description: 'ask Debian for a newer version of a cached source (a security update) and fetch it; its kernels are then rebuilt' },
      json: { ...json, description: 'print {"sources":[{"generation","path"}]} as JSON' },
    },
  },
  'vm info': {
    name: 'vm info',
    summary: 'Show the kernel sources, the built kernels per generation and profile, and the cache\'s size.',
    options: {
      json: { ...json, description: 'print it as JSON' },
    },
  },
  help: {
    name: 'help',
    summary: 'Print the list of commands, or the help of one.',
    positionals: '[<command>]',
    options: {},
  },
} as const satisfies Record<string, CommandSpec>;

export type CommandName = keyof typeof commands;
export const commandNames = Object.keys(commands) as CommandName[];

/** The environment variables the command line reads. */
export const environment = [
  ['DMABUF_CACHE_DIR', 'the kernel cache (default ~/.cache/dmabuf)'],
  ['DMABUF_KERNEL', 'the default --kernel (DMABUF_KERNEL_SOURCE is its older name)'],
  ['DMABUF_VM_KERNEL', 'a bzImage of your own, used when --kernel is not given'],
  ['DMABUF_VM_KERNEL_TREE', 'its build tree (the default --kernel-tree)'],
] as const;

/** `--name`, checked against the command's table at compile time: a message can only name an option that exists. */
export function flag<C extends CommandName>(_command: C, name: OptionName<C>): string {
  return `--${name}`;
}

export class UsageError extends Error {
  constructor(
    message: string,
    /** Whose help the message points to: a command, or undefined for the list of commands. */
    readonly command?: string,
  ) {
    super(message);
  }
}

const width = 100;

function wrap(text: string, indent: number, firstColumn = indent): string[] {
  const lines: string[] = [];
  let line = '';
  let column = firstColumn;
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && column + 1 + word.length > width) {
      lines.push(line);
      line = '';
      column = indent;
    }
    line += line ? ` ${word}` : word;
    column += (line === word ? 0 : 1) + word.length;
  }
  if (line) lines.push(line);
  return lines;
}

function optionLabel(name: string, option: OptionSpec): string {
  return option.type === 'string' ? `--${name} ${option.value ?? '<value>'}` : `--${name}`;
}

function optionText(option: OptionSpec): string {
  const parts = [option.description];
  if (option.choices) parts.push(`one of ${option.choices.join(', ')}`);
  const shownDefault = option.defaultText ?? (Array.isArray(option.default) ? option.default.join(', ') : option.default);
  if (shownDefault !== undefined) parts.push(`default ${shownDefault}`);
  return parts.length === 1 ? parts[0]! : `${parts[0]} (${parts.slice(1).join('; ')})`;
}

function columns(rows: Array<[string, string]>): string[] {
  const labelWidth = Math.min(30, Math.max(...rows.map(([label]) => label.length)));
  const out: string[] = [];
  for (const [label, text] of rows) {
    const indent = 2 + labelWidth + 2;
    if (label.length > labelWidth) {
      out.push(`  ${label}`);
      out.push(...wrap(text, indent).map((line) => `${' '.repeat(indent)}${line}`));
      continue;
    }
    const [first = '', ...rest] = wrap(text, indent);
    out.push(`  ${label.padEnd(labelWidth)}  ${first}`);
    out.push(...rest.map((line) => `${' '.repeat(indent)}${line}`));
  }
  return out;
}

export function usageLine(spec: CommandSpec): string {
  const hasOptions = Object.keys(spec.options).length > 0;
  return `dmabuf ${spec.name}${hasOptions ? ' [options]' : ''}${spec.positionals ? ` ${spec.positionals}` : ''}`;
}

/** The help of one command. */
export function commandHelp(spec: CommandSpec): string {
  const lines = [`Usage: ${usageLine(spec)}`, '', ...wrap(spec.summary, 0)];
  for (const paragraph of spec.details ?? []) lines.push('', ...wrap(paragraph, 0));
  const rows: Array<[string, string]> = Object.entries(spec.options).map(([name, option]) => [optionLabel(name, option), optionText(option)]);
  rows.push(['-h, --help', 'print this help']);
  lines.push('', 'Options:', ...columns(rows));
  return lines.join('\n');
}

/** The list of commands (those under `prefix`, for `dmabuf vm --help`). */
export function generalHelp(prefix = ''): string {
  const listed = Object.values(commands).filter((spec) => spec.name.startsWith(prefix));
  const lines = [`Usage: dmabuf ${prefix}<command> [options]`, '', 'Commands:', ...columns(listed.map((spec): [string, string] => [spec.name === 'help' ? `help ${commands.help.positionals}` : spec.name, spec.summary]))];
  lines.push('', `Run 'dmabuf <command> --help' for a command's options.`);
  if (!prefix) lines.push('', 'Environment:', ...columns(environment.map(([name, text]) => [name, text])));
  return lines.join('\n');
}

export type OptionName<C extends CommandName> = keyof (typeof commands)[C]['options'] & string;

/** A command's parsed words; the getters take only names in its table. */
export interface ParsedCommand<K extends string> {
  help: boolean;
  string(name: K): string | undefined;
  strings(name: K): string[];
  boolean(name: K): boolean;
  positionals: string[];
  /** The words after `--`, for a pass-through command. */
  rest: string[];
}

function parseArgsOptions(spec: CommandSpec): NonNullable<ParseArgsConfig['options']> {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const [name, option] of Object.entries(spec.options)) {
    options[name] = { type: option.type, ...(option.multiple ? { multiple: true } : {}), ...(option.default !== undefined ? { default: option.default } : {}) };
  }
  options.help = { type: 'boolean', short: 'h' };
  return options;
}

/** The option a parseArgs error is about, from its message. */
function quotedWord(message: string): string {
  return /'([^'\s]+)/.exec(message)?.[1] ?? '';
}

/** Parses a command's words by its table; a mistake is a UsageError that names it. */
export function parseCommand<C extends CommandName>(command: C, argv: readonly string[]): ParsedCommand<OptionName<C>> {
  const spec: CommandSpec = commands[command];
  const separator = spec.passThrough ? argv.indexOf('--') : -1;
  const words = separator < 0 ? [...argv] : argv.slice(0, separator);
  const rest = separator < 0 ? [] : argv.slice(separator + 1);
  const helpAt = words.findIndex((word) => word === '--help' || word === '-h');
  let parsed: { values: Record<string, string | boolean | Array<string | boolean> | undefined>; positionals: string[] };
  const result = (help: boolean): ParsedCommand<OptionName<C>> => ({
    help,
    string: (name) => (typeof parsed.values[name] === 'string' ? (parsed.values[name] as string) : undefined),
    strings: (name) => (Array.isArray(parsed.values[name]) ? (parsed.values[name] as string[]) : []),
    boolean: (name) => parsed.values[name] === true,
    get positionals() {
      return parsed.positionals;
    },
    rest,
  });
  if (helpAt >= 0 && !words.slice(0, helpAt).includes('--')) {
    parsed = { values: {}, positionals: [] };
    return result(true);
  }
  try {
    parsed = parseArgs({ args: words, options: parseArgsOptions(spec), allowPositionals: spec.positionals !== undefined, strict: true });
  } catch (error) {
    const { code, message } = error as { code?: string; message: string };
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown option '${quotedWord(message)}'`, spec.name);
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new UsageError(`unexpected argument '${quotedWord(message)}'`, spec.name);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const name = quotedWord(message).replace(/^-+/, '');
      const option = spec.options[name];
      if (option?.type === 'boolean') throw new UsageError(`--${name} takes no value`, spec.name);
      throw new UsageError(`--${name} needs a value: ${option ? optionLabel(name, option) : message}`, spec.name);
    }
    throw error;
  }
  for (const [name, option] of Object.entries(spec.options)) {
    if (!option.choices) continue;
    const given = parsed.values[name];
    for (const value of Array.isArray(given) ? given : typeof given === 'string' ? [given] : []) {
      if (typeof value === 'string' && !option.choices.includes(value)) throw new UsageError(`--${name} takes one of ${option.choices.join(', ')}, got '${value}'`, spec.name);
    }
  }
  return result(false);
}
