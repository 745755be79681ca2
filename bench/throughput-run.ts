/**
 * `npm run bench:throughput [-- --kernel K|all] [--consumers N --fps F --seconds S]`:
 * boots the VM once per kernel and runs bench/throughput.ts there (one
 * producer, N consumer processes), printing one table row per kernel.
 * The guest gets 6 GiB: a hundred Node processes do not fit in the default 2.
 */
import { resolve, join } from 'node:path';
import { run } from '../lib/vm';
import { parseArguments, runBenchMain } from './run';
import type { ThroughputResult } from './throughput';

const root = resolve(__dirname, '..', '..');

async function main(): Promise<number> {
  const { kernels, guestArgs } = parseArguments(process.argv.slice(2));
  const lines = [
    '| kernel | consumers × fps × s (after warm-up s) | frames lost | worst producer lag | send → held p50 / p99 / max | CPU per frame: producer / all consumers | fds left open (producer / consumers) | all delivered after |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  let status = 0;
  for (const kernel of kernels) {
    const result = await run({
      command: [process.execPath, join(root, 'dist', 'bench', 'throughput.js'), ...guestArgs],
      cwd: root,
      kernel,
      memoryMiB: 6144,
      timeoutMs: 30 * 60_000,
      onStderr: (chunk) => process.stderr.write(chunk),
    });
    const last = result.stdout.trim().split('\n').pop() ?? '';
    if (!last.startsWith('{')) {
      process.stderr.write(`${result.summary}\n`);
      lines.push(`| ${kernel} | failed: ${result.summary.split('\n')[0]} | | | | | | |`);
      status = 1;
      continue;
    }
    const r = JSON.parse(last) as ThroughputResult;
    if (!result.ok) status = 1;
    lines.push(
      `| ${kernel} (${result.kernel.release ?? '?'}) | ${r.consumers} × ${r.fps} × ${r.seconds} (${r.warmupSeconds}) | ${r.framesLost} | ${r.producerLagMs.toFixed(1)} ms | ${r.latencyMs.p50.toFixed(1)} / ${r.latencyMs.p99.toFixed(1)} / ${r.latencyMs.max.toFixed(1)} ms | ${r.producerCpuMsPerFrame.toFixed(2)} / ${r.consumersCpuMsPerFrame.toFixed(2)} ms | ${r.fdsLeaked.producer} / ${r.fdsLeaked.consumers} | ${r.drainSeconds.toFixed(1)} s |`,
    );
    if (r.badFrames.length > 0) process.stderr.write(`bench: ${kernel}: ${r.badFrames.join('; ')}\n`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return status;
}

runBenchMain(main);
