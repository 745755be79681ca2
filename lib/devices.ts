import { accessSync, constants as fsConstants, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { DrmDevice, type DrmNode } from './drm';
import { check } from './errors';
import { native } from './native';
import { V4l2Device, videoNodes, type V4l2BufferType } from './v4l2';

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
  /** DRM nodes this process could open, by the driver DRM_IOCTL_VERSION names (GPU buffers: PRIME). */
  drm: { path: string; node: DrmNode; driver: string }[];
  /** V4L2 video nodes this process could open, with their driver and single-planar queues (camera buffers: EXPBUF, DMABUF import). */
  video: { path: string; driver: string; card: string; queues: V4l2BufferType[] }[];
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

function listDrm(): DmaBufDevices['drm'] {
  try {
    return DrmDevice.list().map(({ path, node, driver }) => ({ path, node, driver: driver.name }));
  } catch {
    return []; // an addon built without libdrm-dev's headers reaches no DRM device
  }
}

function listVideo(): DmaBufDevices['video'] {
  const found: DmaBufDevices['video'] = [];
  for (const path of videoNodes()) {
    try {
      using device = V4l2Device.open(path);
      const { driver, card, deviceCapabilities } = device.capabilities;
      found.push({ path, driver, card, queues: (['video-capture', 'video-output'] as const).filter((queue) => deviceCapabilities.includes(queue)) });
    } catch {
      // Not ours to open (permissions), or gone meanwhile: not listed.
    }
  }
  return found;
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
    drm: listDrm(),
    video: listVideo(),
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
  lines.push(`drm         ${devices.drm.length > 0 ? devices.drm.map((node) => `${node.path} ${node.driver}`).join(', ') : 'none (CONFIG_DRM and a driver: your GPU\'s, or vgem / vkms)'}`);
  lines.push(`v4l2        ${devices.video.length > 0 ? devices.video.map((node) => `${node.path} ${node.driver}${node.queues.length > 0 ? ` (${node.queues.map((queue) => queue.replace('video-', '')).join(', ')})` : ''}`).join(', ') : 'none (CONFIG_VIDEO_DEV and a driver: your camera\'s, or vivid)'}`);
  if (devices.config) {
    const moveNotify = devices.config.CONFIG_DMABUF_MOVE_NOTIFY;
    lines.push(`move_notify ${moveNotify === 'y' ? 'on (dynamic importers do not pin)' : moveNotify === 'n' ? 'off (dynamic importers pin for every mapping)' : 'not an option of this kernel (7.2 and later: importers with invalidate_mappings are never pinned for them)'}`);
  }
  return lines.join('\n');
}

/** The kernel options dma-buf code on a host needs, and what each one gives. */
export const hostKernelOptions = [
  { name: 'CONFIG_DMA_SHARED_BUFFER', gives: 'dma-buf itself' },
  { name: 'CONFIG_UDMABUF', gives: '/dev/udmabuf (dma-bufs over memfds)' },
  { name: 'CONFIG_DMABUF_HEAPS', gives: '/dev/dma_heap' },
  { name: 'CONFIG_DMABUF_HEAPS_SYSTEM', gives: '/dev/dma_heap/system' },
  { name: 'CONFIG_SYNC_FILE', gives: 'sync_file fences' },
  { name: 'CONFIG_SW_SYNC', gives: 'sw_sync (fences signalled from userspace, for tests)' },
  { name: 'CONFIG_MODULES', gives: 'loading udmabuf and the test module as modules' },
] as const;

/** What a host's files say, read once by `readHostFacts`; the diagnosis works on these texts alone. */
export interface HostFacts {
  kernelRelease: string;
  /** The kernel's config and where it was read (/proc/config.gz or /boot/config-<release>). */
  config?: { path: string; text: string };
  /** /lib/modules/<release>, when it exists, with its modules.dep and modules.builtin where readable. */
  modules?: { dir: string; dep?: string; builtin?: string };
  /** /proc/modules. */
  loadedModules?: string;
  /** /dev/udmabuf and each /dev/dma_heap/* node; `stat` is undefined for a node that does not exist. */
  nodes: DeviceNodeFacts[];
  user: { uid: number; gid: number; groups: number[]; name?: string };
  /** /etc/group and /etc/passwd, for names. */
  groupFile?: string;
  passwdFile?: string;
}

export interface DeviceNodeFacts {
  path: string;
  stat?: { mode: number; uid: number; gid: number };
  /** Whether this process may open it read-write (access(2)). */
  canOpen: boolean;
}

export type OptionState = 'y' | 'm' | 'n' | 'absent';

export interface DeviceNodeDiagnosis {
  path: string;
  present: boolean;
  /** `crw-rw----`, as ls shows it. */
  mode?: string;
  owner?: string;
  group?: string;
  canOpen: boolean;
  /** Whether the user is in the node's group. */
  userInGroup?: boolean;
}

/** What this host has for dma-buf, and what it would take to get the rest. */
export interface HostDiagnosis {
  kernelRelease: string;
  /** Where the kernel's config was read; undefined when neither place was readable. */
  configPath?: string;
  /** Every option of `hostKernelOptions` with its state (`absent`: not in the config at all, as when an option it depends on is off). Empty without a config. */
  options: Array<{ name: string; state: OptionState; gives: string }>;
  /** The options that are neither `y` nor `m`; undefined without a config. */
  missingOptions?: string[];
  udmabufModule: { state: 'built-in' | 'loaded' | 'loadable' | 'not installed' | 'not built' | 'unknown'; path?: string };
  nodes: DeviceNodeDiagnosis[];
  user: { uid: number; name: string; groups: string[] };
  /** What to do, in order, for a person; empty when nothing is missing. */
  steps: string[];
}

/** Kernel config text as option → `y`, `m`, `n` (for "is not set") or its value. */
export function parseKernelConfig(text: string): Map<string, string> {
  const options = new Map<string, string>();
  for (const line of text.split('\n')) {
    const set = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line);
    const unset = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line);
    if (set) options.set(set[1]!, set[2]!);
    else if (unset) options.set(unset[1]!, 'n');
  }
  return options;
}

