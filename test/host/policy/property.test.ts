import assert from 'node:assert/strict';
import fc from 'fast-check';
import { policy } from '../../../lib';
import { runScenario, scenarioStep } from '../../support/policy-scenarios';

const { profiles } = policy;

// Random sequences of attach/map/unmap/pin/unpin/move/detach, run the way a
// driver would run them (dynamic importers under the lock, static ones
// through the _unlocked calls), under every profile; the invariants are
// checked after every step by runScenario and at the end here.
describe('policy: properties of random operation sequences', () => {
  for (const profile of [profiles.linux61, profiles.linux61NoMoveNotify, profiles.v10, profiles.tracking]) {
    it(`${policy.profileLabel(profile)}: pins balance, cached mappings never go stale, notifications follow the profile, nothing leaks`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.boolean(), fc.array(scenarioStep, { minLength: 1, maxLength: 40 }), async (dynamicExporter, steps) => {
          const result = await runScenario(profile, dynamicExporter, steps);
          // After everything is detached, every map was unmapped and every pin dropped.
          assert.equal(result.final.pinCount, 0);
          assert.equal(result.final.mapCalls, result.final.unmapCalls);
          assert.equal(result.final.attachments, 0);
        }),
        { numRuns: 300 },
      );
    });
  }
});
