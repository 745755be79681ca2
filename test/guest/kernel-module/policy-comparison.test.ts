import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { kernelTest } from '../../../lib/kernel-test';
import * as policy from '../../../lib/policy';
import { runScenario, runScenarioOnKernel, scenarioSteps, type ScenarioResult, type Step } from '../../support/policy-scenarios';
import { requireModule } from './helpers';

// The running kernel's profile against the kernel: the same steps through
// lib/policy and through the test module must give the same errors, the
// same exporter counters and the same notifications after every step. Where
// they differ, the kernel is right and the model is fixed. The profile
// comes from the kernel's own .config and release (policyProfileForKernel).
describe('policy: the running kernel\'s profile against the kernel', () => {
  requireModule();
  let profile: policy.PolicyProfile;
  let revocation = false;
  before(() => {
    profile = policy.policyProfileForKernel({ release: release(), config: gunzipSync(readFileSync('/proc/config.gz')).toString('utf8') });
    revocation = profile.rules.revocableAttachQuery;
    // The module finds the same facts in the kernel's headers and Kconfig
    // when it is built (its features attribute): the two must agree.
    const features = kernelTest.features();
    {
      assert.deepEqual(
        { coreSgtCache: features.coreSgtCache, dynamicMapPins: features.dynamicMapPins, revocable: features.revocable },
        {
          coreSgtCache: profile.rules.exporterMappingCache !== 'absent',
          // The rule asked about a dynamic importer of a dynamic exporter.
          dynamicMapPins: profile.rules.pinOnMap({ dynamic: true, buffer: { dynamic: true } } as policy.Attachment),
          revocable: profile.rules.revocableAttachQuery,
        },
        `the module's features against ${profile.label}`,
      );
    }
  });

  /** Runs the steps on both sides; returns how many were compared (a step with no attachment to act on is skipped by both). */
  const reached: ScenarioResult['reached'] = { pinOnMap: 0, unmapBeforeDetach: 0, revokeOfPinned: 0, revocableUnmapped: 0 };
  async function compare(dynamicExporter: boolean, steps: Step[]): Promise<number> {
    const model = await runScenario(profile, dynamicExporter, steps);
    const kernel = runScenarioOnKernel(dynamicExporter, steps);
    assert.deepEqual(model.outcomes, kernel.outcomes, `${policy.profileLabel(profile)}, ${dynamicExporter ? 'dynamic' : 'static'} exporter`);
    assert.deepEqual(model.final, kernel.final);
    for (const key of Object.keys(reached) as (keyof typeof reached)[]) reached[key] += model.reached[key];
    return kernel.outcomes.length;
  }

  it('the review scenario\'s importers: a static and two dynamic ones, mapped, pinned, moved, detached', async () => {
    const steps: Step[] = [
      { op: 'attach', dynamic: true },
      { op: 'attach', dynamic: true },
      { op: 'map', target: 0, direction: 'bidirectional' },
      { op: 'move' },
      { op: 'unmap', target: 0 },
      { op: 'map', target: 0, direction: 'to-device' },
      { op: 'pin', target: 1 },
      { op: 'move' },
      { op: 'unpin', target: 1 },
      { op: 'unmap', target: 0 },
      { op: 'move' },
      { op: 'attach', dynamic: false },
      { op: 'map', target: 2, direction: 'from-device' },
      { op: 'move' },
      { op: 'detach', target: 2 },
      { op: 'move' },
    ];
    await compare(true, steps);
    await compare(false, steps);
  });

  // Batches of fresh fast-check runs until the kernel has answered at least
  // minSteps steps, so the count is a floor and not an expectation. Each
  // batch reports its own seed on a failure.
  const minSteps = 10_000;
  const maxSteps = 25;
  it(`random sequences of 1 to ${maxSteps} steps (the longest drawn) agree step by step, ${minSteps.toLocaleString('en-US')} steps or more (fast-check)`, async function () {
    this.timeout(30 * 60_000);
    const started = Date.now();
    let steps = 0;
    let scenarios = 0;
    let longest = 0;
    while (steps < minSteps) {
      await fc.assert(
        fc.asyncProperty(fc.boolean(), scenarioSteps(maxSteps, { revocation }), async (dynamicExporter, drawn) => {
          longest = Math.max(longest, drawn.length);
          steps += await compare(dynamicExporter, drawn);
          scenarios += 1;
        }),
        { numRuns: 100 },
      );
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    console.log(`      policy-vs-kernel (${policy.profileLabel(profile)}, ${release()}): ${steps.toLocaleString('en-US')} steps in ${scenarios.toLocaleString('en-US')} scenarios, longest ${longest}, ${seconds}s; reached ${JSON.stringify(reached)}`);
    assert.ok(steps >= minSteps, `${steps} steps compared`);
    // No scenario compares more than 25 steps, so 10,000 take at least 400
    // scenarios; lengths are drawn uniformly for at least 3 runs in 4, so each
    // draws all 25 with odds of at least 1 in 34: all 400 miss with odds
    // below 1 in 10^5.
    assert.equal(longest, maxSteps, 'the longest scenario drawn has the declared maximum of steps');
    // The kernel-specific paths were compared, not only drawn.
    if (profile.rules.pinOnMap !== policy.profiles.linux61.rules.pinOnMap) assert.ok(reached.pinOnMap > 0, 'maps that pin');
    if (!profile.rules.detachUnmapsCachedMapping) assert.ok(reached.unmapBeforeDetach > 0, 'detaches the importer had to unmap before');
    if (revocation) assert.ok(reached.revokeOfPinned > 0 && reached.revocableUnmapped > 0, 'revokes of a pinned buffer, revocable importers unmapping in the callback');
  });
});
