/**
 * The module fuzz worker (a child of test/fuzz/guest.ts): random ioctls at
 * /dev/dmabuf_test until the deadline, as test/guest/kernel-module/ioctl.test.ts
 * does for a few seconds, but over two open files at once, with exported
 * buffers kept alive (and mapped from userspace) across calls and file
 * closes, and events read as they queue. Every errno must be one the uapi
 * header documents; at the end, with everything closed, the process's fd and
 * mapping counts must be back where they started.
 *
 * argv: seed, deadline (ms since the epoch), worker number, scratch dir.
 */
import { closeSync } from 'node:fs';
import { DmaBuf, errnoName, Memfd, udmabuf } from '../../lib';
import { kernelTest, KernelTestDevice } from '../../lib/kernel-test';
import { native } from '../../lib/native';
import { bufferMappingCount, describeError, judgeError, LastCall, lastCallPath, openFdCount, Random, send } from './common';

const [seedText, deadlineText, workerText, scratch] = process.argv.slice(2) as [string, string, string, string];
const random = new Random(Number(seedText));
const deadline = Number(deadlineText);
const last = new LastCall(lastCallPath(scratch, Number(workerText)));
native();
const fdsBefore = openFdCount();
const mappingsBefore = bufferMappingCount();

const commands = KernelTestDevice.commands;
const dbt = native().dmabufTestValues;
const known = Object.values(commands);
const names = new Map(Object.entries(commands).map(([name, number]) => [number, name]));
const sizeOf = (command: number) => (command >>> 16) & 0x3fff;
/** _IOC(dir, DBT_IOC_MAGIC, nr, size) */
const ioc = (direction: number, nr: number, size: number) => ((direction << 30) | (size << 16) | (dbt.DBT_IOC_MAGIC << 8) | nr) >>> 0;
/** The errnos the uapi header documents for these ioctls (EFAULT cannot come from JavaScript). */
const documented = new Set(['ok', 'ENOTTY', 'EINVAL', 'ENOENT', 'EBADF', 'EBUSY', 'EOVERFLOW']);

let calls = 0;
const outcomes: Record<string, number> = {};
const count = (key: string) => (outcomes[key] = (outcomes[key] ?? 0) + 1);
let currentCall = '(none)';
const finding = (kind: string, call: string, detail: string) => send({ type: 'finding', finding: { kind, call, detail } });
process.on('uncaughtException', (error) => finding('uncaught exception', currentCall, describeError(error)));

function words(...values: number[]): Buffer {
  const buffer = Buffer.alloc(values.length * 4);
  values.forEach((value, index) => buffer.writeInt32LE(value | 0, index * 4));
  return buffer;
}

async function main(): Promise<void> {
  const memory = udmabuf.create(2 * 4096);
  const memfd = Memfd.create(4096);
  const devices = [kernelTest.open(), kernelTest.open()];
  /** Exported dma-buf fds kept open across calls (and device closes); the oldest is closed past 8. */
  const kept: number[] = [];
  /** Exported buffers mapped from userspace, written while moves and maps go on. */
  const mapped: DmaBuf[] = [];

  // Values that hit the checks' edges: small ids, real fds, flag bits, limits.
  const value = (device: KernelTestDevice) => {
    switch (random.int(16)) {
      case 0: return memory.fd;
      case 1: return memfd.fd;
      case 2: return device.fd;
      case 3: return kept.length > 0 ? random.pick(kept) : -1;
      case 4: return -1;
      case 5: return 0xffffffff;
      case 6: return dbt.DBT_MAX_PAGES;
      case 7: return dbt.DBT_MAX_PAGES + 1;
      case 8: return 4;
      case 9: return random.int(2 ** 32) | 0;
      case 10: return random.int(4) - 2048; // negative errnos for FENCE_SIGNAL
      default: return random.int(4);
    }
  };

  function release(device: KernelTestDevice, command: number, argument: Buffer): void {
    if (command === commands.EXPORT) {
      const fd = argument.readInt32LE(8);
      kept.push(fd);
      if (kept.length > 8) closeSync(kept.shift()!);
      if (random.chance(0.05)) {
        // Mapped from userspace while the module maps, moves and pins it.
        const buffer = DmaBuf.fromFd(fd, { dup: true });
        const view = buffer.map();
        view[0] = 1;
        view[view.length - 1] = 2;
        mapped.push(buffer);
        if (mapped.length > 2) mapped.shift()!.close();
      }
    }
    // Fences are signalled at once, so that no static map waits on one forever.
    if (command === commands.FENCE_CREATE) {
      if (argument.readUInt32LE(8) & dbt.DBT_FENCE_SYNC_FILE) closeSync(argument.readInt32LE(16));
      device.rawIoctl(commands.FENCE_SIGNAL, words(argument.readUInt32LE(12), random.chance(0.2) ? -5 : 0));
    }
    if (command === commands.MOVE && argument.readUInt32LE(4) & dbt.DBT_MOVE_FENCED) device.rawIoctl(commands.FENCE_SIGNAL, words(argument.readUInt32LE(8), 0));
  }

  while (Date.now() < deadline) {
    const slot = random.int(2);
    const device = devices[slot]!;
    const command = random.int(4) === 0 ? ioc(random.int(4), random.int(16), random.int(64)) : random.pick(known);
    const argument = Buffer.alloc(Math.max(sizeOf(command), 4));
    for (let offset = 0; offset + 4 <= argument.length; offset += 4) argument.writeInt32LE(value(device) | 0, offset);
    currentCall = `rawIoctl(${names.get(command) ?? `0x${command.toString(16)}`}, ${argument.toString('hex')}) on device ${slot}`;
    last.record(`${calls} ${currentCall}`);
    let result: number;
    try {
      result = device.rawIoctl(command, argument);
    } catch (error) {
      calls += 1;
      if (judgeError(error) === 'finding') finding('error of the wrong shape', currentCall, describeError(error));
      count(`threw ${(error as { code?: string }).code ?? (error as Error).constructor.name}`);
      continue;
    }
    calls += 1;
    const outcome = result < 0 ? errnoName(-result) : 'ok';
    count(outcome);
    if (!documented.has(outcome)) finding('an errno the uapi header does not document', currentCall, outcome);
    if (result === 0) release(device, command, argument);
    if (random.chance(0.01)) {
      for (const event of device.readEvents()) count(`event ${event.type}`);
    }
    // A fresh file now and then, so that created objects do not pile up and
    // the close path runs with attachments, pins, maps and fences in place.
    if (random.chance(1 / 200)) {
      device.close();
      devices[slot] = kernelTest.open();
    }
    if (calls % 200 === 0) {
      send({ type: 'progress', calls });
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  currentCall = '(cleanup)';
  for (const device of devices) device.close();
  for (const buffer of mapped) buffer.close();
  for (const fd of kept) closeSync(fd);
  memory.close();
  memfd.close();
  last.close();
  send({ type: 'done', calls, fds: [fdsBefore, openFdCount() + 1], mappings: [mappingsBefore, bufferMappingCount()], outcomes, notes: {} });
  process.disconnect();
}

void main().catch((error: unknown) => {
  // Exit once the finding is sent: open handles would keep a failed fuzzer alive.
  process.send!({ type: 'finding', finding: { kind: 'the fuzzer itself failed', call: currentCall, detail: describeError(error) + (error instanceof Error ? `\n${error.stack}` : '') } }, () => process.exit(70));
});
