import { DmaBuf, dmaBufRefusal } from './dmabuf';
import { check, codedError, errnoError, kernelError, negativeErrno } from './errors';
import { EventedFdHandle } from './events';
import { closeFd, closeFds, duplicateFds } from './handle';
import { native } from './native';
import { SyncFile, syncFileRefusal } from './sync-file';
import * as validate from './validate';
import { FdWaiter } from './wait';

/** What a message can carry besides its JSON: dma-bufs, sync_files and plain fds (numbers). */
export type Handle = DmaBuf | SyncFile | number;

export interface ReceivedMessage<T = unknown> {
  message: T;
  /** The handles sent, in order: DmaBuf and SyncFile objects this process now owns, plain fds as numbers it must close. */
  handles: Handle[];
}

type HandleKind = 'dmabuf' | 'syncfile' | 'fd';

export interface FdChannelEvents {
  message: [received: ReceivedMessage];
  /** A message refused (its handles closed; the channel goes on), or the channel failed (then 'close' follows). */
  error: [error: Error];
  close: [];
}

export interface FdChannelServerEvents {
  connection: [channel: FdChannel];
  error: [error: Error];
}

// A frame: magic, JSON length, handle count, then the JSON. The handles'
// fds travel as SCM_RIGHTS on the sendmsg that carries the header's first byte.
const frameMagic = 0x44424348; // "DBCH"
const headerSize = 12;
/** The largest JSON a message may carry. */
export const maxMessageBytes = 64 * 1024 * 1024;

const EAGAIN = negativeErrno('EAGAIN');
const ECONNRESET = negativeErrno('ECONNRESET');

function sendError(result: number): Error {
  return kernelError(result, 'sendmsg', { hint: result === negativeErrno('EPIPE') ? 'the peer closed the channel' : undefined });
}

function peerClosedError(): Error {
  return errnoError('ECONNRESET', 'recvmsg', { hint: 'the peer closed the channel' });
}

function kindOf(handle: Handle, index: number): { kind: HandleKind; fd: number } {
  if (DmaBuf.isDmaBuf(handle)) return { kind: 'dmabuf', fd: handle.fd };
  if (SyncFile.isSyncFile(handle)) return { kind: 'syncfile', fd: handle.fd };
  if (typeof handle !== 'number') throw validate.typeError(`handles[${index}]`, 'a DmaBuf, a SyncFile or an fd', handle);
  return { kind: 'fd', fd: validate.fd(`handles[${index}]`, handle) };
}

/** Why a received fd is not the kind its frame declared, or undefined: DmaBuf.fromFd's and SyncFile.fromFd's checks, from what the read found. */
function checkReceived(kind: HandleKind, received: ReceivedFd): Error | undefined {
  if (kind === 'fd') return undefined;
  return kind === 'dmabuf' ? dmaBufRefusal(received.fd, received.magic) : syncFileRefusal(received.fd);
}

interface Outgoing {
  frame: Buffer;
  offset: number;
  /** Duplicates of the caller's fds until they are sent: the caller may close a handle once send() returns. */
  fds: number[];
  resolve(): void;
  reject(error: Error): void;
}

/**
 * The message's plain fds become the caller's: the addon stops counting them
 * as this environment's, or a worker's teardown would close numbers the
 * caller may have closed and reused since.
 */
function handOver(received: ReceivedMessage): ReceivedMessage {
  for (const handle of received.handles) if (typeof handle === 'number') native().disownFd(handle);
  return received;
}

/** A received fd, as the poller's read found it: its file system's magic (0 if fstatfs failed) and size. */
interface ReceivedFd {
  fd: number;
  magic: number;
  size: number;
}

interface FdBatch {
  fds: ReceivedFd[];
  start: number;
  end: number;
}

const handleKinds: readonly string[] = ['dmabuf', 'syncfile', 'fd'] satisfies HandleKind[];

function isHandleKind(kind: unknown): kind is HandleKind {
  return handleKinds.includes(kind as string);
}

interface PendingReceive {
  resolve(received: ReceivedMessage): void;
  reject(error: Error): void;
}

