export { run, resolveKernel, type VmRunOptions, type VmRunResult, type VmFailure } from './run';
export { buildKernel, defaultKernelSource, findCachedKernel, kernelHeaders, kernelCacheKey, kernelProfiles, type BuiltKernel, type KernelProfile, type BuildKernelOptions } from './kernel';
export { buildModule, type ModuleSpec } from './modules';
export { scanKernelLog, type KernelProblem } from './log-scan';
export { VmSetupError } from './errors';
