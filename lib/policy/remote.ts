import { EventEmitter } from 'node:events';
import { errnoError, relayedError } from '../errors';
import { closeFd } from '../handle';
import { detach, dynamicAttach, mapAttachment, mapAttachmentUnlocked, pin, unmapAttachment, unmapAttachmentUnlocked, unpin, type Attachment, type DmaDirection, type PolicyBuffer } from './core';

/**
 * Importers in other processes. The exporter's process serves each
 * importer over a channel (an FdChannel fits; this layer only closes the
 * handles that arrive with messages it does not take):
 * an attachment per channel, maps that carry the memory's handles, and
 * move notifications pushed as they happen. An importer that goes away is
 * detached (its mappings unmapped, its pins dropped); an exporter that goes
 * away fails the importer's pending calls and emits 'error', never hangs.
 */

// Listener types of EventEmitter-like channels.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyListener = (...args: any[]) => void;

export interface PolicyChannel {
  send(message: unknown, handles?: readonly never[]): Promise<void>;
  on(event: string, listener: AnyListener): unknown;
  close(): void;
}

interface Request {
  req: number;
  op: 'attach' | 'map' | 'unmap' | 'pin' | 'unpin' | 'detach';
  dynamic?: boolean;
  name?: string;
  direction?: DmaDirection;
  mappingId?: number;
}

type Reply = { req: number; ok: true; [key: string]: unknown } | { req: number; ok: false; code: string; message: string };

/**
 * Closes what came with a message this side does not take: left open, a
 * peer that attaches fds to every message would fill this process's fd table.
 */
function dropHandles(handles: readonly unknown[] | undefined): void {
  for (const handle of handles ?? []) {
    if (typeof handle === 'number') closeFd(handle);
    else if (typeof (handle as { close?: unknown } | null)?.close === 'function') (handle as { close(): void }).close();
  }
}

/** How a mapping crosses the channel: a JSON description and the handles (a DmaBuf) that go with it. */
export type MappingCodec<M> = (mapping: M) => { description: unknown; handles: readonly unknown[] };

/**
 * Serves one importer process on `channel`. Resolves when the importer
 * detached or went away, with everything it held released.
 */
export function serveImporter<M>(buffer: PolicyBuffer<M>, channel: PolicyChannel, encode: MappingCodec<M>): Promise<void> {
  let attachment: Attachment<M> | undefined;
  const mappings = new Map<number, { mapping: M; direction: DmaDirection }>();
  let nextMappingId = 1;
  let queue = Promise.resolve();
  let ended = false;
  let resolveServed!: () => void;
  const served = new Promise<void>((resolve) => (resolveServed = resolve));
  const end = () => {
    if (ended) return;
    ended = true;
    // After whatever is running: the importer is gone, so nothing it held may stay.
    queue = queue.then(release).catch(() => undefined).then(resolveServed);
  };
  // A send can fail at once (the channel was closed meanwhile: EBADF, thrown
  // synchronously) or later (EPIPE). Either way the importer will never see
  // this message, so it is served no longer: its channel is closed (a reply
  // it waits for will not come) and what it held released.
  const send = async (message: unknown, handles: readonly unknown[] = []): Promise<void> => {
    try {
      await channel.send(message, handles as never[]);
    } catch {
      try {
        channel.close();
      } finally {
        end();
      }
    }
  };

  async function release(): Promise<void> {
    if (!attachment) return;
    const current = attachment;
    attachment = undefined;
    if (current.dynamic) {
      await buffer.resv.withLock(async () => {
        for (const { mapping, direction } of mappings.values()) await unmapAttachment(current, mapping, direction);
        while (current.pins > 0) unpin(current);
      });
    } else {
      for (const { mapping, direction } of mappings.values()) await unmapAttachmentUnlocked(current, mapping, direction);
    }
    mappings.clear();
    await detach(buffer, current);
  }

  async function handle(request: Request): Promise<Reply | undefined> {
    const { req } = request;
    if (request.op === 'attach') {
      if (attachment) return { req, ok: false, code: 'EBUSY', message: 'this channel already has an attachment' };
      attachment = await dynamicAttach(buffer, {
        name: request.name,
        ops: request.dynamic ? { moveNotify: () => void send({ op: 'move-notify' }) } : undefined,
      });
      return { req, ok: true, size: buffer.size, dynamic: attachment.dynamic };
    }
    const current = attachment;
    if (!current) return { req, ok: false, code: 'ENOENT', message: 'attach first' };
    switch (request.op) {
      case 'map': {
        const direction = request.direction ?? 'bidirectional';
        const mapping = current.dynamic ? await buffer.resv.withLock(() => mapAttachment(current, direction)) : await mapAttachmentUnlocked(current, direction);
        const mappingId = nextMappingId++;
        mappings.set(mappingId, { mapping, direction });
        const { description, handles } = encode(mapping);
        await send({ req, ok: true, mappingId, description }, handles);
        return undefined; // replied here: the handles go with the reply
      }
      case 'unmap': {
        const entry = mappings.get(request.mappingId ?? -1);
        if (!entry) return { req, ok: false, code: 'ENOENT', message: `no mapping ${String(request.mappingId)}` };
        mappings.delete(request.mappingId!);
        if (current.dynamic) await buffer.resv.withLock(() => unmapAttachment(current, entry.mapping, entry.direction));
        else await unmapAttachmentUnlocked(current, entry.mapping, entry.direction);
        return { req, ok: true };
      }
      case 'pin':
        await buffer.resv.withLock(() => pin(current));
        return { req, ok: true };
      case 'unpin':
        await buffer.resv.withLock(() => unpin(current));
        return { req, ok: true };
      case 'detach':
        await release();
        return { req, ok: true };
      default:
        return { req, ok: false, code: 'EINVAL', message: `unknown op ${String((request as { op?: unknown }).op)}` };
    }
  }

  channel.on('message', ({ message, handles }: { message: Request; handles?: unknown[] }) => {
    // No request carries handles: whatever came with one is closed here.
    dropHandles(handles);
    if (ended) return;
    // Nothing in here rejects (send never does), so the queue never holds a rejection.
    queue = queue.then(async () => {
      try {
        const reply = await handle(message);
        if (reply) await send(reply);
      } catch (error) {
        const failure = error as { code?: unknown; message?: unknown } | undefined;
        const code = typeof failure?.code === 'string' ? failure.code : 'EIO';
        await send({ req: message?.req, ok: false, code, message: String(failure?.message ?? error) });
      }
    });
  });
  channel.on('close', end);
  channel.on('error', end);
  return served;
}

