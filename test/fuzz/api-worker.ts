/**
 * One API fuzz worker (a child of test/fuzz/guest.ts): random calls of the
 * public API with plausible and absurd arguments, on live and closed handles,
 * until its call budget or deadline. Every thrown error is judged (see
 * judgeError); at the end every handle it made is closed and the process's
 * fd and mapping counts must be back where they started.
 *
 * argv: seed, call budget, deadline (ms since the epoch), worker number, scratch dir.
 *
 * What it never does, because the kernel or the documentation says so and a
 * hang or a dead VM would hide everything else: hand an ownership-taking call
 * an fd it does not own, block in DMA_BUF_IOCTL_SYNC on a buffer with pending
 * fences, map a static attachment while a kernel fence is pending, or
 * allocate more than a few MiB at once (the system heap has no size limit
 * and would wake the OOM killer).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import * as lib from '../../lib';
import { DmaBuf, FdChannel, FdChannelServer, heap, Memfd, SwSyncTimeline, SyncFile, udmabuf, UdmabufDevice } from '../../lib';
import { kernelTest, KernelTestDevice, TestAttachment, TestExporter, TestFence } from '../../lib/kernel-test';
import { FdHandle } from '../../lib/handle';
import { native } from '../../lib/native';
import { bufferMappingCount, describeError, judgeError, LastCall, lastCallPath, openFdCount, Random, send } from './common';

type AnyHandle = FdHandle;

const [seedText, budgetText, deadlineText, workerText, scratch] = process.argv.slice(2) as [string, string, string, string, string];
const random = new Random(Number(seedText));
const budget = Number(budgetText);
const deadline = Number(deadlineText);
const worker = Number(workerText);
const last = new LastCall(lastCallPath(scratch, worker));
native(); // the addon is loaded before the counts are taken
const fdsBefore = openFdCount();
const mappingsBefore = bufferMappingCount();

let calls = 0;
let currentCall = '(none)';
const outcomes: Record<string, number> = {};
const notes: Record<string, number> = {};
const count = (table: Record<string, number>, key: string, by = 1) => (table[key] = (table[key] ?? 0) + by);
/** FUZZ_PROFILE=1: time spent in each call, printed at the end (to find what makes a run slow). */
const profile = process.env.FUZZ_PROFILE === '1';
const timing: Record<string, number> = {};

function finding(kind: string, call: string, detail: string): void {
  send({ type: 'finding', finding: { kind, call, detail } });
}

process.on('uncaughtException', (error) => finding('uncaught exception', currentCall, describeError(error)));
process.on('unhandledRejection', (error) => finding('unhandled rejection', currentCall, describeError(error)));
process.on('warning', (warning) => {
  if ((warning as { code?: string }).code === 'DMABUF_LEAKED_HANDLE') finding('handle closed by garbage collection', currentCall, warning.message);
});

// ---- what the fuzzer holds ------------------------------------------------

class Pool<T> {
  items: T[] = [];
  constructor(
    readonly cap: number,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    readonly evict: (item: any) => void,
  ) {}

  add(item: T): void {
    if (this.items.includes(item)) return;
    this.items.push(item);
    if (this.items.length > this.cap) this.evict(this.items.shift()!);
  }

  pick(): T | undefined {
    return this.items.length === 0 ? undefined : random.pick(this.items);
  }
}

const closeHandle = (handle: AnyHandle) => call(`${handle.constructor.name}.close (evicted)`, [handle], (h: AnyHandle) => h.close());
const dmabufs = new Pool<DmaBuf>(16, closeHandle);
const memfds = new Pool<Memfd>(8, closeHandle);
const syncFiles = new Pool<SyncFile>(16, closeHandle);
const timelines = new Pool<SwSyncTimeline>(4, closeHandle);
const channels = new Pool<FdChannel>(8, closeHandle);
const servers = new Pool<FdChannelServer>(2, closeHandle);
const udmabufDevices = new Pool<UdmabufDevice>(2, closeHandle);
const testDevices = new Pool<KernelTestDevice>(3, closeHandle);
const exporters = new Pool<TestExporter>(8, () => {});
const attachments = new Pool<TestAttachment>(8, () => {});
const fences = new Pool<TestFence>(8, (fence) => call('TestFence.signal (evicted)', [fence], (f: TestFence) => f.signal()));
const views = new Pool<Buffer>(8, () => {});
/** Fds the fuzzer owns as plain numbers (detached, received, duplicated, opened). */
const rawFds = new Pool<number>(16, (fd) => closeRaw(fd));
/** Test fences that may sit in a reservation object as kernel fences (a static map waits for them). */
const kernelFences = new Set<TestFence>();
/** Every handle ever made, for the final close. */
const owned = new Set<AnyHandle>();
const pending = new Map<Promise<unknown>, string>();
const listening = new WeakSet<object>();
let socketNames = 0;
// Reports to format, made once: inspectSystem reads every process's fds, too slow to repeat for an argument.
let systemReport: lib.SystemReport | undefined;
let devicesReport: lib.DmaBufDevices | undefined;

