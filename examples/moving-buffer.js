'use strict';
// A buffer that moves while a second process reads it. The exporter owns
// real memory (udmabuf) and migrates it three times under the reservation
// lock; the importer, in another process, is told each time (move_notify),
// drops its mapping and maps again. Its old mapping stays readable and whole
// until it lets go. Needs udmabuf; on a host without it:
// npx dmabuf vm run -- node examples/moving-buffer.js
const { spawn } = require('node:child_process');
const { setTimeout: delay } = require('node:timers/promises');
const { FdChannel } = require('dmabuf');
const policy = require('dmabuf/policy');

async function exporter() {
  const trace = new policy.Trace(); // what the policy did, event by event
  const moving = policy.createMovingBuffer({ size: 1 << 20, profile: policy.profiles.linux61, trace });
  const nextMap = () => new Promise((resolve) => { const stop = trace.onEvent((event) => event.kind === 'map' && (stop(), resolve())); });
  moving.backing.map().fill(0); // generation 0's memory holds zeros
  const [mine, theirs] = FdChannel.pair();
  const child = spawn(process.execPath, [__filename, 'importer'], { stdio: ['inherit', 'inherit', 'inherit', theirs.fd] });
  theirs.close();
  const served = policy.serveRemoteImporter(moving, mine);
  let mapped = nextMap();
  for (let generation = 1; generation <= 3; generation += 1) {
    await mapped; // the importer is reading the current memory
    await delay(50);
    mapped = nextMap();
    // Move and mark the new memory in one locked section: nobody maps in between.
    await moving.buffer.resv.withLock(async () => {
      await moving.move({ lockHeld: true });
      moving.backing.map().fill(generation);
    });
    console.log(`exporter: moved to generation ${generation}`);
  }
  await served; // the importer detached and left
  mine.close();
  const { mapCalls, unmapCalls, moves } = moving.counters;
  console.log(`exporter: ${moves} moves, ${mapCalls} maps, ${unmapCalls} unmaps`);
  await new Promise((resolve) => child.on('exit', resolve));
}

async function importer() {
  const channel = FdChannel.fromFd(3);
  const attachment = await policy.RemoteAttachment.attach(channel, { dynamic: true });
  let moved = false;
  attachment.on('move-notify', () => (moved = true));
  let mapping = await attachment.map();
  for (;;) {
    const [dmabuf] = mapping.handles;
    const bytes = dmabuf.map();
    // Every read sees one whole generation, never a mix.
    if (!bytes.every((byte) => byte === bytes[0])) throw new Error('torn data');
    if (moved) {
      moved = false;
      console.log(`importer ${process.pid}: notified while reading generation ${bytes[0]} (inode ${dmabuf.inode}); remapping`);
      dmabuf.close();
      await attachment.unmap(mapping);
      mapping = await attachment.map();
      continue;
    }
    if (bytes[0] === 3) break;
    await delay(10);
  }
  console.log(`importer ${process.pid}: reading generation 3 (inode ${mapping.handles[0].inode}); done`);
  mapping.handles[0].close();
  await attachment.detach();
  channel.close();
}

(process.argv[2] === 'importer' ? importer() : exporter()).catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