/** Names by number from /etc/group or /etc/passwd (`name:x:number:...`). */
export function parseIdNames(text: string | undefined): Map<number, string> {
  const names = new Map<number, string>();
  for (const line of (text ?? '').split('\n')) {
    const [name, , id] = line.split(':');
    if (name && id !== undefined && /^\d+$/.test(id) && !names.has(Number(id))) names.set(Number(id), name);
  }
  return names;
}

/** The members /etc/group lists for each group name. */
function groupMembers(text: string | undefined): Map<string, string[]> {
  const members = new Map<string, string[]>();
  for (const line of (text ?? '').split('\n')) {
    const [name, , , list] = line.split(':');
    if (name && list !== undefined) members.set(name, list.split(',').map((member) => member.trim()).filter(Boolean));
  }
  return members;
}

/** `crw-rw----` from a stat mode. */
export function formatMode(mode: number): string {
  const type = (mode & 0o170000) === 0o020000 ? 'c' : (mode & 0o170000) === 0o040000 ? 'd' : (mode & 0o170000) === 0o060000 ? 'b' : '-';
  let bits = '';
  for (const shift of [6, 3, 0]) bits += `${mode & (4 << shift) ? 'r' : '-'}${mode & (2 << shift) ? 'w' : '-'}${mode & (1 << shift) ? 'x' : '-'}`;
  return type + bits;
}

function udmabufModuleState(facts: HostFacts, config: Map<string, string> | undefined): HostDiagnosis['udmabufModule'] {
  if (config?.get('CONFIG_UDMABUF') === 'y') return { state: 'built-in' };
  if (facts.loadedModules !== undefined && /^udmabuf\s/m.test(facts.loadedModules)) return { state: 'loaded' };
  if (facts.modules?.builtin !== undefined && /(^|\/)udmabuf\.ko$/m.test(facts.modules.builtin)) return { state: 'built-in' };
  const dep = facts.modules?.dep !== undefined ? /^(\S*\/udmabuf\.ko(?:\.[a-z]+)?):/m.exec(facts.modules.dep) : null;
  if (dep && facts.modules) return { state: 'loadable', path: `${facts.modules.dir}/${dep[1]}` };
  if (config && config.get('CONFIG_UDMABUF') !== 'm') return { state: 'not built' };
  if (config && facts.modules?.dep !== undefined) return { state: 'not installed' };
  return { state: 'unknown' };
}

