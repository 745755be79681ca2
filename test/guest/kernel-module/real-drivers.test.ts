import assert from 'node:assert/strict';
import { release } from 'node:os';
import { DrmDevice, heap, udmabuf, V4l2Device, type DmaBuf } from '../../../lib';
import { kernelTest, type KernelTestDevice, type KernelTestFeatures } from '../../../lib/kernel-test';
import { loadKernelModule, unbindPlatformDevice, unloadKernelModule } from '../kernel-modules';
import { requireModule } from './helpers';

const pageSize = 4096;
const pages = 16;
const pagesOf = (buffer: DmaBuf) => {
  assert.equal(buffer.size % pageSize, 0, `a dma-buf is whole pages: ${buffer.size} bytes`);
  return buffer.size / pageSize;
};

/**
 * The exporters of drivers nobody here wrote, met by the test module's
 * importers as ours are. `cachesStaticMaps`: the exporter sets
 * cache_sgt_mapping, so with core_sgt_cache the core keeps a static
 * importer's first mapping (udmabuf.c 6.1:162, 6.12:238; drm_prime.c
 * 6.1:792, 6.12:813, which vgem's buffers use); the heap's and vb2's ops do
 * not set it, and 7.x removed the flag.
 */
interface ForeignExporter {
  name: string;
  cachesStaticMaps: boolean;
  make(): { buffer: DmaBuf; release(): void };
}

const exporters: ForeignExporter[] = [
  {
    name: 'udmabuf',
    cachesStaticMaps: true,
    make: () => {
      const buffer = udmabuf.create(pages * pageSize);
      return { buffer, release: () => buffer.close() };
    },
  },
  {
    name: 'the system heap',
    cachesStaticMaps: false,
    make: () => {
      const buffer = heap.allocate('system', pages * pageSize);
      return { buffer, release: () => buffer.close() };
    },
  },
  {
    name: 'vgem (a GEM dumb buffer exported with PRIME)',
    cachesStaticMaps: true,
    make: () => {
      const drm = DrmDevice.find('vgem', { node: 'card' });
      const dumb = drm.createDumb({ width: (pages * pageSize) / 4, height: 1, bpp: 32 });
      const buffer = drm.exportDmaBuf(dumb);
      return {
        buffer,
        release: () => {
          buffer.close();
          drm.close();
        },
      };
    },
  },
  {
    name: 'vivid (a vb2 vmalloc capture buffer exported with VIDIOC_EXPBUF)',
    cachesStaticMaps: false,
    make: () => {
      // vivid's webcam input has sizes of its own (320x180 is its smallest):
      // the buffer is what it chose, page-aligned by vb2.
      const video = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
      try {
        video.setFormat({ width: 320, height: 180, pixelformat: 'XR24' });
        video.requestBuffers('video-capture', 'mmap', 1);
        const buffer = video.exportBuffer(0);
        return {
          buffer,
          release: () => {
            buffer.close();
            video.requestBuffers('video-capture', 'mmap', 0);
            video.close();
          },
        };
      } catch (error) {
        video.close();
        throw error;
      }
    },
  },
];

