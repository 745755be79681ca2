import { codedError } from '../errors';
import * as validate from '../validate';
import type { Attachment } from './core';

/**
 * What the core does at each point where kernels (and the 2019 proposal)
 * differ, one named rule per decision, as the kernel names some of them
 * (dma_buf_pin_on_map). core.ts asks these and never the profile's name.
 * A rule taking an attachment is asked at the moment the kernel asks. The
 * numbers are the rules of docs/dynamic-policy.md, which has every
 * profile's choice side by side.
 */
export interface PolicyRules {
  /**
   * Importer ops that lack the invalidation callback (move_notify,
   * invalidate, invalidate_mappings): v10 saw a static importer (its
   * is_dynamic tested the callback); 6.1/6.12 WARN and refuse the attach;
   * 7.2 makes the callback optional, so the attachment is dynamic, is never
   * pinned by the core nor told of moves, and must dma_buf_pin itself
   * (rule 2).
   */
  readonly importerOpsWithoutInvalidate: 'static-importer' | 'rejected' | 'dynamic-must-pin-itself';
  /** Export refuses an exporter without map, unmap or release (rule 1; v10 did not check). */
  readonly exportRequiresMapUnmapRelease: boolean;
  /** Export refuses pin without unpin or the reverse (rule 1; v10 did not check). */
  readonly exportRequiresPinWithUnpin: boolean;
  /**
   * The exporter's cache_sgt_mapping option: 'absent' (7.2 removed it and
   * attach->sgt with it), or which ops export refuses it together with
   * (rules 1 and 5).
   */
  readonly exporterMappingCache: 'absent' | 'refused-with-pin' | 'refused-with-pin-or-unpin';
  /**
   * When importer and exporter disagree on being dynamic, attach maps
   * bidirectionally and caches the table: false, or how it locks for it
   * (only when the exporter is dynamic, or always). Rule 3.
   */
  readonly mismatchedAttachCachesMapping: false | 'locks-if-exporter-dynamic' | 'locks-always';
  /** A static importer's fresh map waits for the buffer's KERNEL fences (rule 4). */
  readonly staticImporterMapWaitsKernelFences: boolean;
  /**
   * Whether map and unmap assert that the caller holds the reservation lock
   * for this attachment; `cached` says whether the call is about the
   * attachment's cached table (6.1 asserts for a dynamic exporter only past
   * the cache). Rules 5 and 7.
   */
  lockAssertedOnMap(attachment: Attachment<unknown>, cached: boolean): boolean;
  /** map/unmap take the reservation lock themselves for this attachment (v10, which had no _unlocked calls; rules 5 and 7). */
  mapTakesLockItself(attachment: Attachment<unknown>): boolean;
  /** dma_buf_map_attachment_unlocked and its unmap exist (rule 6; v10: the plain calls locked where needed). */
  readonly unlockedMapCalls: boolean;
  /** The core pins the exporter for each fresh mapping of this attachment and unpins at its unmap (rules 5 and 7). */
  pinOnMap(attachment: Attachment<unknown>): boolean;
  /** Detach unmaps the cached table (and drops its pin): false (nothing is cached), or how it locks (rule 10). */
  readonly detachUnmapsCachedMapping: false | 'locks-if-exporter-dynamic' | 'locks-always';
  /**
   * Who an invalidation reaches: every attachment with the callback; the
   * same except one whose own map is running (v10's self-filter); or only
   * attachments holding a live mapping not yet invalidated, once each
   * (rule 9).
   */
  readonly invalidationReaches: 'every-attachment-with-callback' | 'all-but-the-attachment-mapping' | 'live-mappings-once';
  /** An invalidation of a static exporter is refused (rule 9; tracking: its importers hold cached tables). */
  readonly staticExporterInvalidationIsError: boolean;
  /** dma_buf_attach_revocable() exists (rule 12). */
  readonly revocableAttachQuery: boolean;
}

export type ProfileName = 'v10' | 'linux-6.1' | 'linux-6.12' | 'linux-7.2' | 'tracking';

export interface PolicyProfile {
  readonly name: ProfileName;
  /** The name with the configuration that matters, for reports and traces. */
  readonly label: string;
  readonly rules: PolicyRules;
}

