import { DmaBuf } from './dmabuf';
import { check, codedError, kernelError, negativeErrno } from './errors';
import { closeFd, closeFds, duplicateFds, FdHandle } from './handle';
import { native } from './native';
import { SyncFile } from './sync-file';
import { Memfd } from './udmabuf';
import * as validate from './validate';
import { cancelledError, FdWaiter } from './wait';

export type SocketType = 'stream' | 'seqpacket' | 'datagram';

/** What one recvmsg brought. */
export interface ReceivedBytes {
  bytes: Buffer;
  /** The fds that came with the bytes, close-on-exec, in order: the caller's to close (or wrap with `DmaBuf.fromFd`). */
  fds: number[];
  /** A seqpacket or datagram message longer than `maxBytes`: the kernel discarded its rest (MSG_TRUNC). */
  truncated: boolean;
  /**
   * A stream's peer closed its end: nothing more will come (`bytes` is
   * empty). A seqpacket socket cannot say: recvmsg reads its peer's close
   * as an empty message, every time, so a protocol over one ends by its
   * own messages.
   */
  ended: boolean;
}

export interface FdSocketReceiveOptions {
  /** The most bytes one receive takes; a stream's further bytes wait for the next (default 65536). */
  maxBytes?: number;
  /** Room for fds; more than this in one message is ERR_DMABUF_SOCKET_FDS_LOST (default and most: SCM_MAX_FD, 253). */
  maxFds?: number;
  signal?: AbortSignal;
}

const EAGAIN = negativeErrno('EAGAIN');
const defaultMaxBytes = 64 * 1024;

interface PendingReceive {
  maxBytes: number;
  maxFds: number;
  resolve(received: ReceivedBytes): void;
  reject(error: Error): void;
  /** Removes its abort listener. */
  cleanup(): void;
}

function socketTypeOf(type: number): SocketType | undefined {
  const { SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM } = native().constants;
  return type === SOCK_STREAM ? 'stream' : type === SOCK_SEQPACKET ? 'seqpacket' : type === SOCK_DGRAM ? 'datagram' : undefined;
}

function fdOf(handle: unknown, index: number): number {
  if (DmaBuf.isDmaBuf(handle) || SyncFile.isSyncFile(handle) || Memfd.isMemfd(handle)) return handle.fd;
  if (typeof handle !== 'number') throw validate.typeError(`fds[${index}]`, 'a DmaBuf, a SyncFile, a Memfd or an fd', handle);
  return validate.fd(`fds[${index}]`, handle);
}

/**
 * Bytes with fds (SCM_RIGHTS) on any Unix socket, for protocols that are not
 * FdChannel's (Wayland, PipeWire, a program's own): one `send` is one
 * sendmsg's worth of message, one `receive` one recvmsg, with the checks the
 * channel makes (MSG_CTRUNC, close-on-exec, SCM_MAX_FD). Every call passes
 * MSG_DONTWAIT and waits through libuv, so the socket's own flags are left as
 * the program that shares it set them.
 */
export class FdSocket extends FdHandle {
  readonly type: SocketType;
  readonly #waiter: FdWaiter;
  #sending: Promise<unknown> = Promise.resolve();
  #queuedSends = 0;
  /** Receives not yet answered, in call order: only the first one reads. */
  readonly #receivers: PendingReceive[] = [];
  /** Whether the poll is armed for reading (it stays so between receives), and whether a check to stop it is due. */
  #watching = false;
  #idleCheck = false;
  /** Whether unref() asked the poll never to hold the event loop (#keepAlive). */
  #unrefByCaller = false;
  readonly #receivedFds = new Int32Array(2 + native().constants.SCM_MAX_FD);
  /**
   * Where a receive of up to the default size reads: receives run one at a
   * time and each copies out what it read, so one buffer serves them all
   * (in the VM a 64 KiB allocation took 15 µs or more, twice a recvmsg). A larger
   * `maxBytes` gets a buffer of its own, which is not kept.
   */
  #input: Buffer | undefined;

