import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { commands, commandNames, type CommandSpec } from '../../lib/cli/commands';
import { hostKernelOptions } from '../../lib/devices';
import { run, VmSetupError } from '../../lib/vm';
import { kernelCacheKey } from '../../lib/vm/kernel';
import { generationNames } from '../../lib/vm/sources';

const root = join(__dirname, '..', '..');
const bin = join(root, 'bin', 'dmabuf.js');
const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
const specs = Object.values(commands) as CommandSpec[];

/** The options of `hostKernelOptions` this host's config lacks, read with zcat and a line search (not the code under test); undefined without a readable config. */
function hostConfigLacks(): string[] | undefined {
  const zcat = spawnSync('zcat', ['/proc/config.gz'], { encoding: 'utf8', maxBuffer: 16 << 20 });
  let text = zcat.status === 0 ? zcat.stdout : undefined;
  try {
    text ??= readFileSync(`/boot/config-${release()}`, 'utf8');
  } catch {
    return undefined;
  }
  return hostKernelOptions.map(({ name }) => name).filter((name) => !new RegExp(`^${name}=[ym]$`, 'm').test(text!));
}

describe('command line help', () => {
  it('lists every command of the table in dmabuf help, and exits 0', () => {
    const result = cli(['help']);
    assert.equal(result.status, 0);
    for (const spec of specs) assert.match(result.stdout, new RegExp(`^  ${spec.name}\\b`, 'm'), spec.name);
  });

  for (const spec of specs) {
    const words = spec.name.split(' ');
    it(`prints the help of ${spec.name} for --help, -h and dmabuf help ${spec.name}: the usage line and every option with its default`, () => {
      const outputs = [cli([...words, '--help']), cli([...words, '-h']), cli(['help', ...words])].map((result) => {
        assert.equal(result.status, 0, result.stderr);
        return result.stdout;
      });
      assert.equal(outputs[1], outputs[0]);
      assert.equal(outputs[2], outputs[0]);
      assert.ok(outputs[0]!.startsWith(`Usage: dmabuf ${spec.name}`), outputs[0]);
      for (const [name, option] of Object.entries(spec.options)) {
        const line = outputs[0]!.split('\n').findIndex((text) => text.startsWith(`  --${name}${option.type === 'string' ? ' ' : ''}`));
        assert.ok(line >= 0, `--${name} is in the help`);
        const shown = option.defaultText ?? (Array.isArray(option.default) ? option.default.join(', ') : option.default);
        if (shown !== undefined) assert.ok(outputs[0]!.replace(/\s+/g, ' ').includes(`default ${shown})`), `--${name} shows its default ${shown}`);
      }
    });
  }

  it('lists the vm commands for dmabuf vm --help', () => {
    const result = cli(['vm', '--help']);
    assert.equal(result.status, 0);
    assert.deepEqual([...result.stdout.matchAll(/^ {2}(vm \S+)/gm)].map((match) => match[1]), commandNames.filter((name) => name.startsWith('vm ')));
  });

  it('passes --help after -- to the guest command instead of printing vm run\'s help', () => {
    // Without a kernel source the run stops before booting: what matters is that it tried to run.
    const result = cli(['vm', 'run', '--', 'ls', '--help'], { DMABUF_KERNEL: '/nonexistent/linux.tar.xz' });
    assert.equal(result.status, 1);
    assert.doesNotMatch(result.stdout, /Usage:/);
    assert.match(result.stderr, /Kernel source \/nonexistent\/linux\.tar\.xz not found/);
  });
});

