import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildModule, kernelHeaders, type BuiltKernel } from '../../lib/vm';

/** The kernel's own dma-buf selftest programs, from the VM kernel's source tree. */
export const kernelSelftests = [
  { name: 'udmabuf', source: 'tools/testing/selftests/drivers/dma-buf/udmabuf.c' },
  { name: 'dmabuf-heap', source: 'tools/testing/selftests/dmabuf-heaps/dmabuf-heap.c' },
] as const;

/**
 * The source tree of a built kernel. An `O=` build directory holds only the
 * objects and a Makefile that includes the source tree's: the selftests and
 * drivers/dma-buf sources are found through it.
 */
export function kernelSource(tree: string): string {
  const makefile = join(tree, 'Makefile');
  if (existsSync(join(tree, 'drivers/dma-buf/dma-buf.c')) || !existsSync(makefile)) return tree;
  const include = /^include\s+(\S+)\/Makefile\s*$/m.exec(readFileSync(makefile, 'utf8'));
  if (!include || !existsSync(join(include[1]!, 'drivers/dma-buf/dma-buf.c'))) throw new Error(`${tree} is neither a kernel source tree nor an O= build directory of one`);
  return include[1]!;
}

function gcc(args: string[], what: string): void {
  const result = spawnSync('gcc', ['-O2', '-Wall', ...args], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`building ${what} failed:\n${result.stderr}`);
}

/**
 * Builds the selftest programs on the host against the VM kernel's exported
 * headers (as the selftests' own Makefiles do with KHDR_INCLUDES), into
 * `outDir`, for the guest suite to run. Also builds
 * test/fixtures/udmabuf_later_tests.c, 7.2's udmabuf tests 5-7 for the
 * kernels whose own program stops before them.
 */
export async function buildKernelSelftests(kernel: BuiltKernel, outDir: string, root = join(__dirname, '..', '..', '..')): Promise<void> {
  const include = await kernelHeaders(kernel);
  const source = kernelSource(kernel.tree!);
  mkdirSync(outDir, { recursive: true });
  // 6.12 includes "../../kselftest.h" relative to the test, 7.x "kselftest.h"
  // from lib.mk's -I of the selftests directory.
  const selftestsDir = join(source, 'tools/testing/selftests');
  for (const test of kernelSelftests) gcc(['-isystem', include, '-I', selftestsDir, '-o', join(outDir, test.name), join(source, test.source)], `the kernel selftest ${test.source}`);
  gcc(['-isystem', include, '-o', join(outDir, 'udmabuf_later_tests'), join(root, 'test/fixtures/udmabuf_later_tests.c')], 'test/fixtures/udmabuf_later_tests.c');
}

// drivers/dma-buf/Makefile's dmabuf_selftests-y (6.1, 6.12), built out of
// tree, so that the suite does not depend on how the kernel's own modules
// were built or installed.
const dmabufSelftestSources = ['selftest.c', 'st-dma-fence.c', 'st-dma-fence-chain.c', 'st-dma-fence-unwrap.c', 'st-dma-resv.c'];

/** True when `kernel` has the DMABUF_SELFTESTS module (6.1, 6.12); 7.x has KUnit suites instead. */
export function hasDmabufSelftestsModule(kernel: BuiltKernel): boolean {
  return existsSync(join(kernelSource(kernel.tree!), 'drivers/dma-buf/selftest.c'));
}

/** The kernel's own DMABUF_SELFTESTS module for `kernel` (6.1, 6.12), from its source tree. */
export async function buildDmabufSelftestsModule(kernel: BuiltKernel, workDir: string): Promise<string> {
  const dmaBuf = join(kernelSource(kernel.tree!), 'drivers/dma-buf');
  if (!hasDmabufSelftestsModule(kernel)) throw new Error(`${dmaBuf} has no selftest.c: this kernel has the dmabuf_kunit KUnit suites instead (buildDmabufKunitModule)`);
  const source = join(workDir, 'dmabuf_selftests');
  mkdirSync(source, { recursive: true });
  for (const file of [...dmabufSelftestSources, 'selftest.h', 'selftests.h']) copyFileSync(join(dmaBuf, file), join(source, file));
  writeFileSync(join(source, 'Kbuild'), `obj-m := dmabuf_selftests.o\ndmabuf_selftests-y := ${dmabufSelftestSources.map((file) => file.replace(/\.c$/, '.o')).join(' ')}\n`);
  const [module] = await buildModule(source, kernel);
  return module!;
}

/**
 * 7.x's DMABUF_KUNIT_TEST module (suites dma-buf-fence, -fence-chain,
 * -fence-unwrap, -resv), built out of tree from the objects its
 * drivers/dma-buf/Makefile lists. Needs CONFIG_KUNIT=y in the kernel.
 */
export async function buildDmabufKunitModule(kernel: BuiltKernel, workDir: string): Promise<string> {
  const dmaBuf = join(kernelSource(kernel.tree!), 'drivers/dma-buf');
  const makefile = readFileSync(join(dmaBuf, 'Makefile'), 'utf8');
  const objects = /^dmabuf_kunit-y\s*:=((?:[^\n]*\\\n)*[^\n]*)/m.exec(makefile)?.[1]?.replace(/\\\n/g, ' ').trim().split(/\s+/);
  if (!objects) throw new Error(`${dmaBuf}/Makefile has no dmabuf_kunit-y: this kernel has no DMABUF_KUNIT_TEST`);
  if (!/^CONFIG_KUNIT=y$/m.test(readFileSync(join(kernel.tree!, '.config'), 'utf8'))) throw new Error(`${kernel.tree} was built without CONFIG_KUNIT=y: dmabuf_kunit cannot load into it`);
  const source = join(workDir, 'dmabuf_kunit');
  mkdirSync(source, { recursive: true });
  for (const object of objects) copyFileSync(join(dmaBuf, object.replace(/\.o$/, '.c')), join(source, object.replace(/\.o$/, '.c')));
  writeFileSync(join(source, 'Kbuild'), `obj-m := dmabuf_kunit.o\ndmabuf_kunit-y := ${objects.join(' ')}\n`);
  const [module] = await buildModule(source, kernel);
  return module!;
}

/** test/fixtures/dbt_efault.c, against the module's uapi header. */
export function buildEfaultProgram(root: string, outDir: string): string {
  mkdirSync(outDir, { recursive: true });
  const output = join(outDir, 'dbt_efault');
  const result = spawnSync('gcc', ['-O2', '-Wall', '-I', join(root, 'kernel-module/uapi'), '-o', output, join(root, 'test/fixtures/dbt_efault.c')], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`building test/fixtures/dbt_efault.c failed:\n${result.stderr}`);
  return output;
}
