/**
 * `npm run bench:throughput` runs this in the VM (bench/run.ts --throughput):
 * one producer sends frames at a fixed rate, each with a dma-buf and a
 * fence, to many consumer processes over FdChannel. It prints one JSON line:
 * the latency from send to the consumer holding the buffer (p50, p99, max),
 * CPU time per frame (producer, and all consumers together), frames lost,
 * and fds left open in any process at the end. Nothing here passes or fails
 * on speed; a lost frame or a leaked fd makes the exit status 1.
 *
 * Frames are never skipped: when the producer falls behind its schedule it
 * sends at once, and a consumer that cannot keep up has its frames queued
 * (FdChannel holds duplicates of the fds until they are sent). So the
 * latency shows how far behind the consumers fell, rather than hiding it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { FdChannel, SwSyncTimeline, udmabuf, type DmaBuf, type SyncFile } from '../lib';

interface Frame {
  frame: number;
  /** A warm-up frame: delivered and checked like the others, left out of latency and CPU. */
  warmup: boolean;
  /** process.hrtime.bigint() at send, as a string: CLOCK_MONOTONIC, the same clock in every process. */
  sentAt: string;
}

interface ConsumerReport {
  /** Nanoseconds from send to this consumer holding the buffer, one per measured frame. */
  latencies: number[];
  frames: number;
  /** CPU time from the first measured frame on. */
  cpuMicros: number;
  fdsBefore: number;
  fdsAfter: number;
  badFrames: string[];
}

