import assert from 'node:assert/strict';
import * as policy from '../../../lib/policy';

const { exportBuffer, dynamicAttach, attach, detach, mapAttachment, unmapAttachment, mapAttachmentUnlocked, unmapAttachmentUnlocked, attachRevocable, MovableExporter, modelStore, Trace, profiles, policyProfileForKernel } = policy;
type PolicyProfile = policy.PolicyProfile;

function exporter(profile: PolicyProfile, dynamic: boolean, options: { trace?: policy.Trace; revocable?: boolean } = {}) {
  return new MovableExporter(modelStore(), { size: 4096, dynamic, profile, name: 'A', ...options });
}

function locked<T>(buffer: policy.PolicyBuffer<unknown>, fn: () => Promise<T> | T): Promise<T> {
  return buffer.resv.withLock(fn);
}

const notify = () => ({ moveNotify: () => undefined });

// "rules N" in a title are rules of docs/dynamic-policy.md (#rule-N), where
// each has a row per profile.
describe('policy: static importer of a dynamic exporter across generations (rules 3, 5, 7, 10)', () => {
  it('7.2: attach maps nothing; each map pins and its unmap unpins, so the pin count is 0 between maps and a move succeeds there', async () => {
    const moving = exporter(profiles.linux72, true);
    const importer = await attach(moving.buffer);
    assert.deepEqual([moving.counters.mapCalls, moving.counters.pinCount], [0, 0]);
    for (const direction of ['to-device', 'from-device'] as const) {
      const mapping = await mapAttachmentUnlocked(importer, direction);
      assert.equal(moving.counters.pinCount, 1);
      await assert.rejects(moving.move(), { code: 'EBUSY' });
      await unmapAttachmentUnlocked(importer, mapping, direction);
      assert.equal(moving.counters.pinCount, 0);
      await moving.move();
    }
    assert.deepEqual([moving.counters.pinCalls, moving.counters.unpinCalls, moving.counters.mapCalls, moving.counters.unmapCalls], [2, 2, 2, 2]);
  });

  for (const profile of [profiles.linux61, profiles.linux612]) {
    it(`${profile.label}: pinned and mapped once at attach for the attachment's life; maps reuse the cached table; detach unmaps and unpins`, async () => {
      const moving = exporter(profile, true);
      const importer = await attach(moving.buffer);
      assert.deepEqual([moving.counters.mapCalls, moving.counters.pinCount], [1, 1]);
      const mapping = await mapAttachmentUnlocked(importer, 'to-device');
      await unmapAttachmentUnlocked(importer, mapping, 'to-device');
      assert.deepEqual([moving.counters.mapCalls, moving.counters.unmapCalls, moving.counters.pinCount], [1, 0, 1]);
      await assert.rejects(moving.move(), { code: 'EBUSY' });
      await detach(moving.buffer, importer);
      assert.deepEqual([moving.counters.unmapCalls, moving.counters.pinCount], [1, 0]);
    });
  }

  it('7.2: a pin refused by the exporter fails the map, with nothing mapped or left pinned', async () => {
    let pins = 0;
    let maps = 0;
    const buffer = exportBuffer({ size: 4096, profile: profiles.linux72, ops: { pin: () => { throw policy.policyErrno('EBUSY', 'pin'); }, unpin: () => void (pins -= 1), map: () => (maps += 1), unmap: () => undefined, release: () => undefined } });
    const importer = await attach(buffer);
    await assert.rejects(mapAttachmentUnlocked(importer, 'to-device'), { code: 'EBUSY' });
    assert.deepEqual([pins, maps, buffer.pinCount, importer.liveMappings.length], [0, 0, 0, 0]);
  });
});

describe('policy: detach with a live mapping (rule 10)', () => {
  it('7.2: detach neither unmaps nor unpins a live mapping; it and its pin are left behind and the buffer can never move again', async () => {
    const trace = new Trace();
    const moving = exporter(profiles.linux72, true, { trace });
    const importer = await attach(moving.buffer, { name: 'S' });
    await mapAttachmentUnlocked(importer, 'to-device');
    await detach(moving.buffer, importer);
    assert.deepEqual([moving.counters.mapCalls, moving.counters.unmapCalls, moving.counters.pinCount, moving.counters.attachments], [1, 0, 1, 0]);
    assert.deepEqual(moving.buffer.leaked, [importer]);
    assert.equal(moving.buffer.pinCount, 1, 'the core still counts the leaked pin the exporter holds');
    await assert.rejects(moving.move(), { code: 'EBUSY' });
    assert.deepEqual(trace.lines().slice(-4), ['pin A S', 'map A S to-device', 'detach A S', 'leak A S']);
  });

  it('6.1: the same detach unmaps the attach-time cached table and unpins: nothing is left behind', async () => {
    const moving = exporter(profiles.linux61, true);
    const importer = await attach(moving.buffer);
    await mapAttachmentUnlocked(importer, 'to-device');
    await detach(moving.buffer, importer);
    assert.deepEqual([moving.counters.mapCalls, moving.counters.unmapCalls, moving.counters.pinCount], [1, 1, 0]);
    assert.deepEqual(moving.buffer.leaked, []);
    await moving.move();
  });
});

