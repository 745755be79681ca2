import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { formatDevices, listDevices } from '../../lib/devices';
import { loadKernelModule, unloadKernelModule } from './kernel-modules';

// Runs inside the VM: the kernel there is the project's own.
describe('the VM kernel offers every dma-buf interface', () => {
  before(function () {
    if (process.env.DMABUF_IN_VM !== '1') throw new Error('the guest suite runs only inside the VM (npm test boots it)');
  });

  it('has /dev/udmabuf as a misc character device', () => {
    const stat = statSync('/dev/udmabuf');
    assert.ok(stat.isCharacterDevice());
    // Decoded as glibc's major(): Linux 7.2 gives dynamic misc devices minors
    // from 256 up, whose high bits sit above the major's.
    assert.equal((stat.rdev >>> 8) & 0xfff, 10, 'misc devices have major 10');
  });

  it('has the system dma-heap', () => {
    assert.ok(statSync('/dev/dma_heap/system').isCharacterDevice());
  });

  it('has sw_sync and the dma-buf bufinfo table in debugfs', () => {
    assert.ok(statSync('/sys/kernel/debug/sync/sw_sync').isFile());
    assert.match(readFileSync('/sys/kernel/debug/dma_buf/bufinfo', 'utf8'), /Dma-buf Objects:/);
  });

  // Linux 7.2 removed CONFIG_DMABUF_MOVE_NOTIFY: notifying dynamic importers is no longer optional.
  const [major = 0] = readFileSync('/proc/sys/kernel/osrelease', 'utf8').split('.').map(Number);
  const moveNotifyIsAnOption = major < 7;

  it(`was built with udmabuf, sw_sync, the system heap${moveNotifyIsAnOption ? ' and move_notify' : ', and has no move_notify option (Linux 7.2 removed it)'}`, () => {
    const config = gunzipSync(readFileSync('/proc/config.gz')).toString('utf8');
    for (const option of ['CONFIG_UDMABUF=y', 'CONFIG_SW_SYNC=y', 'CONFIG_DMABUF_HEAPS_SYSTEM=y', ...(moveNotifyIsAnOption ? ['CONFIG_DMABUF_MOVE_NOTIFY=y'] : [])]) {
      assert.ok(config.includes(`\n${option}\n`), option);
    }
    if (!moveNotifyIsAnOption) assert.doesNotMatch(config, /CONFIG_DMABUF_MOVE_NOTIFY/);
  });

  it('reports all of it through listDevices(), leaving out config options the kernel does not have', () => {
    const devices = listDevices();
    assert.equal(devices.udmabuf.present, true);
    assert.equal(devices.udmabuf.access, 'rw');
    assert.equal(devices.udmabuf.sizeLimitMiB, 64);
    assert.equal(devices.udmabuf.listLimit, 1024);
    assert.deepEqual(devices.heaps, ['system']);
    assert.equal(devices.swSync, '/sys/kernel/debug/sync/sw_sync');
    assert.equal(devices.config?.CONFIG_DMABUF_MOVE_NOTIFY, moveNotifyIsAnOption ? 'y' : undefined);
  });

  it('lists no DRM or V4L2 node until vgem and vivid are loaded, then each node by its driver, and none again once they are unloaded', function () {
    this.timeout(120_000);
    assert.deepEqual([listDevices().drm, listDevices().video], [[], []]);
    loadKernelModule('vgem');
    loadKernelModule('vivid', ['n_devs=1', 'node_types=0x101']);
    try {
      const devices = listDevices();
      assert.deepEqual(devices.drm.map((node) => [node.node, node.driver]).sort(), [['card', 'vgem'], ['render', 'vgem']]);
      assert.deepEqual(devices.video.map((node) => [node.driver, node.queues]), [['vivid', ['video-capture']], ['vivid', ['video-output']]]);
      assert.match(formatDevices(devices), /^drm +\/dev\/dri\/card\d+ vgem, \/dev\/dri\/renderD\d+ vgem$/m);
      assert.match(formatDevices(devices), /^v4l2 +\/dev\/video\d+ vivid \(capture\), \/dev\/video\d+ vivid \(output\)$/m);
    } finally {
      unloadKernelModule('vivid');
      unloadKernelModule('vgem');
    }
    assert.deepEqual([listDevices().drm, listDevices().video], [[], []]);
  });
});
