import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { kernelHeaders, type BuiltKernel } from '../../lib/vm';

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
