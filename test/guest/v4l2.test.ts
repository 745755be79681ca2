import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { release } from 'node:os';
import { DrmDevice, heap, udmabuf, V4l2Device, type DmaBuf, type KernelError, type V4l2Format } from '../../lib';
import { native } from '../../lib/native';
import { expectNoLeak, kernelBufferCount, requireVm } from './helpers';
import { loadKernelModule, unbindPlatformDevice, unloadKernelModule } from './kernel-modules';

// vivid with one instance whose capture and output nodes share it
// (node_types bit 0: video capture, bit 8: video output; no fbdev):
// /dev/video0 captures, /dev/video1 outputs.
const vividParams = ['n_devs=1', 'node_types=0x101'];
const frameTimeoutMs = 30000;
const pageSize = 4096;

function vividLoaded(): boolean {
  return existsSync('/sys/module/vivid');
}

function openNodes(): { capture: V4l2Device; output: V4l2Device } {
  const capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
  try {
    return { capture, output: V4l2Device.find({ driver: 'vivid', capability: 'video-output' }) };
  } catch (error) {
    capture.close();
    throw error;
  }
}

/** The webcam input drawing vivid's "100% Colorbar" at 320x180 RGB3, with no text over it and nothing moving: every frame alike. */
function staticColorbar(capture: V4l2Device): V4l2Format {
  capture.selectInput(0);
  capture.setControl('Test Pattern', '100% Colorbar');
  capture.setControl('OSD Text Mode', 'None');
  capture.setControl('Horizontal Movement', 'No Movement');
  capture.setControl('Vertical Movement', 'No Movement');
  capture.setControl('Percentage of Dropped Buffers', 0);
  return capture.setFormat({ width: 320, height: 180, pixelformat: 'RGB3' });
}

/**
 * What vivid documents for "100% Colorbar" (Documentation/admin-guide/media/vivid.rst,
 * v4l2-tpg-core.c's bar order): eight vertical bars of full intensity,
 * white, yellow, cyan, green, magenta, red, blue, black, in full-range RGB.
 */
function colorbarFrame(format: V4l2Format): Buffer {
  const bars = [
    [0xff, 0xff, 0xff],
    [0xff, 0xff, 0x00],
    [0x00, 0xff, 0xff],
    [0x00, 0xff, 0x00],
    [0xff, 0x00, 0xff],
    [0xff, 0x00, 0x00],
    [0x00, 0x00, 0xff],
    [0x00, 0x00, 0x00],
  ];
  const frame = Buffer.alloc(format.sizeimage);
  for (let y = 0; y < format.height; y += 1) {
    for (let x = 0; x < format.width; x += 1) {
      const color = bars[Math.floor((x * bars.length) / format.width)]!;
      frame.set(color, y * format.bytesperline + x * 3);
    }
  }
  return frame;
}

function pageRounded(size: number): number {
  return Math.ceil(size / pageSize) * pageSize;
}

/** Streams two MMAP buffers with vivid told to drop every frame: a dequeue then has nothing to return. */
function streamDroppingEveryFrame(capture: V4l2Device): void {
  staticColorbar(capture);
  capture.setControl('Percentage of Dropped Buffers', 100);
  capture.requestBuffers('video-capture', 'mmap', 2);
  capture.queue(0);
  capture.queue(1);
  capture.streamOn();
}

/** Captures one frame into `dmaBuf` through DMABUF memory; the bytes it holds after. */
async function captureInto(capture: V4l2Device, format: V4l2Format, dmaBuf: DmaBuf): Promise<Buffer> {
  capture.requestBuffers('video-capture', 'dmabuf', 1);
  try {
    capture.queue(0, { dmaBuf });
    capture.streamOn();
    const done = await capture.dequeue({ timeoutMs: frameTimeoutMs });
    assert.equal(done.dmaBuf, dmaBuf, 'the dequeued buffer hands back the DmaBuf queued into it');
    assert.equal(done.bytesUsed, format.sizeimage);
    assert.equal(done.error, false);
    return Buffer.from(dmaBuf.withCpuAccess('read', (view) => view.subarray(0, format.sizeimage)));
  } finally {
    capture.streamOff();
    capture.requestBuffers('video-capture', 'dmabuf', 0);
  }
}

/**
 * Connects vivid's HDMI input to its HDMI output, 640x480 RGB3 on both, no
 * text over the capture; a pattern the size of a frame to send through.
 */