  private constructor(fd: number, type: SocketType) {
    super(fd, 'FdSocket');
    this.type = type;
    // Drained: the poll stays armed across events (see #onReadable).
    this.#waiter = new FdWaiter(fd, 'FdSocket', { drained: true });
  }

  /** Two connected ends of a new socket pair. */
  static pair(type: SocketType = 'stream'): [FdSocket, FdSocket] {
    const { SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM } = native().constants;
    const kind = validate.oneOf('type', type, ['stream', 'seqpacket', 'datagram']);
    const fds = native().socketPair(kind === 'stream' ? SOCK_STREAM : kind === 'seqpacket' ? SOCK_SEQPACKET : SOCK_DGRAM);
    if (typeof fds === 'number') throw kernelError(fds, 'socketpair');
    return [new FdSocket(fds[0], kind), new FdSocket(fds[1], kind)];
  }

  /**
   * A Unix socket the program already has. `dup: true` (for a socket another
   * part of the program goes on using, such as a `net.Socket`'s) leaves that
   * fd alone and owns a duplicate; otherwise this takes the fd over.
   */
  static fromFd(fd: number, options?: { dup?: boolean }): FdSocket {
    validate.fd('fd', fd);
    const dup = validate.optionalBoolean('options.dup', validate.options<{ dup: boolean }>('options', options).dup) ?? false;
    const info = native().socketInfo(fd);
    if (info === negativeErrno('ENOTSOCK')) throw validate.invalidValue('fd', 'a Unix socket', `fd ${fd}, which is not a socket`);
    if (typeof info === 'number') throw kernelError(info, 'getsockopt');
    const [domain, rawType] = info;
    if (domain !== native().constants.AF_UNIX) throw validate.invalidValue('fd', 'a Unix socket (AF_UNIX)', `fd ${fd}, a socket of domain ${domain}`);
    const type = socketTypeOf(rawType);
    if (type === undefined) throw validate.invalidValue('fd', 'a stream, seqpacket or datagram socket', `fd ${fd}, a socket of type ${rawType}`);
    return new FdSocket(dup ? check(native().dupCloexec(fd), 'fcntl(F_DUPFD_CLOEXEC)') : fd, type);
  }