describe('policy: importer ops without the invalidation callback (rule 2)', () => {
  for (const profile of [profiles.linux61, profiles.linux612]) {
    it(`${profile.label}: refused with EINVAL`, async () => {
      await assert.rejects(dynamicAttach(exporter(profile, true).buffer, { ops: {} }), { code: 'EINVAL' });
    });
  }

  it('7.2: accepted as a dynamic importer that the core neither pins on map nor tells of a move', async () => {
    const moving = exporter(profiles.linux72, true);
    const importer = await dynamicAttach(moving.buffer, { ops: { allowPeer2peer: true } });
    assert.equal(importer.dynamic, true);
    await locked(moving.buffer, () => mapAttachment(importer, 'bidirectional'));
    assert.equal(moving.counters.pinCount, 0);
    await moving.move(); // nobody told: the importer had to dma_buf_pin itself
    assert.equal(moving.counters.moves, 1);
    assert.equal(attachRevocable(importer), false);
  });
});

describe('policy: mapping cache and locking by generation (rules 1, 3, 5, 10)', () => {
  it('7.2: a static exporter gets no cache: every map reaches it, in any direction, and a dynamic importer is not mapped at attach', async () => {
    const fixed = exporter(profiles.linux72, false);
    const dynamicImporter = await dynamicAttach(fixed.buffer, { ops: notify() });
    assert.equal(fixed.counters.mapCalls, 0);
    const staticImporter = await attach(fixed.buffer);
    const first = await mapAttachmentUnlocked(staticImporter, 'to-device');
    const second = await mapAttachmentUnlocked(staticImporter, 'from-device');
    assert.equal(fixed.counters.mapCalls, 2);
    await unmapAttachmentUnlocked(staticImporter, first, 'to-device');
    await unmapAttachmentUnlocked(staticImporter, second, 'from-device');
    assert.equal(fixed.counters.unmapCalls, 2);
    assert.equal(dynamicImporter.sgt, undefined);
  });

  it('7.2: export refuses cache_sgt_mapping, which no longer exists', () => {
    assert.throws(() => exportBuffer({ size: 4096, profile: profiles.linux72, ops: { cacheSgtMapping: true, map: () => ({}), unmap: () => undefined, release: () => undefined } }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /ops\.cacheSgtMapping/ });
  });

  it('6.1 lets a static importer of a static exporter map without the lock; 6.12 and 7.2 assert it', async () => {
    for (const [profile, asserted] of [[profiles.linux61, false], [profiles.linux612, true], [profiles.linux72, true]] as const) {
      const fixed = exporter(profile, false);
      const importer = await attach(fixed.buffer);
      const mapping = mapAttachment(importer, 'to-device');
      if (asserted) await assert.rejects(mapping, { code: 'ERR_DMABUF_POLICY_RULE', message: /must be held/ }, profile.label);
      else await mapping;
    }
  });

  it('6.12 maps a dynamic importer of a static exporter at attach under the lock, and detach unmaps it under the lock; 6.1 does both unlocked', async () => {
    for (const [profile, underLock] of [[profiles.linux61, false], [profiles.linux612, true]] as const) {
      const seen: string[] = [];
      const buffer: policy.PolicyBuffer<object> = exportBuffer({ size: 4096, profile, ops: { cacheSgtMapping: true, map: () => (seen.push(`map ${buffer.resv.locked}`), {}), unmap: () => void seen.push(`unmap ${buffer.resv.locked}`), release: () => undefined } });
      const importer = await dynamicAttach(buffer, { ops: notify() });
      await detach(buffer, importer);
      assert.deepEqual(seen, [`map ${underLock}`, `unmap ${underLock}`], profile.label);
    }
  });

  it('6.12 without MOVE_NOTIFY: a dynamic importer\'s mapping pins the exporter until its unmap; with it, it does not', async () => {
    for (const [profile, pins] of [[profiles.linux612NoMoveNotify, 1], [profiles.linux612, 0]] as const) {
      const moving = exporter(profile, true);
      const importer = await dynamicAttach(moving.buffer, { ops: notify() });
      const mapping = await locked(moving.buffer, () => mapAttachment(importer, 'to-device'));
      assert.equal(moving.counters.pinCount, pins, profile.label);
      await locked(moving.buffer, () => unmapAttachment(importer, mapping, 'to-device'));
      assert.equal(moving.counters.pinCount, 0);
    }
  });
});

