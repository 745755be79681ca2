import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { release } from 'node:os';
import { formatDevices, listDevices } from '../../lib/devices';

describe('devices report on this host', () => {
  it('agrees with what the file system shows', () => {
    const devices = listDevices();
    assert.equal(devices.kernelRelease, release());
    assert.equal(devices.udmabuf.present, existsSync('/dev/udmabuf'));
    assert.deepEqual(devices.heaps, existsSync('/dev/dma_heap') ? readdirSync('/dev/dma_heap').sort() : []);
    assert.equal(devices.swSync !== undefined, existsSync('/sys/kernel/debug/sync/sw_sync') || existsSync('/sys/kernel/debug/sw_sync'));
  });

  it('tells a person which kernel option is missing', () => {
    const text = formatDevices({
      kernelRelease: '6.1.0',
      memfdCreate: true,
      udmabuf: { path: '/dev/udmabuf', present: false, access: 'absent' },
      heaps: [],
    });
    assert.match(text, /udmabuf\s+absent \(CONFIG_UDMABUF\)/);
    assert.match(text, /dma-heaps\s+none \(CONFIG_DMABUF_HEAPS\)/);
    assert.match(text, /sw_sync\s+absent \(CONFIG_SW_SYNC/);
  });
});
