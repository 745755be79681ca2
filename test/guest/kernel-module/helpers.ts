import { existsSync } from 'node:fs';
import { kernelTest } from '../../../lib/kernel-test';

/**
 * Whether a dynamic importer's mapping leaves the exporter movable, i.e.
 * the kernel has CONFIG_DMABUF_MOVE_NOTIFY=y or no such option (7.x): read
 * from what the loaded module reports of the running kernel. The runner's
 * DMABUF_MOVE_NOTIFY, when given, must agree.
 */
export function moveNotifyEnabled(): boolean {
  const enabled = !kernelTest.features().dynamicMapPins;
  const value = process.env.DMABUF_MOVE_NOTIFY;
  if (value !== undefined && value !== (enabled ? 'y' : 'n')) throw new Error(`DMABUF_MOVE_NOTIFY=${value}, but the module reports ${enabled ? 'no ' : ''}dynamic_map_pins`);
  return enabled;
}

/** The module is loaded by the runner for these suites: its absence is a failure, not a skip. */
export function requireModule(): void {
  before(function () {
    if (process.env.DMABUF_IN_VM !== '1') throw new Error('the kernel module suite runs only inside the VM (npm test boots it)');
    if (!existsSync(kernelTest.devicePath)) throw new Error(`${kernelTest.devicePath} is missing: the runner should have loaded kernel-module/dmabuf_test.ko`);
  });
}
