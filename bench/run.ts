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
import { buildKernel, kernelHeaders, run } from '../lib/vm';
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
  fdpass: { label: 'fd passing round trip, FdChannel (2 processes)', unit: 'round trips/s', scale: 1, target: 0.8 },
  'fdpass-node-net': { label: 'reference: the same round trip without fds, Node net sockets (2 processes)', unit: 'round trips/s', scale: 1, target: 0, role: 'reference' },
  'fdpass-usocket': { label: 'fd passing round trip, usocket (2 processes)', unit: 'round trips/s', scale: 1, target: 0, role: 'peer' },
};

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
    '',
    '| workload | iterations/round | JavaScript (min / median / max) | C (min / median / max) | JS/C (medians) | target |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  let failedLibraryRow = false;
  for (const row of rows) {
    const description = descriptions[row.workload]!;
    if (row.error || !row.js) {
      lines.push(`| ${description.label} | | failed: ${row.error ?? 'no measurement'} | | | ${description.role ?? ''} |`);
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
    lines.push(`| ${description.label} | ${row.iterations} | ${format(row.js)} | ${row.c ? format(row.c) : '—'} | ${ratio} | ${target} |`);
  }
  return { table: lines.join('\n'), failedLibraryRow };
}

async function main(): Promise<number> {
  const kernel = await buildKernel({ onProgress: (line) => process.stderr.write(`${line}\n`) });
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
      command: [process.execPath, join(root, 'dist', 'bench', 'guest.js'), ...process.argv.slice(2)],
      cwd: root,
      env: { DMABUF_BENCH_C: binary, DMABUF_BENCH_PINGPONG: pingpong, ...(usocket ? { DMABUF_BENCH_USOCKET: usocket } : {}) },
      timeoutMs: 30 * 60_000,
      onStderr: (chunk) => process.stderr.write(chunk),
    });
    if (!result.ok) {
      process.stderr.write(`${result.summary}\n`);
      return 1;
    }
    const rows = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Row);
    const { table, failedLibraryRow } = formatTable(rows, result.kernel.release ?? 'unknown');
    process.stdout.write(`${table}\n`);
    return failedLibraryRow ? 1 : 0;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (require.main === module) {
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
