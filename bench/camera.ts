/**
 * Runs in the guest (bench/camera-run.ts boots it, vivid and vkms loaded):
 * examples/camera-to-gpu.js end to end, zero-copy and copying through mmap,
 * the same warm-up and the same rounds for both, alternating, each round a
 * fresh pair of processes. Prints one JSON line: the rounds of each mode.
 */
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { rounds, warmupRounds } from './measure';

const root = resolve(__dirname, '..', '..');
const example = join(root, 'examples', 'camera-to-gpu.js');

export interface CameraRound {
  frames: number;
  /** The rate the camera said it runs at after --fps. */
  cameraFps: number;
  framesPerSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  shownOn: string;
  shown: number;
  notShown?: string;
}

export interface CameraResult {
  frames: number;
  fps: number;
  width: number;
  height: number;
  zeroCopy: CameraRound[];
  copy: CameraRound[];
}

function round(copy: boolean, frames: number, fps: number, width: number, height: number): CameraRound {
  const args = [example, '--json', '--frames', String(frames), '--fps', String(fps), '--width', String(width), '--height', String(height), ...(copy ? ['--copy'] : [])];
  const output = execFileSync(process.execPath, args, { encoding: 'utf8', timeout: 10 * 60_000 });
  const outcome = JSON.parse(output.trim().split('\n').pop()!) as CameraRound;
  // The table reports frames shown: a round the display could not show
  // (the example goes on importing then) measures something else.
  if (outcome.shown !== outcome.frames) throw new Error(`${copy ? 'copy' : 'zero-copy'} round: ${outcome.shown} of ${outcome.frames} frames shown${outcome.notShown ? ` (${outcome.notShown})` : ''}`);
  return outcome;
}

function main(): void {
  const value = (name: string, fallback: number) => {
    const index = process.argv.indexOf(`--${name}`);
    return index < 0 ? fallback : Number(process.argv[index + 1]);
  };
  const frames = value('frames', 120);
  const fps = value('fps', 60);
  const width = value('width', 640);
  const height = value('height', 480);
  const result: CameraResult = { frames, fps, width, height, zeroCopy: [], copy: [] };
  for (let index = 0; index < warmupRounds + rounds; index += 1) {
    const measured = index >= warmupRounds;
    for (const copy of [false, true]) {
      const outcome = round(copy, frames, fps, width, height);
      if (measured) (copy ? result.copy : result.zeroCopy).push(outcome);
    }
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main();