  /**
   * Sends `bytes` with `fds` (DmaBufs, SyncFiles, Memfds or fd numbers, which stay
   * the caller's). A stream takes every byte, over several sendmsg calls if
   * it must (the fds go with the first); a seqpacket or datagram socket
   * takes the whole message in one, or fails (EMSGSIZE). Sends run one at a
   * time, in call order.
   */
  send(bytes: Uint8Array, fds: readonly (DmaBuf | SyncFile | Memfd | number)[] = []): Promise<void> {
    this.assertOpen('sendmsg');
    if (!(bytes instanceof Uint8Array)) throw validate.typeError('bytes', 'a Uint8Array or Buffer', bytes);
    validate.array('fds', fds);
    if (fds.length > native().constants.SCM_MAX_FD) {
      throw validate.invalidValue('fds', `at most ${native().constants.SCM_MAX_FD} fds in one message (SCM_MAX_FD)`, `${fds.length} fds`);
    }
    // A stream carries ancillary data only with a byte: fds sent with none would be dropped.
    if (this.type === 'stream' && bytes.length === 0 && fds.length > 0) throw validate.invalidValue('bytes', 'at least one byte to carry the fds on a stream socket', 'an empty buffer');
    const numbers = fds.map(fdOf);
    const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let offset = 0;
    if (this.#queuedSends === 0) {
      // Nothing queued: the first sendmsg goes out in this call, while the
      // caller's handles are surely open and its bytes as given.
      const sent = native().sendFds(this.fd, view, 0, view.length, numbers);
      if (sent === view.length) return Promise.resolve();
      if (sent < 0 && sent !== EAGAIN) return Promise.reject(this.#sendError(sent, view.length));
      offset = Math.max(sent, 0);
    }
    // What waits is the message's own: a copy of the bytes left, duplicates
    // of fds not yet sent (the caller may close a handle once send() returns).
    const rest = Buffer.from(view.subarray(offset));
    const queuedFds = offset === 0 ? duplicateFds(numbers) : [];
    this.#queuedSends += 1;
    this.#keepAlive();
    const sending = this.#sending.then(() => this.#send(rest, queuedFds, view.length)).finally(() => {
      this.#queuedSends -= 1;
      this.#keepAlive();
    });
    this.#sending = sending.catch(() => undefined);
    return sending;
  }

  async #send(buffer: Buffer, fds: number[], messageLength: number): Promise<void> {
    let offset = 0;
    try {
      for (;;) {
        const sent = native().sendFds(this.assertOpen('sendmsg'), buffer, offset, buffer.length - offset, fds);
        if (sent === EAGAIN) {
          await this.#waiter.wait(native().Poller.WRITABLE, 'sendmsg', { wakeOnError: true });
          continue;
        }
        if (sent < 0) throw this.#sendError(sent, messageLength);
        offset += sent;
        fds = closeFds(fds);
        if (offset >= buffer.length) return;
      }
    } finally {
      closeFds(fds);
    }
  }

  #sendError(result: number, length: number): Error {
    return kernelError(result, 'sendmsg', {
      hint: result === negativeErrno('EMSGSIZE') ? `a ${this.type} message of ${length} bytes is more than the socket takes in one` : result === negativeErrno('EPIPE') ? 'the peer closed its end' : undefined,
    });
  }

  /**
   * One recvmsg's worth: waits (in the event loop) until the socket has
   * something. Receives run one at a time, in call order.
   */
  receive(options?: FdSocketReceiveOptions): Promise<ReceivedBytes> {
    this.assertOpen('recvmsg');
    const opts = validate.options<FdSocketReceiveOptions>('options', options);
    const maxBytes = opts.maxBytes === undefined ? defaultMaxBytes : validate.integer('options.maxBytes', opts.maxBytes, 1, 2 ** 31 - 1);
    const maxFds = opts.maxFds === undefined ? native().constants.SCM_MAX_FD : validate.integer('options.maxFds', opts.maxFds, 0, native().constants.SCM_MAX_FD);
    const signal = validate.optionalSignal('options.signal', opts.signal);
    signal?.throwIfAborted();
    if (this.#receivers.length === 0) {
      // Nothing ahead of it: what is already there is read in this call.
      try {
        const received = this.#read(maxBytes, maxFds);
        if (received) return Promise.resolve(received);
      } catch (error) {
        return Promise.reject(error as Error);
      }
    }
    return new Promise<ReceivedBytes>((resolve, reject) => {
      const receiver: PendingReceive = { maxBytes, maxFds, resolve, reject, cleanup: () => undefined };
      if (signal) {
        // A receive still waiting gives up at once, and reads nothing: reads happen only at the head, in the poll's callback.
        const onAbort = () => {
          const at = this.#receivers.indexOf(receiver);
          if (at < 0) return;
          this.#receivers.splice(at, 1);
          this.#keepAlive();
          this.#stopWhenIdle();
          reject(signal.reason as Error);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        receiver.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      this.#receivers.push(receiver);
      this.#keepAlive();
      // The poll stays armed from one receive to the next: stopping and
      // arming it again costs two epoll_ctl calls per message. It stops
      // when it finds nobody waiting (#onReadable), or a turn of the event
      // loop after the last receive was answered (#stopWhenIdle).
      if (!this.#watching) {
        this.#watching = true;
        this.#waiter.watchReadable(() => this.#onReadable());
      }
    });
  }

  /** The poll's callback: reads for the waiting receives, in order, until the socket is empty. */
  #onReadable(): void {
    if (this.#receivers.length === 0) {
      this.#stopReading();
      return;
    }
    try {
      while (this.#receivers.length > 0 && !this.closed) {
        const head = this.#receivers[0]!;
        let received: ReceivedBytes | undefined;
        try {
          received = this.#read(head.maxBytes, head.maxFds);
        } catch (error) {
          this.#receivers.shift();
          head.cleanup();
          head.reject(error as Error);
          continue;
        }
        if (!received) return;
        this.#receivers.shift();
        head.cleanup();
        head.resolve(received);
      }
    } finally {
      this.#keepAlive();
      this.#stopWhenIdle();
    }
  }

  #stopReading(): void {
    this.#watching = false;
    this.#waiter.stopWatching();
  }

  /**
   * An armed poll holds this socket (the native poll keeps its callback
   * while active), so a socket dropped without close() would never reach
   * the leak registry. A receive made in the answered one's continuation
   * comes before the check, which leaves the poll armed; otherwise it stops.
   */
  #stopWhenIdle(): void {
    if (this.#receivers.length > 0 || !this.#watching || this.#idleCheck) return;
    this.#idleCheck = true;
    setImmediate(() => {
      this.#idleCheck = false;
      if (this.#receivers.length === 0 && this.#watching && !this.closed) this.#stopReading();
    }).unref();
  }

  /** One recvmsg: what came, or undefined when nothing is there (EAGAIN). */
  #read(maxBytes: number, maxFds: number): ReceivedBytes | undefined {
    const { MSG_CTRUNC, MSG_TRUNC, SCM_MAX_FD } = native().constants;
    const buffer = maxBytes <= defaultMaxBytes ? (this.#input ??= Buffer.allocUnsafe(defaultMaxBytes)) : Buffer.allocUnsafe(maxBytes);
    const out = maxFds === SCM_MAX_FD ? this.#receivedFds : new Int32Array(2 + maxFds);
    const received = native().recvFds(this.assertOpen('recvmsg'), buffer, 0, maxBytes, out);
    if (received === EAGAIN) return undefined;
    if (received < 0) throw kernelError(received, 'recvmsg', { hint: received === negativeErrno('ECONNRESET') ? 'the peer closed its end with data unread' : undefined });
    // A loop, not Array.from(out.subarray(...)): V8 copies a typed array into an array through its generic property path.
    const fds: number[] = [];
    for (let index = 0; index < out[0]!; index += 1) fds.push(out[2 + index]!);
    const bytes = Buffer.from(buffer.subarray(0, received));
    if (out[1]! & MSG_CTRUNC) {
      for (const fd of fds) closeFd(fd);
      throw codedError('ERR_DMABUF_SOCKET_FDS_LOST', bytes, fds.length);
    }
    return { bytes, fds, truncated: (out[1]! & MSG_TRUNC) !== 0, ended: this.type === 'stream' && received === 0 };
  }

  /**
   * The armed poll holds the event loop only while a receive waits or a
   * send is queued, and never after unref(): a program that has stopped
   * receiving exits as it did when the poll was stopped after each receive.
   */
  #keepAlive(): void {
    if (!this.#unrefByCaller && (this.#receivers.length > 0 || this.#queuedSends > 0)) this.#waiter.ref();
    else this.#waiter.unref();
  }

  /** Lets the process exit while a receive waits. */
  unref(): this {
    this.#unrefByCaller = true;
    this.#keepAlive();
    return this;
  }

  ref(): this {
    this.#unrefByCaller = false;
    this.#keepAlive();
    return this;
  }

  protected override releaseResources(): void {
    this.#waiter.close('close');
    const closed = cancelledError('close', 'FdSocket');
    for (const receiver of this.#receivers.splice(0)) {
      receiver.cleanup();
      receiver.reject(closed);
    }
  }
}