async function connectHdmiLoop(capture: V4l2Device, output: V4l2Device): Promise<{ outFormat: V4l2Format; capFormat: V4l2Format; pattern: Buffer }> {
  const hdmiInput = capture.inputs().find((entry) => entry.name.startsWith('HDMI '));
  const hdmiOutput = output.outputs().find((entry) => entry.name.startsWith('HDMI '));
  assert.ok(hdmiInput && hdmiOutput, 'an HDMI input and output');
  capture.selectInput(hdmiInput.index);
  output.selectOutput(hdmiOutput.index);
  // Feature-tested by name: 6.1 has the boolean "Loop Video"; 6.12
  // and later connect each HDMI input to an output with a menu.
  const names = capture.controls().map((control) => control.name);
  if (names.includes('Loop Video')) {
    capture.setControl('Loop Video', true);
    assert.equal(capture.getControl('Loop Video'), true, 'Loop Video reads back on');
  } else {
    const connectedTo = names.find((name) => /^HDMI \d+-\d+ Is Connected To$/.test(name));
    assert.ok(connectedTo, `a loopback control among: ${names.join(', ')}`);
    const item = capture.menu(connectedTo).find((entry) => /^Output HDMI /.test(entry.name));
    assert.ok(item, 'the menu offers the HDMI output');
    // vivid's s_ctrl marks the item taken and queues a work that applies
    // the menu's skip mask, less the item in c->cur.val, to every HDMI input
    // (vivid-ctrls.c 6.12:648-658, vivid-core.c 6.12:1773-1774). Seen in the
    // VM on 7.2 (1 run in 8): the control read back "Test Pattern Generator"
    // right after the set. Likely the work read cur.val before the new value
    // was committed, and v4l2_ctrl_modify_range reset the now skipped value
    // to the default. So: set, let the work run, read back, set again.
    let attempts = 0;
    do {
      attempts += 1;
      capture.setControl(connectedTo, item.name);
      await new Promise((resolve) => setTimeout(resolve, 50));
    } while (capture.getControl(connectedTo) !== item.name && attempts < 5);
    assert.equal(capture.getControl(connectedTo), item.name, `${connectedTo} reads back after ${attempts} attempts`);
  }
  capture.setControl('OSD Text Mode', 'None');
  const outFormat = output.setFormat({ width: 640, height: 480, pixelformat: 'RGB3' });
  const capFormat = capture.setFormat({ width: outFormat.width, height: outFormat.height, pixelformat: outFormat.pixelformat, field: outFormat.field });
  assert.deepEqual([capFormat.width, capFormat.height, capFormat.pixelformat, capFormat.field, capFormat.sizeimage], [outFormat.width, outFormat.height, outFormat.pixelformat, outFormat.field, outFormat.sizeimage]);
  const pattern = Buffer.alloc(outFormat.sizeimage);
  for (let i = 0; i < pattern.length; i += 1) pattern[i] = (i * 7 + (i >> 11)) & 0xff;
  return { outFormat, capFormat, pattern };
}

function differingBytes(frame: Buffer, expected: Buffer): number {
  let differing = 0;
  for (let i = 0; i < frame.length; i += 1) if (frame[i] !== expected[i]) differing += 1;
  return differing;
}

