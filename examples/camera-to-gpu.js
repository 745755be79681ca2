'use strict';
// Camera to GPU without a copy. A V4L2 capture device fills its own buffers,
// each exported once as a dma-buf (VIDIOC_EXPBUF). Every frame goes to a
// display process over an FdChannel with the buffer's fences as a sync_file;
// that process waits on the fence, imports the buffer into DRM (PRIME), shows
// it on a KMS CRTC, and hands the buffer it showed before back to be filled.
// --copy runs the same pipeline the way a program without PRIME has to: the
// display process maps each frame and copies it into a dumb buffer of its own.
//
//   node examples/camera-to-gpu.js [--video /dev/videoN] [--drm <driver>|/dev/dri/cardN]
//                                  [--format FOURCC] [--width W --height H] [--fps F]
//                                  [--frames N] [--copy] [--json]
//
// In the test VM (vivid is the camera, vkms the display):
//   npx dmabuf vm run -- sh -c 'modprobe -d "$DMABUF_KERNEL_MODULES" vivid n_devs=1 node_types=0x1 &&
//     modprobe -d "$DMABUF_KERNEL_MODULES" vkms && node examples/camera-to-gpu.js'
// On a host: --video names your camera, --drm your GPU, --format a fourcc the
// camera captures (XR24 by default: V4L2's XBGR32 and DRM's XRGB8888 are one
// byte layout under one fourcc; YUYV is the same in both too). When the
// frames cannot be shown (no KMS, nothing connected, no plane takes the
// format, a compositor is DRM master), they are still imported and the run
// says why none was shown.
const { spawn } = require('node:child_process');
const { DrmDevice, FdChannel, V4l2Device, fourccFromString } = require('dmabuf');

function parseArguments(argv) {
  const options = { video: undefined, drm: 'vkms', format: 'XR24', frames: 60, width: 640, height: 480, fps: 0, copy: false, json: false, buffers: 4 };
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
  const drm = options.drm.startsWith('/') ? DrmDevice.open(options.drm) : DrmDevice.find(options.drm, { node: 'card' });
  const imported = new Map(); // dma-buf inode -> { gem, framebuffer }: each capture buffer is imported once
  const own = []; // --copy: the dumb buffers frames are copied into
  const latenciesNs = [];
  let output;
  let notShown; // why no frame is shown, once that is known
  try {
    let previous;
    let shown = 0; // frames the CRTC was seen scanning out
    let first;
    let last;
    for (;;) {
      const { message, handles } = await channel.receive();
      if (message.end) break;
      // The output is picked for the size the camera chose, which the first frame brings.
      if (latenciesNs.length === 0) ({ output, notShown } = pickOutput(drm, message.format));
      const [frame, fence] = handles;
      await fence.wait({ timeoutMs: 5000 });
      fence.close();
      let framebuffer;
      if (options.copy) {
        const target = own[message.sequence % 2] ?? (own[message.sequence % 2] = makeDumb(drm, message.format));
        frame.withCpuAccess('read', (bytes) => copyRows(bytes, message.format.pitch, target.pixels, target.pitch, message.format.height));
        framebuffer = target.framebuffer;
      } else {
        let entry = imported.get(frame.inode);
        if (!entry) {
          const gem = drm.importDmaBuf(frame);
          entry = { gem, framebuffer: tryToShow(message.format, () => drm.addFramebuffer(gem, framebufferLayout(message.format))) };
          imported.set(frame.inode, entry);
        }
        framebuffer = entry.framebuffer;
      }
      frame.close(); // the GEM import (or the copy) is what the display keeps
      if (framebuffer) tryToShow(message.format, () => drm.setCrtc(output.crtc, framebuffer, { connectors: [output.connector], mode: output.mode }));
      const now = process.hrtime.bigint();
      if (output && framebuffer && drm.crtc(output.crtc).fbId === framebuffer.id) shown += 1;
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
        shownOn: output ? `${drm.driver.name} crtc ${output.crtc}` : `${drm.driver.name} (${shown > 0 ? `shown ${shown} frames, then refused` : 'not shown'})`,
        notShown,
      },
    });
  } finally {
    try {
      if (output) drm.setCrtc(output.crtc, null);
    } finally {
      drm.close(); // closes the framebuffers, GEM handles and dumb buffers it made
      channel.close();
    }
  }

  /**
   * Runs one step towards the screen. The refusals a host gives a program
   * that may not or cannot show this buffer end the showing, not the run:
   * the frames are still imported (or copied), and the run reports why.
   */
  function tryToShow(format, step) {
    if (!output) return undefined;
    try {
      return step();
    } catch (error) {
      const reason = refusalReason(error, drm, format);
      if (!reason) throw error;
      notShown = reason;
      output = undefined;
      return undefined;
    }
  }

  function makeDumb(device, format) {
    // A dumb buffer of the frame's bits per pixel; a camera's padded rows
    // make its pitch no measure of them.
    const bpp = bitsPerPixel[format.fourcc] ?? Math.floor(format.pitch / format.width) * 8;
    const dumb = device.createDumb({ width: format.width, height: format.height, bpp });
    return { pixels: dumb.map(), pitch: dumb.pitch, framebuffer: tryToShow(format, () => device.addFramebuffer(dumb, { ...framebufferLayout(format), pitch: dumb.pitch })) };
  }
}