export interface ThroughputResult {
  consumers: number;
  fps: number;
  seconds: number;
  warmupSeconds: number;
  framesSent: number;
  framesLost: number;
  /** How late the producer sent its latest frame against the schedule, at worst (a producer that keeps up stays near 0). */
  producerLagMs: number;
  latencyMs: { p50: number; p99: number; max: number };
  producerCpuMsPerFrame: number;
  consumersCpuMsPerFrame: number;
  fdsLeaked: { producer: number; consumers: number };
  badFrames: string[];
  /** Wall time from the first send until every consumer had every frame. */
  drainSeconds: number;
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

async function consumer(): Promise<void> {
  const channel = FdChannel.fromFd(3);
  const fdsBefore = openFds();
  const latencies: number[] = [];
  const badFrames: string[] = [];
  let frames = 0;
  let expected = 0;
  let cpuAtFirstMeasured: NodeJS.CpuUsage | undefined;
  await channel.send({ ready: true });
  for (;;) {
    const { message, handles } = await channel.receive<Frame | { end: true }>();
    const heldAt = process.hrtime.bigint();
    if ('end' in message) break;
    const [buffer, fence] = handles as [DmaBuf, SyncFile];
    frames += 1;
    if (!message.warmup) {
      cpuAtFirstMeasured ??= process.cpuUsage();
      latencies.push(Number(heldAt - BigInt(message.sentAt)));
    }
    if (message.frame !== expected) badFrames.push(`frame ${message.frame} came where ${expected} was due`);
    if (handles.length !== 2 || buffer.size !== 64 * 1024) badFrames.push(`frame ${message.frame}: ${handles.length} handles`);
    expected = message.frame + 1;
    // A consumer waits for the producer's fence before it reads the buffer.
    await fence.wait();
    buffer.close();
    fence.close();
  }
  const usage = process.cpuUsage(cpuAtFirstMeasured);
  const report: ConsumerReport = { latencies, frames, cpuMicros: cpuAtFirstMeasured ? usage.user + usage.system : 0, fdsBefore, fdsAfter: openFds(), badFrames };
  await channel.send(report);
  channel.close();
}

async function producer(consumers: number, fps: number, seconds: number, warmupSeconds: number): Promise<ThroughputResult> {
  const fdsBefore = openFds();
  const children: ChildProcess[] = [];
  const channels: FdChannel[] = [];
  for (let index = 0; index < consumers; index += 1) {
    const [mine, theirs] = FdChannel.pair();
    children.push(spawn(process.execPath, [__filename, '--consumer'], { stdio: ['ignore', 'inherit', 'inherit', theirs.fd] }));
    theirs.close();
    channels.push(mine);
  }
  // Every consumer is up (Node started, channel open) before the first frame.
  await Promise.all(channels.map((channel) => channel.receive()));
  const ring = Array.from({ length: 3 }, () => udmabuf.create(64 * 1024));
  const timeline = SwSyncTimeline.open();
  const warmupFrames = Math.round(fps * warmupSeconds);
  const measuredFrames = Math.round(fps * seconds);
  const frames = warmupFrames + measuredFrames;
  const periodNs = BigInt(Math.round(1e9 / fps));
  const start = process.hrtime.bigint();
  let cpuBefore = process.cpuUsage();
  let lagNs = 0n;
  const sends: Promise<void>[] = [];
  for (let frame = 0; frame < frames; frame += 1) {
    const due = start + BigInt(frame) * periodNs;
    const now = process.hrtime.bigint();
    if (due > now) await new Promise((resolve) => setTimeout(resolve, Number(due - now) / 1e6));
    if (frame === warmupFrames) cpuBefore = process.cpuUsage();
    const sentAt = process.hrtime.bigint();
    if (frame >= warmupFrames && sentAt - due > lagNs) lagNs = sentAt - due;
    const fence = timeline.createFence(frame + 1, `frame-${frame}`);
    const message: Frame = { frame, warmup: frame < warmupFrames, sentAt: String(sentAt) };
    const handles = [ring[frame % ring.length]!, fence];
    // Not awaited one by one: a slow consumer's queue must not hold up the others.
    for (const channel of channels) sends.push(channel.send(message, handles));
    // The work the fence stands for is done: consumers waiting on it go on.
    timeline.advance();
    fence.close();
  }
  await Promise.all(sends);
  const producerCpu = process.cpuUsage(cpuBefore);
  await Promise.all(channels.map((channel) => channel.send({ end: true })));
  const reports = await Promise.all(channels.map(async (channel) => (await channel.receive<ConsumerReport>()).message));
  const drained = process.hrtime.bigint();
  for (const channel of channels) channel.close();
  await Promise.all(children.map((child) => (child.exitCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', resolve)))));
  for (const buffer of ring) buffer.close();
  timeline.close();
  const latencies = reports.flatMap((report) => report.latencies).sort((a, b) => a - b);
  const received = reports.reduce((sum, report) => sum + report.frames, 0);
  const consumersCpu = reports.reduce((sum, report) => sum + report.cpuMicros, 0);
  return {
    consumers,
    fps,
    seconds,
    warmupSeconds,
    framesSent: frames,
    framesLost: frames * consumers - received,
    producerLagMs: Number(lagNs) / 1e6,
    latencyMs: { p50: percentile(latencies, 0.5) / 1e6, p99: percentile(latencies, 0.99) / 1e6, max: (latencies[latencies.length - 1] ?? Number.NaN) / 1e6 },
    producerCpuMsPerFrame: (producerCpu.user + producerCpu.system) / 1000 / measuredFrames,
    consumersCpuMsPerFrame: consumersCpu / 1000 / measuredFrames,
    fdsLeaked: { producer: openFds() - fdsBefore, consumers: reports.reduce((sum, report) => sum + Math.max(0, report.fdsAfter - report.fdsBefore), 0) },
    badFrames: reports.flatMap((report) => report.badFrames).slice(0, 10),
    drainSeconds: Number(drained - start) / 1e9,
  };
}

function option(name: string, fallback: number, zeroAllowed = false): number {
  const index = process.argv.indexOf(`--${name}`);
  if (index < 0) return fallback;
  const value = Number(process.argv[index + 1]);
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !zeroAllowed)) throw new RangeError(`--${name} takes a positive number, got ${process.argv[index + 1]}`);
  return value;
}

if (process.argv.includes('--consumer')) {
  void consumer();
} else {
  producer(option('consumers', 100), option('fps', 60), option('seconds', 10), option('warmup-seconds', 2, true))
    .then((result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`);
      if (result.framesLost > 0 || result.fdsLeaked.producer > 0 || result.fdsLeaked.consumers > 0 || result.badFrames.length > 0) process.exitCode = 1;
    })
    .catch((error: unknown) => {
      process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
      process.exitCode = 1;
    });
}
