import { accessSync, constants as fsConstants, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { check } from './errors';
import { native } from './native';

/** What this kernel offers for dma-buf, read from the places a user would look. */
export interface DmaBufDevices {
  kernelRelease: string;
  memfdCreate: boolean;
  udmabuf: {
    path: '/dev/udmabuf';
    present: boolean;
    /** `rw` when this process may open it. */
    access: 'rw' | 'denied' | 'absent';
    /** The module's limits, from /sys/module/udmabuf/parameters. */
    sizeLimitMiB?: number;
    listLimit?: number;
  };
  /** Names under /dev/dma_heap (`system`, `linux,cma`, …). */
  heaps: string[];
  /** The sw_sync test timeline device in debugfs, when present and reachable. */
  swSync?: string;
  /** debugfs's table of every dma-buf in the system. */
  bufinfo?: string;
  /** Kernel config options that change dma-buf behaviour, when /proc/config.gz exists. */
  config?: Record<string, string>;
}

const configOptionsOfInterest = ['CONFIG_DMA_SHARED_BUFFER', 'CONFIG_SYNC_FILE', 'CONFIG_SW_SYNC', 'CONFIG_UDMABUF', 'CONFIG_DMABUF_HEAPS', 'CONFIG_DMABUF_HEAPS_SYSTEM', 'CONFIG_DMABUF_MOVE_NOTIFY', 'CONFIG_DMABUF_DEBUG', 'CONFIG_DMABUF_SYSFS_STATS'];

function readNumber(path: string): number | undefined {
  try {
    const value = Number(readFileSync(path, 'utf8').trim());
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function canOpen(path: string): boolean {
  try {
    accessSync(path, fsConstants.R_OK | fsConstants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function readKernelConfig(): Record<string, string> | undefined {
  try {
    const text = gunzipSync(readFileSync('/proc/config.gz')).toString('utf8');
    const config: Record<string, string> = {};
    // An option the kernel does not have at all (7.2 dropped
    // DMABUF_MOVE_NOTIFY and DMABUF_SYSFS_STATS) is left out, not reported
    // as 'n': its behaviour may be fixed on rather than off.
    for (const name of configOptionsOfInterest) {
      const match = new RegExp(`^${name}=(.*)$`, 'm').exec(text);
      if (match) config[name] = match[1]!;
      else if (text.includes(`\n# ${name} is not set\n`)) config[name] = 'n';
    }
    return config;
  } catch {
    return undefined;
  }
}

export function listDevices(): DmaBufDevices {
  const udmabufPresent = existsSync('/dev/udmabuf') && statSync('/dev/udmabuf').isCharacterDevice();
  const heapDir = '/dev/dma_heap';
  const heaps = existsSync(heapDir) ? readdirSync(heapDir).sort() : [];
  const swSync = ['/sys/kernel/debug/sync/sw_sync', '/sys/kernel/debug/sw_sync'].find(existsSync);
  const bufinfo = '/sys/kernel/debug/dma_buf/bufinfo';
  const probe = native().probeMemfdCreate();
  const devices: DmaBufDevices = {
    kernelRelease: check(native().kernelRelease(), 'uname'),
    memfdCreate: probe === 0,
    udmabuf: {
      path: '/dev/udmabuf',
      present: udmabufPresent,
      access: !udmabufPresent ? 'absent' : canOpen('/dev/udmabuf') ? 'rw' : 'denied',
      sizeLimitMiB: readNumber('/sys/module/udmabuf/parameters/size_limit_mb'),
      listLimit: readNumber('/sys/module/udmabuf/parameters/list_limit'),
    },
    heaps,
    ...(swSync ? { swSync } : {}),
    ...(existsSync(bufinfo) ? { bufinfo } : {}),
  };
  const config = readKernelConfig();
  if (config) devices.config = config;
  return devices;
}

/** The report as a person reads it. */
export function formatDevices(devices: DmaBufDevices): string {
  const lines = [`kernel ${devices.kernelRelease}`];
  const { udmabuf } = devices;
  const limits = udmabuf.sizeLimitMiB !== undefined ? ` (size_limit_mb=${udmabuf.sizeLimitMiB}, list_limit=${udmabuf.listLimit})` : '';
  lines.push(`udmabuf     ${udmabuf.present ? `${udmabuf.path}, ${udmabuf.access === 'rw' ? 'read-write' : 'permission denied'}${limits}` : 'absent (CONFIG_UDMABUF)'}`);
  lines.push(`dma-heaps   ${devices.heaps.length > 0 ? devices.heaps.map((name) => `/dev/dma_heap/${name}`).join(', ') : 'none (CONFIG_DMABUF_HEAPS)'}`);
  lines.push(`sw_sync     ${devices.swSync ?? 'absent (CONFIG_SW_SYNC, debugfs mounted)'}`);
  lines.push(`bufinfo     ${devices.bufinfo ?? 'absent (CONFIG_DEBUG_FS, debugfs mounted)'}`);
  lines.push(`memfd       ${devices.memfdCreate ? 'yes' : 'no'}`);
  if (devices.config) {
    const moveNotify = devices.config.CONFIG_DMABUF_MOVE_NOTIFY;
    lines.push(`move_notify ${moveNotify === 'y' ? 'on (dynamic importers do not pin)' : moveNotify === 'n' ? 'off (dynamic importers pin for every mapping)' : 'not an option of this kernel (7.2 and later: importers with invalidate_mappings are never pinned for them)'}`);
  }
  return lines.join('\n');
}
