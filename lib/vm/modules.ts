import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { codedError } from '../errors';
import type { BuiltKernel } from './kernel';
import { runLogged } from './process';
import { cacheRoot } from './paths';

export interface ModuleSpec {
  /** A module source directory (with a Kbuild or Makefile) to build, or a built `.ko`. */
  path: string;
  /** Module parameters, e.g. `['trigger=1']`. */
  params?: readonly string[];
}

function hashDirectory(dir: string, hash = createHash('sha256'), prefix = ''): ReturnType<typeof createHash> {
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) hashDirectory(path, hash, `${prefix}${entry.name}/`);
    else if (entry.isFile() && /\.(c|h|S)$|^(Kbuild|Makefile)$/.test(entry.name)) hash.update(`${prefix}${entry.name}\0`).update(readFileSync(path));
  }
  return hash;
}

/**
 * Builds an out-of-tree module against a built kernel tree. The sources are
 * copied to a build directory in the cache first: Kbuild writes its objects
 * beside the sources, and the package may live somewhere read-only.
 */
export async function buildModule(sourceDir: string, kernel: BuiltKernel): Promise<string[]> {
  const source = resolve(sourceDir);
  if (!kernel.tree) {
    throw codedError('ERR_DMABUF_VM_SETUP', `Cannot build the module in ${source}: the kernel has no build tree.`, 'Pass --kernel-tree <dir> with your own --kernel, or use the runner\'s own kernel.');
  }
  const key = hashDirectory(source).update(kernel.tree).digest('hex').slice(0, 16);
  const buildDir = join(cacheRoot(), 'modules', `${basename(source)}-${key}`);
  const built = () => (existsSync(buildDir) ? readdirSync(buildDir).filter((name) => name.endsWith('.ko')).map((name) => join(buildDir, name)) : []);
  if (existsSync(join(buildDir, '.complete')) && built().length > 0) return built();

  rmSync(buildDir, { recursive: true, force: true });
  mkdirSync(buildDir, { recursive: true });
  cpSync(source, buildDir, { recursive: true, filter: (path) => !/\.(o|ko|mod|cmd)$/.test(path) });
  const output: Buffer[] = [];
  const collect = new Writable({
    write(chunk: Buffer, _encoding, done) {
      output.push(chunk);
      done();
    },
  });
  const status = await runLogged('make', ['-C', kernel.tree!, `M=${buildDir}`, 'modules'], buildDir, collect);
  const text = Buffer.concat(output).toString('utf8');
  if (status !== 0 || built().length === 0) {
    throw codedError('ERR_DMABUF_VM_SETUP', `Building the module in ${source} failed:\n${text.trimEnd().split('\n').slice(-30).join('\n')}`, 'Fix the module source; it is built with `make -C <kernel tree> M=<copy of the source> modules`.');
  }
  writeFileSync(join(buildDir, '.complete'), '');
  return built();
}

/** Resolves module specs to `.ko` files, building those given as source directories. */
export async function prepareModules(specs: readonly ModuleSpec[], kernel: BuiltKernel): Promise<{ path: string; params: readonly string[] }[]> {
  const loaded: { path: string; params: readonly string[] }[] = [];
  for (const spec of specs) {
    const path = resolve(spec.path);
    if (!existsSync(path)) throw codedError('ERR_DMABUF_VM_SETUP', `Module ${path} does not exist.`, 'Give a module source directory or a built .ko file.');
    const params = spec.params ?? [];
    if (statSync(path).isDirectory()) for (const ko of await buildModule(path, kernel)) loaded.push({ path: ko, params });
    else loaded.push({ path, params });
  }
  return loaded;
}