describe('command line usage errors', () => {
  for (const spec of specs.filter((candidate) => candidate.name !== 'help')) {
    it(`exits 2 for an unknown option of ${spec.name}, naming it and pointing to its --help`, () => {
      const result = cli([...spec.name.split(' '), '--no-such-option']);
      assert.equal(result.status, 2);
      assert.equal(result.stdout, '');
      assert.equal(result.stderr, `dmabuf ${spec.name}: unknown option '--no-such-option'\nRun 'dmabuf ${spec.name} --help' for its usage.\n`);
    });
  }

  for (const [args, message] of [
    [['frobnicate'], /^dmabuf: unknown command 'frobnicate'\nRun 'dmabuf help' for the commands\.\n$/],
    [[], /^dmabuf: no command given\n/],
    [['vm'], /^dmabuf vm: needs a command: run, build-kernel, fetch-source, info\nRun 'dmabuf vm --help'/],
    [['vm', 'frob'], /^dmabuf vm: unknown command 'vm frob'\nRun 'dmabuf vm --help'/],
    [['help', 'frob'], /^dmabuf: unknown command 'frob'/],
    [['vm', 'run'], /^dmabuf vm run: needs a command: dmabuf vm run \[options\] -- <command> \[args\.\.\.\]\n/],
    [['vm', 'run', '--timeout'], /^dmabuf vm run: --timeout needs a value: --timeout <seconds>\n/],
    [['vm', 'run', '--timeout', 'soon', '--', 'true'], /^dmabuf vm run: --timeout takes a positive whole number, got 'soon'\n/],
    [['vm', 'run', '--quiet=yes', '--', 'true'], /^dmabuf vm run: --quiet takes no value\n/],
    [['vm', 'run', '--profile', 'huge', '--', 'true'], /^dmabuf vm run: --profile takes one of base, debug, no-move-notify, got 'huge'\n/],
    [['vm', 'run', '--accel', 'xen', '--', 'true'], /^dmabuf vm run: --accel takes one of tcg, kvm, got 'xen'\n/],
    [['vm', 'run', '--kernel', '7.2', '--profile', 'no-move-notify', '--', 'true'], /kernel 7\.2 has no 'no-move-notify' profile \(it has base, debug\)/],
    [['vm', 'build-kernel', '--kernel', '6.6'], /kernel 6\.6 is not one of the tested generations \(6\.1, 6\.12, 7\.2\)/],
    [['vm', 'fetch-source', '--kernel', '5.10'], /^dmabuf vm fetch-source: --kernel takes one of 6\.1, 6\.12, 7\.2, got '5\.10'\n/],
    [['vm', 'info', 'extra'], /^dmabuf vm info: unexpected argument 'extra'\n/],
    [['devices', '--host', '--vm'], /^dmabuf devices: takes --host or --vm, not both\n/],
    [['ls', '--pid', '0'], /^dmabuf ls: --pid takes a positive whole number, got '0'\n/],
  ] as const) {
    it(`exits 2 with a usage message for: dmabuf ${args.join(' ')}`, () => {
      const result = cli([...args]);
      assert.equal(result.status, 2);
      assert.match(result.stderr, message);
    });
  }

  it('says how to get a missing kernel source', () => {
    const result = cli(['vm', 'run', '--', 'true'], { DMABUF_KERNEL_SOURCE: '/nonexistent/linux.tar.xz' });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /Kernel source \/nonexistent\/linux\.tar\.xz not found/);
    assert.match(result.stderr, /--kernel 6\.1\|6\.12\|7\.2/);
  });
});

/**
 * Every place outside lib/cli that names a command or an option of the
 * command line: the README, the setup script, the Dockerfile, examples, and
 * the hints of lib's errors. Each must exist in the table.
 */
interface Mention {
  where: string;
  /** The command, when the mention names one; undefined for a bare option in a hint or the README's VM runner section. */
  command?: string;
  option?: string;
}

/** `dmabuf <command> [--option ...]` invocations in a text, up to a bare `--`, a shell operator, a comment or the end of a quote. */
function invocationsIn(text: string, where: string): Mention[] {
  const mentions: Mention[] = [];
  const pattern = /(?:\bnpx\s+dmabuf|\bbin\/dmabuf\.js|\bdmabuf(?=\s+(?:vm|devices|ls|help)\b)|(?<=`)(?=vm\s))\s*([^\n`'|;&#]*)/g;
  for (const match of text.matchAll(pattern)) {
    const words = match[1]!.trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) continue;
    const strip = (word: string) => word.replace(/[.,:;)]+$/, '');
    const command = words[0] === 'vm' ? `vm ${strip(words[1] ?? '')}` : strip(words[0]!);
    mentions.push({ where, command });
    for (const word of words.slice(command.split(' ').length)) {
      if (word === '--') break;
      if (word.startsWith('--')) mentions.push({ where, command, option: strip(word.replace(/=.*$/, '')) });
    }
  }
  return mentions;
}

function sourceFiles(dir: string, pattern: RegExp): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (name === 'node_modules' || name === 'dist' || name === 'build') continue;
    if (statSync(path).isDirectory()) found.push(...sourceFiles(path, pattern));
    else if (pattern.test(name)) found.push(path);
  }
  return found;
}

