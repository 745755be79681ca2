/**
 * The policy model's costs, on the host (no VM: it touches no kernel):
 * attach/detach and map/unmap rates, move-notification fan-out from 1 to
 * 10,000 attachments (which must grow linearly), and many tasks locking
 * random sets of reservation objects (throughput and back-offs).
 * `npm run bench:policy`; prints a Markdown table.
 */
import * as policy from '../lib/policy';

const { MovableExporter, modelStore, profiles, dynamicAttach, attach, detach, mapAttachment, unmapAttachment, mapAttachmentUnlocked, unmapAttachmentUnlocked, lockReservations, acquireContext, ReservationObject } = policy;

function best(rounds: number, run: () => Promise<number>): Promise<number> {
  return (async () => {
    let top = 0;
    for (let round = 0; round < rounds; round += 1) top = Math.max(top, await run());
    return top;
  })();
}

async function rate(operations: number, body: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await body();
  return operations / (Number(process.hrtime.bigint() - start) / 1e9);
}

const exporter = (dynamic: boolean, profile: policy.PolicyProfile = profiles.linux61) => new MovableExporter(modelStore(), { size: 4096, dynamic, profile });
const importerOps = { moveNotify: () => undefined };

async function attachDetach(): Promise<number> {
  const { buffer } = exporter(true);
  const count = 20_000;
  return rate(count, async () => {
    for (let index = 0; index < count; index += 1) await detach(buffer, await dynamicAttach(buffer, { ops: importerOps }));
  });
}

async function mapUnmapDynamic(): Promise<number> {
  const { buffer } = exporter(true);
  const attachment = await dynamicAttach(buffer, { ops: importerOps });
  const count = 50_000;
  await buffer.resv.lock();
  const result = await rate(count, async () => {
    for (let index = 0; index < count; index += 1) await unmapAttachment(attachment, await mapAttachment(attachment, 'bidirectional'), 'bidirectional');
  });
  buffer.resv.unlock();
  return result;
}

async function mapUnmapStatic(): Promise<number> {
  const { buffer } = exporter(false);
  const attachment = await attach(buffer);
  const count = 50_000;
  return rate(count, async () => {
    for (let index = 0; index < count; index += 1) await unmapAttachmentUnlocked(attachment, await mapAttachmentUnlocked(attachment, 'bidirectional'), 'bidirectional');
  });
}

/** Seconds per move with `attachments` dynamic importers, each mapped (so tracking notifies all). */
async function fanOut(attachments: number, profile: policy.PolicyProfile): Promise<number> {
  const moving = exporter(true, profile);
  const { buffer } = moving;
  let notified = 0;
  const ops = { moveNotify: () => void (notified += 1) };
  const all = [];
  for (let index = 0; index < attachments; index += 1) all.push(await dynamicAttach(buffer, { ops }));
  await buffer.resv.lock();
  for (const attachment of all) await mapAttachment(attachment, 'bidirectional');
  buffer.resv.unlock();
  const moves = Math.max(3, Math.floor(20_000 / attachments));
  const start = process.hrtime.bigint();
  for (let index = 0; index < moves; index += 1) await moving.move();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9 / moves;
  const expected = profile.rules.invalidationReaches === 'live-mappings-once' ? attachments : attachments * moves;
  if (notified !== expected) throw new Error(`fan-out ${attachments}: ${notified} notifications, expected ${expected}`);
  return seconds;
}

async function lockContention(tasks: number, objects: number, perTask: number): Promise<{ rate: number; backoffs: number }> {
  const reservations = Array.from({ length: objects }, (_, index) => new ReservationObject(`r${index}`));
  let backoffs = 0;
  let random = 12345;
  const next = () => (random = (random * 1103515245 + 12345) & 0x7fffffff) % objects;
  const rounds = 200;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: tasks }, async () => {
      for (let round = 0; round < rounds; round += 1) {
        const set = Array.from({ length: perTask }, next).map((index) => reservations[index]!);
        const ctx = acquireContext();
        await lockReservations(set, ctx);
        await new Promise((resolve) => setImmediate(resolve)); // hold across a turn, as real work would
        for (const reservation of new Set(set)) reservation.unlock();
        ctx.fini();
        backoffs += ctx.backoffs;
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { rate: (tasks * rounds) / seconds, backoffs };
}

async function main(): Promise<void> {
  const format = (value: number) => Math.round(value).toLocaleString('en-US');
  const lines = ['| workload | rate |', '| --- | ---: |'];
  lines.push(`| attach + detach (dynamic importer) | ${format(await best(3, attachDetach))}/s |`);
  lines.push(`| map + unmap, dynamic importer, lock held | ${format(await best(3, mapUnmapDynamic))}/s |`);
  lines.push(`| map + unmap, static importer, _unlocked (cached) | ${format(await best(3, mapUnmapStatic))}/s |`);
  process.stdout.write(`${lines.join('\n')}\n\n`);

  const fan = ['| attachments | µs per move (linux-6.1) | µs per attachment | µs per move (tracking: one notification per mapping, then filtered) |', '| ---: | ---: | ---: | ---: |'];
  for (const count of [1, 10, 100, 1000, 10_000]) {
    const linux = await fanOut(count, profiles.linux61);
    const tracking = await fanOut(count, profiles.tracking);
    fan.push(`| ${format(count)} | ${(linux * 1e6).toFixed(1)} | ${((linux * 1e6) / count).toFixed(3)} | ${(tracking * 1e6).toFixed(1)} |`);
  }
  process.stdout.write(`${fan.join('\n')}\n\n`);

  const contention = ['| tasks | objects | locked per task | lock sets/s | back-offs per set |', '| ---: | ---: | ---: | ---: | ---: |'];
  for (const [tasks, objects, perTask] of [[10, 100, 4], [100, 100, 4], [100, 20, 4], [1000, 50, 8]] as const) {
    const { rate: sets, backoffs } = await lockContention(tasks, objects, perTask);
    contention.push(`| ${tasks} | ${objects} | ${perTask} | ${format(sets)} | ${(backoffs / (tasks * 200)).toFixed(3)} |`);
  }
  process.stdout.write(`${contention.join('\n')}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