/** Reads the texts and nodes `diagnoseHost` works on, from this host. */
export function readHostFacts(): HostFacts {
  const kernelRelease = check(native().kernelRelease(), 'uname');
  const readText = (path: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  };
  let config: HostFacts['config'];
  try {
    config = { path: '/proc/config.gz', text: gunzipSync(readFileSync('/proc/config.gz')).toString('utf8') };
  } catch {
    const bootConfig = `/boot/config-${kernelRelease}`;
    const text = readText(bootConfig);
    if (text !== undefined) config = { path: bootConfig, text };
  }
  const modulesDir = `/lib/modules/${kernelRelease}`;
  const heapDir = '/dev/dma_heap';
  const nodePaths = ['/dev/udmabuf', ...(existsSync(heapDir) ? readdirSync(heapDir).sort().map((name) => `${heapDir}/${name}`) : [])];
  return {
    kernelRelease,
    ...(config ? { config } : {}),
    ...(existsSync(modulesDir) ? { modules: { dir: modulesDir, dep: readText(`${modulesDir}/modules.dep`), builtin: readText(`${modulesDir}/modules.builtin`) } } : {}),
    loadedModules: readText('/proc/modules'),
    nodes: nodePaths.map(readDeviceNode),
    user: { uid: process.getuid!(), gid: process.getgid!(), groups: process.getgroups!(), name: userName() },
    groupFile: readText('/etc/group'),
    passwdFile: readText('/etc/passwd'),
  };
}

function userName(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined;
  }
}

/** A device node's mode, owner and group, and whether this process may open it read-write. */
export function readDeviceNode(path: string): DeviceNodeFacts {
  const stat = statSync(path, { throwIfNoEntry: false });
  return { path, ...(stat ? { stat: { mode: stat.mode, uid: stat.uid, gid: stat.gid } } : {}), canOpen: stat ? canOpen(path) : false };
}

/**
 * What this host lacks for dma-buf and what it would take: the kernel
 * options, the udmabuf module, and the device nodes' permissions against the
 * user's groups.
 */
