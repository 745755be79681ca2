/**
 * `npm run bench`: builds the C baseline against the VM kernel's headers,
 * boots the VM once, runs bench/guest.ts there, and prints the table of
 * JavaScript/C ratios. Not a test: nothing here passes or fails on speed
 * (the exit status is 1 only when a library row could not be measured).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildKernel, generationNames, isKernelGeneration, kernelHeaders, run, type KernelGeneration } from '../lib/vm';
import { cacheRoot } from '../lib/vm/paths';
import { rounds, warmupRounds, type Row, type Spread } from './measure';

const root = resolve(__dirname, '..', '..');

// target 0: a row to compare with, not one the library must reach.
// role 'reference': no C counterpart, so no ratio.
const descriptions: Record<string, { label: string; unit: string; scale: number; target: number; role?: 'peer' | 'reference' }> = {
  'sync-checked': { label: 'sync start+end, fences checked first (default)', unit: 'pairs/s', scale: 1, target: 0.8 },
  sync: { label: 'sync start+end, { block: true }', unit: 'pairs/s', scale: 1, target: 0.8 },
  create: { label: 'udmabuf create+close (64 KiB)', unit: 'buffers/s', scale: 1, target: 0.8 },
  memcpy: { label: 'memcpy into a mapped 16 MiB udmabuf', unit: 'MiB/s', scale: 1 / (1024 * 1024), target: 0.9 },
  fence: { label: 'fence import+export+signal+wait round trip', unit: 'round trips/s', scale: 1, target: 0.8 },
  fdpass: { label: 'round trip with one DmaBuf each way, FdChannel (2 processes, 50-byte frames)', unit: 'round trips/s', scale: 1, target: 0 },

  'fdpass-usocket': { label: 'round trip with one dma-buf fd each way, usocket (2 processes, 50 bytes)', unit: 'round trips/s', scale: 1, target: 0, role: 'peer' },
};

/** Rows measured alongside another, in its rounds (Row.alongside): no C counterpart, no ratio. A reference is not the library's. */
const alongsideRows: Record<string, { label: string; reference: boolean }> = {
  'node-net': { label: 'reference, in the same rounds: the same 50-byte round trip without fds, Node net sockets (2 processes)', reference: true },
  floor: { label: "reference, in the same rounds: the addon's primitives alone on that path, a dma-buf fd each way, no framing (2 processes)", reference: true },
  'fd-socket': { label: 'in the same rounds: the same 50 bytes with a dma-buf fd each way, FdSocket (bytes and fd numbers, no JSON or handle objects; 2 processes)', reference: false },
};

/** The fd-passing row's sides compared with Node net, medians of the same rounds. */
const toNetRatios: ReadonlyArray<{ side: string; label: string }> = [
  { side: 'js', label: 'FdChannel with one DmaBuf each way / Node net with none' },
  { side: 'fd-socket', label: 'FdSocket with one dma-buf fd each way / Node net with none' },
  { side: 'floor', label: 'the floor (primitives, a dma-buf fd each way) / Node net with none' },
];

/**
 * usocket, the existing Node fd-passing module, is the peer to beat. It is
 * installed into the cache (never a dependency of this package) and left out
 * of the table where it does not build.
 */
function installUsocket(): string | undefined {
  const prefix = join(cacheRoot(), 'bench-peers');
  if (existsSync(join(prefix, 'node_modules', 'usocket', 'build', 'Release'))) return prefix;
  mkdirSync(prefix, { recursive: true });
  const install = spawnSync('npm', ['install', '--prefix', prefix, '--no-save', '--no-audit', '--no-fund', 'usocket@1.1.0'], { encoding: 'utf8' });
  if (install.status !== 0 || !existsSync(join(prefix, 'node_modules', 'usocket', 'build', 'Release'))) {
    process.stderr.write(`bench: usocket did not install or build; its row is left out\n${install.stderr.slice(-2000)}\n`);
    return undefined;
  }
  return prefix;
}

