import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { constants } from 'node:os';
import { FdChannel, Memfd } from '../../../lib';
import * as policy from '../../../lib/policy';
import { closeFd } from '../../../lib/handle';

// serveImporter and RemoteAttachment over a real FdChannel pair in this
// process. The handles are memfds: they pass through SCM_RIGHTS exactly as
// dma-bufs do, and every fd either end receives shows in /proc/self/fd.
const { MovableExporter, modelStore, profiles, serveImporter, RemoteAttachment } = policy;

const openFds = () => readdirSync('/proc/self/fd').length;
const turns = async (count: number) => {
  for (let turn = 0; turn < count; turn += 1) await new Promise((resolve) => setImmediate(resolve));
};

function exporter() {
  return new MovableExporter(modelStore(), { size: 4096, dynamic: true, profile: profiles.linux61, name: 'remote' });
}

/** Runs `fn`, then fails if any promise rejection went unhandled meanwhile (Node would have exited on it). */
async function noUnhandledRejection(fn: () => Promise<void>): Promise<void> {
  const unhandled: unknown[] = [];
  const record = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', record);
  try {
    await fn();
    await turns(10);
  } finally {
    process.off('unhandledRejection', record);
  }
  assert.deepEqual(unhandled.map((reason) => String((reason as Error).message ?? reason)), [], 'unhandled rejections');
}

describe('policy: remote importers over a real FdChannel', () => {
  it('a reply due on a channel the exporter closed meanwhile rejects nothing unhandled; the importer is released', async () => {
    const moving = exporter();
    const [server, client] = FdChannel.pair();
    const served = serveImporter(moving.buffer, server, (mapping) => ({ description: mapping, handles: [] }));
    const attachment = await RemoteAttachment.attach(client, { dynamic: true });
    assert.equal(moving.counters.attachments, 1);
    await noUnhandledRejection(async () => {
      // The pin waits for the lock held here; the channel closes before its reply is due.
      await moving.buffer.resv.lock();
      const pinning = attachment.pin();
      await turns(10);
      server.close();
      moving.buffer.resv.unlock();
      await assert.rejects(pinning, { code: 'ECONNRESET', errno: -constants.errno.ECONNRESET });
    });
    const released = await Promise.race([served.then(() => true), new Promise((resolve) => setTimeout(resolve, 2000, false))]);
    assert.equal(released, true, 'serveImporter resolved: the importer it could no longer answer was released');
    assert.deepEqual([moving.counters.attachments, moving.counters.pinCount], [0, 0], 'the importer\'s attachment and pin are gone');
    client.close();
  });

  it('serveImporter closes the fds that come with requests: 10 requests with 3 fds each leave none open', async () => {
    const moving = exporter();
    const [server, client] = FdChannel.pair();
    const served = serveImporter(moving.buffer, server, (mapping) => ({ description: mapping, handles: [] }));
    const before = openFds();
    const memfds = [Memfd.create(4096), Memfd.create(4096), Memfd.create(4096)];
    const sent = memfds.map((memfd) => memfd.fd);
    const replies: unknown[] = [];
    for (let req = 1; req <= 10; req += 1) {
      await client.send(req === 1 ? { req, op: 'attach', dynamic: true } : { req, op: req % 2 === 0 ? 'pin' : 'unpin' }, sent);
      replies.push((await client.receive()).message);
    }
    for (const memfd of memfds) memfd.close();
    assert.equal(replies.filter((reply) => (reply as { ok: boolean }).ok).length, 10, JSON.stringify(replies));
    assert.equal(openFds(), before, 'open fds before and after');
    client.close();
    await served;
    server.close();
    assert.equal(moving.counters.attachments, 0);
  });

  it('RemoteAttachment closes the fds of messages it does not take, and keeps those of its mappings', async () => {
    const [exporterEnd, importerEnd] = FdChannel.pair();
    const before = openFds();
    const memfds = [Memfd.create(4096), Memfd.create(4096), Memfd.create(4096)];
    const sent = memfds.map((memfd) => memfd.fd);
    // The exporter's side, played by hand: every message but the map reply carries three fds.
    const attaching = RemoteAttachment.attach(importerEnd, { dynamic: true });
    const attachRequest = (await exporterEnd.receive<{ req: number }>()).message;
    await exporterEnd.send({ req: attachRequest.req, ok: true, size: 4096, dynamic: true }, sent);
    const attachment = await attaching;
    const notified = new Promise<void>((resolve) => attachment.once('move-notify', () => resolve()));
    await exporterEnd.send({ op: 'move-notify' }, sent);
    await notified;
    await exporterEnd.send({ req: 999, ok: true }, sent); // no such request
    const pinning = attachment.pin();
    await exporterEnd.send({ req: (await exporterEnd.receive<{ req: number }>()).message.req, ok: false, code: 'EBUSY', message: 'refused' }, sent);
    await assert.rejects(pinning, { code: 'EBUSY', errno: -constants.errno.EBUSY, syscall: 'remote pin', message: /refused/ });
    const unpinning = attachment.unpin();
    await exporterEnd.send({ req: (await exporterEnd.receive<{ req: number }>()).message.req, ok: true }, sent);
    await unpinning;
    const mapping = attachment.map();
    await exporterEnd.send({ req: (await exporterEnd.receive<{ req: number }>()).message.req, ok: true, mappingId: 1, description: null }, [sent[0]!]);
    const { handles } = await mapping;
    for (const memfd of memfds) memfd.close();
    assert.equal(handles.length, 1);
    assert.equal(openFds(), before + 1, 'only the mapping\'s fd is open: the importer owns it');
    closeFd(handles[0] as number);
    assert.equal(openFds(), before);
    exporterEnd.close();
    importerEnd.close();
  });
});
