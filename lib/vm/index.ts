export { run, resolveKernel, type VmRunOptions, type VmRunResult, type VmFailure } from './run';
export { buildKernel, findCachedKernel, kernelHeaders, kernelCacheKey, kernelProfiles, profilesOf, resolveKernelSource, listCacheEntries, type BuiltKernel, type KernelProfile, type KernelSource, type BuildKernelOptions, type KernelBuildProgress, type CacheEntryInfo } from './kernel';
export { kernelGenerations, defaultGeneration, generationNames, fetchKernelSource, isKernelGeneration, type KernelGeneration } from './sources';
export { buildModule, type ModuleSpec } from './modules';
export { scanKernelLog, type KernelProblem } from './log-scan';
export { VmSetupError } from './errors';