/** The table `npm run bench` prints (exported so that its shape can be looked at without a VM). */
export function formatTable(rows: readonly Row[], release: string): { table: string; failedLibraryRow: boolean } {
  const lines = [
    `Linux ${release} under QEMU TCG, one boot. Every row runs in its own guest Node process: the JavaScript and C sessions (peer processes included) are opened once, given ${warmupRounds} warm-up rounds, then ${rounds} measured rounds, JavaScript and C alternating.`,
    `Each cell is min / median / max over the ${rounds} measured rounds; JS/C is median over median. A reference row has no C counterpart and no ratio.`,
    "CPU per op is the user + system time of every process of the side (the row's and its peer's) over the round, per op. The two processes of a ping-pong mostly take turns, so it tracks the rate, but they overlap somewhat (rate × CPU per op is above 1).",
    '',
    '| workload | iterations/round | JavaScript (min / median / max) | C (min / median / max) | JS/C (medians) | CPU per op, JavaScript (min / median / max) | CPU per op, C (min / median / max) | target |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  let failedLibraryRow = false;
  for (const row of rows) {
    const description = descriptions[row.workload]!;
    if (row.error || !row.js) {
      lines.push(`| ${description.label} | | failed: ${row.error ?? 'no measurement'} | | | | | ${description.role ?? ''} |`);
      if (!description.role) failedLibraryRow = true;
      continue;
    }
    const number = (value: number) => {
      const scaled = value * description.scale;
      return scaled.toFixed(scaled >= 100 ? 0 : 1);
    };
    const format = (values: Spread) => `${number(values.min)} / ${number(values.median)} / ${number(values.max)} ${description.unit}`;
    const ratio = row.c && description.role !== 'reference' ? (row.js.median / row.c.median).toFixed(2) : '—';
    const target = description.target > 0 ? `≥ ${description.target}` : (description.role ?? '');
    const cpu = (side: string) => {
      const values = row.cpu?.[side];
      return values ? `${microseconds(values.min)} / ${microseconds(values.median)} / ${microseconds(values.max)} µs` : '—';
    };
    lines.push(`| ${description.label} | ${row.iterations} | ${format(row.js)} | ${row.c ? format(row.c) : '—'} | ${ratio} | ${cpu('js')} | ${cpu('c')} | ${target} |`);
    for (const [name, values] of Object.entries(row.alongside ?? {})) {
      const alongsideRow = alongsideRows[name];
      lines.push(`| ${alongsideRow?.label ?? name} | ${row.iterations} | ${format(values)} | — | — | ${cpu(name)} | — | ${alongsideRow?.reference === false ? '' : 'reference'} |`);
    }
  }
  const ratios = toNetRatios.flatMap(({ side, label }) => {
    const ratio = toNet(rows, side);
    return ratio ? [`${label}, medians of the same rounds: ${ratio}`] : [];
  });
  if (ratios.length > 0) lines.push('', ...ratios);
  return { table: lines.join('\n'), failedLibraryRow };
}

function microseconds(seconds: number): string {
  return (seconds * 1e6).toFixed(0);
}

/** A side of the fd-passing row ('js' is FdChannel) over the Node net reference, medians of the same rounds; undefined when either is missing. */
export function toNet(rows: readonly Row[], side: string): string | undefined {
  const row = rows.find((candidate) => candidate.workload === 'fdpass');
  const measured = side === 'js' ? row?.js : row?.alongside?.[side];
  const net = row?.alongside?.['node-net'];
  return measured && net ? (measured.median / net.median).toFixed(2) : undefined;
}

/** The fd-passing row's CPU per round trip, medians of FdChannel, FdSocket, Node net, the floor and C, in µs. */
function roundTripCpu(rows: readonly Row[]): string {
  const cpu = rows.find((candidate) => candidate.workload === 'fdpass')?.cpu;
  return `${['js', 'fd-socket', 'node-net', 'floor', 'c'].map((side) => (cpu?.[side] ? microseconds(cpu[side].median) : '—')).join(' / ')} µs`;
}

/**
 * One column per kernel: the JavaScript median and JS/C per row, each from
 * that kernel's own boot (ratios never mix boots).
 */
export function formatKernelColumns(results: ReadonlyArray<{ kernel: string; release: string; rows: readonly Row[] }>): string {
  const workloads = [...new Set(results.flatMap((result) => result.rows.map((row) => row.workload)))];
  const lines = [
    `| workload | ${results.map((result) => `${result.kernel} (${result.release}): JS median, JS/C`).join(' | ')} |`,
    `| --- | ${results.map(() => '---:').join(' | ')} |`,
  ];
  for (const workload of workloads) {
    const description = descriptions[workload]!;
    const cells = results.map((result) => {
      const row = result.rows.find((candidate) => candidate.workload === workload);
      if (!row?.js) return row?.error ? `failed: ${row.error}` : '—';
      const scaled = row.js.median * description.scale;
      const ratio = row.c && description.role !== 'reference' ? `, ${(row.js.median / row.c.median).toFixed(2)}` : '';
      return `${scaled.toFixed(scaled >= 100 ? 0 : 1)} ${description.unit}${ratio}`;
    });
    lines.push(`| ${description.label} | ${cells.join(' | ')} |`);
    for (const name of Object.keys(alongsideRows)) {
      const alongside = results.map((result) => result.rows.find((candidate) => candidate.workload === workload)?.alongside?.[name]);
      if (alongside.every((values) => values === undefined)) continue;
      lines.push(`| ${alongsideRows[name]!.label} | ${alongside.map((values) => (values ? `${values.median.toFixed(0)} ${description.unit}` : '—')).join(' | ')} |`);
    }
  }
  for (const { side, label } of toNetRatios) lines.push(`| ${label} (medians, same rounds) | ${results.map((result) => toNet(result.rows, side) ?? '—').join(' | ')} |`);
  lines.push(`| CPU per round trip, both processes, medians: FdChannel / FdSocket / Node net / floor / C | ${results.map((result) => roundTripCpu(result.rows)).join(' | ')} |`);
  return lines.join('\n');
}

/** `--kernel 6.1|6.12|7.2|all` (repeatable) picks the kernels; every other argument goes to the guest. */
export function parseArguments(argv: readonly string[]): { kernels: KernelGeneration[]; guestArgs: string[] } {
  const kernels: KernelGeneration[] = [];
  const guestArgs: string[] = [];
  for (let index = 0; index < argv.length; index += 1) {
    if (argv[index] !== '--kernel') {
      guestArgs.push(argv[index]!);
      continue;
    }
    const value = argv[(index += 1)];
    if (value === 'all') kernels.push(...generationNames);
    else if (isKernelGeneration(value)) kernels.push(value);
    else throw new Error(`--kernel takes ${generationNames.join(', ')} or all, got '${value ?? ''}'`);
  }
  return { kernels: kernels.length > 0 ? [...new Set(kernels)] : [generationNames.includes('6.12') ? '6.12' : generationNames[0]!], guestArgs };
}

async function benchOneKernel(generation: KernelGeneration, guestArgs: readonly string[]): Promise<{ rows: Row[]; release: string } | undefined> {
  const kernel = await buildKernel({ kernel: generation, onProgress: (line) => process.stderr.write(`${line}\n`) });
  const include = await kernelHeaders(kernel);
  const scratch = mkdtempSync(join(tmpdir(), 'dmabuf-bench-'));
  try {
    const binary = join(scratch, 'baseline');
    const pingpong = join(scratch, 'fd_pingpong');
    for (const [output, source] of [[binary, 'baseline.c'], [pingpong, 'fd_pingpong.c']]) {
      const cc = spawnSync('gcc', ['-O2', '-Wall', '-isystem', include, '-o', output!, join(root, 'bench', source!)], { encoding: 'utf8' });
      if (cc.status !== 0) throw new Error(`building the C baseline ${source} failed:\n${cc.stderr}`);
    }
    const usocket = installUsocket();
    const result = await run({
      command: [process.execPath, join(root, 'dist', 'bench', 'guest.js'), ...guestArgs],
      cwd: root,
      kernel: generation,
      env: { DMABUF_BENCH_C: binary, DMABUF_BENCH_PINGPONG: pingpong, ...(usocket ? { DMABUF_BENCH_USOCKET: usocket } : {}) },
      timeoutMs: 30 * 60_000,
      onStderr: (chunk) => process.stderr.write(chunk),
    });
    if (!result.ok) {
      process.stderr.write(`${result.summary}\n`);
      return undefined;
    }
    return { rows: result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Row), release: result.kernel.release ?? 'unknown' };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const { kernels, guestArgs } = parseArguments(process.argv.slice(2));
  const results: Array<{ kernel: string; release: string; rows: Row[] }> = [];
  let status = 0;
  for (const generation of kernels) {
    const measured = await benchOneKernel(generation, guestArgs);
    if (!measured) {
      status = 1;
      continue;
    }
    const { table, failedLibraryRow } = formatTable(measured.rows, measured.release);
    process.stdout.write(`\n## ${generation}\n\n${table}\n`);
    if (failedLibraryRow) status = 1;
    results.push({ kernel: generation, ...measured });
  }
  if (results.length > 1) process.stdout.write(`\n## Per kernel\n\n${formatKernelColumns(results)}\n`);
  return status;
}

/** A host-side bench's entry point: its status is the exit code; a throw is one line on stderr and status 1. */
export function runBenchMain(main: () => Promise<number>): void {
  main().then(
    (status) => {
      process.exitCode = status;
    },
    (error: unknown) => {
      process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}

if (require.main === module) runBenchMain(main);