describe('policy: revocation (7.2, rules 11 and 12)', () => {
  it('dma_buf_attach_revocable is true only for importers with the callback, and does not exist before 7.2', async () => {
    const moving = exporter(profiles.linux72, true);
    assert.equal(attachRevocable(await dynamicAttach(moving.buffer, { ops: notify() })), true);
    assert.equal(attachRevocable(await attach(moving.buffer)), false);
    const older = await dynamicAttach(exporter(profiles.linux612, true).buffer, { ops: notify() });
    assert.throws(() => attachRevocable(older), { code: 'ERR_DMABUF_POLICY_RULE', message: /no dma_buf_attach_revocable/ });
  });

  it('a revocable exporter refuses importers it cannot revoke (EOPNOTSUPP, which Node names ENOTSUP); revoke tells a pinned importer, ignores pins, and maps fail with ENODEV after it', async () => {
    const moving = exporter(profiles.linux72, true, { revocable: true });
    await assert.rejects(attach(moving.buffer), { code: 'ENOTSUP' });
    let told = 0;
    const importer = await dynamicAttach(moving.buffer, { ops: { moveNotify: () => void (told += 1) } });
    const mapping = await locked(moving.buffer, () => {
      policy.pin(importer);
      return mapAttachment(importer, 'to-device');
    });
    await moving.revoke();
    assert.deepEqual([told, moving.counters.pinCount, moving.revoked], [1, 1, true]);
    await assert.rejects(locked(moving.buffer, () => mapAttachment(importer, 'from-device')), { code: 'ENODEV' });
    await locked(moving.buffer, async () => {
      await unmapAttachment(importer, mapping, 'to-device');
      policy.unpin(importer);
    });
    assert.deepEqual([moving.counters.unmapCalls, moving.counters.pinCount], [1, 0]);
  });
});

describe('policy: revoke without a revocable exporter (rule 11)', () => {
  it('invalidates a pinned buffer without moving it: no EBUSY, moves unchanged, and the exporter keeps mapping', async () => {
    const moving = exporter(profiles.linux72, true);
    let told = 0;
    const importer = await dynamicAttach(moving.buffer, { ops: { moveNotify: () => void (told += 1) } });
    await locked(moving.buffer, () => policy.pin(importer));
    await moving.revoke();
    assert.deepEqual([told, moving.counters.moves, moving.generation], [1, 0, 0]);
    await locked(moving.buffer, () => mapAttachment(importer, 'to-device'));
    await assert.rejects(exporter(profiles.linux72, false).revoke(), { code: 'EINVAL' });
  });
});

describe('policy: policyProfileForKernel', () => {
  const config = (...lines: string[]) => ['CONFIG_DMA_SHARED_BUFFER=y', ...lines, ''].join('\n');
  const cases: [string, string, PolicyProfile][] = [
    ['6.1.192', config('CONFIG_DMABUF_MOVE_NOTIFY=y'), profiles.linux61],
    ['6.1.192', config('# CONFIG_DMABUF_MOVE_NOTIFY is not set'), profiles.linux61NoMoveNotify],
    ['6.12.95', config('CONFIG_DMABUF_MOVE_NOTIFY=y'), profiles.linux612],
    ['6.12.95-debug', config('# CONFIG_DMABUF_MOVE_NOTIFY is not set'), profiles.linux612NoMoveNotify],
    ['7.2.13', config(), profiles.linux72],
  ];
  for (const [release, text, expected] of cases) {
    it(`${release} with ${text.includes('MOVE_NOTIFY') ? text.split('\n')[1] : 'no MOVE_NOTIFY line'}: ${expected.label}`, () => {
      assert.equal(policyProfileForKernel({ release, config: text }), expected);
    });
  }

  it('refuses a 6.x config without the MOVE_NOTIFY line, a kernel without dma-buf, and releases before 6.1 (ERR_DMABUF_POLICY_NO_PROFILE), and a release that is not one', () => {
    const noProfile = (message: RegExp) => ({ name: 'Error', code: 'ERR_DMABUF_POLICY_NO_PROFILE', message });
    assert.throws(() => policyProfileForKernel({ release: '6.12.95', config: config() }), noProfile(/lacks CONFIG_DMABUF_MOVE_NOTIFY/));
    assert.throws(() => policyProfileForKernel({ release: '7.2.13', config: '# CONFIG_DMA_SHARED_BUFFER is not set\n' }), noProfile(/no CONFIG_DMA_SHARED_BUFFER/));
    assert.throws(() => policyProfileForKernel({ release: '5.15.0', config: config('CONFIG_DMABUF_MOVE_NOTIFY=y') }), noProfile(/older than/));
    assert.throws(() => policyProfileForKernel({ release: 'linux', config: config() }), { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE', message: /kernel\.release but received 'linux'/ });
  });
});