function mentionsInRepository(): Mention[] {
  const mentions: Mention[] = [];
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  mentions.push(...invocationsIn(readme, 'README.md'));
  const vmSection = readme.slice(readme.indexOf('\n## The VM runner'), readme.indexOf('\n## ', readme.indexOf('\n## The VM runner') + 1));
  for (const match of vmSection.matchAll(/`(--[a-z][a-z-]*)/g)) mentions.push({ where: 'README.md (The VM runner)', option: match[1]! });
  const files = [
    join(root, 'Dockerfile'),
    join(root, 'kernel-module', 'Makefile'),
    ...sourceFiles(join(root, 'scripts'), /\.sh$/),
    ...sourceFiles(join(root, 'examples'), /\.js$/),
    ...sourceFiles(join(root, 'bench'), /\.ts$/),
    ...sourceFiles(join(root, 'lib'), /\.ts$/).filter((path) => !path.includes(`${join('lib', 'cli')}`)),
    ...sourceFiles(join(root, 'test'), /\.(ts|js)$/).filter((path) => path !== __filename),
  ];
  for (const path of files) {
    const where = relative(root, path);
    const text = readFileSync(path, 'utf8');
    mentions.push(...invocationsIn(text, where));
    // A hint names options without the command: they must exist in some command.
    for (const line of text.split('\n').filter((candidate) => /VmSetupError\(|ERR_DMABUF_VM_SETUP|\bhint\b|\bthe VM with\b/.test(candidate))) {
      for (const match of line.matchAll(/(?<![\w-])(--[a-z][a-z-]*)/g)) mentions.push({ where: `${where} (hint)`, option: match[1]! });
    }
  }
  return mentions;
}

/** The mentions the table does not have. */
function unknownMentions(mentions: Mention[]): string[] {
  const table = commands as Record<string, CommandSpec>;
  const anyOption = new Set(specs.flatMap((spec) => Object.keys(spec.options).map((name) => `--${name}`)));
  const problems: string[] = [];
  for (const mention of mentions) {
    const spec = mention.command === undefined ? undefined : table[mention.command];
    if (mention.command !== undefined && !spec) problems.push(`${mention.where}: no command '${mention.command}'`);
    else if (mention.option === undefined || mention.option === '--help') continue;
    else if (spec && !Object.hasOwn(spec.options, mention.option.slice(2))) problems.push(`${mention.where}: ${mention.command} has no ${mention.option}`);
    else if (!spec && !anyOption.has(mention.option)) problems.push(`${mention.where}: no command has ${mention.option}`);
  }
  return problems;
}

describe('what the repository says about the command line agrees with its table', () => {
  const mentions = mentionsInRepository();

  it('names only commands and options the table has (README, hints in lib, scripts, Dockerfile, examples, tests)', () => {
    assert.deepEqual(unknownMentions(mentions), []);
  });

  it('finds the mentions it checks: in the README, the setup script, the Dockerfile and the hints of lib', () => {
    for (const [where, expected] of [['README.md', 'vm run --module'], ['scripts/setup.sh', 'vm fetch-source --all'], ['Dockerfile', 'vm build-kernel --profile'], ['lib/vm/kernel.ts (hint)', '--kernel-tree'], ['lib/vm/modules.ts (hint)', '--kernel-tree']] as const) {
      assert.ok(mentions.some((mention) => mention.where === where && `${mention.command ? `${mention.command} ` : ''}${mention.option}` === expected), `${where}: ${expected}`);
    }
  });

  it('names in the help texts only options of the command they describe (the list of commands: of any command)', () => {
    const anyOption = new Set(['--help', ...specs.flatMap((spec) => Object.keys(spec.options).map((name) => `--${name}`))]);
    const named = (text: string) => [...text.matchAll(/(?<![\w-])(--[a-z][a-z-]*)/g)].map((match) => match[1]!);
    assert.deepEqual(named(cli(['help']).stdout).filter((option) => !anyOption.has(option)), []);
    for (const spec of specs) {
      const own = new Set(['--help', ...Object.keys(spec.options).map((name) => `--${name}`)]);
      assert.deepEqual(named(cli(['help', ...spec.name.split(' ')]).stdout).filter((option) => !own.has(option)), [], spec.name);
    }
  });

  it('reports an option the table lacks, such as the --kernel-source an older hint named, and a command it lacks', () => {
    const sample = 'Pass it with `npx dmabuf vm run --kernel-source DIR -- true`, or run `vm boot`.';
    assert.deepEqual(unknownMentions(invocationsIn(sample, 'sample')), ['sample: vm run has no --kernel-source', "sample: no command 'vm boot'"]);
  });

  it('documents every command of the table in the README', () => {
    const documented = new Set(invocationsIn(readFileSync(join(root, 'README.md'), 'utf8'), 'README.md').map((mention) => mention.command));
    assert.deepEqual(commandNames.filter((name) => name !== 'help' && !documented.has(name)), []);
  });
});

describe('command line --json', () => {
  it('lists every generation and profile in vm info --json, with the cache size', () => {
    const result = cli(['vm', 'info', '--json']);
    assert.equal(result.status, 0, result.stderr);
    const info = JSON.parse(result.stdout) as { generations: Array<{ generation: string; sourcePackage: string; profiles: Record<string, unknown> }>; cacheBytes: number };
    assert.deepEqual(info.generations.map((entry) => [entry.generation, entry.sourcePackage, Object.keys(entry.profiles)]), [
      ['6.1', 'linux-source-6.1', ['base', 'debug', 'no-move-notify']],
      ['6.12', 'linux-source-6.12', ['base', 'debug', 'no-move-notify']],
      ['7.2', 'linux-source-7.2', ['base', 'debug']],
    ]);
    assert.equal(typeof info.cacheBytes, 'number');
  });

  describe('on a cache that holds the sources and a built kernel', () => {
    const withCacheDir = <T>(dir: string, body: () => T): T => {
      const saved = process.env.DMABUF_CACHE_DIR;
      process.env.DMABUF_CACHE_DIR = dir;
      try {
        return body();
      } finally {
        if (saved === undefined) delete process.env.DMABUF_CACHE_DIR;
        else process.env.DMABUF_CACHE_DIR = saved;
      }
    };
    let cache: string;
    before(() => {
      cache = mkdtempSync(join(tmpdir(), 'dmabuf-cli-'));
      mkdirSync(join(cache, 'sources'));
      for (const generation of generationNames) {
        writeFileSync(join(cache, 'sources', `linux-source-${generation}.tar.xz`), `source of ${generation}\n`);
        // The package version it came from: without one, fetch-source refetches it.
        writeFileSync(join(cache, 'sources', `linux-source-${generation}.version`), '1.0-1\n');
      }
    });
    after(() => rmSync(cache, { recursive: true, force: true }));

    it('prints the sources it has, without fetching, for vm fetch-source --all --json', () => {
      const result = cli(['vm', 'fetch-source', '--all', '--json'], { DMABUF_CACHE_DIR: cache });
      assert.equal(result.status, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout), { sources: generationNames.map((generation) => ({ generation, path: join(cache, 'sources', `linux-source-${generation}.tar.xz`) })) });
    });

    it('prints the cached kernel as JSON for vm build-kernel --json, building nothing', () => {
      const { key, dir } = withCacheDir(cache, () => kernelCacheKey('debug', { generation: '6.1', path: join(cache, 'sources', 'linux-source-6.1.tar.xz') }));
      assert.ok(dir.startsWith(`${cache}/`), `${key} is under the test's cache`);
      mkdirSync(join(dir, 'tree'), { recursive: true });
      writeFileSync(join(dir, 'bzImage'), 'not a real image');
      writeFileSync(join(dir, 'kernel.json'), JSON.stringify({ release: '6.1.0-test', profile: 'debug', generation: '6.1', source: 'x', era: 'kernel-6.x.config', builtAt: new Date().toISOString() }));
      const result = cli(['vm', 'build-kernel', '--kernel', '6.1', '--profile', 'debug', '--json'], { DMABUF_CACHE_DIR: cache });
      assert.equal(result.status, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout), { bzImage: join(dir, 'bzImage'), tree: join(dir, 'tree'), release: '6.1.0-test', profile: 'debug', generation: '6.1', cached: true });
      assert.equal(result.stderr, '');
    }).timeout(60_000);
  });

  it('reports this host\'s devices and diagnosis for devices --host --json, the missing options as the real config has them', () => {
    const result = cli(['devices', '--host', '--json']);
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout) as { answeredBy: string; diagnosis: { missingOptions?: string[] } };
    assert.equal(report.answeredBy, 'host');
    assert.deepEqual(report.diagnosis.missingOptions, hostConfigLacks());
  });

  it('prints, after the devices, each option this host\'s config lacks and what it would take, for devices --host', () => {
    const result = cli(['devices', '--host']);
    assert.equal(result.status, 0, result.stderr);
    const lacked = hostConfigLacks();
    if (lacked === undefined) assert.match(result.stdout, /kernel options: unknown/);
    else if (lacked.length > 0) assert.match(result.stdout, /^what it would take on this host:$/m);
    for (const name of lacked ?? []) assert.match(result.stdout, new RegExp(`^ {4}${name}\\s+(not set|absent)\\s`, 'm'));
  });
});

describe('VM runner preconditions', () => {
  it('says how to install a missing QEMU', async () => {
    await assert.rejects(run({ command: 'true', qemuBinary: 'qemu-system-nonexistent' }), (error: unknown) => {
      assert.ok(error instanceof VmSetupError);
      assert.equal(error.code, 'ERR_DMABUF_VM_SETUP');
      assert.match(error.message, /QEMU \(qemu-system-nonexistent\) is not installed/);
      assert.match(error.hint, /apt-get install -y qemu-system-x86/);
      return true;
    });
  });

  it('rejects bad options before booting anything', async () => {
    await assert.rejects(run({ command: 5 as unknown as string }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    await assert.rejects(run({ command: ['true', 5 as unknown as string] }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /options\.command\[1\]/ });
    await assert.rejects(run({ command: [] }), { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' });
    await assert.rejects(run({ command: 'true', cpus: 0 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    await assert.rejects(run({ command: 'true', timeoutMs: 1.5 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  });
});
