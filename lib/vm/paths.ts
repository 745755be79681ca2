import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { codedError } from '../errors';

// Sources run from lib/ (ts-node) and from dist/lib/ (compiled), and the
// package may be installed, vendored or renamed: walk up to the directory
// that holds the files the runner needs, not to a manifest of some name.
function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'vm', 'guest-init.sh')) && existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw codedError('ERR_DMABUF_VM_SETUP', `dmabuf: cannot find the package root (its package.json and vm/guest-init.sh) above ${start}.`, 'Reinstall the dmabuf package: its files are incomplete.');
  }
}

let foundRoot: string | undefined;

/**
 * The package's own root: the runner finds its guest init and config
 * fragments there. Found on first use, so that importing the runner
 * touches no file system.
 */
export function packageRoot(): string {
  foundRoot ??= findPackageRoot(__dirname);
  return foundRoot;
}

export const guestInitScript = () => join(packageRoot(), 'vm', 'guest-init.sh');

/**
 * Built kernels live outside any checkout, so every clone and every run on the
 * machine shares them. `DMABUF_CACHE_DIR` moves the cache (CI, small home
 * directories); XDG is honoured otherwise.
 */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DMABUF_CACHE_DIR) return resolve(env.DMABUF_CACHE_DIR);
  const base = env.XDG_CACHE_HOME ? resolve(env.XDG_CACHE_HOME) : join(homedir(), '.cache');
  return join(base, 'dmabuf');
}
