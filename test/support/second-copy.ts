import { chmodSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/vm/paths';

/**
 * A copy of the installed package (package.json, compiled JavaScript, the
 * addon, its one runtime dependency chain and the fixture scripts) in a new
 * directory anyone can read: its own path, so its classes are not this
 * copy's, and readable by another user even when the checkout is not (a
 * clone under a 0700 directory).
 */
export function copyPackage(): { dir: string; remove(): void } {
  const root = packageRoot();
  const dir = mkdtempSync(join(tmpdir(), 'dmabuf-copy-'));
  chmodSync(dir, 0o755);
  cpSync(join(root, 'package.json'), join(dir, 'package.json'));
  cpSync(join(root, 'dist', 'lib'), join(dir, 'dist', 'lib'), { recursive: true });
  cpSync(join(root, 'build', 'Release', 'dmabuf_native.node'), join(dir, 'build', 'Release', 'dmabuf_native.node'));
  for (const module of ['bindings', 'file-uri-to-path']) cpSync(join(root, 'node_modules', module), join(dir, 'node_modules', module), { recursive: true });
  cpSync(join(root, 'test', 'fixtures', 'scripts'), join(dir, 'test', 'fixtures', 'scripts'), { recursive: true });
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A second installed copy of the package, as a dependency's own copy would be (`instanceof` answers false across them). */
export function loadSecondCopy(): { lib: typeof import('../../lib'); remove(): void } {
  const copy = copyPackage();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const lib = require(join(copy.dir, 'dist', 'lib', 'index.js')) as typeof import('../../lib');
  return { lib, remove: () => copy.remove() };
}
