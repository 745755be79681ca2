/**
 * `npm run bench:camera [-- --kernel K|all] [--frames N --fps F --width W --height H]`:
 * boots the VM once per kernel, loads vivid (the camera) and vkms (the
 * display), and runs bench/camera.ts there: examples/camera-to-gpu.js
 * zero-copy and copying through mmap, in alternating rounds of one boot.
 */
import { join, resolve } from 'node:path';
import { run } from '../lib/vm';
import { rounds, spread, warmupRounds, type Spread } from './measure';
import { parseArguments, runBenchMain } from './run';
import type { CameraResult, CameraRound } from './camera';

const root = resolve(__dirname, '..', '..');
const cell = (values: Spread, digits: number) => `${values.min.toFixed(digits)} / ${values.median.toFixed(digits)} / ${values.max.toFixed(digits)}`;

function rowsOf(kernel: string, release: string, result: CameraResult): string[] {
  const cameraFps = new Set([...result.zeroCopy, ...result.copy].map((r) => r.cameraFps));
  const row = (label: string, measured: CameraRound[]) =>
    `| ${kernel} (${release}) | ${label} | ${[...cameraFps].join(', ')} | ${cell(spread(measured.map((r) => r.framesPerSecond)), 1)} | ${cell(spread(measured.map((r) => r.latencyMs.p50)), 1)} | ${cell(spread(measured.map((r) => r.latencyMs.p99)), 1)} |`;
  return [row('zero-copy: EXPBUF → FdChannel → PRIME import → ADDFB2 → SETCRTC', result.zeroCopy), row('reference: the same, the display copying each frame through mmap into a dumb buffer', result.copy)];
}

async function main(): Promise<number> {
  const { kernels, guestArgs } = parseArguments(process.argv.slice(2));
  const lines = [
    `vivid captures XR24 frames, vkms shows them; each mode: ${warmupRounds} warm-up rounds, then ${rounds} measured rounds, alternating, each round two fresh processes. Cells are min / median / max over the rounds.`,
    '',
    '| kernel | pipeline | camera frames/s (what it chose for --fps) | frames/s shown | dequeued → shown p50 (ms) | p99 (ms) |',
    '| --- | --- | ---: | ---: | ---: | ---: |',
  ];
  let status = 0;
  for (const kernel of kernels) {
    const script = 'modprobe -d "$DMABUF_KERNEL_MODULES" vivid n_devs=1 node_types=0x1 && modprobe -d "$DMABUF_KERNEL_MODULES" vkms && exec "$0" "$@"';
    const result = await run({
      command: ['sh', '-c', script, process.execPath, join(root, 'dist', 'bench', 'camera.js'), ...guestArgs],
      cwd: root,
      kernel,
      timeoutMs: 60 * 60_000,
      onStderr: (chunk) => process.stderr.write(chunk),
    });
    const last = result.stdout.trim().split('\n').pop() ?? '';
    if (!result.ok || !last.startsWith('{')) {
      process.stderr.write(`${result.summary}\n`);
      lines.push(`| ${kernel} | failed: ${result.summary.split('\n')[0]} | | | | |`);
      status = 1;
      continue;
    }
    lines.push(...rowsOf(kernel, result.kernel.release ?? '?', JSON.parse(last) as CameraResult));
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return status;
}

runBenchMain(main);