/**
 * A Unix stream socket that carries JSON messages with dma-bufs, sync_files
 * and plain fds (SCM_RIGHTS). Non-blocking and driven by libuv polling.
 * Messages go to pending `receive()` calls first, then to 'message'
 * listeners, and wait in a queue when there are neither.
 *
 * Events ({@link FdChannelEvents}): 'message', 'error' (a refused message,
 * or the peer gone mid-message), 'close'. A refused message with no 'error'
 * listener rejects the `receive()` it would have resolved; with neither,
 * the next `receive()`; with only 'message' listeners it is a process
 * warning. The channel stays open after a refused message either way.
 */
export class FdChannel extends EventedFdHandle<FdChannelEvents> {
  #waiter: FdWaiter;
  #outgoing: Outgoing[] = [];
  #writing = false;
  #input = Buffer.alloc(64 * 1024);
  /** Where a small frame is written before its sendmsg. */
  readonly #scratch = Buffer.allocUnsafe(4096);
  #inputLength = 0;
  /**
   * Fds not yet taken by a frame, with the stream offsets of the read that
   * brought them: Linux hands a sendmsg's fds to the read of its first
   * byte, so a frame may take only the fds of the read that covered its
   * first byte (docs/fd-channel-wire-format.md).
   */
  #fdBatches: FdBatch[] = [];
  /** Bytes read from the stream so far, and the stream offset of the next frame's first byte. */
  #streamOffset = 0;
  #frameOffset = 0;
  /** Messages nobody took yet, and refused messages that wait for a `receive()` to reject. */
  #received: (ReceivedMessage | Error)[] = [];
  /** Why the channel failed, for every `receive()` after it. */
  #failure: Error | undefined;
  #receivers: PendingReceive[] = [];
  #peerClosed = false;
  /** The poller's read: offset in, then bytes, fd count, flags and the fds (lib/native.ts). */
  readonly #io: Int32Array;

  private constructor(fd: number, options: { maxFdsPerRead?: number } = {}) {
    super(fd, 'FdChannel', ['message', 'error', 'close']);
    this.#waiter = new FdWaiter(fd, 'FdChannel', { drained: true });
    this.#io = new Int32Array(4 + native().Poller.FD_STRIDE * (options.maxFdsPerRead ?? native().constants.SCM_MAX_FD));
    this.onListenersChanged((event, added) => {
      if (event === 'message' && added) this.#deliver();
    });
    this.#waiter.receiveInto(this.#input, this.#io);
    this.#waiter.watchReadable(() => this.#onReadable());
  }

  /** Two connected ends. Hand one to a child with `spawn(..., { stdio: [..., end.fd] })`, then close it here. */
  static pair(): [FdChannel, FdChannel] {
    const fds = native().socketPair(native().constants.SOCK_STREAM);
    if (typeof fds === 'number') throw kernelError(fds, 'socketpair');
    return [new FdChannel(fds[0]!), new FdChannel(fds[1]!)];
  }

  /**
   * Takes over an fd that is one end of a Unix stream socket: in a child,
   * the end its parent put in its stdio (`FdChannel.fromFd(3)`).
   * `maxFdsPerRead` is for tests of lost fds (MSG_CTRUNC).
   */
  static fromFd(fd: number, options?: { maxFdsPerRead?: number }): FdChannel {
    validate.fd('fd', fd);
    const opts = validate.options<{ maxFdsPerRead: number }>('options', options);
    if (opts.maxFdsPerRead !== undefined) validate.integer('options.maxFdsPerRead', opts.maxFdsPerRead, 0, native().constants.SCM_MAX_FD);
    return new FdChannel(fd, opts);
  }