export interface RemoteMapping {
  mappingId: number;
  description: unknown;
  /** Handles that came with it (a DmaBuf): the importer owns them. */
  handles: unknown[];
}

/**
 * The importer's side: one attachment to a buffer exported by another
 * process. Events: 'move-notify' (the exporter moved: drop mappings, map
 * again), 'error' (the exporter went away).
 */
export interface RemoteAttachmentEvents {
  'move-notify': [];
  error: [error: Error];
}

export class RemoteAttachment extends EventEmitter<RemoteAttachmentEvents> {
  #nextReq = 1;
  readonly #pending = new Map<number, { op: string; takesHandles: boolean; resolve(reply: { message: Record<string, unknown>; handles: unknown[] }): void; reject(error: Error): void }>();
  #gone: Error | undefined;
  dynamic = false;
  size = 0;

  private constructor(private readonly channel: PolicyChannel) {
    super();
    channel.on('message', ({ message, handles = [] }: { message: Record<string, unknown> | null; handles?: unknown[] }) => {
      // Only a successful map reply's handles are taken (they become the
      // mapping's); any other message's are closed here.
      if (message?.op === 'move-notify') {
        dropHandles(handles);
        this.emit('move-notify');
        return;
      }
      const pending = this.#pending.get(message?.req as number);
      if (!message || !pending) {
        dropHandles(handles);
        return;
      }
      this.#pending.delete(message.req as number);
      if (!message.ok || !pending.takesHandles) dropHandles(handles);
      if (message.ok) pending.resolve({ message, handles: pending.takesHandles ? handles : [] });
      else pending.reject(relayedError(String(message.code), String(message.message), `remote ${pending.op}`));
    });
    const gone = () => {
      if (this.#gone) return;
      this.#gone = errnoError('ECONNRESET', 'remote exporter', { hint: 'the exporter went away (its channel closed)' });
      for (const pending of this.#pending.values()) pending.reject(this.#gone);
      this.#pending.clear();
      if (this.listenerCount('error') > 0) this.emit('error', this.#gone);
    };
    channel.on('close', gone);
    channel.on('error', gone);
  }

  static async attach(channel: PolicyChannel, options: { dynamic: boolean; name?: string }): Promise<RemoteAttachment> {
    const remote = new RemoteAttachment(channel);
    const { message } = await remote.#call({ op: 'attach', dynamic: options.dynamic, name: options.name });
    remote.dynamic = message.dynamic as boolean;
    remote.size = message.size as number;
    return remote;
  }

  #call(request: Omit<Request, 'req'>): Promise<{ message: Record<string, unknown>; handles: unknown[] }> {
    if (this.#gone) return Promise.reject(this.#gone);
    const req = this.#nextReq++;
    return new Promise((resolve, reject) => {
      this.#pending.set(req, { op: request.op, takesHandles: request.op === 'map', resolve, reject });
      const failed = (error: Error) => {
        this.#pending.delete(req);
        reject(error);
      };
      // A channel closed here throws at once (EBADF); one that fails later rejects.
      try {
        this.channel.send({ ...request, req }).catch(failed);
      } catch (error) {
        failed(error as Error);
      }
    });
  }

  async map(direction: DmaDirection = 'bidirectional'): Promise<RemoteMapping> {
    const { message, handles } = await this.#call({ op: 'map', direction });
    return { mappingId: message.mappingId as number, description: message.description, handles };
  }

  async unmap(mapping: RemoteMapping): Promise<void> {
    await this.#call({ op: 'unmap', mappingId: mapping.mappingId });
  }

  async pin(): Promise<void> {
    await this.#call({ op: 'pin' });
  }

  async unpin(): Promise<void> {
    await this.#call({ op: 'unpin' });
  }

  async detach(): Promise<void> {
    await this.#call({ op: 'detach' });
  }
}