const always = () => true;
const never = () => false;
const dynamicImporterOrUncachedDynamicExporter = (attachment: Attachment<unknown>, cached: boolean) => attachment.dynamic || (!cached && attachment.buffer.dynamic);
const staticImporterOfDynamicExporter = (attachment: Attachment<unknown>) => attachment.buffer.dynamic && !attachment.dynamic;
const anyImporterOfDynamicExporter = (attachment: Attachment<unknown>) => attachment.buffer.dynamic;

/** Citations are drivers/dma-buf/dma-buf.c of Debian's linux-source-6.1 (6.1.192). */
function linux61(moveNotify: boolean): PolicyProfile {
  return {
    name: 'linux-6.1',
    label: `linux-6.1${moveNotify ? '' : ' (no MOVE_NOTIFY)'}`,
    rules: {
      // 6.1 dma-buf.c:851-852: WARN_ON(importer_ops && !importer_ops->move_notify) → -EINVAL
      importerOpsWithoutInvalidate: 'rejected',
      // 6.1 dma-buf.c:616-620 (map_dma_buf, unmap_dma_buf, release) and 626-627 (pin xor unpin)
      exportRequiresMapUnmapRelease: true,
      exportRequiresPinWithUnpin: true,
      // 6.1 dma-buf.c:622-624: cache_sgt_mapping && (pin || unpin) → -EINVAL
      exporterMappingCache: 'refused-with-pin-or-unpin',
      // 6.1 dma-buf.c:878-899: resv locked only if dma_buf_is_dynamic (882-883, 896-897)
      mismatchedAttachCachesMapping: 'locks-if-exporter-dynamic',
      // 6.1 dma-buf.c:803-806: !is_dynamic(attach) → dma_resv_wait_timeout(KERNEL)
      staticImporterMapWaitsKernelFences: true,
      // 6.1 dma-buf.c:1065-1066 (dynamic importer, before the cache) and 1080-1081 (dynamic exporter, past it); unmap 1170-1177 likewise
      lockAssertedOnMap: dynamicImporterOrUncachedDynamicExporter,
      mapTakesLockItself: never,
      // 6.1 dma-buf.c:1133-1146, 1197-1209: the _unlocked wrappers
      unlockedMapCalls: true,
      // 6.1 dma-buf.c:1080-1086 pin, 1093-1095 unpin on error, 1181-1183 unpin at unmap: dynamic exporter && !MOVE_NOTIFY
      pinOnMap: moveNotify ? never : anyImporterOfDynamicExporter,
      // 6.1 dma-buf.c:960-970: unmap attach->sgt (and unpin), locking only a dynamic exporter
      detachUnmapsCachedMapping: 'locks-if-exporter-dynamic',
      // 6.1 dma-buf.c:1226-1229: every attachment with importer_ops
      invalidationReaches: 'every-attachment-with-callback',
      staticExporterInvalidationIsError: false,
      revocableAttachQuery: false,
    },
  };
}

/** Citations are drivers/dma-buf/dma-buf.c of Debian's linux-source-6.12 (6.12.95). */
function linux612(moveNotify: boolean): PolicyProfile {
  return {
    name: 'linux-6.12',
    label: `linux-6.12${moveNotify ? '' : ' (no MOVE_NOTIFY)'}`,
    rules: {
      // 6.12 dma-buf.c:913-914: WARN_ON(importer_ops && !importer_ops->move_notify) → -EINVAL
      importerOpsWithoutInvalidate: 'rejected',
      // 6.12 dma-buf.c:632-636 and 642-643
      exportRequiresMapUnmapRelease: true,
      exportRequiresPinWithUnpin: true,
      // 6.12 dma-buf.c:638-640
      exporterMappingCache: 'refused-with-pin-or-unpin',
      // 6.12 dma-buf.c:940-962: the resv is locked for both mismatches (944, 958), pin only for a dynamic exporter (945-949)
      mismatchedAttachCachesMapping: 'locks-always',
      // 6.12 dma-buf.c:800-808 (__map_dma_buf)
      staticImporterMapWaitsKernelFences: true,
      // 6.12 dma-buf.c:1123 (map) and 1226 (unmap): dma_resv_assert_held for every attachment, before the cache
      lockAssertedOnMap: always,
      mapTakesLockItself: never,
      // 6.12 dma-buf.c:1189-1205, 1249-1261
      unlockedMapCalls: true,
      // 6.12 dma-buf.c:1137-1143 pin, 1149-1151 unpin on error, 1233-1235 unpin at unmap: dynamic exporter && !MOVE_NOTIFY
      pinOnMap: moveNotify ? never : anyImporterOfDynamicExporter,
      // 6.12 dma-buf.c:1020-1031: one resv lock around unmapping attach->sgt, its unpin and list_del
      detachUnmapsCachedMapping: 'locks-always',
      // 6.12 dma-buf.c:1278-1280: every attachment with importer_ops
      invalidationReaches: 'every-attachment-with-callback',
      staticExporterInvalidationIsError: false,
      revocableAttachQuery: false,
    },
  };
}