function closeRaw(fd: number): void {
  try {
    closeSync(fd);
  } catch (error) {
    finding('an fd the fuzzer owned was closed behind its back', `closeSync(${fd})`, describeError(error));
  }
}

/** Takes in whatever a call returned: handles join their pools, received fds become the fuzzer's. */
function harvest(value: unknown, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 2) return;
  if (value instanceof FdHandle) {
    owned.add(value);
    if (value instanceof DmaBuf) dmabufs.add(value);
    else if (value instanceof Memfd) memfds.add(value);
    else if (value instanceof SyncFile) syncFiles.add(value);
    else if (value instanceof SwSyncTimeline) timelines.add(value);
    else if (value instanceof FdChannel) {
      channels.add(value);
      if (!listening.has(value)) {
        listening.add(value);
        value.on('error', () => {});
      }
    } else if (value instanceof FdChannelServer) servers.add(value);
    else if (value instanceof UdmabufDevice) udmabufDevices.add(value);
    else if (value instanceof KernelTestDevice) testDevices.add(value);
  } else if (value instanceof TestExporter) {
    exporters.add(value);
    harvest(value.dmabuf, depth + 1);
  } else if (value instanceof TestFence) {
    fences.add(value);
    if (value.syncFile) harvest(value.syncFile, depth + 1);
  } else if (value instanceof TestAttachment) {
    attachments.add(value);
  } else if (Array.isArray(value)) {
    for (const item of value) harvest(item, depth + 1);
  } else if ('handles' in value && Array.isArray((value as { handles: unknown }).handles)) {
    for (const handle of (value as { handles: unknown[] }).handles) {
      if (typeof handle === 'number') rawFds.add(handle);
      else harvest(handle, depth + 1);
    }
  }
}

// ---- values ---------------------------------------------------------------

const numbers = [0, 1, -1, 2, 3, 7, 31, 32, 4095, 4096, 4097, 8192, 65536, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 32 - 1, 2 ** 32, 2 ** 40, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), 1e300, -1e300, Infinity, -Infinity, NaN, 0.5, -0, 4096.5, 5e-324];
const strings = ['', 'x', 'fuzz', 'read', 'write', 'readwrite', 'rw', 'bidirectional', 'to-device', 'from-device', 'kernel', 'bookkeep', 'system', 'a'.repeat(31), 'a'.repeat(32), 'é'.repeat(16), 'nul\0byte', '../..', '/', '/dev/null', '@', '@fuzz-nobody', '4096', 'NaN', 'x'.repeat(70_000)];

function anyNumber(): number {
  return random.chance(0.2) ? random.int(2 ** 32) - 2 ** 31 : random.pick(numbers);
}

function anyHandle(): unknown {
  const pools: Pool<unknown>[] = [dmabufs, memfds, syncFiles, timelines, channels, servers, udmabufDevices, testDevices, exporters, attachments, fences];
  return random.pick(pools).pick();
}

function anyFdHandle(): AnyHandle | undefined {
  return random.pick([dmabufs, memfds, syncFiles, timelines, channels, servers, udmabufDevices, testDevices] as Pool<AnyHandle>[]).pick();
}

function anyValue(depth = 0): unknown {
  switch (random.int(16)) {
    case 0:
    case 1:
      return anyNumber();
    case 2:
    case 3:
      return random.pick(strings);
    case 4:
      return undefined;
    case 5:
      return random.pick([null, true, false]);
    case 6:
      return random.pick([0n, 1n, -1n, 2n ** 64n]);
    case 7:
      return depth > 1 ? {} : randomObject(depth + 1);
    case 8:
      return depth > 1 ? [] : Array.from({ length: random.int(4) }, () => anyValue(depth + 1));
    case 9:
    case 10:
      return anyHandle();
    case 11:
      return random.pick([() => 1, Symbol('fuzz'), new Date(0), Buffer.alloc(random.int(64)), new Uint8Array(8), new Map(), Object.create(null)]);
    case 12:
      return random.chance(0.5) ? AbortSignal.abort(new DOMException('fuzz abort', 'AbortError')) : new AbortController().signal;
    case 13:
      return random.pick(rawFds.items.length > 0 ? rawFds.items : [-1]);
    default:
      return random.int(64);
  }
}

const optionKeys = ['name', 'hugetlb', 'keepMemfd', 'dup', 'block', 'mode', 'timeoutMs', 'signal', 'heapFlags', 'fdFlags', 'pages', 'dynamic', 'fenced', 'buffer', 'usage', 'syncFile', 'backlog', 'maxFdsPerRead', 'memfd', 'offset', 'size'];

