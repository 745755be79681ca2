import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/vm/paths';

/**
 * A second installed copy of the package, as a dependency's own copy would
 * be: its own path, its own compiled JavaScript and its own addon file, so
 * its classes are not this copy's (`instanceof` answers false across them).
 */
export function loadSecondCopy(): { lib: typeof import('../../lib'); remove(): void } {
  const root = packageRoot();
  const dir = mkdtempSync(join(tmpdir(), 'dmabuf-second-copy-'));
  cpSync(join(root, 'package.json'), join(dir, 'package.json'));
  cpSync(join(root, 'dist', 'lib'), join(dir, 'dist', 'lib'), { recursive: true });
  cpSync(join(root, 'build', 'Release', 'dmabuf_native.node'), join(dir, 'build', 'Release', 'dmabuf_native.node'));
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const lib = require(join(dir, 'dist', 'lib', 'index.js')) as typeof import('../../lib');
  return { lib, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