/** Citations are drivers/dma-buf/dma-buf.c of Debian's linux-source-7.2 (7.2.13), which has no CONFIG_DMABUF_MOVE_NOTIFY. */
const linux72: PolicyProfile = {
  name: 'linux-7.2',
  label: 'linux-7.2',
  rules: {
    // 7.2 dma-buf.c:1032-1070: no check of importer_ops; 933-936 is_dynamic is importer_ops != NULL; 1406-1408 notifies only where invalidate_mappings exists
    importerOpsWithoutInvalidate: 'dynamic-must-pin-itself',
    // 7.2 dma-buf.c:716-720 and 722-723
    exportRequiresMapUnmapRelease: true,
    exportRequiresPinWithUnpin: true,
    // 7.2 dma-buf.c:716-723: no cache_sgt_mapping check: the field and attach->sgt are gone
    exporterMappingCache: 'absent',
    // 7.2 dma-buf.c:1058-1060: attach only adds to the list, maps nothing
    mismatchedAttachCachesMapping: false,
    // 7.2 dma-buf.c:1221-1228
    staticImporterMapWaitsKernelFences: true,
    // 7.2 dma-buf.c:1199 (map) and 1309 (unmap)
    lockAssertedOnMap: always,
    mapTakesLockItself: never,
    // 7.2 dma-buf.c:1272-1288, 1329-1342
    unlockedMapCalls: true,
    // 7.2 dma-buf.c:939-944 dma_buf_pin_on_map; 1201-1210 pin on each map, 1254-1256 unpin on error (1207: a pin failing with -EBUSY WARNs), 1314-1315 unpin at unmap
    pinOnMap: staticImporterOfDynamicExporter,
    // 7.2 dma-buf.c:1097-1112: detach only unlinks and calls the exporter; a live mapping (and its pin) is left behind
    detachUnmapsCachedMapping: false,
    // 7.2 dma-buf.c:1399-1409: every attachment with invalidate_mappings
    invalidationReaches: 'every-attachment-with-callback',
    staticExporterInvalidationIsError: false,
    // 7.2 dma-buf.c:1354-1358
    revocableAttachQuery: true,
  },
};

/** The 2019 series ("dma-buf: add dynamic DMA-buf handling v10", Message-ID 20190618115455.1253-1-christian.koenig@amd.com), as docs/dynamic-policy.md reads it. */
const v10: PolicyProfile = {
  name: 'v10',
  label: 'v10',
  rules: {
    importerOpsWithoutInvalidate: 'static-importer',
    exportRequiresMapUnmapRelease: false,
    exportRequiresPinWithUnpin: false,
    exporterMappingCache: 'refused-with-pin',
    mismatchedAttachCachesMapping: 'locks-if-exporter-dynamic',
    staticImporterMapWaitsKernelFences: false,
    lockAssertedOnMap: (attachment) => attachment.dynamic,
    mapTakesLockItself: staticImporterOfDynamicExporter,
    unlockedMapCalls: false,
    pinOnMap: staticImporterOfDynamicExporter,
    detachUnmapsCachedMapping: 'locks-if-exporter-dynamic',
    invalidationReaches: 'all-but-the-attachment-mapping',
    staticExporterInvalidationIsError: false,
    revocableAttachQuery: false,
  },
};

