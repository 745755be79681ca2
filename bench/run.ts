/**
 * `npm run bench`: builds the C baseline against the VM kernel's headers,
 * boots the VM once, runs bench/guest.ts there, and prints the table of
 * JavaScript/C ratios. Not a test: nothing here passes or fails on speed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildKernel, kernelHeaders, run } from '../lib/vm';
import { cacheRoot } from '../lib/vm/paths';

const root = resolve(__dirname, '..', '..');

interface Row {
  workload: string;
  js: number;
  c: number;
  /** Set when the JavaScript side could not be measured (a peer module that crashed). */
  error?: string;
}

// target 0: a row to compare with, not one the library must reach.
const descriptions: Record<string, { label: string; unit: string; scale: number; target: number; role?: string }> = {
  'sync-checked': { label: 'sync start+end, fences checked first (default)', unit: 'pairs/s', scale: 1, target: 0.8 },
  sync: { label: 'sync start+end, { block: true }', unit: 'pairs/s', scale: 1, target: 0.8 },
  create: { label: 'udmabuf create+close (64 KiB)', unit: 'buffers/s', scale: 1, target: 0.8 },
  memcpy: { label: 'memcpy into a mapped 16 MiB udmabuf', unit: 'MiB/s', scale: 1 / (1024 * 1024), target: 0.9 },
  fence: { label: 'fence import+export+signal+wait round trip', unit: 'round trips/s', scale: 1, target: 0.8 },
  fdpass: { label: 'fd passing round trip, FdChannel (2 processes)', unit: 'round trips/s', scale: 1, target: 0.8 },
  'fdpass-node-net': { label: 'reference: the same round trip without fds, Node net sockets', unit: 'round trips/s', scale: 1, target: 0, role: 'reference' },
  'fdpass-usocket': { label: 'fd passing round trip, usocket (2 processes)', unit: 'round trips/s', scale: 1, target: 0 },
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
    const lines = [
      `Linux ${result.kernel.release} under QEMU TCG, one boot; best of 5 rounds each, JS and C alternating.`,
      '',
      '| workload | JavaScript | C | JS/C | target |',
      '| --- | ---: | ---: | ---: | ---: |',
    ];
    for (const row of rows) {
      const description = descriptions[row.workload]!;
      if (row.error) {
        lines.push(`| ${description.label} | failed: ${row.error} | | | |`);
        continue;
      }
      const format = (value: number) => `${(value * description.scale).toFixed(value * description.scale >= 100 ? 0 : 1)} ${description.unit}`;
      const ratio = row.js / row.c;
      lines.push(`| ${description.label} | ${format(row.js)} | ${format(row.c)} | ${ratio.toFixed(2)} | ${description.target > 0 ? `≥ ${description.target}` : (description.role ?? 'peer')} |`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
