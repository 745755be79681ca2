import { generationNames, isKernelGeneration, profilesOf, type KernelGeneration, type KernelProfile } from '../../lib/vm';

/**
 * The kernels `npm test` stands on: every tested generation's base kernel
 * (guest and module suites), MOVE_NOTIFY off where the option exists
 * (module suite), and the checkers' build (lockdep, KASAN, DMABUF_DEBUG,
 * kmemleak) of one generation (see preferredDebugGeneration).
 * `DMABUF_TEST_KERNELS=7.2,6.1` narrows a local run; the summary names what
 * ran, so a narrowed run is never mistaken for the whole matrix.
 */
export interface MatrixKernel {
  generation: KernelGeneration;
  profile: KernelProfile;
}

export const newestGeneration: KernelGeneration = generationNames[generationNames.length - 1]!;

export function testedGenerations(env: NodeJS.ProcessEnv = process.env): KernelGeneration[] {
  const wanted = env.DMABUF_TEST_KERNELS?.split(',').map((name) => name.trim()).filter(Boolean);
  if (!wanted) return generationNames;
  for (const name of wanted) if (!isKernelGeneration(name)) throw new Error(`DMABUF_TEST_KERNELS names '${name}', not one of ${generationNames.join(', ')}`);
  return generationNames.filter((generation) => wanted.includes(generation));
}

/** The kernel the runner's own host tests boot (vm-run, module style): the default generation unless narrowed. */
export function runnerGeneration(env: NodeJS.ProcessEnv = process.env): KernelGeneration {
  const generations = testedGenerations(env);
  return generations.includes('6.12') ? '6.12' : generations[0]!;
}

/**
 * The debug build (lockdep, KASAN, DMABUF_DEBUG, kmemleak) is the newest
 * generation's. DMABUF_DEBUG_KERNEL picks another.
 */
export const preferredDebugGeneration: KernelGeneration = newestGeneration;

export function debugGeneration(env: NodeJS.ProcessEnv = process.env): KernelGeneration {
  const generations = testedGenerations(env);
  const wanted = env.DMABUF_DEBUG_KERNEL ?? preferredDebugGeneration;
  if (!isKernelGeneration(wanted)) throw new Error(`DMABUF_DEBUG_KERNEL names '${wanted}', not one of ${generationNames.join(', ')}`);
  return generations.includes(wanted) ? wanted : generations[generations.length - 1]!;
}

export function noMoveNotifyGenerations(env: NodeJS.ProcessEnv = process.env): KernelGeneration[] {
  return testedGenerations(env).filter((generation) => profilesOf(generation).includes('no-move-notify'));
}