const bitsPerPixel = { XR24: 32, AR24: 32, XB24: 32, AB24: 32, YUYV: 16, UYVY: 16, YVYU: 16, VYUY: 16, RGBP: 16 };

function framebufferLayout(format) {
  return { width: format.width, height: format.height, pitch: format.pitch, format: fourccFromString(format.fourcc) };
}

/** Copies a frame row by row when the GPU pads its rows differently from the camera. */
function copyRows(source, sourcePitch, target, targetPitch, height) {
  if (sourcePitch === targetPitch) {
    source.copy(target, 0, 0, Math.min(source.length, target.length));
    return;
  }
  const row = Math.min(sourcePitch, targetPitch);
  for (let y = 0; y < height; y += 1) source.copy(target, y * targetPitch, y * sourcePitch, y * sourcePitch + row);
}

/** Why the kernel's refusal means this frame cannot be shown here; undefined when it is some other failure. */
function refusalReason(error, drm, format) {
  const what = `${error.syscall ?? 'ioctl'} ${error.code}`;
  if (error.code === 'EACCES' || error.code === 'EPERM') return `${what}: this process is not DRM master of ${drm.driver.name} (a compositor or another program drives it; run from a text console, or show frames through the compositor)`;
  if (error.code === 'EINVAL' && /ADDFB2/.test(error.syscall ?? '')) return `${what}: ${drm.driver.name} refused a ${format.fourcc} framebuffer of ${format.width}x${format.height}, pitch ${format.pitch} (no plane takes the format, or the pitch or size does not fit)`;
  if (error.code === 'EINVAL' || error.code === 'ENOSPC' || error.code === 'ERANGE') return `${what}: ${drm.driver.name}'s CRTC does not scan out this framebuffer (${format.fourcc} ${format.width}x${format.height})`;
  return undefined;
}

/** A connected connector, a CRTC it can drive and a mode of the capture's size; or why there is none. */
function pickOutput(drm, size) {
  if (drm.node === 'render') return { notShown: `${drm.driver.name}'s render node has no modesetting (KMS is on its card node)` };
  let resources;
  try {
    resources = drm.resources();
  } catch (error) {
    if (error.code === 'ENOTSUP' || error.code === 'EINVAL') return { notShown: `${drm.driver.name} has no modesetting (a render-only GPU)` };
    throw error;
  }
  const connected = resources.connectors.filter((connector) => connector.connection === 'connected');
  if (connected.length === 0) return { notShown: `no connector of ${drm.driver.name} is connected` };
  for (const connector of connected) {
    const mode = connector.modes.find((candidate) => candidate.hdisplay === size.width && candidate.vdisplay === size.height);
    const encoder = resources.encoders.find((candidate) => connector.encoders.includes(candidate.id));
    const crtcIndex = encoder ? resources.crtcs.findIndex((_, index) => (encoder.possibleCrtcs & (1 << index)) !== 0) : -1;
    if (mode && crtcIndex >= 0) return { output: { connector: connector.id, crtc: resources.crtcs[crtcIndex].id, mode } };
  }
  const sizes = [...new Set(connected.flatMap((connector) => connector.modes.map((mode) => `${mode.hdisplay}x${mode.vdisplay}`)))];
  return { notShown: `no connected output of ${drm.driver.name} has a ${size.width}x${size.height} mode (--width and --height of one of: ${sizes.slice(0, 8).join(', ')})` };
}

