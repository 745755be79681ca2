'use strict';
// Camera to GPU without a copy. A V4L2 capture device fills its own buffers,
// each exported once as a dma-buf (VIDIOC_EXPBUF). Every frame goes to a
// display process over an FdChannel with the buffer's fences as a sync_file;
// that process waits on the fence, imports the buffer into DRM (PRIME), shows
// it on a KMS CRTC, and hands the buffer it showed before back to be filled.
// --copy runs the same pipeline the way a program without PRIME has to: the
// display process maps each frame and copies it into a dumb buffer of its own.
//
//   node examples/camera-to-gpu.js [--video /dev/videoN] [--drm <driver>] [--frames N]
//                                  [--width W --height H] [--fps F] [--copy] [--json]
//
// In the test VM (vivid is the camera, vkms the display):
//   npx dmabuf vm run -- sh -c 'modprobe -d "$DMABUF_KERNEL_MODULES" vivid n_devs=1 node_types=0x1 &&
//     modprobe -d "$DMABUF_KERNEL_MODULES" vkms && node examples/camera-to-gpu.js'
// On a host: --video names your camera; --drm a KMS driver you may drive (a
// console without a compositor), or a render-only one (then frames are
// imported and held, not shown). The capture format must be one the display
// takes: XR24, whose fourcc and layout are DRM's XRGB8888 too.
const { spawn } = require('node:child_process');
const { DrmDevice, FdChannel, V4l2Device, fourccFromString } = require('dmabuf');