export function diagnoseHost(facts: HostFacts): HostDiagnosis {
  const config = facts.config ? parseKernelConfig(facts.config.text) : undefined;
  const groupNames = parseIdNames(facts.groupFile);
  const userNames = parseIdNames(facts.passwdFile);
  const groupName = (gid: number) => groupNames.get(gid) ?? String(gid);
  const userGroups = [...new Set([facts.user.gid, ...facts.user.groups])];
  const user = { uid: facts.user.uid, name: facts.user.name ?? userNames.get(facts.user.uid) ?? String(facts.user.uid), groups: userGroups.map(groupName) };

  const options = config
    ? hostKernelOptions.map(({ name, gives }) => {
        const value = config.get(name);
        const state: OptionState = value === 'y' || value === 'm' || value === 'n' ? value : value === undefined ? 'absent' : 'y';
        return { name, state, gives };
      })
    : [];
  const missingOptions = config ? options.filter((option) => option.state !== 'y' && option.state !== 'm').map((option) => option.name) : undefined;
  const udmabufModule = udmabufModuleState(facts, config);
  const nodes: DeviceNodeDiagnosis[] = facts.nodes.map((node) => {
    if (!node.stat) return { path: node.path, present: false, canOpen: false };
    return {
      path: node.path,
      present: true,
      mode: formatMode(node.stat.mode),
      owner: userNames.get(node.stat.uid) ?? String(node.stat.uid),
      group: groupName(node.stat.gid),
      canOpen: node.canOpen,
      userInGroup: userGroups.includes(node.stat.gid),
    };
  });

  const steps: string[] = [];
  if (!facts.config) {
    steps.push(`this kernel's config is not readable (/proc/config.gz needs CONFIG_IKCONFIG_PROC; /boot/config-${facts.kernelRelease} is absent), so which options it has cannot be checked`);
  }
  const noModules = missingOptions?.includes('CONFIG_MODULES') ?? false;
  const missingFeatures = (missingOptions ?? []).filter((name) => name !== 'CONFIG_MODULES');
  if (missingFeatures.length > 0) {
    steps.push(`boot a kernel built with ${missingFeatures.join(', ')} (${noModules ? '=y: this kernel cannot load modules, CONFIG_MODULES is not set' : '=y, or =m and load them'}); this one was built without them, so no package or setting adds them`);
  } else if (noModules) {
    steps.push('CONFIG_MODULES is not set: the test module (kernel-module/) cannot be loaded on this kernel; `dmabuf vm run --module kernel-module` loads it in the VM');
  }
  if (udmabufModule.state === 'loadable') steps.push(`load udmabuf: sudo modprobe udmabuf (${udmabufModule.path}); to load it at boot: echo udmabuf | sudo tee /etc/modules-load.d/udmabuf.conf`);
  if (udmabufModule.state === 'unknown' && config?.get('CONFIG_UDMABUF') === 'm') steps.push(`udmabuf is a module of this kernel (CONFIG_UDMABUF=m) but /lib/modules/${facts.kernelRelease} is not here (a container?): load it where the kernel runs: sudo modprobe udmabuf`);
  if (udmabufModule.state === 'not installed') steps.push(`udmabuf is a module of this kernel (CONFIG_UDMABUF=m) but ${facts.modules!.dir} does not have it: install this kernel's full modules package (Ubuntu: linux-modules-extra-${facts.kernelRelease})`);
  const udmabufNode = nodes.find((node) => node.path === '/dev/udmabuf');
  if (udmabufNode && !udmabufNode.present && (udmabufModule.state === 'built-in' || udmabufModule.state === 'loaded')) {
    steps.push('the kernel has udmabuf but /dev/udmabuf does not exist: /dev is not devtmpfs, or this is a container started without the device (docker run --device /dev/udmabuf)');
  }
  if (config?.get('CONFIG_DMABUF_HEAPS_SYSTEM') === 'y' && !nodes.some((node) => node.path === '/dev/dma_heap/system' && node.present)) {
    steps.push('the kernel has the system heap but /dev/dma_heap/system does not exist: /dev is not devtmpfs, or this is a container started without the device (docker run --device /dev/dma_heap/system)');
  }
  const members = groupMembers(facts.groupFile);
  for (const node of nodes) {
    if (!node.present || node.canOpen) continue;
    const what = `${user.name} cannot open ${node.path} (${node.mode} ${node.owner}:${node.group})`;
    const groupMayOpen = /^.{4}rw/.test(node.mode!);
    if (groupMayOpen && !node.userInGroup && members.get(node.group!)?.includes(user.name)) {
      steps.push(`${what}: ${user.name} was added to group ${node.group} after this session began (its groups: ${user.groups.join(', ')}): log in again, or run under newgrp ${node.group}`);
    } else if (groupMayOpen && !node.userInGroup) {
      steps.push(`${what} and is not in group ${node.group} (only in ${user.groups.join(', ')}): sudo usermod -aG ${node.group} ${user.name}, then log in again`);
    } else {
      const match = node.path.startsWith('/dev/dma_heap/') ? `SUBSYSTEM=="dma_heap", KERNEL=="${node.path.slice('/dev/dma_heap/'.length)}"` : `KERNEL=="${node.path.slice('/dev/'.length)}"`;
      steps.push(`${what}, and its group may not open it: a udev rule gives it to a group of the user's, e.g. ${match}, GROUP="${user.groups[0]}", MODE="0660" in /etc/udev/rules.d/70-dmabuf.rules`);
    }
  }
  return { kernelRelease: facts.kernelRelease, ...(facts.config ? { configPath: facts.config.path } : {}), options, ...(missingOptions ? { missingOptions } : {}), udmabufModule, nodes, user, steps };
}