  /**
   * Connects to a `FdChannelServer`: a path, or `@name` for Linux's abstract
   * namespace. While the listener's backlog is full the connection waits,
   * without blocking the event loop, until the listener accepts; `signal`
   * gives up (the promise rejects with its reason).
   */
  static async connect(path: string, options?: { signal?: AbortSignal }): Promise<FdChannel> {
    const address = socketAddress(path);
    const signal = validate.optionalSignal('options.signal', validate.options<{ signal: AbortSignal }>('options', options).signal);
    signal?.throwIfAborted();
    const fd = check(native().unixSocket(), 'socket');
    try {
      // A full backlog is EAGAIN, with no connection in progress and no
      // readiness to wait for (native/fd_pass.cc): try again, backing off.
      for (let delayMs = 1; ; delayMs = Math.min(delayMs * 2, connectRetryMaxMs)) {
        const status = native().unixConnect(fd, address);
        if (status === 0) return new FdChannel(fd);
        if (status !== EAGAIN) {
          throw kernelError(status, 'connect', { hint: status === negativeErrno('ENOENT') || status === negativeErrno('ECONNREFUSED') ? `nothing listens at ${path}` : undefined });
        }
        await delay(delayMs, signal);
      }
    } catch (error) {
      closeFd(fd);
      throw error;
    }
  }

  /** Listens at a path, or `@name` for the abstract namespace. */
  static listen(path: string, options?: { backlog?: number }): FdChannelServer {
    return FdChannelServer.listen(path, options);
  }

  /**
   * Sends a JSON-serialisable message with handles. Resolves once the whole
   * message is in the socket; the handles stay the sender's (the kernel gave
   * the receiver its own references).
   */
  send(message: unknown, handles: readonly Handle[] = []): Promise<void> {
    this.assertOpen('sendmsg');
    validate.array('handles', handles);
    if (handles.length > native().constants.SCM_MAX_FD) {
      throw validate.invalidValue('handles', `at most ${native().constants.SCM_MAX_FD} handles in one message (SCM_MAX_FD)`, `${handles.length} handles`);
    }
    const fds: number[] = [];
    let kinds = '';
    for (let index = 0; index < handles.length; index += 1) {
      const { kind, fd } = kindOf(handles[index]!, index);
      fds.push(fd);
      kinds += index === 0 ? `"${kind}"` : `,"${kind}"`;
    }
    // The frame's JSON is {"message":...,"kinds":[...]}, written as a string
    // around the message's own: no wrapper object for JSON.stringify to walk.
    const body = JSON.stringify(message);
    const json = body === undefined ? `{"kinds":[${kinds}]}` : `{"message":${body},"kinds":[${kinds}]}`;
    // A JSON that surely fits (3 bytes per UTF-16 unit at most) is written
    // into the channel's scratch buffer, which is copied only if the frame
    // has to wait; a larger one gets a buffer of its own.
    const scratch = json.length * 3 <= this.#scratch.length - headerSize ? this.#scratch : undefined;
    const jsonLength = scratch ? scratch.write(json, headerSize) : Buffer.byteLength(json);
    if (jsonLength > maxMessageBytes) throw validate.invalidValue('message', `at most ${maxMessageBytes} bytes of JSON`, `${jsonLength} bytes`);
    const frame = scratch ? scratch.subarray(0, headerSize + jsonLength) : Buffer.allocUnsafe(headerSize + jsonLength);
    frame.writeUInt32LE(frameMagic, 0);
    frame.writeUInt32LE(jsonLength, 4);
    frame.writeUInt32LE(fds.length, 8);
    if (!scratch) frame.write(json, headerSize);
    let offset = 0;
    if (this.#outgoing.length === 0) {
      // Nothing queued: the common case goes out in this call, with no queue.
      const sent = this.#sendPart(frame, 0, fds);
      if (sent === frame.length) return Promise.resolve();
      if (sent < 0 && sent !== EAGAIN) return Promise.reject(sendError(sent));
      offset = Math.max(sent, 0);
    }
    const queuedFds = offset === 0 ? duplicateFds(fds) : [];
    const kept = scratch ? Buffer.from(frame) : frame;
    return new Promise<void>((resolve, reject) => {
      this.#outgoing.push({ frame: kept, offset, fds: queuedFds, resolve, reject });
      void this.#flush();
    });
  }