function randomObject(depth = 0): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  for (let index = random.int(4); index > 0; index -= 1) object[random.pick(optionKeys)] = anyValue(depth + 1);
  return object;
}

/** A plausible value most of the time, anything at all otherwise. */
function arg(plausible: () => unknown, probability = 0.75): unknown {
  return random.chance(probability) ? plausible() : anyValue();
}

const mode = () => random.pick(['read', 'write', 'readwrite'] as const);
const pageSizes = () => random.pick([4096, 8192, 3 * 4096, 16 * 4096, 256 * 4096]);
const waitOptions = () => random.pick([undefined, { timeoutMs: random.int(50) }, { timeoutMs: 0 }, { signal: new AbortController().signal, timeoutMs: 20 }, randomObject()]);

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...(${value.length})` : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'symbol' || typeof value === 'function') return typeof value;
  if (typeof value !== 'object' || value === null) return String(value);
  if (value instanceof FdHandle) return `${value.constructor.name}(${value.closed ? 'closed' : `fd ${value.fd}`})`;
  if (value instanceof TestExporter || value instanceof TestAttachment || value instanceof TestFence) return `${value.constructor.name}(${value.id})`;
  if (Buffer.isBuffer(value)) return `Buffer(${value.length})`;
  if (Array.isArray(value)) return `[${value.map(show).join(', ')}]`;
  if (value instanceof AbortSignal) return `AbortSignal(${value.aborted ? 'aborted' : 'live'})`;
  const proto = Object.getPrototypeOf(value) as object | null;
  if (proto !== Object.prototype) return proto === null ? 'Object.create(null)' : (value.constructor?.name ?? 'object');
  return `{${Object.entries(value).map(([key, item]) => `${key}: ${show(item)}`).join(', ')}}`;
}

// ---- calling --------------------------------------------------------------

function judge(error: unknown, text: string): void {
  if (judgeError(error) === 'finding') {
    count(outcomes, 'FINDING');
    finding('error of the wrong shape', text, describeError(error));
    return;
  }
  const code = (error as { code?: unknown }).code;
  count(outcomes, typeof code === 'string' ? code : (error as Error).constructor.name);
  // TypeErrors that V8 threw from inside the library (no code) pass the
  // rule, but are worth a look: they mean an argument got past the checks.
  if (typeof code !== 'string') count(notes, `${(error as Error).constructor.name} without code: ${(error as Error).message.replace(/\d+/g, 'N').slice(0, 100)}`);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function call(name: string, args: unknown[], fn: (...args: any[]) => unknown): unknown {
  // A method with no object to call it on (its pool is empty) is the fuzzer's TypeError, not the library's: not a call.
  if (args[0] === undefined && isMethod(name)) return undefined;
  const text = `${name}(${args.map(show).join(', ')})`;
  currentCall = text;
  last.record(`${calls} ${text}`);
  calls += 1;
  let result: unknown;
  const t0 = process.hrtime.bigint();
  try {
    result = fn(...args);
  } catch (error) {
    judge(error, text);
    return undefined;
  } finally {
    if (profile) count(timing, name, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  if (result instanceof Promise) {
    const watched = result.then(
      (value) => {
        count(outcomes, 'ok (async)');
        harvest(value);
      },
      (error) => judge(error, `${text} (rejected)`),
    );
    pending.set(watched, text);
    void watched.finally(() => pending.delete(watched));
  } else {
    count(outcomes, 'ok');
    harvest(result);
  }
  return result;
}

const statics = new Set(['DmaBuf.fromFd', 'Memfd.create', 'SyncFile.merge', 'SyncFile.fromFd', 'FdChannel.pair', 'FdChannel.fromFd', 'FdChannel.listen', 'FdChannel.connect', 'SwSyncTimeline.open']);
const isMethod = (name: string) => (/^[A-Z]\w*\.\w/.test(name) && !statics.has(name)) || /^(close|Symbol\.dispose|detach)$/.test(name);

const isOpen = (handle: unknown): handle is AnyHandle => handle instanceof FdHandle && !handle.closed;

/** True when DMA_BUF_IOCTL_SYNC would not block on this buffer's fences. */
function idle(buffer: unknown, accessMode: unknown): boolean {
  if (!isOpen(buffer)) return true; // the call fails with EBADF before any ioctl
  const binding = native();
  const { POLLIN, POLLOUT } = binding.constants;
  const events = accessMode === 'read' ? POLLIN : POLLOUT;
  return (binding.pollNow(buffer.fd, POLLOUT) & POLLOUT) !== 0 && (binding.pollNow(buffer.fd, events) & events) !== 0;
}

/** Signals every test fence that may be a kernel fence, so that a static map cannot wait forever. */
function signalKernelFences(): void {
  for (const fence of kernelFences) {
    try {
      fence.signal();
    } catch {
      // already signalled, or its device closed (which signals it)
    }
  }
  kernelFences.clear();
}

/** An fd number for a call that takes the fd over: one the fuzzer owns (given up on success), or one that is no fd at all. */
function ownedFd(): { fd: unknown; take: () => void } {
  if (rawFds.items.length > 0 && random.chance(0.6)) {
    const fd = random.pick(rawFds.items);
    return { fd, take: () => (rawFds.items = rawFds.items.filter((item) => item !== fd)) };
  }
  return { fd: random.pick([-1, 2 ** 31, 900_000, NaN, 1.5, '3', undefined, null, {}]), take: () => {} };
}

/** Any fd number, for calls that only look at it. */
function anyFd(): unknown {
  const handle = random.pick([dmabufs, memfds, syncFiles, channels] as Pool<AnyHandle>[]).pick();
  switch (random.int(4)) {
    case 0:
      return isOpen(handle) ? handle.fd : 0;
    case 1:
      return random.int(40);
    case 2:
      return rawFds.pick() ?? -1;
    default:
      return anyValue();
  }
}

type Op = [weight: number, run: () => void];

const ops: Op[] = [
  // udmabuf
  [6, () => call('udmabuf.create', [arg(pageSizes), arg(() => random.pick([undefined, { name: random.pick(['a', 'b'.repeat(31)]) }, { keepMemfd: true }, { hugetlb: random.chance(0.1) }, randomObject()]), 0.8)], (size, options) => udmabuf.create(size, options))],
  [2, () => call('udmabuf.open', [], () => udmabuf.open())],
  [1, () => call('udmabuf.limits', [], () => udmabuf.limits())],
  [3, () => call('UdmabufDevice.create', [udmabufDevices.pick(), arg(pageSizes), arg(() => undefined, 0.7)], (device, size, options) => device.create(size, options))],
  [3, () => {
    const memfd = arg(() => memfds.pick() ?? anyFd(), 0.8);
    const segment = () => ({ memfd: random.chance(0.7) ? memfd : anyValue(), offset: arg(() => random.pick([0, 4096, 1]), 0.8), size: arg(() => random.pick([4096, 8192, 4097]), 0.8) });
    call('udmabuf.fromMemfd', [random.pick([() => segment(), () => Array.from({ length: random.int(4) }, segment), () => anyValue()])()], (segments) => udmabuf.fromMemfd(segments));
  }],
  [3, () => call('Memfd.create', [arg(() => random.pick([4096, 8192, 65536, 2 ** 32, 2 ** 40, 1])), arg(() => random.pick([undefined, { name: 'm' }, { hugetlb: true }]), 0.8)], (size, options) => Memfd.create(size, options))],
  [3, () => {
    const view = call('Memfd.map', [memfds.pick()], (memfd) => memfd.map());
    if (Buffer.isBuffer(view)) views.add(view);
  }],
  [1, () => call('Memfd.seals', [memfds.pick()], (memfd) => memfd.seals)],
  [1, () => call('Memfd.addSeals', [memfds.pick(), arg(() => random.pick([1, 2, 4, 8, 16]))], (memfd, seals) => memfd.addSeals(seals))],
  [1, () => call('Udmabuf.memfd', [dmabufs.pick()], (buffer) => buffer.memfd)],
  [1, () => call('Udmabuf.hugetlb', [dmabufs.pick()], (buffer) => buffer.hugetlb)],
  // heaps
  [1, () => call('heap.list', [], () => heap.list())],
  [3, () => call('heap.allocate', [arg(() => 'system', 0.85), arg(() => random.pick([4096, 8192, 5000, 65536])), arg(() => random.pick([undefined, { fdFlags: random.pick([0, 1, 2, 0o4000, -1]) }, { heapFlags: random.pick([0, 1]) }, randomObject()]), 0.8)], (name, size, options) => {
    // Sizes beyond a few MiB are refused here: the system heap would try to allocate them.
    if (typeof size === 'number' && Number.isSafeInteger(size) && size > 4 * 1024 * 1024) return undefined;
    return heap.allocate(name, size, options);
  })],
  // DmaBuf
  [2, () => {
    const dup = random.chance(0.5);
    const { fd, take } = dup ? { fd: anyFd(), take: () => {} } : ownedFd();
    const result = call('DmaBuf.fromFd', [fd, dup ? { dup: true } : random.pick([undefined, {}, { dup: false }])], (number, options) => DmaBuf.fromFd(number, options));
    if (result !== undefined && !dup) take();
  }],
  [1, () => call('DmaBuf.fromFd', [anyFd(), random.pick([{ dup: 'yes' }, [], 'x', 1, { dup: 1 }])], (number, options) => DmaBuf.fromFd(number, options))],
  [1, () => call('isDmaBufFd', [anyFd()], (fd) => lib.isDmaBufFd(fd))],
  [1, () => call('parseFdinfo', [arg(() => 'size:\t4096\nflags:\t02\n')], (text) => lib.parseFdinfo(text))],
  [3, () => call('DmaBuf.info', [dmabufs.pick()], (buffer) => buffer.info())],
  [2, () => call('DmaBuf.name', [dmabufs.pick()], (buffer) => buffer.name)],
  [2, () => call('DmaBuf.name=', [dmabufs.pick(), arg(() => random.pick(['n', 'x'.repeat(31), 'x'.repeat(32), 'é'.repeat(15)]))], (buffer, name) => (buffer.name = name))],
  [2, () => call('DmaBuf.inode', [dmabufs.pick()], (buffer) => buffer.inode)],
  [1, () => call('DmaBuf.size/fd/closed', [arg(() => dmabufs.pick(), 0.9)], (buffer) => [buffer.size, buffer.closed, buffer.fd])],
  [5, () => {
    const view = call('DmaBuf.map', [dmabufs.pick()], (buffer) => buffer.map());
    if (Buffer.isBuffer(view)) views.add(view);
  }],
  [5, () => {
    // Writes and reads through a view: one made earlier may belong to a buffer closed since (length 0 then).
    const view = views.pick();
    if (!view) return;
    call('Buffer view write/read', [view], (buffer: Buffer) => {
      if (buffer.length === 0) return 0;
      buffer[0] = random.int(256);
      buffer[buffer.length - 1] = random.int(256);
      return buffer[random.int(buffer.length)];
    });
  }],
  [2, () => {
    const buffer = dmabufs.pick();
    const flags = arg(() => random.pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 0xffffffff]));
    if (!idle(buffer, 'readwrite')) return;
    call('DmaBuf.syncRaw', [buffer, flags], (b, f) => b.syncRaw(f));
  }],
  [4, () => {
    const buffer = dmabufs.pick();
    const accessMode = arg(mode);
    let options = arg(() => random.pick([undefined, { block: false }, { block: true }]), 0.85);
    if (typeof options === 'object' && options !== null && (options as { block?: unknown }).block === true && !idle(buffer, accessMode)) options = { block: false };
    call('DmaBuf.beginCpuAccess', [buffer, accessMode, options], (b, m, o) => b.beginCpuAccess(m, o));
  }],
  [4, () => call('DmaBuf.endCpuAccess', [dmabufs.pick(), arg(() => random.pick([undefined, 'read', 'write', 'readwrite']))], (b, m) => b.endCpuAccess(m))],
  [4, () => {
    const buffer = dmabufs.pick();
    const fn = random.pick([
      (bytes: Buffer) => bytes.length,
      (bytes: Buffer) => {
        if (bytes.length > 0) bytes[0] = 1;
        return bytes[0];
      },
      () => {
        throw new RangeError('thrown by the fuzzer\'s callback');
      },
      () => (buffer as AnyHandle).close(),
      () => new Promise((resolve) => setTimeout(resolve, random.int(5))),
      () => Promise.reject(new RangeError('rejected by the fuzzer\'s callback')),
      () => (buffer as DmaBuf).beginCpuAccess('read'),
      'not a function',
    ]);
    call('DmaBuf.withCpuAccess', [buffer, arg(mode), fn], (b, m, f) => b.withCpuAccess(m, f));
  }],
  [3, () => call('DmaBuf.exportSyncFile', [dmabufs.pick(), arg(mode)], (b, m) => b.exportSyncFile(m))],
  [3, () => call('DmaBuf.importSyncFile', [dmabufs.pick(), arg(() => syncFiles.pick()), arg(mode)], (b, s, m) => b.importSyncFile(s, m))],
  [3, () => call('DmaBuf.waitIdle', [dmabufs.pick(), arg(() => random.pick([undefined, { mode: mode() }, { mode: mode(), timeoutMs: random.int(30) }, { signal: AbortSignal.abort() }]), 0.7)], (b, o) => b.waitIdle(o))],
  [2, () => call('DmaBuf.cpuAccess', [dmabufs.pick()], (b) => b.cpuAccess)],
  // sync_file
  [3, () => call('SwSyncTimeline.open', [], () => SwSyncTimeline.open())],
  [5, () => call('SwSyncTimeline.createFence', [timelines.pick(), arg(() => random.int(20)), arg(() => random.pick([undefined, 'f', 'x'.repeat(31), 'x'.repeat(32)]), 0.8)], (t, v, n) => t.createFence(v, n))],
  [4, () => call('SwSyncTimeline.advance', [timelines.pick(), arg(() => random.pick([undefined, 1, 2, 0, 0x7fffffff]))], (t, n) => t.advance(n))],
  [1, () => call('SwSyncTimeline.value', [timelines.pick()], (t) => t.value)],
  [3, () => call('SyncFile.info', [syncFiles.pick()], (s) => s.info())],
  [2, () => call('SyncFile.status', [syncFiles.pick()], (s) => s.status)],
  [3, () => call('SyncFile.wait', [syncFiles.pick(), arg(waitOptions, 0.7)], (s, o) => s.wait(o))],
  [3, () => call('SyncFile.merge', [arg(() => random.pick(['m', 'x'.repeat(32)]), 0.9), arg(() => syncFiles.pick(), 0.9), arg(() => syncFiles.pick(), 0.9)], (n, a, b) => SyncFile.merge(n, a, b))],
  [2, () => {
    const dup = random.chance(0.5);
    const source = syncFiles.pick();
    const { fd, take } = dup ? { fd: isOpen(source) ? source.fd : anyFd(), take: () => {} } : ownedFd();
    const result = call('SyncFile.fromFd', [fd, dup ? { dup: true } : undefined], (number, options) => SyncFile.fromFd(number, options));
    if (result !== undefined && !dup) take();
  }],
  // FdChannel
  [2, () => call('FdChannel.pair', [], () => FdChannel.pair())],
  [1, () => {
    const { fd, take } = ownedFd();
    const result = call('FdChannel.fromFd', [fd, arg(() => random.pick([undefined, { maxFdsPerRead: random.pick([0, 1, 253, 254]) }]), 0.8)], (number, options) => FdChannel.fromFd(number, options));
    if (result !== undefined) take();
  }],
  [1, () => call('FdChannel.listen', [arg(() => `@fuzz-${process.pid}-${(socketNames += 1)}`, 0.8), arg(() => random.pick([undefined, { backlog: random.pick([1, 0, 65536]) }]), 0.8)], (path, options) => FdChannel.listen(path, options))],
  [2, () => call('FdChannel.connect', [arg(() => servers.pick()?.path ?? '@fuzz-nobody', 0.85)], (path) => FdChannel.connect(path))],
  [2, () => call('FdChannelServer.accept', [servers.pick()], (server) => server.accept())],
  [1, () => {
    const server = servers.pick();
    if (server && !listening.has(server)) {
      listening.add(server);
      server.on('error', () => {});
      call('FdChannelServer.on(connection)', [server], (s) => s.on('connection', (channel: unknown) => harvest(channel)));
    }
  }],
  [6, () => {
    const handles = arg(() => Array.from({ length: random.int(4) }, () => random.pick([() => dmabufs.pick(), () => syncFiles.pick(), () => anyFd(), () => anyValue()])()), 0.8);
    call('FdChannel.send', [channels.pick(), arg(() => random.pick([{ n: random.int(9) }, 'text', 'x'.repeat(100_000), [1, 2], null]), 0.9), handles], (c, m, h) => c.send(m, h));
  }],
  [4, () => call('FdChannel.receive', [channels.pick()], (c) => c.receive())],
  [1, () => {
    const channel = channels.pick();
    if (channel && !listening.has(channel)) listening.add(channel);
    call('FdChannel.on(message)', [channel], (c) => c.on('message', (received: unknown) => harvest(received)));
  }],
  [1, () => call('FdChannel.on(random)', [channels.pick(), anyValue(), anyValue()], (c, e, l) => c.on(e, l))],
  [1, () => call('FdChannel.unref/ref', [channels.pick(), random.chance(0.5)], (c, r) => (r ? c.ref() : c.unref()))],
  [1, () => {
    // A misbehaving peer: bytes that are not an FdChannel frame.
    const channel = channels.pick();
    if (!isOpen(channel)) return;
    try {
      writeSync(channel.fd, Buffer.from(random.pick(['garbage', 'DBCH\0\0\0\0\0\0\0\0', '\x48\x43\x42\x44\xff\xff\xff\xff\x00\x00\x00\x00', '\x48\x43\x42\x44\x02\x00\x00\x00\x05\x00\x00\x00{}'])));
    } catch {
      // a full socket: the point was only to send bytes when possible
    }
  }],
  [1, () => call('pidfdGetFd', [arg(() => random.pick([process.pid, process.ppid, 1, 999_999])), anyFd()], (pid, fd) => {
    const result = lib.pidfdGetFd(pid, fd);
    rawFds.add(result);
    return undefined;
  })],
  // inspection
  [1, () => call('inspectProcess', [arg(() => random.pick([undefined, process.pid, 1, 999_999]))], (pid) => lib.inspectProcess(pid))],
  [1, () => call('inspectSystem', [], () => lib.inspectSystem())],
  [1, () => call('parseBufinfo', [arg(() => '\nDma-buf Objects:\nsize\tflags\tmode\tcount\texp_name\tino\tname\n00004096\t00000002\t00080007\t00000001\tudmabuf\t00000042\tx\n')], (text) => lib.parseBufinfo(text))],
  [1, () => call('formatSystemReport', [arg(() => (systemReport ??= lib.inspectSystem()), 0.5)], (report) => lib.formatSystemReport(report))],
  [1, () => call('formatProcessReport', [arg(() => lib.inspectProcess(), 0.5)], (report) => lib.formatProcessReport(report))],
  [1, () => call('listDevices', [], () => lib.listDevices())],
  [1, () => call('formatDevices', [arg(() => (devicesReport ??= lib.listDevices()), 0.5)], (devices) => lib.formatDevices(devices))],
  [1, () => call('errnoName', [anyValue()], (errno) => lib.errnoName(errno))],
  [1, () => call('kernelError', [anyValue(), anyValue(), arg(() => undefined, 0.5)], (errno, syscall, options) => lib.kernelError(errno, syscall, options))],
  // the test module
  [3, () => call('kernelTest.open', [arg(() => undefined, 0.9)], (path) => kernelTest.open(path))],
  [5, () => call('KernelTestDevice.export', [testDevices.pick(), arg(() => ({ pages: random.pick([1, 2, 16, 0, 16385]), dynamic: random.chance(0.5) }))], (d, o) => d.export(o))],
  [5, () => {
    const device = testDevices.pick();
    const target = arg(() => random.pick([() => dmabufs.pick(), anyFd])(), 0.9);
    const result = call('KernelTestDevice.attach', [device, target, arg(() => random.pick([undefined, { dynamic: true }, { dynamic: false }]), 0.9)], (d, b, o) => d.attach(b, o));
    void result;
  }],
  [4, () => {
    const options = arg(() => random.pick([{}, { buffer: dmabufs.pick(), usage: random.pick(['kernel', 'write', 'read', 'bookkeep']) }, { buffer: dmabufs.pick(), syncFile: true }, { syncFile: true }, { usage: 'read' }]), 0.85);
    const fence = call('KernelTestDevice.createFence', [testDevices.pick(), options], (d, o) => d.createFence(o));
    if (fence instanceof TestFence) kernelFences.add(fence);
  }],
  [4, () => call('TestFence.signal', [fences.pick(), arg(() => random.pick([undefined, 0, -5, -4095, 5, -4096]))], (f, e) => f.signal(e))],
  [3, () => call('TestExporter.info', [exporters.pick()], (e) => e.info())],
  [3, () => {
    const fence = call('TestExporter.move', [exporters.pick(), arg(() => random.pick([undefined, { fenced: true }, { fenced: false }]), 0.85)], (e, o) => e.move(o));
    if (fence instanceof TestFence) kernelFences.add(fence);
  }],
  [4, () => {
    const attachment = attachments.pick();
    if (attachment && !attachment.dynamic) signalKernelFences();
    call('TestAttachment.map', [attachment, arg(() => random.pick([undefined, 'bidirectional', 'to-device', 'from-device']), 0.85)], (a, d) => a.map(d));
  }],
  [3, () => call('TestAttachment.unmap', [attachments.pick()], (a) => a.unmap())],
  [3, () => call('TestAttachment.pin', [attachments.pick()], (a) => a.pin())],
  [3, () => call('TestAttachment.unpin', [attachments.pick()], (a) => a.unpin())],
  [3, () => call('TestAttachment.info', [attachments.pick()], (a) => a.info())],
  [2, () => call('TestAttachment.detach', [attachments.pick()], (a) => a.detach())],
  [2, () => call('KernelTestDevice.readEvents', [testDevices.pick()], (d) => d.readEvents())],
  [1, () => call('KernelTestDevice.on(move-notify)', [testDevices.pick()], (d) => d.on(random.pick(['move-notify', 'overflow']), () => {}))],
  [1, () => {
    const device = testDevices.pick();
    call('KernelTestDevice.events', [device, arg(() => random.pick([undefined, { signal: AbortSignal.timeout(random.int(50)) }]), 0.8)], async (d, o) => {
      for await (const event of d.events(o)) void event;
    });
  }],
  [2, () => call('KernelTestDevice.rawIoctl', [testDevices.pick(), arg(() => random.pick([KernelTestDevice.commands.EXPORTER_INFO, KernelTestDevice.commands.ATTACHMENT_INFO, 0x40086401, -1, 2 ** 32, 0xc010db7f])), arg(() => Buffer.alloc(random.pick([0, 4, 8, 64])), 0.8)], (d, c, a) => d.rawIoctl(c, a))],
  // any handle: close, detach, dispose, use after close
  [4, () => call('close', [anyFdHandle()], (h) => h.close())],
  [1, () => call('Symbol.dispose', [anyFdHandle()], (h) => h[Symbol.dispose]())],
  [2, () => {
    const handle = random.pick([() => dmabufs.pick(), () => memfds.pick(), () => syncFiles.pick(), () => channels.pick(), () => timelines.pick()])();
    call('detach', [handle], (h) => {
      const fd = h.detach();
      if (typeof fd === 'number') rawFds.add(fd);
      return undefined;
    });
  }],
  [1, () => {
    // A raw fd of the fuzzer's own: /dev/null, or a duplicate of a handle's fd.
    const source = dmabufs.pick() ?? syncFiles.pick();
    if (random.chance(0.5) && isOpen(source)) {
      const fd = native().dupCloexec(source.fd);
      if (fd >= 0) rawFds.add(fd);
    } else {
      rawFds.add(openSync('/dev/null', 'r'));
    }
  }],
  [1, () => {
    const fd = rawFds.pick();
    if (fd === undefined) return;
    rawFds.items = rawFds.items.filter((item) => item !== fd);
    closeRaw(fd);
  }],
];

const totalWeight = ops.reduce((sum, [weight]) => sum + weight, 0);

function pickOp(): () => void {
  let roll = random.int(totalWeight);
  for (const [weight, run] of ops) {
    roll -= weight;
    if (roll < 0) return run;
  }
  return ops[0]![1];
}

let lastProgress = 0;

async function main(): Promise<void> {
  // A few live handles to start from, so that early calls have something to act on.
  call('udmabuf.create', [8192], (size) => udmabuf.create(size));
  call('SwSyncTimeline.open', [], () => SwSyncTimeline.open());
  call('FdChannel.pair', [], () => FdChannel.pair());
  call('kernelTest.open', [], () => kernelTest.open());
  while (calls < budget && Date.now() < deadline) {
    pickOp()();
    // Let the event loop run: waits resolve, channels read, timers fire.
    if (calls % 32 === 0) await new Promise((resolve) => setImmediate(resolve));
    if (Date.now() - lastProgress > 2000) {
      lastProgress = Date.now();
      send({ type: 'progress', calls });
    }
    if (pending.size > 100) {
      // Waits and receives that nothing will satisfy pile up: closing their
      // handles must settle them (ECANCELED), which is worth checking too.
      for (const pool of [channels, syncFiles, dmabufs, servers, testDevices] as Pool<AnyHandle>[]) for (const handle of pool.items) call(`${handle.constructor.name}.close (reset)`, [handle], (h: AnyHandle) => h.close());
      await new Promise((resolve) => setTimeout(resolve, 10));
      if (pending.size > 100) finding('promises still pending after their handles were closed', [...pending.values()].slice(0, 3).join(' | '), `${pending.size} pending`);
    }
  }
  await cleanUp();
}

async function cleanUp(): Promise<void> {
  currentCall = '(cleanup)';
  last.record(`${calls} cleanup`);
  signalKernelFences();
  for (const attachment of attachments.items) {
    try {
      attachment.detach();
    } catch {
      // its device may be closed already
    }
  }
  // Channels first (they hold received handles), then everything else; a close that throws is judged like any call.
  const ordered = [...owned].sort((a, b) => Number(b instanceof FdChannel) - Number(a instanceof FdChannel));
  for (const handle of ordered) {
    try {
      handle.close();
    } catch (error) {
      if (judgeError(error) === 'finding') finding('error of the wrong shape', `close ${handle.constructor.name} at cleanup`, describeError(error));
    }
  }
  // Every pending wait, send and receive must settle once its handle is closed.
  const stuck = [...pending.keys()];
  const settled = await Promise.race([Promise.allSettled(stuck).then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000))]);
  if (!settled) for (const text of pending.values()) finding('promise still pending 5 s after every handle was closed', text, `${pending.size} of ${stuck.length} pending at cleanup`);
  // Messages that arrived on channels during the close were handed to 'message' listeners and harvested: close those too.
  for (const handle of owned) if (!handle.closed) handle.close();
  for (const fd of rawFds.items) closeRaw(fd);
  rawFds.items = [];
  views.items = [];
  last.close();
  if (profile) process.stderr.write(`${Object.entries(timing).sort((a, b) => b[1] - a[1]).slice(0, 15).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join('\n')}\n`);
  const fdsAfter = openFdCount();
  const mappingsAfter = bufferMappingCount();
  send({ type: 'done', calls, fds: [fdsBefore, fdsAfter + 1 /* the last-call file, open at the start */], mappings: [mappingsBefore, mappingsAfter], outcomes, notes });
  process.disconnect();
}

void main().catch((error: unknown) => {
  // Exit once the finding is sent: open handles would keep a failed fuzzer alive.
  process.send!({ type: 'finding', finding: { kind: 'the fuzzer itself failed', call: currentCall, detail: describeError(error) + (error instanceof Error ? `\n${error.stack}` : '') } }, () => process.exit(70));
});
