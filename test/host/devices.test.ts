import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { diagnoseHost, formatDevices, formatMode, hostKernelOptions, listDevices, parseKernelConfig, readDeviceNode, readHostFacts, type HostFacts } from '../../lib/devices';

/** The options of `hostKernelOptions` a config text lacks, by plain line search (not through the parser under test). */
const lackedIn = (configText: string) => hostKernelOptions.map(({ name }) => name).filter((name) => !new RegExp(`^${name}=[ym]$`, 'm').test(configText));

describe('devices report on this host', () => {
  it('agrees with what the file system shows', () => {
    const devices = listDevices();
    assert.equal(devices.kernelRelease, release());
    assert.equal(devices.udmabuf.present, existsSync('/dev/udmabuf'));
    assert.deepEqual(devices.heaps, existsSync('/dev/dma_heap') ? readdirSync('/dev/dma_heap').sort() : []);
    assert.equal(devices.swSync !== undefined, existsSync('/sys/kernel/debug/sync/sw_sync') || existsSync('/sys/kernel/debug/sw_sync'));
  });

  it('tells a person which kernel option is missing', () => {
    const text = formatDevices({
      kernelRelease: '6.1.0',
      memfdCreate: true,
      udmabuf: { path: '/dev/udmabuf', present: false, access: 'absent' },
      heaps: [],
      drm: [],
      video: [],
    });
    assert.match(text, /udmabuf\s+absent \(CONFIG_UDMABUF\)/);
    assert.match(text, /dma-heaps\s+none \(CONFIG_DMABUF_HEAPS\)/);
    assert.match(text, /sw_sync\s+absent \(CONFIG_SW_SYNC/);
    assert.match(text, /drm\s+none \(CONFIG_DRM and a driver/);
    assert.match(text, /v4l2\s+none \(CONFIG_VIDEO_DEV and a driver/);
  });
});

describe('host diagnosis on this host, from its real files', () => {
  const zcat = spawnSync('zcat', ['/proc/config.gz'], { encoding: 'utf8', maxBuffer: 16 << 20 });
  const configText = zcat.status === 0 ? zcat.stdout : readFileSync(`/boot/config-${release()}`, 'utf8');

  it('lists as missing exactly the options this kernel\'s config (read with zcat) does not set to y or m, CONFIG_UDMABUF among them when it lacks udmabuf', () => {
    const diagnosis = diagnoseHost(readHostFacts());
    const lacked = lackedIn(configText);
    assert.deepEqual(diagnosis.missingOptions, lacked);
    assert.equal(diagnosis.configPath, zcat.status === 0 ? '/proc/config.gz' : `/boot/config-${release()}`);
    const hasUdmabuf = /^CONFIG_UDMABUF=[ym]$/m.test(configText);
    assert.equal(diagnosis.missingOptions!.includes('CONFIG_UDMABUF'), !hasUdmabuf);
    if (!hasUdmabuf) assert.ok(diagnosis.steps.some((step) => step.includes('CONFIG_UDMABUF')), diagnosis.steps.join('\n'));
  });

  it('reports /dev/udmabuf as present or absent as the file system has it, and the user\'s real uid and groups', () => {
    const diagnosis = diagnoseHost(readHostFacts());
    assert.equal(diagnosis.nodes.find((node) => node.path === '/dev/udmabuf')!.present, existsSync('/dev/udmabuf'));
    assert.equal(diagnosis.user.uid, process.getuid!());
    const id = spawnSync('id', ['-Gn'], { encoding: 'utf8' });
    assert.deepEqual([...diagnosis.user.groups].sort(), [...new Set(id.stdout.trim().split(/\s+/))].sort());
  });

  it('reads a device node\'s mode and owner as ls does, and whether it opens (/dev/null)', () => {
    const node = readDeviceNode('/dev/null');
    const ls = spawnSync('stat', ['-c', '%A %U %G', '/dev/null'], { encoding: 'utf8' }).stdout.trim().split(' ');
    assert.equal(formatMode(node.stat!.mode), ls[0]);
    const diagnosis = diagnoseHost({ ...readHostFacts(), nodes: [node] });
    assert.deepEqual([diagnosis.nodes[0]!.mode, diagnosis.nodes[0]!.owner, diagnosis.nodes[0]!.group], ls);
    assert.equal(node.canOpen, true);
    assert.deepEqual(readDeviceNode('/dev/no-such-node'), { path: '/dev/no-such-node', canOpen: false });
  });
});

describe('host diagnosis from given texts', () => {
  // /proc/config.gz of the host this was written on (6.18.44-fc-v657: no udmabuf, no heaps, no sw_sync, no modules).
  const capturedConfig = gunzipSync(readFileSync(join(__dirname, '..', 'fixtures', 'host-devices', 'config-6.18.44-fc-v657.gz'))).toString('utf8');
  const passwd = 'root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n';
  const groups = 'root:x:0:\nkvm:x:36:\nvideo:x:44:bob\nalice:x:1000:\n';
  const facts = (overrides: Partial<HostFacts>): HostFacts => ({
    kernelRelease: '6.18.44-fc-v657',
    config: { path: '/proc/config.gz', text: capturedConfig },
    nodes: [{ path: '/dev/udmabuf', canOpen: false }],
    user: { uid: 1000, gid: 1000, groups: [1000], name: 'alice' },
    groupFile: groups,
    passwdFile: passwd,
    ...overrides,
  });
  // The captured config with the options a distribution kernel has: udmabuf as a module.
  const distributionConfig = capturedConfig
    .replace('# CONFIG_UDMABUF is not set', 'CONFIG_UDMABUF=m')
    .replace('# CONFIG_MODULES is not set', 'CONFIG_MODULES=y')
    .replace('# CONFIG_DMABUF_HEAPS is not set', 'CONFIG_DMABUF_HEAPS=y\nCONFIG_DMABUF_HEAPS_SYSTEM=y')
    .replace('# CONFIG_SW_SYNC is not set', 'CONFIG_SW_SYNC=y');

  it('parses the captured config: y, "is not set" as n, and options it does not mention as absent', () => {
    const parsed = parseKernelConfig(capturedConfig);
    assert.equal(parsed.get('CONFIG_DMA_SHARED_BUFFER'), 'y');
    assert.equal(parsed.get('CONFIG_UDMABUF'), 'n');
    const diagnosis = diagnoseHost(facts({}));
    assert.deepEqual(Object.fromEntries(diagnosis.options.map((option) => [option.name, option.state])), {
      CONFIG_DMA_SHARED_BUFFER: 'y', CONFIG_UDMABUF: 'n', CONFIG_DMABUF_HEAPS: 'n', CONFIG_DMABUF_HEAPS_SYSTEM: 'absent', CONFIG_SYNC_FILE: 'y', CONFIG_SW_SYNC: 'n', CONFIG_MODULES: 'n',
    });
  });

  it('on the captured kernel, says a kernel built with the missing options is needed, built in because it cannot load modules', () => {
    const diagnosis = diagnoseHost(facts({}));
    assert.deepEqual(diagnosis.missingOptions, lackedIn(capturedConfig));
    assert.equal(diagnosis.udmabufModule.state, 'not built');
    assert.equal(diagnosis.steps.length, 1);
    assert.match(diagnosis.steps[0]!, /^boot a kernel built with CONFIG_UDMABUF, CONFIG_DMABUF_HEAPS, CONFIG_DMABUF_HEAPS_SYSTEM, CONFIG_SW_SYNC \(=y: this kernel cannot load modules, CONFIG_MODULES is not set\)/);
  });

  it('finds udmabuf as a loadable module in modules.dep and says to modprobe it', () => {
    const dir = '/lib/modules/6.18.44-fc-v657';
    const diagnosis = diagnoseHost(facts({ config: { path: '/boot/config-6.18.44-fc-v657', text: distributionConfig }, modules: { dir, dep: 'kernel/drivers/dma-buf/heaps/x.ko.xz:\nkernel/drivers/dma-buf/udmabuf.ko.xz:\n', builtin: '' }, loadedModules: 'kvm 1234 0 - Live 0x0\n' }));
    assert.deepEqual(diagnosis.missingOptions, []);
    assert.deepEqual(diagnosis.udmabufModule, { state: 'loadable', path: `${dir}/kernel/drivers/dma-buf/udmabuf.ko.xz` });
    assert.ok(diagnosis.steps.some((step) => step.startsWith('load udmabuf: sudo modprobe udmabuf')), diagnosis.steps.join('\n'));
  });

  it('says the modules package is missing when the config has udmabuf=m but modules.dep does not list it', () => {
    const diagnosis = diagnoseHost(facts({ config: { path: '/proc/config.gz', text: distributionConfig }, modules: { dir: '/lib/modules/6.18.44-fc-v657', dep: 'kernel/fs/x.ko:\n' } }));
    assert.equal(diagnosis.udmabufModule.state, 'not installed');
    assert.ok(diagnosis.steps.some((step) => step.includes('linux-modules-extra-6.18.44-fc-v657')), diagnosis.steps.join('\n'));
  });

  it('blames /dev (devtmpfs or a container) when the module is loaded but the node is absent', () => {
    const diagnosis = diagnoseHost(facts({ config: { path: '/proc/config.gz', text: distributionConfig }, loadedModules: 'udmabuf 20480 0 - Live 0x0\n' }));
    assert.equal(diagnosis.udmabufModule.state, 'loaded');
    assert.ok(diagnosis.steps.some((step) => step.includes('docker run --device /dev/udmabuf')), diagnosis.steps.join('\n'));
  });

  it('names the node\'s group and the user\'s groups when the user is not in it', () => {
    const diagnosis = diagnoseHost(facts({ config: { path: '/proc/config.gz', text: distributionConfig }, loadedModules: 'udmabuf 1 0\n', nodes: [{ path: '/dev/udmabuf', stat: { mode: 0o20660, uid: 0, gid: 36 }, canOpen: false }] }));
    assert.deepEqual(diagnosis.nodes, [{ path: '/dev/udmabuf', present: true, mode: 'crw-rw----', owner: 'root', group: 'kvm', canOpen: false, userInGroup: false }]);
    assert.ok(diagnosis.steps.includes('alice cannot open /dev/udmabuf (crw-rw---- root:kvm) and is not in group kvm (only in alice): sudo usermod -aG kvm alice, then log in again'), diagnosis.steps.join('\n'));
  });

  it('says to log in again when /etc/group lists the user in the node\'s group but the session lacks it', () => {
    const diagnosis = diagnoseHost(facts({ groupFile: groups.replace('kvm:x:36:', 'kvm:x:36:alice'), config: { path: '/proc/config.gz', text: distributionConfig }, loadedModules: 'udmabuf 1 0\n', nodes: [{ path: '/dev/udmabuf', stat: { mode: 0o20660, uid: 0, gid: 36 }, canOpen: false }] }));
    const udmabufStep = diagnosis.steps.find((step) => step.includes('/dev/udmabuf'));
    assert.match(udmabufStep ?? '', /was added to group kvm after this session began .*log in again, or run under newgrp kvm$/);
  });

  it('suggests a udev rule when only root may open a heap', () => {
    const diagnosis = diagnoseHost(facts({ config: { path: '/proc/config.gz', text: distributionConfig }, loadedModules: 'udmabuf 1 0\n', nodes: [{ path: '/dev/udmabuf', stat: { mode: 0o20666, uid: 0, gid: 0 }, canOpen: true }, { path: '/dev/dma_heap/system', stat: { mode: 0o20600, uid: 0, gid: 0 }, canOpen: false }] }));
    assert.deepEqual(diagnosis.steps, ['alice cannot open /dev/dma_heap/system (crw------- root:root), and its group may not open it: a udev rule gives it to a group of the user\'s, e.g. SUBSYSTEM=="dma_heap", KERNEL=="system", GROUP="alice", MODE="0660" in /etc/udev/rules.d/70-dmabuf.rules']);
  });

  it('says the options cannot be checked when no config is readable, and lists none as missing', () => {
    const diagnosis = diagnoseHost(facts({ config: undefined }));
    assert.equal(diagnosis.missingOptions, undefined);
    assert.deepEqual(diagnosis.options, []);
    assert.equal(diagnosis.udmabufModule.state, 'unknown');
    assert.match(diagnosis.steps[0]!, /config is not readable \(\/proc\/config\.gz needs CONFIG_IKCONFIG_PROC; \/boot\/config-6\.18\.44-fc-v657 is absent\)/);
  });

  it('has nothing to say on a host that has everything', () => {
    const diagnosis = diagnoseHost(facts({ config: { path: '/proc/config.gz', text: distributionConfig.replace('CONFIG_UDMABUF=m', 'CONFIG_UDMABUF=y') }, nodes: [{ path: '/dev/udmabuf', stat: { mode: 0o20660, uid: 0, gid: 1000 }, canOpen: true }, { path: '/dev/dma_heap/system', stat: { mode: 0o20660, uid: 0, gid: 1000 }, canOpen: true }] }));
    assert.deepEqual(diagnosis.steps, []);
    assert.equal(diagnosis.udmabufModule.state, 'built-in');
    assert.deepEqual(diagnosis.nodes.map((node) => node.userInGroup), [true, true]);
  });
});
