import { existsSync } from 'node:fs';
import { check, kernelError, negativeErrno } from './errors';
import { FdHandle, handleOf, isHandleOf, openFd } from './handle';
import { native } from './native';
import * as validate from './validate';
import { FdWaiter, type WaitOptions } from './wait';

export type FenceStatus = 'active' | 'signaled' | 'error';

export interface FenceInfo {
  /**
   * The fence's timeline (obj_name). Linux 7.2 forgets the names of a
   * signalled fence (its driver may be gone): there it reads
   * 'signaled-timeline' and the driver 'detached-driver'.
   */
  timeline: string;
  /** The driver that created it (sw_sync, a GPU driver, dma_fence_array, ...). */
  driver: string;
  status: FenceStatus;
  /** The kernel's status: 1 signalled, 0 active, a negative errno when signalled with an error. */
  statusCode: number;
  /** When it signalled, in CLOCK_MONOTONIC nanoseconds; 0n while active. */
  timestampNs: bigint;
}

export interface SyncFileInfo {
  name: string;
  status: FenceStatus;
  statusCode: number;
  fences: FenceInfo[];
}

const infoSyscall = 'ioctl(SYNC_IOC_FILE_INFO)';
// One slot for every status read: the calls are synchronous, so none overlap.
const statusSlot = new Int32Array(1);

/**
 * 0 if fd is a sync_file, else -errno (ENOTTY for another file): the
 * status-only SYNC_IOC_FILE_INFO, with no object made for its answer.
 */
function probeSyncFile(fd: number): number {
  return native().syncFileStatus(fd, statusSlot);
}

/** Why fd is not a sync_file, or undefined when it is: SyncFile.fromFd's check, and a received fd's. */
export function syncFileRefusal(fd: number): Error | undefined {
  const probe = probeSyncFile(fd);
  return probe < 0 ? kernelError(probe, infoSyscall, { hint: probe === negativeErrno('ENOTTY') ? `fd ${fd} is not a sync_file` : undefined }) : undefined;
}
// The kernel reads the deadline as a signed ktime_t.
const maxDeadlineNs = (1n << 63n) - 1n;
const setDeadlineSyscall = 'ioctl(SYNC_IOC_SET_DEADLINE)';

function kernelRelease(): string {
  const release = native().kernelRelease();
  return typeof release === 'string' ? release : 'unknown';
}

function statusOf(code: number): FenceStatus {
  return code > 0 ? 'signaled' : code === 0 ? 'active' : 'error';
}

/** A sync_file: an fd for one or more fences, signalled once and for good. */
export class SyncFile extends FdHandle {
  #waiter: FdWaiter | undefined;

  private constructor(fd: number, owned = false) {
    super(fd, 'SyncFile', owned);
  }

  /** Whether `value` is a SyncFile, made by this copy of the package or another (where `instanceof` answers false). */
  static isSyncFile(value: unknown): value is SyncFile {
    return isHandleOf(value, 'SyncFile');
  }

  /** @internal Wraps an fd the kernel just returned as a sync_file. */
  static adopt(fd: number, options?: { owned: boolean }): SyncFile {
    return new SyncFile(fd, options?.owned);
  }

  /**
   * Wraps an fd that should be a sync_file (checked with SYNC_IOC_FILE_INFO).
   * With `dup: true` the caller keeps the original fd.
   */
  static fromFd(fd: number, options?: { dup?: boolean }): SyncFile {
    validate.fd('fd', fd);
    const { dup } = validate.options<{ dup: boolean }>('options', options);
    validate.optionalBoolean('options.dup', dup);
    const refusal = syncFileRefusal(fd);
    if (refusal) throw refusal;
    return new SyncFile(dup ? check(native().dupCloexec(fd), 'fcntl(F_DUPFD_CLOEXEC)') : fd);
  }

  /** A new sync_file holding the fences of both (SYNC_IOC_MERGE); both stay open. */
  static merge(name: string, first: SyncFile, second: SyncFile): SyncFile {
    validate.kernelName('name', name, native().constants.SYNC_NAME_MAX_BYTES);
    handleOf<SyncFile>('first', first, 'SyncFile', 'a SyncFile');
    handleOf<SyncFile>('second', second, 'SyncFile', 'a SyncFile');
    return new SyncFile(check(native().syncFileMerge(name, first.fd, second.fd), 'ioctl(SYNC_IOC_MERGE)'));
  }

  info(): SyncFileInfo {
    const raw = check(native().syncFileInfo(this.assertOpen(infoSyscall)), infoSyscall);
    return {
      name: raw.name,
      status: statusOf(raw.status),
      statusCode: raw.status,
      fences: raw.fences.map((fence) => ({
        timeline: fence.timeline,
        driver: fence.driver,
        status: statusOf(fence.status),
        statusCode: fence.status,
        timestampNs: fence.timestampNs,
      })),
    };
  }

  get status(): FenceStatus {
    return this.info().status;
  }

  /**
   * Tells the drivers behind the fences when their result is needed
   * (SYNC_IOC_SET_DEADLINE, Linux 6.12+), so that a GPU can raise its clocks,
   * as compositors do for the next vblank. A hint only: nothing fails or
   * signals when the deadline passes. `deadlineNs` is absolute CLOCK_MONOTONIC
   * time, the clock of `process.hrtime.bigint()`; a driver keeps the earliest
   * deadline it is given, and fences already signalled ignore it.
   */
  setDeadline(deadlineNs: bigint): void {
    const fd = this.assertOpen(setDeadlineSyscall);
    validate.bigint('deadlineNs', deadlineNs, 0n, maxDeadlineNs);
    check(native().syncFileSetDeadline(fd, deadlineNs), setDeadlineSyscall, (code) =>
      code === 'ENOTTY' ? `fence deadlines need SYNC_IOC_SET_DEADLINE, which Linux 6.12 has and this kernel (${kernelRelease()}) does not` : undefined,
    );
  }