function parseArguments(argv) {
  const options = { video: undefined, drm: 'vkms', frames: 60, width: 640, height: 480, fps: 0, copy: false, json: false, buffers: 4 };
  for (let index = 0; index < argv.length; index += 1) {
    const name = argv[index].replace(/^--/, '');
    if (name === 'copy' || name === 'json') options[name] = true;
    else if (name in options) {
      const value = argv[(index += 1)];
      if (typeof options[name] === 'number' && !(Number.isInteger(Number(value)) && Number(value) >= 0)) throw new Error(`--${name} takes a whole number, got ${value}`);
      options[name] = typeof options[name] === 'number' ? Number(value) : value;
    } else throw new Error(`unknown option ${argv[index]}`);
  }
  return options;
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** The display process: receive, wait on the fence, import (or copy), show, hand back. */
async function display(options) {
  const channel = FdChannel.fromFd(3);
  const drm = DrmDevice.find(options.drm, { node: 'card' });
  const imported = new Map(); // dma-buf inode -> { gem, framebuffer }: each capture buffer is imported once
  const own = []; // --copy: the dumb buffers frames are copied into
  const latenciesNs = [];
  let output;
  try {
    output = pickOutput(drm, options);
    let previous;
    let shown = 0; // frames the CRTC was seen scanning out
    let first;
    let last;
    for (;;) {
      const { message, handles } = await channel.receive();
      if (message.end) break;
      const [frame, fence] = handles;
      await fence.wait({ timeoutMs: 5000 });
      fence.close();
      let framebuffer;
      if (options.copy) {
        const target = own[message.sequence % 2] ?? (own[message.sequence % 2] = makeDumb(drm, message.format));
        frame.withCpuAccess('read', (bytes) => bytes.copy(target.pixels, 0, 0, Math.min(bytes.length, target.pixels.length)));
        framebuffer = target.framebuffer;
      } else {
        let entry = imported.get(frame.inode);
        if (!entry) {
          const gem = drm.importDmaBuf(frame);
          entry = { gem, framebuffer: output && drm.addFramebuffer(gem, { ...message.format, format: fourccFromString(message.format.fourcc) }) };
          imported.set(frame.inode, entry);
        }
        framebuffer = entry.framebuffer;
      }
      frame.close(); // the GEM import (or the copy) is what the display keeps
      if (output) drm.setCrtc(output.crtc, framebuffer, { connectors: [output.connector], mode: output.mode });
      const now = process.hrtime.bigint();
      if (output && drm.crtc(output.crtc).fbId === framebuffer.id) shown += 1;
      latenciesNs.push(Number(now - BigInt(message.dequeuedAt))); // one clock: CLOCK_MONOTONIC in both processes
      first ??= now;
      last = now;
      if (previous !== undefined) await channel.send({ release: previous });
      previous = message.index;
    }
    const sorted = [...latenciesNs].sort((a, b) => a - b);
    const seconds = latenciesNs.length > 1 ? Number(last - first) / 1e9 : 0;
    await channel.send({
      stats: {
        frames: latenciesNs.length,
        shown,
        imports: imported.size,
        framesPerSecond: seconds > 0 ? (latenciesNs.length - 1) / seconds : 0,
        latencyMs: { p50: percentile(sorted, 50) / 1e6, p99: percentile(sorted, 99) / 1e6, max: sorted.at(-1) / 1e6 },
        shownOn: output ? `${drm.driver.name} crtc ${output.crtc}` : `${drm.driver.name} (imported, not shown: no KMS output)`,
      },
    });
  } finally {
    if (output) drm.setCrtc(output.crtc, null);
    drm.close(); // closes the framebuffers, GEM handles and dumb buffers it made
    channel.close();
  }

  function makeDumb(device, format) {
    const dumb = device.createDumb({ width: format.width, height: format.height, bpp: 32 });
    return { pixels: dumb.map(), framebuffer: output && device.addFramebuffer(dumb, { width: format.width, height: format.height, format: fourccFromString(format.fourcc), pitch: dumb.pitch }) };
  }
}

/** A connected connector, a CRTC it can drive and a mode of the capture's size; undefined without KMS. */
function pickOutput(drm, options) {
  let resources;
  try {
    resources = drm.resources();
  } catch (error) {
    if (error.code === 'ENOTSUP' || error.code === 'EINVAL') return undefined; // a driver without modesetting
    throw error;
  }
  for (const connector of resources.connectors) {
    if (connector.connection !== 'connected') continue;
    const mode = connector.modes.find((candidate) => candidate.hdisplay === options.width && candidate.vdisplay === options.height);
    const encoder = resources.encoders.find((candidate) => connector.encoders.includes(candidate.id));
    const crtcIndex = encoder ? resources.crtcs.findIndex((_, index) => (encoder.possibleCrtcs & (1 << index)) !== 0) : -1;
    if (mode && crtcIndex >= 0) return { connector: connector.id, crtc: resources.crtcs[crtcIndex].id, mode };
  }
  return undefined;
}

/** The capture process: dequeue, send with the buffer's fences, queue again what the display hands back. */
async function capture(options) {
  const video = options.video ? V4l2Device.open(options.video) : V4l2Device.find({ capability: 'video-capture' });
  const [mine, theirs] = FdChannel.pair();
  const args = [__filename, 'display', ...process.argv.slice(2)];
  const child = spawn(process.execPath, args, { stdio: ['inherit', 'inherit', 'inherit', theirs.fd] });
  theirs.close();
  const exported = [];
  let count;
  let cameraFps;
  try {
    const format = video.setFormat({ width: options.width, height: options.height, pixelformat: 'XR24' });
    if (format.pixelformat !== 'XR24') throw new Error(`${video.capabilities.card} does not capture XR24 (it offers ${format.pixelformat}); a display needs a format both take`);
    // --fps asks the camera for a rate; it answers with the nearest it has.
    if (options.fps > 0) {
      const interval = video.setFrameInterval({ numerator: 1, denominator: options.fps });
      cameraFps = interval.denominator / interval.numerator;
    }
    ({ count } = video.requestBuffers('video-capture', 'mmap', options.buffers));
    for (let index = 0; index < count; index += 1) exported.push(video.exportBuffer(index));
    for (let index = 0; index < count; index += 1) video.queue(index);
    const released = (async () => {
      for (;;) {
        const { message } = await mine.receive();
        if (message.stats) return message.stats;
        video.queue(message.release);
      }
    })();
    // Awaited below; when the capture fails first, its error is the one reported.
    released.catch(() => {});
    video.streamOn();
    for (let sent = 0; sent < options.frames; sent += 1) {
      const frame = await video.dequeue({ timeoutMs: 10_000 });
      // Latency counts from here, when the frame is ours (the driver's own
      // timestamp is its capture schedule: vivid's runs ahead of delivery).
      const dequeuedAt = process.hrtime.bigint();
      // The fences a reader of this buffer must wait for, as a sync_file:
      // a camera that writes by DMA signals them when the frame is complete.
      const fence = exported[frame.index].exportSyncFile('read');
      try {
        const geometry = { width: format.width, height: format.height, pitch: format.bytesperline, fourcc: format.pixelformat };
        await mine.send({ index: frame.index, sequence: frame.sequence, dequeuedAt: String(dequeuedAt), format: geometry }, [exported[frame.index], fence]);
      } finally {
        fence.close();
      }
    }
    await mine.send({ end: true });
    const stats = await released;
    video.streamOff();
    const status = await new Promise((resolve) => child.on('exit', resolve));
    if (options.json) console.log(JSON.stringify({ copy: options.copy, buffers: count, cameraFps, ...stats }));
    else {
      console.log(`${video.capabilities.card}${cameraFps ? ` at ${cameraFps} frames/s` : ''} -> ${stats.shownOn}, ${options.copy ? 'copied through mmap' : 'zero-copy (PRIME import)'}`);
      console.log(`${stats.frames} frames, ${stats.framesPerSecond.toFixed(1)} frames/s; dequeued to shown p50 ${stats.latencyMs.p50.toFixed(1)} ms, p99 ${stats.latencyMs.p99.toFixed(1)} ms, max ${stats.latencyMs.max.toFixed(1)} ms`);
    }
    process.exitCode = status;
  } finally {
    for (const buffer of exported) buffer.close();
    video.close();
    mine.close();
  }
}

const options = parseArguments(process.argv.slice(process.argv[2] === 'display' ? 3 : 2));
(process.argv[2] === 'display' ? display(options) : capture(options)).catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
