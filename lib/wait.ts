import { errnoError, kernelError, negativeErrno } from './errors';
import { native, type NativePoller } from './native';

export interface WaitOptions {
  /** Give up after this many milliseconds (the promise rejects with code 'ETIME'). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface InternalWaitOptions extends WaitOptions {
  /**
   * libuv reports EPOLLERR as a UV_EBADF status, not as an event. A caller
   * that retries its syscall (a socket) learns the real errno from it, so
   * it asks to be woken instead of rejected.
   */
  wakeOnError?: boolean;
}

interface PendingWait {
  events: number;
  wakeOnError: boolean;
  resolve(events: number): void;
  reject(error: Error): void;
  cleanup(): void;
}

function timeoutError(syscall: string, timeoutMs: number): Error {
  return errnoError('ETIME', syscall, { hint: `not signalled within ${timeoutMs} ms` });
}

/** What a wait (or a receive waiting on the poll) gets when its handle is closed under it. */
export function cancelledError(syscall: string, what: string): Error {
  return errnoError('ECANCELED', syscall, { hint: `${what} was closed while waiting` });
}

/**
 * Waits for readiness of one fd through a single libuv poll handle, however
 * many waits are pending: libuv allows one handle per fd. Each wait names the
 * events it needs; the poll is armed for the union and re-armed after each
 * event for the waits still pending.
 *
 * `drained`: the owner empties the fd (a socket it reads until EAGAIN) after
 * every event and waits again in the same turn. The poll then stays armed
 * across events and is stopped only when, once the woken code has run, no
 * wait is left: a message costs no epoll_ctl removal and re-add.
 */
export class FdWaiter {
  #poller: NativePoller | undefined;
  #pending = new Set<PendingWait>();
  #closed = false;
  #armedEvents = 0;
  #unref = false;
  readonly #drained: boolean;
  /** Called from the poll callback itself while set: see watchReadable(). */
  #reader: ((status: number) => void) | undefined;
  #receiveInto: { buffer: Buffer; io: Int32Array } | undefined;

  constructor(
    private readonly fd: number,
    private readonly what: string,
    options: { drained?: boolean } = {},
  ) {
    this.#drained = options.drained ?? false;
  }

  wait(events: number, syscall: string, options: InternalWaitOptions = {}): Promise<number> {
    const { timeoutMs, signal, wakeOnError = false } = options;
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise<number>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        this.#remove(pending);
        reject(signal!.reason as Error);
      };
      const pending: PendingWait = {
        events,
        wakeOnError,
        resolve,
        reject,
        cleanup: () => {
          if (timer) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        },
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.#remove(pending);
          reject(timeoutError(syscall, timeoutMs));
        }, timeoutMs);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.add(pending);
      this.#arm();
    });
  }

  /**
   * Keeps the poll armed for reading and calls `onReadable` from libuv's
   * callback itself, with libuv's status (0, or -errno when it reported an
   * error: the reader's next syscall learns the real one). A reader that
   * drains the fd on each call needs no promise and no microtask per event,
   * which is most of what a message costs an event-loop program.
   */
  watchReadable(onReadable: (status: number) => void): void {
    this.#reader = onReadable;
    this.#arm();
  }

  stopWatching(): void {
    this.#reader = undefined;
    this.#arm();
  }

  /**
   * Has the poll make the reader's recvmsg before calling it (the native
   * Poller's receiveInto): for a socket, one call into JavaScript per
   * message and none out of it. Called again when the buffer grows.
   */
  receiveInto(buffer: Buffer, io: Int32Array): void {
    this.#receiveInto = { buffer, io };
    this.#poller?.receiveInto(buffer, io);
  }

  /** The poller's read, made now (receiveInto's layout); -EBADF once closed. */
  receiveNow(): number {
    if (this.#closed) return negativeErrno('EBADF');
    this.#ensurePoller();
    return this.#poller!.receiveNow();
  }

  #ensurePoller(): void {
    if (this.#poller) return;
    this.#poller = new (native().Poller)(this.fd, (status, ready) => this.#onEvent(status, ready));
    if (this.#unref) this.#poller.unref();
    if (this.#receiveInto) this.#poller.receiveInto(this.#receiveInto.buffer, this.#receiveInto.io);
  }

  #remove(pending: PendingWait): void {
    pending.cleanup();
    this.#pending.delete(pending);
    this.#arm();
  }

  #arm(): void {
    if (this.#closed) return;
    let events = this.#reader ? native().Poller.READABLE : 0;
    for (const pending of this.#pending) events |= pending.events;
    if (events === this.#armedEvents) return;
    if (events === 0) {
      this.#armedEvents = 0;
      this.#poller?.stop();
      return;
    }
    this.#ensurePoller();
    const status = this.#poller!.start(events, this.#drained);
    this.#armedEvents = status === 0 ? events : 0;
    if (status !== 0) this.#onEvent(status, 0);
  }

  #onEvent(status: number, ready: number): void {
    // The native poll stopped itself unless it stays armed (and it never
    // stays armed after an error).
    if (!this.#drained || status !== 0) this.#armedEvents = 0;
    let woken = false;
    for (const pending of this.#pending.size > 0 ? [...this.#pending] : []) {
      if (status === 0 && (ready & pending.events) === 0) continue;
      woken = true;
      pending.cleanup();
      this.#pending.delete(pending);
      if (status === 0 || pending.wakeOnError) pending.resolve(ready);
      else pending.reject(kernelError(status, 'poll', { hint: `libuv reported the error polling ${this.what}` }));
    }
    if (this.#reader && (status !== 0 || ready & native().Poller.READABLE)) this.#reader(status);
    // The woken waits resume in microtasks queued above, and a drained fd's
    // owner waits again in them; deciding after they ran keeps the poll armed.
    if (this.#drained && woken) queueMicrotask(() => this.#arm());
    else this.#arm();
  }

  /** Lets the process exit while this waits. */
  unref(): void {
    // Idempotent, so an owner may call it whenever it decides, without a napi call each time.
    if (this.#unref) return;
    this.#unref = true;
    this.#poller?.unref();
  }

  ref(): void {
    if (!this.#unref) return;
    this.#unref = false;
    this.#poller?.ref();
  }

  /** Stops polling and rejects every pending wait; the fd may be closed right after. */
  close(syscall: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reader = undefined;
    this.#poller?.close();
    this.#poller = undefined;
    this.#armedEvents = 0;
    for (const pending of this.#pending) {
      pending.cleanup();
      pending.reject(cancelledError(syscall, this.what));
    }
    this.#pending.clear();
  }
}