  /** The next message; rejects if the channel closes first. */
  receive<T = unknown>(): Promise<ReceivedMessage<T>> {
    this.assertOpen('recvmsg');
    const queued = this.#received.shift();
    if (queued instanceof Error) return Promise.reject(queued);
    if (queued) return Promise.resolve(handOver(queued) as ReceivedMessage<T>);
    if (this.#peerClosed) return Promise.reject(this.#failure ?? peerClosedError());
    return new Promise<ReceivedMessage<T>>((resolve, reject) => {
      this.#receivers.push({ resolve: resolve as (received: ReceivedMessage) => void, reject });
    });
  }

  /** Lets the process exit while this channel waits for messages. */
  unref(): this {
    this.#waiter.unref();
    return this;
  }

  ref(): this {
    this.#waiter.ref();
    return this;
  }

  /** The fds go with the frame's first byte and never again. */
  #sendPart(frame: Buffer, offset: number, fds: number[]): number {
    return native().sendFds(this.fd, frame, offset, frame.length - offset, offset === 0 ? fds : []);
  }

  async #flush(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (this.#outgoing.length > 0 && !this.closed) {
        const next = this.#outgoing[0]!;
        const sent = this.#sendPart(next.frame, next.offset, next.fds);
        if (sent === EAGAIN) {
          await this.#waiter.wait(native().Poller.WRITABLE, 'sendmsg', { wakeOnError: true });
          continue;
        }
        if (sent < 0) {
          this.#outgoing.shift();
          closeFds(next.fds);
          next.reject(sendError(sent));
          continue;
        }
        next.offset += sent;
        if (sent > 0) next.fds = closeFds(next.fds);
        if (next.offset === next.frame.length) {
          this.#outgoing.shift();
          next.resolve();
        }
      }
    } catch (error) {
      for (const pending of this.#outgoing.splice(0)) {
        closeFds(pending.fds);
        pending.reject(error as Error);
      }
    } finally {
      this.#writing = false;
    }
  }

  /**
   * Runs in the poll callback whenever the socket is readable: reads until
   * the socket is drained, parses and delivers what came. No promise stands
   * between the kernel's readiness and the message.
   */
  #onReadable(): void {
    const io = this.#io;
    const { NOT_READ, FD_STRIDE } = native().Poller;
    try {
      for (let made = io[1]!; !this.closed && !this.#peerClosed; made = NOT_READ) {
        // The poll's own read, or (after an error status, or a full buffer) one made now.
        const bytes = made !== NOT_READ ? made : this.#waiter.receiveNow();
        io[1] = NOT_READ;
        if (bytes === EAGAIN) return;
        // A peer that ends with unread input resets the connection: that is
        // the peer gone, as an end of stream is, not a failure of this side.
        const peerGone = bytes === 0 || bytes === ECONNRESET;
        if (bytes < 0 && !peerGone) throw kernelError(bytes, 'recvmsg');
        if (bytes > 0 && io[2]! > 0) {
          const fds: ReceivedFd[] = [];
          for (let index = 0, at = 4; index < io[2]!; index += 1, at += FD_STRIDE) {
            fds.push({ fd: io[at]!, magic: io[at + 1]! >>> 0, size: (io[at + 2]! >>> 0) + (io[at + 3]! >>> 0) * 2 ** 32 });
          }
          this.#fdBatches.push({ fds, start: this.#streamOffset, end: this.#streamOffset + bytes });
        }
        if (bytes > 0) this.#streamOffset += bytes;
        if (bytes > 0 && io[3]! & native().constants.MSG_CTRUNC) {
          // The kernel dropped fds it had no room for: the frame they belong
          // to can never be whole again.
          this.#fail(codedError('ERR_DMABUF_CHANNEL_FDS_LOST'));
          return;
        }
        if (peerGone) {
          this.#peerClosed = true;
          this.#waiter.stopWatching();
          const leftFds = this.#fdBatches.reduce((sum, batch) => sum + batch.fds.length, 0);
          if (this.#inputLength > 0 || leftFds > 0) {
            this.#fail(codedError('ERR_DMABUF_CHANNEL_TRUNCATED', this.#inputLength, leftFds));
          } else {
            this.#endOfStream();
          }
          return;
        }
        const drained = this.#inputLength + bytes < this.#input.length;
        this.#inputLength += bytes;
        this.#parseFrames();
        this.#readyToRead();
        // A stream socket that gave less than asked for was empty a moment
        // ago: the (level-triggered) poll calls again when more comes,
        // without a recvmsg spent on EAGAIN.
        if (drained) return;
      }
    } catch (error) {
      if (!this.closed) this.#fail(error as Error);
    } finally {
      if (!this.closed) this.#readyToRead();
    }
  }

  /** The next read goes after what is kept, into room that is never empty (a read of 0 bytes would look like the end of the stream). */
  #readyToRead(): void {
    if (this.#inputLength === this.#input.length) this.#growInput(this.#input.length * 2);
    this.#io[0] = this.#inputLength;
  }

  /** Room for `size` bytes of input, keeping what was read. */
  #growInput(size: number): void {
    const grown = Buffer.alloc(size);
    this.#input.copy(grown, 0, 0, this.#inputLength);
    this.#input = grown;
    this.#waiter.receiveInto(grown, this.#io);
  }

  #parseFrames(): void {
    while (this.#inputLength >= headerSize && !this.closed) {
      if (this.#input.readUInt32LE(0) !== frameMagic) {
        this.#fail(codedError('ERR_DMABUF_CHANNEL_PROTOCOL', 'the peer sent bytes without the frame magic'));
        return;
      }
      const jsonLength = this.#input.readUInt32LE(4);
      const handleCount = this.#input.readUInt32LE(8);
      if (jsonLength > maxMessageBytes || handleCount > native().constants.SCM_MAX_FD) {
        this.#fail(codedError('ERR_DMABUF_CHANNEL_PROTOCOL', `a frame announced ${jsonLength} bytes and ${handleCount} handles, beyond the limits`));
        return;
      }
      if (this.#inputLength < headerSize + jsonLength) {
        if (this.#input.length < headerSize + jsonLength) this.#growInput(headerSize + jsonLength);
        break;
      }
      const json = this.#input.toString('utf8', headerSize, headerSize + jsonLength);
      const fds = this.#takeFds(handleCount);
      if (this.#inputLength > headerSize + jsonLength) this.#input.copy(this.#input, 0, headerSize + jsonLength, this.#inputLength);
      this.#inputLength -= headerSize + jsonLength;
      this.#frameOffset += headerSize + jsonLength;
      if (typeof fds === 'string') this.#refuse(codedError('ERR_DMABUF_CHANNEL_PROTOCOL', fds));
      else this.#accept(json, fds);
    }
    if (!this.closed) this.#dropStrayFds();
  }

  /**
   * The frame's fds, from the read that covered its first byte; a frame
   * that came with fewer than it announced is refused (its fds closed),
   * since no later read can bring them. A string says why.
   */
  #takeFds(count: number): ReceivedFd[] | string {
    this.#dropStrayFds();
    const batch = this.#fdBatches[0];
    const covering = batch !== undefined && batch.start <= this.#frameOffset ? batch : undefined;
    const available = covering?.fds.length ?? 0;
    if (available < count) {
      if (covering) for (const item of this.#fdBatches.shift()!.fds) closeFd(item.fd);
      return `a frame announced ${count} handles and came with ${available} fds; they were closed`;
    }
    const fds = count === 0 ? [] : covering!.fds.splice(0, count);
    if (covering?.fds.length === 0) this.#fdBatches.shift();
    return fds;
  }

  /** Fds of a read whose every byte is in frames already taken belong to no frame: a sender that sent more than it announced. */
  #dropStrayFds(): void {
    while (this.#fdBatches.length > 0 && this.#fdBatches[0]!.end <= this.#frameOffset) {
      const stray = this.#fdBatches.shift()!.fds;
      if (stray.length === 0) continue;
      for (const item of stray) closeFd(item.fd);
      this.#refuse(codedError('ERR_DMABUF_CHANNEL_PROTOCOL', `${stray.length} fds came that no frame announced; they were closed`));
    }
  }

  #accept(json: string, fds: ReceivedFd[]): void {
    let parsed: { message: unknown; kinds: HandleKind[] } | undefined;
    let problem: string | undefined;
    try {
      parsed = JSON.parse(json) as { message: unknown; kinds: HandleKind[] };
      if (!Array.isArray(parsed.kinds) || parsed.kinds.length !== fds.length) problem = 'its handle kinds do not match the fds';
      else if (!parsed.kinds.every(isHandleKind)) problem = `a handle kind is none of ${handleKinds.join(', ')} (kinds ${JSON.stringify(parsed.kinds)})`;
    } catch (error) {
      problem = `its JSON does not parse (${(error as Error).message})`;
    }
    if (parsed === undefined || problem !== undefined) {
      for (const item of fds) closeFd(item.fd);
      this.#refuse(codedError('ERR_DMABUF_CHANNEL_PROTOCOL', problem!));
      return;
    }
    // Each fd is checked before it is wrapped: one that is not what the
    // sender declared refuses the whole message, and every fd of it is closed.
    const handles: Handle[] = [];
    for (let index = 0; index < fds.length; index += 1) {
      const kind = parsed.kinds[index];
      const problem = checkReceived(kind!, fds[index]!);
      if (problem) {
        for (const item of fds) closeFd(item.fd);
        this.#refuse(codedError('ERR_DMABUF_CHANNEL_BAD_HANDLE', index, kind, problem.message));
        return;
      }
    }
    // The poller's read made the addon count every fd as this
    // environment's: a handle takes that over, and a plain fd stays the
    // channel's (closed if a worker ends with it queued) until delivered.
    for (let index = 0; index < fds.length; index += 1) {
      const { fd, size } = fds[index]!;
      const kind = parsed.kinds[index];
      handles.push(kind === 'dmabuf' ? DmaBuf.adopt(fd, size, { owned: true }) : kind === 'syncfile' ? SyncFile.adopt(fd, { owned: true }) : fd);
    }
    this.#received.push({ message: parsed.message, handles });
    this.#deliver();
  }

  /** A message that will never be delivered goes to whoever would have had it. */
  #refuse(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else if (this.#receivers.length > 0) this.#receivers.shift()!.reject(error);
    else if (this.listenerCount('message') > 0) this.emitError(error);
    else this.#received.push(error);
  }

  #deliver(): void {
    // Each item leaves the queue before anyone hears of it: a listener that
    // calls receive() or close() must find the queue without it.
    while (this.#received.length > 0 && !this.closed) {
      const next = this.#received[0]!;
      const receiver = this.#receivers.shift();
      if (next instanceof Error) {
        if (!receiver && this.listenerCount('error') === 0 && this.listenerCount('message') === 0) return;
        this.#received.shift();
        if (receiver) receiver.reject(next);
        else this.emitError(next);
        continue;
      }
      if (!receiver && this.listenerCount('message') === 0) return;
      this.#received.shift();
      handOver(next);
      if (receiver) receiver.resolve(next);
      else this.emit('message', next);
    }
  }

  #endOfStream(): void {
    for (const receiver of this.#receivers.splice(0)) receiver.reject(peerClosedError());
    this.emit('close');
  }

  #fail(error: Error): void {
    this.#waiter.stopWatching();
    for (const batch of this.#fdBatches.splice(0)) for (const item of batch.fds) closeFd(item.fd);
    this.#inputLength = 0;
    this.#peerClosed = true;
    this.#failure = error;
    const receivers = this.#receivers.splice(0);
    for (const receiver of receivers) receiver.reject(error);
    // Told to a pending receive() already, it is not told twice.
    if (this.listenerCount('error') > 0 || receivers.length === 0) this.emitError(error);
    this.emit('close');
  }

  protected override releaseResources(): void {
    this.#waiter.close('close');
    for (const batch of this.#fdBatches.splice(0)) for (const item of batch.fds) closeFd(item.fd);
    for (const received of this.#received.splice(0)) {
      if (received instanceof Error) continue;
      for (const handle of received.handles) {
        if (typeof handle === 'number') closeFd(handle);
        else handle.close();
      }
    }
    const closed = errnoError('ECANCELED', 'close', { hint: 'the channel was closed' });
    for (const receiver of this.#receivers.splice(0)) receiver.reject(closed);
    for (const pending of this.#outgoing.splice(0)) {
      closeFds(pending.fds);
      pending.reject(closed);
    }
  }
}

/** The longest wait between two connects to a full backlog. */
const connectRetryMaxMs = 50;

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function socketAddress(path: string): string {
  validate.string('path', path);
  const address = path.startsWith('@') ? `\0${path.slice(1)}` : path;
  if (Buffer.byteLength(address) < 1 || Buffer.byteLength(address) > 107) throw validate.invalidValue('path', 'a socket path of 1 to 107 bytes', path);
  return address;
}

/** A listening Unix socket that accepts FdChannels ('connection' event, or `accept()`). */
export class FdChannelServer extends EventedFdHandle<FdChannelServerEvents> {
  #waiter: FdWaiter;
  readonly path: string;

  private constructor(fd: number, path: string) {
    super(fd, 'FdChannelServer', ['connection', 'error']);
    this.path = path;
    this.#waiter = new FdWaiter(fd, 'FdChannelServer');
  }

  static listen(path: string, options?: { backlog?: number }): FdChannelServer {
    const address = socketAddress(path);
    const opts = validate.options<{ backlog: number }>('options', options);
    const backlog = opts.backlog === undefined ? 128 : validate.integer('options.backlog', opts.backlog, 1, 65535);
    const fd = check(native().unixListen(address, backlog), 'bind', (code) => (code === 'EADDRINUSE' ? `${path} is in use: remove a stale socket file, or pick another name` : undefined));
    const server = new FdChannelServer(fd, path);
    server.onListenersChanged((event, added) => {
      if (event === 'connection' && added) void server.#acceptLoop();
      // A loop left waiting would take the next connection from accept().
      else if (event === 'connection' && server.listenerCount('connection') === 0) server.#stopAccepting?.abort();
    });
    return server;
  }

  /** The next connection. */
  /** The next connection; `signal` gives up waiting (the promise rejects with its reason). */
  async accept(options?: { signal?: AbortSignal }): Promise<FdChannel> {
    const signal = validate.optionalSignal('options.signal', validate.options<{ signal: AbortSignal }>('options', options).signal);
    for (;;) {
      signal?.throwIfAborted();
      const fd = native().accept(this.assertOpen('accept'));
      if (fd >= 0) return FdChannel.fromFd(fd);
      if (fd !== EAGAIN) throw kernelError(fd, 'accept');
      await this.#waiter.wait(native().Poller.READABLE, 'accept', { wakeOnError: true, signal });
    }
  }

  #accepting = false;
  #stopAccepting: AbortController | undefined;

  async #acceptLoop(): Promise<void> {
    if (this.#accepting) return;
    this.#accepting = true;
    try {
      while (!this.closed && this.listenerCount('connection') > 0) {
        this.#stopAccepting = new AbortController();
        const channel = await this.accept({ signal: this.#stopAccepting.signal });
        this.emit('connection', channel);
      }
    } catch (error) {
      if (!this.closed && !this.#stopAccepting?.signal.aborted) this.emitError(error as Error);
    } finally {
      this.#accepting = false;
      this.#stopAccepting = undefined;
      // A listener added while this loop was being stopped needs a loop of its own.
      if (!this.closed && this.listenerCount('connection') > 0) void this.#acceptLoop();
    }
  }

  unref(): this {
    this.#waiter.unref();
    return this;
  }

  protected override releaseResources(): void {
    this.#waiter.close('accept');
  }
}

/**
 * Another process's fd, duplicated into this one (pidfd_open +
 * pidfd_getfd), close-on-exec. The kernel's errors come through as they
 * are: EPERM (ptrace rules: not the caller's to inspect, or not dumpable),
 * ESRCH (no such process), EBADF (no such fd there).
 */
export function pidfdGetFd(pid: number, fd: number): number {
  validate.integer('pid', pid, 1, 0x7fffffff);
  validate.fd('fd', fd);
  const pidfd = check(native().pidfdOpen(pid), 'pidfd_open', (code) => (code === 'ESRCH' ? `no process ${pid}` : code === 'ENOSYS' ? 'this kernel has no pidfd_open (needs Linux 5.3)' : undefined));
  try {
    return check(native().pidfdGetFd(pidfd, fd), 'pidfd_getfd', (code) =>
      code === 'EPERM'
        ? `not allowed to take fds from process ${pid}: it must be this user's and dumpable, and ptrace rules (kernel.yama.ptrace_scope) must allow it`
        : code === 'EBADF'
          ? `process ${pid} has no fd ${fd}`
          : code === 'ESRCH'
            ? `process ${pid} has exited`
            : undefined,
    );
  } finally {
    closeFd(pidfd);
  }
}
