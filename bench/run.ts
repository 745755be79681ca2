/**
 * `npm run bench`: builds the C baseline against the VM kernel's headers,
 * boots the VM once, runs bench/guest.ts there, and prints the table of
 * JavaScript/C ratios. Not a test: nothing here passes or fails on speed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildKernel, kernelHeaders, run } from '../lib/vm';

const root = resolve(__dirname, '..', '..');

interface Row {
  workload: string;
  js: number;
  c: number;
}

const descriptions: Record<string, { label: string; unit: string; scale: number; target: number }> = {
  'sync-checked': { label: 'sync start+end, fences checked first (default)', unit: 'pairs/s', scale: 1, target: 0.8 },
  sync: { label: 'sync start+end, { block: true }', unit: 'pairs/s', scale: 1, target: 0.8 },
  create: { label: 'udmabuf create+close (64 KiB)', unit: 'buffers/s', scale: 1, target: 0.8 },
  memcpy: { label: 'memcpy into a mapped 16 MiB udmabuf', unit: 'MiB/s', scale: 1 / (1024 * 1024), target: 0.9 },
  fence: { label: 'fence import+export+signal+wait round trip', unit: 'round trips/s', scale: 1, target: 0.8 },
};

async function main(): Promise<number> {
  const kernel = await buildKernel({ onProgress: (line) => process.stderr.write(`${line}\n`) });
  const include = await kernelHeaders(kernel);
  const scratch = mkdtempSync(join(tmpdir(), 'dmabuf-bench-'));
  try {
    const binary = join(scratch, 'baseline');
    const cc = spawnSync('gcc', ['-O2', '-Wall', '-isystem', include, '-o', binary, join(root, 'bench', 'baseline.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`building the C baseline failed:\n${cc.stderr}`);
    const result = await run({
      command: [process.execPath, join(root, 'dist', 'bench', 'guest.js'), ...process.argv.slice(2)],
      cwd: root,
      env: { DMABUF_BENCH_C: binary },
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
      const format = (value: number) => `${(value * description.scale).toFixed(value * description.scale >= 100 ? 0 : 1)} ${description.unit}`;
      const ratio = row.js / row.c;
      lines.push(`| ${description.label} | ${format(row.js)} | ${format(row.c)} | ${ratio.toFixed(2)} | ≥ ${description.target} |`);
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