  /** setDeadline at `ms` milliseconds from now; returns the absolute deadline set. */
  setDeadlineIn(ms: number): bigint {
    validate.finite('ms', ms, 0, Number.MAX_SAFE_INTEGER / 1e6);
    const deadline = process.hrtime.bigint() + BigInt(Math.round(ms * 1e6));
    this.setDeadline(deadline);
    return deadline;
  }

  /**
   * Resolves when every fence has signalled; rejects with the fence's errno
   * when one signalled an error. Polls from the event loop, no thread waits.
   */
  async wait(options?: WaitOptions): Promise<void> {
    const fd = this.assertOpen('poll');
    let status = this.#status(fd);
    if (options !== undefined) {
      const { timeoutMs, signal } = validate.options<WaitOptions>('options', options);
      if (timeoutMs !== undefined) validate.timeoutMs('options.timeoutMs', timeoutMs);
      validate.optionalSignal('options.signal', signal);
      if (signal?.aborted) throw signal.reason;
      if (status === 0) status = await this.#pollUntilSignalled(fd, options);
    } else if (status === 0) {
      status = await this.#pollUntilSignalled(fd, {});
    }
    // Already signalled (the common case) cost one ioctl and no event-loop turn.
    if (status < 0) throw kernelError(status, 'sync_file', { hint: 'a fence signalled with this error' });
  }

  async #pollUntilSignalled(fd: number, options: WaitOptions): Promise<number> {
    this.#waiter ??= new FdWaiter(fd, 'SyncFile');
    await this.#waiter.wait(native().Poller.READABLE, 'poll', options);
    return this.#status(fd);
  }

  #status(fd: number): number {
    check(native().syncFileStatus(fd, statusSlot), infoSyscall);
    return statusSlot[0]!;
  }

  protected override releaseResources(): void {
    this.#waiter?.close('poll');
  }
}

const swSyncPaths = ['/sys/kernel/debug/sync/sw_sync', '/sys/kernel/debug/sw_sync'];

/**
 * A software timeline from debugfs's sw_sync: fences that userspace creates
 * and signals, for tests. Each fence signals when the timeline reaches its value.
 */
export class SwSyncTimeline extends FdHandle {
  #value = 0;

  private constructor(fd: number) {
    super(fd, 'SwSyncTimeline');
  }

  static open(): SwSyncTimeline {
    const path = swSyncPaths.find((candidate) => existsSync(candidate)) ?? swSyncPaths[0]!;
    return new SwSyncTimeline(openFd(path, 'rw', (code) =>
      code === 'ENOENT'
        ? 'sw_sync needs CONFIG_SW_SYNC and debugfs mounted at /sys/kernel/debug; run inside the project\'s VM: npx dmabuf vm run -- <command>'
        : code === 'EACCES' || code === 'EPERM'
          ? 'debugfs is readable by root only; run as root (the project\'s VM runs commands as root)'
          : undefined,
    ));
  }

  /** The value the timeline has been advanced to. */
  get value(): number {
    return this.#value;
  }

  /**
   * A fence that signals when the timeline reaches `value`. Linux 6.1 checks
   * `name` but does not keep it: the sync_file's name is derived from the
   * driver, timeline and seqno (`sw_sync-node3-2`).
   */
  createFence(value: number, name = 'fence'): SyncFile {
    const fd = this.assertOpen('ioctl(SW_SYNC_IOC_CREATE_FENCE)');
    validate.integer('value', value, 0, 0xffffffff);
    validate.kernelName('name', name, native().constants.SYNC_NAME_MAX_BYTES);
    return SyncFile.adopt(check(native().swSyncCreateFence(fd, value, name), 'ioctl(SW_SYNC_IOC_CREATE_FENCE)'));
  }

  /**
   * The earliest deadline set on a fence of a sw_sync timeline
   * (SW_SYNC_GET_DEADLINE, Linux 6.12+): what SyncFile.setDeadline handed
   * the driver. Undefined when none was set.
   */
  deadlineOf(fence: SyncFile): bigint | undefined {
    const fd = this.assertOpen('ioctl(SW_SYNC_GET_DEADLINE)');
    handleOf<SyncFile>('fence', fence, 'SyncFile', 'a SyncFile');
    const result = native().swSyncGetDeadline(fd, fence.fd);
    if (result === negativeErrno('ENOENT')) return undefined;
    return check(result, 'ioctl(SW_SYNC_GET_DEADLINE)', (code) =>
      code === 'ENOTTY'
        ? `sw_sync reports deadlines from Linux 6.12; this kernel (${kernelRelease()}) does not`
        : code === 'EINVAL' ? 'the fence is not a single sw_sync fence' : undefined,
    ) as bigint;
  }

  /** Advances the timeline, signalling every fence whose value it reaches. */
  advance(count = 1): void {
    const fd = this.assertOpen('ioctl(SW_SYNC_IOC_INC)');
    validate.integer('count', count, 0, 0x7fffffff);
    check(native().swSyncIncrement(fd, count), 'ioctl(SW_SYNC_IOC_INC)');
    this.#value += count;
  }
}

