import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as policy from '../../../lib/policy';
import { runScenario, scenarioSteps } from '../../support/policy-scenarios';

const { profiles } = policy;

const maxSteps = 40;
// Lengths are drawn uniformly for at least 3 runs in 4, so a run has at
// least a 1-in-54 chance of the full 40 steps: 1,000 runs all miss it with
// odds below 1 in 10^8, and the check that the longest run was drawn stands.
const numRuns = 1000;

// Random sequences of attach/map/unmap/pin/unpin/move/detach, run the way a
// driver would run them (dynamic importers under the lock, static ones
// through the _unlocked calls), under every profile; the invariants are
// checked after every step by runScenario and at the end here.
describe('policy: properties of random operation sequences', () => {
  const all = [profiles.linux61, profiles.linux61NoMoveNotify, profiles.linux612, profiles.linux612NoMoveNotify, profiles.linux72, profiles.v10, profiles.tracking];
  for (const profile of all) {
    const revocation = profile.rules.revocableAttachQuery;
    it(`${policy.profileLabel(profile)}: pins balance, cached mappings never go stale, notifications follow the profile, nothing leaks${revocation ? ', revocable importers and revokes included' : ''} (${numRuns} scenarios of 1 to ${maxSteps} steps, the longest drawn)`, async function () {
      // 1,000 scenarios take about a second on an idle machine, many more beside a kernel build.
      this.timeout(120_000);
      let longest = 0;
      const reached = { pinOnMap: 0, unmapBeforeDetach: 0, revokeOfPinned: 0, revocableUnmapped: 0 };
      await fc.assert(
        fc.asyncProperty(fc.boolean(), scenarioSteps(maxSteps, { revocation }), async (dynamicExporter, steps) => {
          longest = Math.max(longest, steps.length);
          const result = await runScenario(profile, dynamicExporter, steps);
          for (const key of Object.keys(reached) as (keyof typeof reached)[]) reached[key] += result.reached[key];
          // After everything is detached, every map was unmapped and every pin dropped.
          assert.equal(result.final.pinCount, 0);
          assert.equal(result.final.mapCalls, result.final.unmapCalls);
          assert.equal(result.final.attachments, 0);
        }),
        { numRuns },
      );
      assert.equal(longest, maxSteps, 'the longest scenario drawn has the declared maximum of steps');
      // The paths that only some kernels have were taken where the profile has them.
      // (v10 pins on map only the static importer of a dynamic exporter, which attach has already mapped and cached.)
      if ([profiles.linux61NoMoveNotify, profiles.linux612NoMoveNotify, profiles.linux72].includes(profile)) assert.ok(reached.pinOnMap > 0, 'maps that pin');
      if (!profile.rules.detachUnmapsCachedMapping) assert.ok(reached.unmapBeforeDetach > 0, 'detaches the importer had to unmap before');
      if (revocation) assert.ok(reached.revokeOfPinned > 0 && reached.revocableUnmapped > 0, 'revokes of a pinned buffer, revocable importers unmapping in the callback');
    });
  }
});
