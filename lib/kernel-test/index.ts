/**
 * The test module (kernel-module/, /dev/dmabuf_test) from TypeScript, for
 * tests and driver developers: a reference importer and a movable exporter.
 */
export { kernelTest, KernelTestDevice, TestExporter, TestAttachment, TestFence, type ExporterInfo, type AttachmentInfo, type KernelTestFeatures, type KernelTestEvent, type KernelTestDeviceEvents, type DmaDirection, type FenceUsage, type KernelTestCommand } from './device';
