export { listDevices, formatDevices, type DmaBufDevices } from './devices';
export { errnoName, kernelError, type KernelError } from './errors';
export * as vm from './vm';