describe('V4L2 (vivid)', function () {
  requireVm();
  this.timeout(120000);

  describe('without vivid loaded', () => {
    before(function () {
      if (vividLoaded()) unloadKernelModule('vivid');
    });

    it("find() is ENODEV naming vivid's module option when no node matches", () => {
      assert.throws(() => V4l2Device.find({ driver: 'vivid', capability: 'video-capture' }), (error: KernelError) => {
        assert.equal(error.code, 'ENODEV');
        assert.equal(error.syscall, 'open');
        assert.match(error.message, /no V4L2 device with driver 'vivid' and capability 'video-capture' .*: load vivid \(CONFIG_VIDEO_VIVID\)/);
        return true;
      });
    });
  });

  describe(`with vivid loaded (${vividParams.join(' ')})`, () => {
    before(() => loadKernelModule('vivid', vividParams));
    after(() => {
      if (vividLoaded()) unloadKernelModule('vivid');
    });

    it('find() gives the capture node and the output node of the one instance, their capabilities decoded', async () => {
      await expectNoLeak(() => {
        const { capture, output } = openNodes();
        using _capture = capture;
        using _output = output;
        const captureCaps = capture.capabilities;
        const outputCaps = output.capabilities;
        assert.equal(captureCaps.driver, 'vivid');
        assert.equal(outputCaps.driver, 'vivid');
        assert.equal(captureCaps.busInfo, outputCaps.busInfo, 'one instance');
        for (const cap of ['video-capture', 'video-output', 'streaming', 'device-caps']) assert.ok(captureCaps.capabilities.includes(cap), `the device has ${cap}`);
        assert.ok(captureCaps.deviceCapabilities.includes('video-capture') && !captureCaps.deviceCapabilities.includes('video-output'), captureCaps.deviceCapabilities.join(' '));
        assert.ok(outputCaps.deviceCapabilities.includes('video-output') && !outputCaps.deviceCapabilities.includes('video-capture'), outputCaps.deviceCapabilities.join(' '));
        const formats = capture.formats();
        assert.deepEqual(formats.find((format) => format.pixelformat === 'RGB3')?.description, '24-bit RGB 8-8-8');
        assert.deepEqual(formats.find((format) => format.pixelformat === 'YUYV')?.description, 'YUYV 4:2:2');
        assert.deepEqual(formats.map((format) => format.index), formats.map((_, index) => index));
        // Named "HDMI 0" on 6.1 (vivid-vid-cap.c 6.1:1366), "HDMI 000-0" (instance-input) on 6.12 and later (6.12:1094).
        const instanceSuffix = '( 0| 000-0)';
        const inputs = capture.inputs();
        assert.deepEqual(inputs.map(({ type }) => type), ['camera', 'tuner', 'camera', 'camera']);
        ['Webcam', 'TV', 'S-Video', 'HDMI'].forEach((kind, index) => assert.match(inputs[index]!.name, new RegExp(`^${kind}${instanceSuffix}$`)));
        const outputs = output.outputs();
        assert.equal(outputs.length, 2);
        ['S-Video', 'HDMI'].forEach((kind, index) => assert.match(outputs[index]!.name, new RegExp(`^${kind}${instanceSuffix}$`)));
        capture.selectInput(3);
        assert.equal(capture.input, 3);
        capture.selectInput(0);
        assert.equal(capture.input, 0);
        assert.throws(() => capture.selectInput(4), { code: 'EINVAL', syscall: 'ioctl(VIDIOC_S_INPUT)' });
      });
    });

    it('setFormat returns what the driver chose: a bytesperline below the minimum is raised, a wider one kept, a huge one clamped; tryFormat changes nothing', async () => {
      await expectNoLeak(() => {
        using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
        const format = staticColorbar(capture);
        assert.deepEqual([format.width, format.height, format.pixelformat, format.field], [320, 180, 'RGB3', 'none']);
        assert.equal(format.bytesperline, format.width * 3, 'no padding asked: the minimum');
        assert.equal(format.sizeimage, format.bytesperline * format.height);
        assert.deepEqual(capture.getFormat(), format);

        const tooNarrow = capture.setFormat({ width: 320, height: 180, pixelformat: 'RGB3', bytesperline: 1 });
        assert.equal(tooNarrow.bytesperline, 320 * 3, 'raised to a whole line');
        const wider = capture.setFormat({ width: 320, height: 180, pixelformat: 'RGB3', bytesperline: 1024 });
        assert.equal(wider.bytesperline, 1024, 'padding kept');
        assert.equal(wider.sizeimage, 1024 * 180);
        assert.deepEqual(capture.getFormat(), wider);
        const tried = capture.tryFormat({ width: 320, height: 180, pixelformat: 'RGB3', bytesperline: 100000 });
        assert.ok(tried.bytesperline < 100000 && tried.bytesperline > 1024, `clamped to ${tried.bytesperline}`);
        assert.equal(tried.sizeimage, tried.bytesperline * 180);
        assert.deepEqual(capture.getFormat(), wider, 'TRY_FMT set nothing');
        const odd = capture.tryFormat({ width: 333, height: 111, pixelformat: 'RGB3' });
        assert.deepEqual([odd.width, odd.height], [320, 180], 'the webcam input has discrete sizes: the nearest');
        staticColorbar(capture);
      });
    });

    it("MMAP capture: the frame read through an EXPBUF DmaBuf's mapping is vivid's 100% colorbar, and the next frame is the same", async () => {
      const buffersBefore = kernelBufferCount();
      await expectNoLeak(async () => {
        using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
        const format = staticColorbar(capture);
        const granted = capture.requestBuffers('video-capture', 'mmap', 2);
        assert.equal(granted.count, 2);
        assert.ok(granted.capabilities.includes('mmap') && granted.capabilities.includes('dmabuf'), granted.capabilities.join(' '));
        const exported = [0, 1].map((index) => capture.exportBuffer(index));
        try {
          for (const dmaBuf of exported) {
            const info = dmaBuf.info();
            assert.equal(info.exporter, 'videobuf2_vmalloc');
            assert.equal(info.mode, 'rw');
            assert.equal(info.flags & native().constants.O_CLOEXEC, native().constants.O_CLOEXEC);
            assert.equal(dmaBuf.size, pageRounded(format.sizeimage), 'the dma-buf is the buffer in whole pages');
          }
          assert.equal(kernelBufferCount(), buffersBefore + 2);
          const queued = capture.queue(0);
          assert.ok(queued.flags.includes('queued'), queued.flags.join(' '));
          capture.queue(1);
          assert.equal(capture.queuedCount(), 2);
          capture.streamOn();
          const first = await capture.dequeue({ timeoutMs: frameTimeoutMs });
          assert.equal(first.bytesUsed, format.sizeimage);
          assert.equal(first.memory, 'mmap');
          assert.equal(first.field, 'none');
          assert.equal(first.error, false);
          assert.equal(first.timestampType, 'monotonic');
          assert.ok(first.timestamp > 0n);
          const firstFrame = Buffer.from(exported[first.index]!.map().subarray(0, format.sizeimage));
          assert.ok(firstFrame.equals(colorbarFrame(format)), 'the frame is the colorbar, byte for byte');
          capture.queue(first.index);
          const second = await capture.dequeue({ timeoutMs: frameTimeoutMs });
          assert.ok(second.sequence > first.sequence, `sequence ${first.sequence} then ${second.sequence}`);
          assert.ok(second.timestamp > first.timestamp);
          assert.ok(Buffer.from(exported[second.index]!.map().subarray(0, format.sizeimage)).equals(firstFrame), 'the next frame is the same');
          capture.streamOff();
          assert.equal(capture.queuedCount(), 0);
          // vb2 orphans exported buffers (V4L2_BUF_CAP_SUPPORTS_ORPHANED_BUFS): freeing the queue leaves the dma-bufs valid.
          assert.ok(granted.capabilities.includes('orphaned-bufs'));
          capture.requestBuffers('video-capture', 'mmap', 0);
          assert.ok(Buffer.from(exported[first.index]!.map().subarray(0, format.sizeimage)).equals(firstFrame), 'an orphaned buffer still reads');
          assert.equal(kernelBufferCount(), buffersBefore + 2);
        } finally {
          for (const dmaBuf of exported) dmaBuf.close();
        }
      });
      assert.equal(kernelBufferCount(), buffersBefore, 'every exported buffer freed');
    });

    it("DMABUF capture into a vgem dumb buffer exported with PRIME gives the same bytes as vivid's own MMAP buffers, read back through the dumb buffer's own DRM mapping", async () => {
      loadKernelModule('vgem');
      try {
        const buffersBefore = kernelBufferCount();
        await expectNoLeak(async () => {
          using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
          const format = staticColorbar(capture);
          using gpu = DrmDevice.find('vgem', { node: 'card' });
          // One row of 4-byte pixels per page: a dumb buffer of exactly the pages the frame needs.
          using dumb = gpu.createDumb({ width: pageSize / 4, height: pageRounded(format.sizeimage) / pageSize, bpp: 32 });
          using dmaBuf = gpu.exportDmaBuf(dumb);
          const frame = await captureInto(capture, format, dmaBuf);
          assert.ok(frame.equals(colorbarFrame(format)), 'through the DmaBuf');
          assert.ok(dumb.map().subarray(0, format.sizeimage).equals(colorbarFrame(format)), 'through MODE_MAP_DUMB on the DRM device');
        });
        assert.equal(kernelBufferCount(), buffersBefore, 'dma-bufs in the kernel before and after');
      } finally {
        unloadKernelModule('vgem');
      }
    });

    // vivid lists fewer intervals on 6.1 (at 640x480 the fastest is 1/25 s,
    // vivid-vid-cap.c 6.1:1966-1986) than on 6.12 and 7.2 (1/120 s): 1/10 s
    // is in every list.
    it("setFrameInterval: vivid's webcam takes 1/10 s and G_PARM reads it back; for 1/1000 s, which it does not do, it picks a rate of its own above 10 frames/s, and G_PARM reads that back", () => {
      using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
      capture.setFormat({ width: 640, height: 480, pixelformat: 'XR24' });
      assert.deepEqual(capture.setFrameInterval({ numerator: 1, denominator: 10 }), { numerator: 1, denominator: 10 });
      assert.deepEqual(capture.frameInterval(), { numerator: 1, denominator: 10 });
      const fastest = capture.setFrameInterval({ numerator: 1, denominator: 1000 });
      assert.notDeepEqual(fastest, { numerator: 1, denominator: 1000 });
      assert.ok(fastest.denominator / fastest.numerator > 10, `${fastest.numerator}/${fastest.denominator}`);
      assert.deepEqual(capture.frameInterval(), fastest);
      assert.throws(() => capture.setFrameInterval({ numerator: 0, denominator: 30 }), RangeError);
      capture.setFrameInterval({ numerator: 1, denominator: 5 });
    });

    it('DMABUF capture into a system-heap buffer gives the same bytes as vivid\'s own MMAP buffers (the colorbar)', async () => {
      const buffersBefore = kernelBufferCount();
      await expectNoLeak(async () => {
        using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
        const format = staticColorbar(capture);
        using dmaBuf = heap.allocate('system', pageRounded(format.sizeimage));
        const frame = await captureInto(capture, format, dmaBuf);
        assert.ok(frame.equals(colorbarFrame(format)));
      });
      assert.equal(kernelBufferCount(), buffersBefore, 'dma-bufs in the kernel before and after');
    });

    // vivid's vmalloc allocator maps an imported dma-buf with dma_buf_vmap at
    // QBUF (videobuf2-vmalloc.c vb2_vmalloc_map_dmabuf) and answers a failure
    // with EFAULT. Linux 6.1's udmabuf has no vmap (udmabuf.c 6.1:161-169,
    // udmabuf_ops without .vmap); 6.12 and 7.2 have vmap_udmabuf.
    const udmabufHasVmap = !/^6\.1\./.test(release());
    it(udmabufHasVmap ? 'DMABUF capture into a udmabuf gives the same bytes as the MMAP capture (udmabuf has vmap here)' : 'DMABUF capture into a udmabuf is refused at QBUF with EFAULT: 6.1 udmabuf has no vmap, which vivid needs', async () => {
      const buffersBefore = kernelBufferCount();
      await expectNoLeak(async () => {
        using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
        const format = staticColorbar(capture);
        using dmaBuf = udmabuf.create(pageRounded(format.sizeimage));
        if (udmabufHasVmap) {
          assert.ok((await captureInto(capture, format, dmaBuf)).equals(colorbarFrame(format)));
          return;
        }
        capture.requestBuffers('video-capture', 'dmabuf', 1);
        assert.throws(() => capture.queue(0, { dmaBuf }), (error: KernelError) => {
          assert.equal(error.code, 'EFAULT');
          assert.equal(error.syscall, 'ioctl(VIDIOC_QBUF)');
          assert.match(error.message, /dma_buf_vmap/);
          return true;
        });
        assert.equal(capture.queuedCount(), 0, 'a refused buffer is not held');
        capture.requestBuffers('video-capture', 'dmabuf', 0);
      });
      assert.equal(kernelBufferCount(), buffersBefore, 'dma-bufs in the kernel before and after');
    });

    it('loopback: the output queue takes DmaBufs we filled (DMABUF memory), and HDMI capture returns exactly those bytes', async () => {
      const buffersBefore = kernelBufferCount();
      await expectNoLeak(async () => {
        const { capture, output } = openNodes();
        using _capture = capture;
        using _output = output;
        const { outFormat, capFormat, pattern } = await connectHdmiLoop(capture, output);
        const sources = [0, 1, 2].map(() => heap.allocate('system', pageRounded(outFormat.sizeimage)));
        const sinks: DmaBuf[] = [];
        let feeding = true;
        try {
          for (const source of sources) source.withCpuAccess('write', (view) => pattern.copy(view));
          output.requestBuffers('video-output', 'dmabuf', sources.length);
          sources.forEach((dmaBuf, index) => output.queue(index, { dmaBuf }));
          // 6.12 and later loop only from an output that is streaming (vivid-vid-common.c 6.12:807-830).
          output.streamOn();
          capture.requestBuffers('video-capture', 'mmap', 3);
          for (let index = 0; index < 3; index += 1) sinks.push(capture.exportBuffer(index));
          for (let index = 0; index < 3; index += 1) capture.queue(index);
          capture.streamOn();
          // The output consumes a buffer per frame: give each back as it is done, so one is always there to copy from.
          const feeder = (async () => {
            let consumed = 0;
            while (feeding) {
              const done = await output.dequeue({ timeoutMs: frameTimeoutMs });
              consumed += 1;
              assert.ok(done.dmaBuf && sources.includes(done.dmaBuf), 'an output buffer hands back our DmaBuf');
              assert.equal(done.bytesUsed, outFormat.sizeimage, 'an output buffer done with the bytes queued');
              if (feeding) output.queue(done.index, { dmaBuf: done.dmaBuf });
            }
            return consumed;
          })();
          const frames: number[] = [];
          for (let count = 0; count < 4; count += 1) {
            const done = await capture.dequeue({ timeoutMs: frameTimeoutMs });
            frames.push(differingBytes(sinks[done.index]!.map().subarray(0, capFormat.sizeimage), pattern));
            capture.queue(done.index);
          }
          feeding = false;
          capture.streamOff();
          assert.deepEqual(frames, [0, 0, 0, 0], 'bytes differing from what we wrote, per captured frame');
          const consumed = await feeder;
          assert.ok(consumed >= 1, `the output consumed ${consumed} buffers`);
          output.streamOff();
          assert.equal(output.queuedCount(), 0, 'streamOff gave back every output buffer');
        } finally {
          feeding = false;
          output.requestBuffers('video-output', 'dmabuf', 0);
          capture.requestBuffers('video-capture', 'mmap', 0);
          for (const dmaBuf of [...sources, ...sinks]) dmaBuf.close();
        }
        capture.selectInput(0);
      });
      assert.equal(kernelBufferCount(), buffersBefore, 'dma-bufs in the kernel before and after');
    });

    it('loopback: with output buffers queued but the output not streaming, the HDMI capture does not return them', async () => {
      await expectNoLeak(async () => {
        const { capture, output } = openNodes();
        using _capture = capture;
        using _output = output;
        const { outFormat, capFormat, pattern } = await connectHdmiLoop(capture, output);
        const sources = [0, 1].map(() => heap.allocate('system', pageRounded(outFormat.sizeimage)));
        const sinks: DmaBuf[] = [];
        try {
          for (const source of sources) source.withCpuAccess('write', (view) => pattern.copy(view));
          output.requestBuffers('video-output', 'dmabuf', sources.length);
          sources.forEach((dmaBuf, index) => output.queue(index, { dmaBuf }));
          capture.requestBuffers('video-capture', 'mmap', 2);
          for (let index = 0; index < 2; index += 1) sinks.push(capture.exportBuffer(index));
          sinks.forEach((_, index) => capture.queue(index));
          capture.streamOn();
          for (let count = 0; count < 2; count += 1) {
            const done = await capture.dequeue({ timeoutMs: frameTimeoutMs });
            const differing = differingBytes(sinks[done.index]!.map().subarray(0, capFormat.sizeimage), pattern);
            assert.ok(differing > capFormat.sizeimage / 2, `${differing} of ${capFormat.sizeimage} bytes differ from ours`);
            capture.queue(done.index);
          }
          capture.streamOff();
        } finally {
          output.requestBuffers('video-output', 'dmabuf', 0);
          capture.requestBuffers('video-capture', 'mmap', 0);
          for (const dmaBuf of [...sources, ...sinks]) dmaBuf.close();
        }
        capture.selectInput(0);
      });
    });

    describe('errors and edges', () => {
      it("a DmaBuf smaller than the format's sizeimage is refused at QBUF with EINVAL, and not held", async () => {
        const buffersBefore = kernelBufferCount();
        await expectNoLeak(() => {
          using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
          const format = staticColorbar(capture);
          using small = heap.allocate('system', pageSize);
          assert.ok(small.size < format.sizeimage);
          capture.requestBuffers('video-capture', 'dmabuf', 1);
          assert.throws(() => capture.queue(0, { dmaBuf: small }), (error: KernelError) => error.code === 'EINVAL' && error.syscall === 'ioctl(VIDIOC_QBUF)' && /smaller than the format's sizeimage/.test(error.message));
          assert.equal(capture.queuedCount(), 0);
          capture.requestBuffers('video-capture', 'dmabuf', 0);
        });
        assert.equal(kernelBufferCount(), buffersBefore, 'dma-bufs in the kernel before and after');
      });

      it('a DmaBuf its user closes while it is queued still receives the frame: vb2 took its own reference at QBUF, freed at REQBUFS 0', async () => {
        const buffersBefore = kernelBufferCount();
        await expectNoLeak(async () => {
          using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
          const format = staticColorbar(capture);
          const dmaBuf = heap.allocate('system', pageRounded(format.sizeimage));
          capture.requestBuffers('video-capture', 'dmabuf', 1);
          capture.queue(0, { dmaBuf });
          dmaBuf.close();
          assert.equal(kernelBufferCount(), buffersBefore + 1, 'the buffer lives on in the kernel');
          capture.streamOn();
          const done = await capture.dequeue({ timeoutMs: frameTimeoutMs });
          assert.equal(done.dmaBuf, dmaBuf);
          assert.equal(done.dmaBuf?.closed, true, 'the DmaBuf object is the closed one');
          assert.equal(done.bytesUsed, format.sizeimage);
          assert.equal(done.error, false);
          capture.streamOff();
          assert.equal(kernelBufferCount(), buffersBefore + 1, 'vb2 keeps a dequeued buffer attached to its slot');
          capture.requestBuffers('video-capture', 'dmabuf', 0);
          assert.equal(kernelBufferCount(), buffersBefore, 'freed with the slot');
        });
      });

      it("the Inject V4L2_BUF_FLAG_ERROR button: the next frame is dequeued with error true and 'error' among its flags", async () => {
        await expectNoLeak(async () => {
          using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
          staticColorbar(capture);
          capture.requestBuffers('video-capture', 'mmap', 2);
          capture.setControl('Inject V4L2_BUF_FLAG_ERROR', true);
          capture.queue(0);
          capture.queue(1);
          capture.streamOn();
          const done = await capture.dequeue({ timeoutMs: frameTimeoutMs });
          capture.streamOff();
          capture.requestBuffers('video-capture', 'mmap', 0);
          assert.equal(done.error, true);
          assert.ok(done.flags.includes('error'), done.flags.join(' '));
        });
      });

      it('dequeue waits on the event loop: timers keep running while no frame comes (every frame dropped), then ETIME', async () => {
        await expectNoLeak(async () => {
          using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
          streamDroppingEveryFrame(capture);
          let ticks = 0;
          const timer = setInterval(() => (ticks += 1), 10);
          const started = Date.now();
          try {
            await assert.rejects(capture.dequeue({ timeoutMs: 1000 }), (error: KernelError) => error.code === 'ETIME' && error.syscall === 'ioctl(VIDIOC_DQBUF)');
          } finally {
            clearInterval(timer);
          }
          const waited = Date.now() - started;
          assert.ok(waited >= 1000, `waited ${waited} ms`);
          assert.ok(ticks >= 20, `${ticks} timer ticks in ${waited} ms`);
          capture.setControl('Percentage of Dropped Buffers', 0);
          const done = await capture.dequeue({ timeoutMs: frameTimeoutMs });
          assert.ok(done.index === 0 || done.index === 1, 'frames come again once none is dropped');
          capture.streamOff();
          capture.requestBuffers('video-capture', 'mmap', 0);
        });
      });

      it("an aborted dequeue rejects with the signal's reason, and the next dequeue still gets a frame", async () => {
        await expectNoLeak(async () => {
          using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
          streamDroppingEveryFrame(capture);
          const controller = new AbortController();
          const pending = capture.dequeue({ signal: controller.signal });
          setTimeout(() => controller.abort(), 100);
          await assert.rejects(pending, { name: 'AbortError' });
          await assert.rejects(capture.dequeue({ signal: AbortSignal.abort() }), { name: 'AbortError' });
          capture.setControl('Percentage of Dropped Buffers', 0);
          const done = await capture.dequeue({ timeoutMs: frameTimeoutMs });
          assert.equal(done.error, false);
          capture.streamOff();
          capture.requestBuffers('video-capture', 'mmap', 0);
        });
      });

      it("a bitmask control's bit 31 reads back unsigned as it was set (vivid's Bitmask, default 0x80002000), and a bit outside its mask is dropped by the kernel", () => {
        using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
        assert.equal(capture.control('Bitmask')?.type, 'bitmask');
        assert.equal(capture.getControl('Bitmask'), 0x80002000);
        capture.setControl('Bitmask', 0x80400010);
        assert.equal(capture.getControl('Bitmask'), 0x80400010);
        capture.setControl('Bitmask', 0x80000001);
        assert.equal(capture.getControl('Bitmask'), 0x80000000, 'the kernel drops the bits outside the mask (0x80402010)');
        assert.throws(() => capture.setControl('Bitmask', 2 ** 32), RangeError);
        capture.setControl('Bitmask', 0x80002000);
      });

      it('a dequeue on a streaming queue with no buffer queued rejects at once with EINVAL before the first queue(); after every queued buffer came back it waits, and one queued meanwhile completes it', async () => {
        await expectNoLeak(async () => {
          using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
          staticColorbar(capture);
          capture.requestBuffers('video-capture', 'mmap', 2);
          capture.streamOn();
          await assert.rejects(capture.dequeue({ timeoutMs: frameTimeoutMs }), (error: KernelError) => error.code === 'EINVAL' && /no buffer is queued/.test(error.message));
          capture.queue(0);
          assert.equal((await capture.dequeue({ timeoutMs: frameTimeoutMs })).index, 0);
          // Nothing queued now: the wait goes on until another task queues one.
          const waiting = capture.dequeue({ timeoutMs: frameTimeoutMs });
          await new Promise((resolve) => setTimeout(resolve, 300));
          capture.queue(1);
          assert.equal((await waiting).index, 1);
          capture.streamOff();
          await assert.rejects(capture.dequeue(), (error: KernelError) => error.code === 'EINVAL' && /not streaming/.test(error.message));
          capture.requestBuffers('video-capture', 'mmap', 0);
        });
      });

      it('closing the device while a dequeue is pending rejects it with ECANCELED, and frees its buffers', async () => {
        const buffersBefore = kernelBufferCount();
        await expectNoLeak(async () => {
          const capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
          const format = staticColorbar(capture);
          capture.setControl('Percentage of Dropped Buffers', 100);
          const dmaBuf = heap.allocate('system', pageRounded(format.sizeimage));
          capture.requestBuffers('video-capture', 'dmabuf', 1);
          capture.queue(0, { dmaBuf });
          dmaBuf.close();
          capture.streamOn();
          const pending = capture.dequeue();
          await new Promise((resolve) => setTimeout(resolve, 100));
          assert.equal(kernelBufferCount(), buffersBefore + 1);
          capture.close();
          await assert.rejects(pending, (error: KernelError) => error.code === 'ECANCELED' && error.syscall === 'ioctl(VIDIOC_DQBUF)');
          assert.throws(() => capture.queuedCount(), { code: 'EBADF' });
          using again = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
          again.setControl('Percentage of Dropped Buffers', 0);
        });
        assert.equal(kernelBufferCount(), buffersBefore, "the last close of the node freed the queue's buffers");
      });

      it('bad arguments are TypeErrors or RangeErrors; calls out of order are errors that say what to do first', async () => {
        await expectNoLeak(() => {
          using capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
          const format = staticColorbar(capture);
          const typeError = { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' };
          const invalid = { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE' };
          const outOfRange = { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' };
          assert.throws(() => capture.requestBuffers('capture' as 'video-capture', 'mmap', 1), invalid);
          assert.throws(() => capture.requestBuffers('video-capture', 'userptr' as 'mmap', 1), invalid);
          assert.throws(() => capture.requestBuffers('video-capture', 'mmap', -1), outOfRange);
          assert.throws(() => capture.queue(0), { code: 'EINVAL', message: /requestBuffers\('video-capture', memory, count\) first/ });
          assert.throws(() => capture.queue(0, { type: 'video-output' }), { code: 'EINVAL', message: /video-output queue/ });
          assert.throws(() => capture.setFormat({ width: '320' as unknown as number, height: 180, pixelformat: 'RGB3' }), typeError);
          assert.throws(() => capture.setFormat({ width: 320, height: 180, pixelformat: 'RGB' }), invalid);
          assert.throws(() => capture.setFormat({ width: 320, height: 180, pixelformat: 'RGB3', field: 'progressive' as 'none' }), invalid);
          assert.throws(() => capture.setControl('No Such Control', 1), invalid);
          assert.throws(() => capture.setControl('Show Border', 1), typeError);
          assert.throws(() => capture.setControl('Test Pattern', 'Purple'), { ...invalid, message: /'100% Colorbar'/ });
          assert.throws(() => capture.getControl('String'), { ...invalid, message: /a string control/ });
          // The driver clamps an integer control to its range rather than refusing it.
          const dropped = capture.control('Percentage of Dropped Buffers')!;
          capture.setControl(dropped.name, Number(dropped.maximum) + 50);
          assert.equal(capture.getControl(dropped.name), Number(dropped.maximum));
          capture.setControl(dropped.name, 0);

          capture.requestBuffers('video-capture', 'dmabuf', 1);
          assert.throws(() => capture.queue(0), { name: 'TypeError', code: 'ERR_MISSING_OPTION', message: /options.dmaBuf is required/ });
          assert.throws(() => capture.queue(0, { dmaBuf: {} as DmaBuf }), typeError);
          assert.throws(() => capture.exportBuffer(0), { code: 'EINVAL', syscall: 'ioctl(VIDIOC_EXPBUF)', message: /not an MMAP buffer/ });
          assert.throws(() => capture.setFormat({ width: 640, height: 360, pixelformat: 'YUYV' }), { code: 'EBUSY', message: /requestBuffers/ });
          const granted = capture.requestBuffers('video-capture', 'mmap', 1);
          using dmaBuf = heap.allocate('system', pageRounded(format.sizeimage));
          assert.throws(() => capture.queue(0, { dmaBuf }), invalid);
          assert.throws(() => capture.queue(granted.count), { code: 'EINVAL', syscall: 'ioctl(VIDIOC_QBUF)', message: /beyond the buffers requested/ });
          capture.requestBuffers('video-capture', 'mmap', 0);
        });
      });

      it("vivid's device unbound while streaming (as a camera unplugged): the pending dequeue rejects with ENODEV, G_FMT and QBUF on the open node are ENODEV saying the device is gone, find() sees no node, a DmaBuf exported before still holds the frame vivid wrote, and closing both frees it", async () => {
        const buffersBefore = kernelBufferCount();
        const capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
        let exported: DmaBuf | undefined;
        let unbound: ReturnType<typeof unbindPlatformDevice> | undefined;
        try {
          const format = staticColorbar(capture);
          capture.requestBuffers('video-capture', 'mmap', 2);
          exported = capture.exportBuffer(0);
          capture.queue(0);
          capture.streamOn();
          assert.equal((await capture.dequeue({ timeoutMs: frameTimeoutMs })).index, 0);
          // Buffer 1 never completes: only the device going away can end this
          // wait. video_unregister_device wakes every file's pollers
          // (v4l2-dev.c 6.1:1096, 6.12:1116, 7.2:1134), and poll then answers
          // EPOLLERR | EPOLLHUP (6.1:342, 7.2:344).
          capture.setControl('Percentage of Dropped Buffers', 100);
          capture.queue(1);
          const pending = capture.dequeue({ timeoutMs: frameTimeoutMs });
          await new Promise((resolve) => setTimeout(resolve, 200));
          unbound = unbindPlatformDevice('vivid');
          await assert.rejects(pending, (error: KernelError) => error.code === 'ENODEV' && error.syscall === 'ioctl(VIDIOC_DQBUF)' && /the device is gone/.test(error.message));
          assert.throws(() => capture.getFormat(), { code: 'ENODEV', syscall: 'ioctl(VIDIOC_G_FMT)', message: /the device is gone/ });
          assert.throws(() => capture.queue(0), { code: 'ENODEV', syscall: 'ioctl(VIDIOC_QBUF)', message: /the device is gone/ });
          assert.throws(() => V4l2Device.find({ driver: 'vivid' }), { code: 'ENODEV', syscall: 'open' });
          const frame = exported.withCpuAccess('read', (view) => Buffer.from(view.subarray(0, format.sizeimage)));
          assert.equal(differingBytes(frame, colorbarFrame(format)), 0, 'the exported buffer still holds the colorbar frame');
          capture.close();
          assert.equal(kernelBufferCount(), buffersBefore + 1, 'the exported DmaBuf outlives the device and its node');
          exported.close();
          assert.equal(kernelBufferCount(), buffersBefore);
        } finally {
          // Failed before the unbind: the next tests must get frames again.
          if (!unbound && !capture.closed) capture.setControl('Percentage of Dropped Buffers', 0);
          exported?.close();
          capture.close();
          unbound?.bindAgain();
        }
        using again = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
        assert.equal(again.capabilities.driver, 'vivid', 'bound again, vivid has its nodes back');
      });

      it('modprobe -r vivid fails while a node is open (the module is in use), and succeeds once it is closed', () => {
        const capture = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
        try {
          assert.throws(() => unloadKernelModule('vivid'), /Module vivid is in use/);
          assert.ok(vividLoaded());
        } finally {
          capture.close();
        }
        unloadKernelModule('vivid');
        assert.equal(vividLoaded(), false);
      });
    });
  });
});