/** The capture process: dequeue, send with the buffer's fences, queue again what the display hands back. */
async function capture(options) {
  const video = options.video ? V4l2Device.open(options.video) : V4l2Device.find({ capability: 'video-capture' });
  const exported = [];
  let mine;
  let count;
  let cameraFps;
  try {
    const format = video.setFormat({ width: options.width, height: options.height, pixelformat: options.format });
    if (format.pixelformat !== options.format) {
      const offered = video.formats().map((entry) => entry.pixelformat);
      throw new Error(`${video.capabilities.card} does not capture ${options.format}; --format one of: ${offered.join(', ')} (a display shows only uncompressed formats its planes take)`);
    }
    // --fps asks the camera for a rate; it answers with the nearest it has.
    if (options.fps > 0) {
      const interval = video.setFrameInterval({ numerator: 1, denominator: options.fps });
      cameraFps = interval.denominator / interval.numerator;
    }
    ({ count } = video.requestBuffers('video-capture', 'mmap', options.buffers));
    for (let index = 0; index < count; index += 1) exported.push(video.exportBuffer(index));
    for (let index = 0; index < count; index += 1) video.queue(index);
    // The display starts once the camera took the format: a camera that
    // refuses it ends the run with its own error and no child to stop.
    let theirs;
    [mine, theirs] = FdChannel.pair();
    const child = spawn(process.execPath, [__filename, 'display', ...process.argv.slice(2)], { stdio: ['inherit', 'inherit', 'inherit', theirs.fd] });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    theirs.close();
    const released = (async () => {
      for (;;) {
        let message;
        try {
          ({ message } = await mine.receive());
        } catch (error) {
          throw new Error(`the display process ended (${error.code ?? error.message}); its own error is above`, { cause: error });
        }
        if (message.stats) return message.stats;
        video.queue(message.release);
      }
    })();
    // Awaited below; when the capture fails first, its error is the one reported.
    released.catch(() => {});
    // A display that fails stops the capture at once: its buffers would
    // never come back, and the next dequeue would only time out.
    const displayEnded = released.then(() => Promise.reject(new Error('the display process ended before the last frame')));
    displayEnded.catch(() => {});
    video.streamOn();
    for (let sent = 0; sent < options.frames; sent += 1) {
      const frame = await Promise.race([video.dequeue({ timeoutMs: 10_000 }), displayEnded]);
      // Latency counts from here, when the frame is ours (the driver's own
      // timestamp is its capture schedule: vivid's runs ahead of delivery).
      const dequeuedAt = process.hrtime.bigint();
      // The fences a reader of this buffer must wait for, as a sync_file:
      // a camera that writes by DMA signals them when the frame is complete.
      const fence = exported[frame.index].exportSyncFile('read');
      try {
        const geometry = { width: format.width, height: format.height, pitch: format.bytesperline, fourcc: format.pixelformat };
        await Promise.race([mine.send({ index: frame.index, sequence: frame.sequence, dequeuedAt: String(dequeuedAt), format: geometry }, [exported[frame.index], fence]), displayEnded]);
      } finally {
        fence.close();
      }
    }
    await mine.send({ end: true });
    const stats = await released;
    video.streamOff();
    const status = await exited;
    if (options.json) console.log(JSON.stringify({ copy: options.copy, buffers: count, cameraFps, ...stats }));
    else {
      console.log(`${video.capabilities.card} ${format.pixelformat} ${format.width}x${format.height}${cameraFps ? ` at ${cameraFps} frames/s` : ''} -> ${stats.shownOn}, ${options.copy ? 'copied through mmap' : 'zero-copy (PRIME import)'}`);
      if (stats.notShown) console.log(`not shown: ${stats.notShown}`);
      const handled = stats.shown > 0 ? 'shown' : options.copy ? 'copied' : 'imported';
      console.log(`${stats.frames} frames, ${stats.framesPerSecond.toFixed(1)} frames/s; dequeued to ${handled} p50 ${stats.latencyMs.p50.toFixed(1)} ms, p99 ${stats.latencyMs.p99.toFixed(1)} ms, max ${stats.latencyMs.max.toFixed(1)} ms`);
    }
    process.exitCode = status;
  } finally {
    for (const buffer of exported) buffer.close();
    video.close();
    mine?.close();
  }
}

const options = parseArguments(process.argv.slice(process.argv[2] === 'display' ? 3 : 2));
(process.argv[2] === 'display' ? display(options) : capture(options)).catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
