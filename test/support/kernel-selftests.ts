import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildModule, kernelHeaders, type BuiltKernel } from '../../lib/vm';

/** The kernel's own dma-buf selftests, from the VM kernel's source tree. */
export const kernelSelftests = [
  { name: 'udmabuf', source: 'tools/testing/selftests/drivers/dma-buf/udmabuf.c' },
  { name: 'dmabuf-heap', source: 'tools/testing/selftests/dmabuf-heaps/dmabuf-heap.c' },
] as const;

/**
 * Builds the selftest programs on the host against the VM kernel's exported
 * headers (as the selftests' own Makefiles do with KHDR_INCLUDES), into
 * `outDir`, for the guest suite to run.
 */
export async function buildKernelSelftests(kernel: BuiltKernel, outDir: string): Promise<void> {
  const include = await kernelHeaders(kernel);
  mkdirSync(outDir, { recursive: true });
  for (const test of kernelSelftests) {
    const result = spawnSync('gcc', ['-O2', '-Wall', '-isystem', include, '-o', join(outDir, test.name), join(kernel.tree!, test.source)], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`building the kernel selftest ${test.source} failed:\n${result.stderr}`);
  }
}

// drivers/dma-buf/Makefile's dmabuf_selftests-y, built out of tree: the VM
// kernels leave CONFIG_DMABUF_SELFTESTS off, so that a change to the tests
// never invalidates a cached kernel.
const dmabufSelftestSources = ['selftest.c', 'st-dma-fence.c', 'st-dma-fence-chain.c', 'st-dma-fence-unwrap.c', 'st-dma-resv.c'];

/** The kernel's own DMABUF_SELFTESTS module for `kernel`, from its source tree. */
export async function buildDmabufSelftestsModule(kernel: BuiltKernel, workDir: string): Promise<string> {
  const source = join(workDir, 'dmabuf_selftests');
  mkdirSync(source, { recursive: true });
  for (const file of [...dmabufSelftestSources, 'selftest.h', 'selftests.h']) copyFileSync(join(kernel.tree!, 'drivers/dma-buf', file), join(source, file));
  writeFileSync(join(source, 'Kbuild'), `obj-m := dmabuf_selftests.o\ndmabuf_selftests-y := ${dmabufSelftestSources.map((file) => file.replace(/\.c$/, '.o')).join(' ')}\n`);
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
