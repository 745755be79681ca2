import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { codedError } from '../errors';

// Sources run from lib/ (ts-node) and from dist/lib/ (compiled): walk up to
// the package's own manifest rather than counting directories.
function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'dmabuf') return dir;
    if (dirname(dir) === dir) throw codedError('ERR_DMABUF_VM_SETUP', `dmabuf: cannot find the package root (its package.json) above ${start}.`, 'Reinstall the dmabuf package: its files are incomplete.');
  }
}

/** The package's own root: the runner finds its guest init and config fragments there. */
export const packageRoot = findPackageRoot(__dirname);

export const guestInitScript = join(packageRoot, 'vm', 'guest-init.sh');

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