describe('kernel module: the exporters and importers of real drivers (udmabuf, the system heap, vgem, vivid)', () => {
  requireModule();
  let device: KernelTestDevice;
  let features: KernelTestFeatures;
  before(function () {
    this.timeout(120_000);
    features = kernelTest.features();
    loadKernelModule('vgem');
    loadKernelModule('vivid', ['n_devs=1', 'node_types=0x1']);
  });
  after(function () {
    this.timeout(120_000);
    unloadKernelModule('vivid');
    unloadKernelModule('vgem');
  });
  beforeEach(() => {
    device = kernelTest.open();
  });
  afterEach(() => device.close());

  for (const exporter of exporters) {
    it(`${exporter.name}: a static exporter (no pin op); a dynamic importer's mapping is cached at attach exactly when the core caches; a static importer's map is cached exactly when the core caches and the exporter asks to; all its pages map`, () => {
      const made = exporter.make();
      const { buffer } = made;
      try {
        const size = pagesOf(buffer) * pageSize;
        const dynamic = device.attach(buffer, { dynamic: true });
        assert.deepEqual([dynamic.info().exporterDynamic, dynamic.info().coreCached], [false, features.coreSgtCache]);
        const dynamicMap = dynamic.map();
        assert.equal(dynamicMap.bytes, size);
        assert.ok(dynamicMap.segments >= 1 && dynamicMap.segments <= size / pageSize, `${dynamicMap.segments} segments`);
        const staticImporter = device.attach(buffer);
        assert.equal(staticImporter.info().coreCached, false, 'nothing is mapped at a static attach of a static exporter');
        assert.equal(staticImporter.map('to-device').bytes, size);
        assert.equal(staticImporter.info().coreCached, features.coreSgtCache && exporter.cachesStaticMaps);
        staticImporter.unmap();
        dynamic.unmap();
        staticImporter.detach();
        dynamic.detach();
      } finally {
        made.release();
      }
    });
  }

  // vgem as the importer of our dynamic exporter. 6.1 and 6.12 import with
  // drm_gem_prime_import, which attaches and maps at once (drm_prime.c
  // 6.1:937/943, 6.12:958/964): a static importer's map pins a dynamic
  // exporter. 7.2's shmem drivers import with
  // drm_gem_shmem_prime_import_no_map (drm_gem_shmem_helper.h 7.2:300):
  // attach only, so nothing pins the buffer and it may move under the import.
  const importMapsAtOnce = Number(release().split('.')[0]) < 7;
  it(`vgem importing our dynamic exporter's buffer: ${importMapsAtOnce ? 'maps and pins it at import (6.x), so it cannot move until the GEM handle closes' : 'attaches without mapping (7.x), so it stays movable'}; the same buffer imported twice is one GEM handle`, () => {
    const ours = device.export({ pages: 4, dynamic: true });
    using _buffer = ours.dmabuf;
    using drm = DrmDevice.find('vgem', { node: 'card' });
    const gem = drm.importDmaBuf(ours.dmabuf);
    const again = drm.importDmaBuf(ours.dmabuf);
    assert.equal(again.handle, gem.handle);
    let info = ours.info();
    assert.equal(info.attachments, 1, 'one attachment for both imports');
    if (importMapsAtOnce) {
      assert.deepEqual([info.mapCalls, info.pinCount], [1, 1]);
      assert.throws(() => ours.move(), { code: 'EBUSY' });
    } else {
      assert.deepEqual([info.mapCalls, info.pinCount], [0, 0]);
      ours.move();
      assert.equal(ours.info().moves, 1);
    }
    gem.close();
    assert.equal(ours.info().attachments, 1, 'the other import still holds the handle');
    again.close();
    info = ours.info();
    assert.deepEqual([info.attachments, info.pinCount], [0, 0], 'GEM_CLOSE of the last import detached and unpinned');
    ours.move();
  });

  // A device removed while its buffers are in use, as a USB camera unplugged:
  // vivid's remove releases its vb2 queues (vb2_video_unregister_device), and
  // only the dma-buf's own reference keeps the exported buffer alive. The
  // debug kernel runs this under KASAN, kmemleak and lockdep, and the runner
  // fails the run on any report they make.
  it("vivid unbound while the test module's static importer holds its exported buffer mapped: after the device is gone the importer maps it again for the other direction (vb2-vmalloc makes a new DMA mapping for it), all its pages, and detaches", () => {
    const video = V4l2Device.find({ driver: 'vivid', capability: 'video-capture' });
    let buffer: DmaBuf | undefined;
    let unbound: ReturnType<typeof unbindPlatformDevice> | undefined;
    try {
      video.setFormat({ width: 320, height: 180, pixelformat: 'XR24' });
      video.requestBuffers('video-capture', 'mmap', 1);
      buffer = video.exportBuffer(0);
      const size = pagesOf(buffer) * pageSize;
      const importer = device.attach(buffer);
      assert.equal(importer.map('from-device').bytes, size);
      unbound = unbindPlatformDevice('vivid');
      assert.throws(() => video.queryBuffer(0), { code: 'ENODEV' });
      importer.unmap();
      // vb2-vmalloc keeps its table mapped for the last direction and hands it
      // back for the same one (videobuf2-vmalloc.c 6.1:278-281): another
      // direction makes it unmap and map the pages anew.
      assert.equal(importer.map('to-device').bytes, size, 'mapped again after the device is gone');
      importer.unmap();
      importer.detach();
    } finally {
      buffer?.close();
      video.close();
      unbound?.bindAgain();
    }
  });
});
