import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The kernel's own modules (vgem, vkms, vivid), loaded by a test with the
 * parameters it needs. The runner installs them into the kernel's cache entry
 * and names the directory in DMABUF_KERNEL_MODULES; modprobe resolves what
 * each needs (drm, videodev, videobuf2, ...).
 */
const modprobe = ['/usr/sbin/modprobe', '/sbin/modprobe'].find((path) => existsSync(path)) ?? 'modprobe';

function modulesDir(): string {
  const dir = process.env.DMABUF_KERNEL_MODULES;
  if (!dir) throw new Error('DMABUF_KERNEL_MODULES is not set: the runner sets it for kernels built with their modules');
  return dir;
}

function run(args: string[]): void {
  try {
    execFileSync(modprobe, ['-d', modulesDir(), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`modprobe ${args.join(' ')} failed${stderr ? `: ${stderr}` : ''}`);
  }
}

export function loadKernelModule(name: string, params: readonly string[] = []): void {
  run([name, ...params]);
}

/** Unloads the module and the modules it pulled in that nothing else uses. */
export function unloadKernelModule(name: string): void {
  run(['-r', name]);
}

/** Loads a module for the enclosing describe block, and unloads it after. */
export function withKernelModule(name: string, params: readonly string[] = []): void {
  before(() => loadKernelModule(name, params));
  after(() => unloadKernelModule(name));
}

/**
 * Removes a platform driver's one bound device through sysfs, as unplugging
 * hardware does: the driver's remove runs while its files may still be open.
 * Returns what binds it again (the driver probes it anew, with new nodes).
 */
export function unbindPlatformDevice(driver: string): { bindAgain(): void } {
  const dir = join('/sys/bus/platform/drivers', driver);
  const bound = readdirSync(dir).filter((name) => name.startsWith(`${driver}.`));
  if (bound.length !== 1) throw new Error(`expected one device bound to ${driver}, found: ${bound.join(', ') || 'none'}`);
  const device = bound[0]!;
  writeFileSync(join(dir, 'unbind'), device);
  let again = false;
  return {
    bindAgain: () => {
      if (again) return;
      again = true;
      writeFileSync(join(dir, 'bind'), device);
    },
  };
}