/** The review thread's answer (2): linux-6.1 with MOVE_NOTIFY, except that the core tracks mappings and invalidates each once (rule 9). */
const tracking: PolicyProfile = {
  name: 'tracking',
  label: 'tracking',
  rules: { ...linux61(true).rules, invalidationReaches: 'live-mappings-once', staticExporterInvalidationIsError: true },
};

export const profiles = {
  linux61: linux61(true),
  linux61NoMoveNotify: linux61(false),
  linux612: linux612(true),
  linux612NoMoveNotify: linux612(false),
  linux72,
  v10,
  tracking,
};

export function profileLabel(profile: PolicyProfile): string {
  return profile.label;
}

/** One .config line's value: 'y', 'm', a string, 'n' for "is not set", undefined when the symbol is not there at all. */
function configValue(config: string, symbol: string): string | undefined {
  for (const line of config.split('\n')) {
    if (line === `# CONFIG_${symbol} is not set`) return 'n';
    if (line.startsWith(`CONFIG_${symbol}=`)) return line.slice(symbol.length + 8);
  }
  return undefined;
}

function parseRelease(release: string): [number, number] {
  const match = /^(\d+)\.(\d+)/.exec(release);
  if (!match) throw validate.invalidValue('kernel.release', 'a kernel release, as uname -r prints it', release);
  return [Number(match[1]), Number(match[2])];
}

/**
 * The profile for a running kernel, from its .config (/proc/config.gz) and
 * release (uname -r). Features decide where they can:
 *
 * - CONFIG_DMABUF_MOVE_NOTIFY written in the .config (=y, or "is not set")
 *   means the option exists, so the kernel is of the 6.x generation, and its
 *   value picks the pinning rule. Kconfig writes the line whenever
 *   DMA_SHARED_BUFFER is on (the option depends only on it), so its absence
 *   with DMA_SHARED_BUFFER on means the option was removed: the 7.2
 *   generation (always invalidates, pins static importers per map).
 * - Between 6.1 and 6.12 no config symbol differs for the dynamic policy:
 *   the difference is the locking convention (map/unmap always assert the
 *   reservation lock, attach and detach always lock), which landed in 6.2
 *   (the dma-buf locking-convention series). Only the release can tell it,
 *   so a 6.x kernel below 6.2 gets linux-6.1, from 6.2 on linux-6.12.
 *
 * Kernels between the generations the project runs (6.2–6.11, 6.13 up to
 * the removal of MOVE_NOTIFY, and 7.x before 7.2) get the nearest model;
 * parts of the 7.2 rules (revocable attach, no sgt cache) arrived at
 * different times and are not told apart.
 */
export function policyProfileForKernel(kernel: { release: string; config: string }): PolicyProfile {
  const [major, minor] = parseRelease(kernel.release);
  if (configValue(kernel.config, 'DMA_SHARED_BUFFER') !== 'y') throw codedError('ERR_DMABUF_POLICY_NO_PROFILE', kernel.release, 'its config has no CONFIG_DMA_SHARED_BUFFER=y: no dma-buf core to model');
  if (major < 6 || (major === 6 && minor < 1)) throw codedError('ERR_DMABUF_POLICY_NO_PROFILE', kernel.release, 'it is older than any modelled generation (6.1)');
  const moveNotify = configValue(kernel.config, 'DMABUF_MOVE_NOTIFY');
  if (moveNotify === undefined) {
    if (major < 7) throw codedError('ERR_DMABUF_POLICY_NO_PROFILE', kernel.release, 'its config lacks CONFIG_DMABUF_MOVE_NOTIFY, which every 6.x kernel with DMA_SHARED_BUFFER writes: is it that kernel\'s .config?');
    return profiles.linux72;
  }
  const on = moveNotify === 'y';
  if (major === 6 && minor < 2) return on ? profiles.linux61 : profiles.linux61NoMoveNotify;
  return on ? profiles.linux612 : profiles.linux612NoMoveNotify;
}
