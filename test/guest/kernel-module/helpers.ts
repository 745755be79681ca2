import { existsSync } from 'node:fs';
import { kernelTest } from '../../../lib';

/**
 * Whether the running kernel was built with CONFIG_DMABUF_MOVE_NOTIFY: the
 * suite runner reads it from the kernel's .config and passes it, because
 * the core's pinning rules differ with it and the tests assert both.
 */
export function moveNotifyEnabled(): boolean {
  const value = process.env.DMABUF_MOVE_NOTIFY;
  if (value !== 'y' && value !== 'n') throw new Error('DMABUF_MOVE_NOTIFY (y or n) must say how the kernel was configured; npm test sets it');
  return value === 'y';
}

/** The module is loaded by the runner for these suites: its absence is a failure, not a skip. */
export function requireModule(): void {
  before(function () {
    if (process.env.DMABUF_IN_VM !== '1') throw new Error('the kernel module suite runs only inside the VM (npm test boots it)');
    if (!existsSync(kernelTest.devicePath)) throw new Error(`${kernelTest.devicePath} is missing: the runner should have loaded kernel-module/dmabuf_test.ko`);
  });
}
