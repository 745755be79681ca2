import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { kernelBufferCount, requireVm } from './helpers';
import { withKernelModule } from './kernel-modules';

const example = join(__dirname, '..', '..', '..', 'examples', 'camera-to-gpu.js');

interface ExampleStats {
  copy: boolean;
  frames: number;
  shown: number;
  imports: number;
  buffers: number;
  framesPerSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  shownOn: string;
}

describe('examples/camera-to-gpu.js: vivid to vkms through FdChannel', () => {
  requireVm();
  withKernelModule('vivid', ['n_devs=1', 'node_types=0x1']);
  withKernelModule('vkms');

  for (const copy of [false, true]) {
    it(`${copy ? '--copy: 12 frames, each copied through mmap into a dumb buffer (no PRIME import)' : 'zero-copy: 12 frames, each capture buffer PRIME-imported once, not copied'}, each read back from GETCRTC as the framebuffer vkms scans out; no dma-buf is left when both processes exit`, function () {
      this.timeout(180_000);
      const before = kernelBufferCount();
      const result = spawnSync(process.execPath, [example, '--frames', '12', '--json', ...(copy ? ['--copy'] : [])], { encoding: 'utf8', timeout: 170_000 });
      assert.equal(result.status, 0, result.stderr);
      const stats = JSON.parse(result.stdout.trim().split('\n').pop()!) as ExampleStats;
      assert.equal(stats.copy, copy);
      assert.equal(stats.frames, 12);
      assert.equal(stats.shown, 12, 'frames whose framebuffer GETCRTC then reported');
      if (copy) assert.equal(stats.imports, 0);
      else assert.equal(stats.imports, Math.min(12, stats.buffers), 'one import per capture buffer, reused for every frame it fills');
      assert.match(stats.shownOn, /^vkms crtc \d+$/);
      assert.ok(stats.latencyMs.p50 > 0 && stats.latencyMs.p50 <= stats.latencyMs.p99, JSON.stringify(stats.latencyMs));
      assert.equal(kernelBufferCount(), before, 'dma-bufs in the kernel before and after');
    });
  }
});
