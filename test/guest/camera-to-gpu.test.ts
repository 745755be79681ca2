import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { release } from 'node:os';
import { join } from 'node:path';
import { DrmDevice, fourccFromString } from '../../lib';
import { kernelBufferCount, requireVm } from './helpers';
import { withKernelModule } from './kernel-modules';

const example = join(__dirname, '..', '..', '..', 'examples', 'camera-to-gpu.js');
const generation = /^(\d+\.\d+)/.exec(release())?.[1];

interface ExampleStats {
  copy: boolean;
  frames: number;
  shown: number;
  imports: number;
  buffers: number;
  framesPerSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  shownOn: string;
  notShown?: string;
}

function runExample(args: string[]): { status: number | null; stderr: string; stats: ExampleStats | undefined } {
  const result = spawnSync(process.execPath, [example, '--frames', '12', '--json', ...args], { encoding: 'utf8', timeout: 170_000 });
  const last = result.stdout.trim().split('\n').pop();
  return { status: result.status, stderr: result.stderr, stats: last ? (JSON.parse(last) as ExampleStats) : undefined };
}

/** The ids of vkms's planes, primary ones included, that list a format. */
function vkmsPlanesListing(fourcc: string): number[] {
  using vkms = DrmDevice.find('vkms', { node: 'card' });
  vkms.setClientCap('universalPlanes');
  const format = fourccFromString(fourcc);
  return vkms.resources().planes.filter((plane) => plane.formats.includes(format)).map((plane) => plane.id);
}

describe('examples/camera-to-gpu.js: vivid to vkms through FdChannel', () => {
  requireVm();
  withKernelModule('vivid', ['n_devs=1', 'node_types=0x1']);
  withKernelModule('vkms');

  for (const copy of [false, true]) {
    it(`${copy ? '--copy: 12 frames, each copied through mmap into a dumb buffer (no PRIME import)' : 'zero-copy: 12 frames, each capture buffer PRIME-imported once, not copied'}, each read back from GETCRTC as the framebuffer vkms scans out; no dma-buf is left when both processes exit`, function () {
      this.timeout(180_000);
      const before = kernelBufferCount();
      const { status, stderr, stats } = runExample(copy ? ['--copy'] : []);
      assert.equal(status, 0, stderr);
      assert.ok(stats);
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

  // No vkms lists YUYV (vkms_plane.c 6.1:14-26, 6.12:15-21, 7.2:17-50).
  // 6.12 and 7.2 refuse such a framebuffer at ADDFB2: drm_gem_fb_init_with_funcs
  // checks that some plane takes the format (drm_gem_framebuffer_helper.c
  // 6.12:169, 7.2:167). 6.1 has no such check there; its SETCRTC refuses the
  // format for the primary plane (drm_plane_check_pixel_format, drm_crtc.c 6.1:805).
  const refusedAtAddfb2 = generation !== '6.1';
  it(`--format YUYV, which no vkms plane lists: the 12 frames are still PRIME-imported, none is shown, and the run names the refusal, ${refusedAtAddfb2 ? 'ADDFB2' : 'SETCRTC'} EINVAL on ${generation}`, function () {
    this.timeout(180_000);
    assert.deepEqual(vkmsPlanesListing('YUYV'), [], 'no vkms plane lists YUYV');
    const before = kernelBufferCount();
    const { status, stderr, stats } = runExample(['--format', 'YUYV']);
    assert.equal(status, 0, stderr);
    assert.ok(stats);
    assert.equal(stats.frames, 12);
    assert.equal(stats.imports, Math.min(12, stats.buffers), 'one import per capture buffer, shown or not');
    assert.equal(stats.shown, 0);
    const refusal = refusedAtAddfb2
      ? /^ioctl\(DRM_IOCTL_MODE_ADDFB2\) EINVAL: vkms refused a YUYV framebuffer of 640x480, pitch 1280 /
      : /^ioctl\(DRM_IOCTL_MODE_SETCRTC\) EINVAL: vkms's CRTC does not scan out this framebuffer \(YUYV 640x480\)$/;
    assert.match(stats.notShown ?? '', refusal);
    assert.equal(kernelBufferCount(), before, 'dma-bufs in the kernel before and after');
  });

  it('with another process DRM master of vkms, its SETCRTC works and the example\'s is EACCES: the 12 frames are imported, none shown, and the run says it is not master', function () {
    this.timeout(180_000);
    // The first open of a card node with no master makes that file the master (drm_master_open).
    using master = DrmDevice.find('vkms', { node: 'card' });
    const crtc = master.resources().crtcs[0]!;
    master.setCrtc(crtc.id, null);
    const { status, stderr, stats } = runExample([]);
    assert.equal(status, 0, stderr);
    assert.ok(stats);
    assert.equal(stats.frames, 12);
    assert.equal(stats.shown, 0);
    assert.equal(stats.imports, Math.min(12, stats.buffers));
    assert.match(stats.notShown ?? '', /^ioctl\(DRM_IOCTL_MODE_SETCRTC\) EACCES: this process is not DRM master of vkms/);
    assert.equal(master.crtc(crtc.id).fbId, 0, 'the CRTC the master turned off stayed off');
  });

  it("--format MJPG, which vivid does not capture: exit status 1 with an error listing vivid's formats, YUYV among them", function () {
    this.timeout(60_000);
    const { status, stderr, stats } = runExample(['--format', 'MJPG']);
    assert.equal(status, 1);
    assert.equal(stats, undefined);
    assert.match(stderr, /vivid does not capture MJPG; --format one of: [^\n]*\bYUYV\b/);
  });
});
