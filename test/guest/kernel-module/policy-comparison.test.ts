import assert from 'node:assert/strict';
import fc from 'fast-check';
import { policy } from '../../../lib';
import { runScenario, runScenarioOnKernel, scenarioStep, type Step } from '../../support/policy-scenarios';
import { moveNotifyEnabled, requireModule } from './helpers';

// The linux-6.1 profile against the kernel it models: the same steps through
// lib/policy and through the test module must give the same errors, the
// same exporter counters and the same notifications after every step. Where
// they differ, the kernel is right and the model is fixed.
describe('policy: the linux-6.1 profile against the running kernel', () => {
  requireModule();
  let profile: policy.PolicyProfile;
  before(() => {
    profile = moveNotifyEnabled() ? policy.profiles.linux61 : policy.profiles.linux61NoMoveNotify;
  });

  async function compare(dynamicExporter: boolean, steps: Step[]): Promise<void> {
    const model = await runScenario(profile, dynamicExporter, steps);
    const kernel = runScenarioOnKernel(dynamicExporter, steps);
    assert.deepEqual(model.outcomes, kernel.outcomes, `${policy.profileLabel(profile)}, ${dynamicExporter ? 'dynamic' : 'static'} exporter`);
    assert.deepEqual(model.final, kernel.final);
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

  it('random sequences agree step by step (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(scenarioStep, { minLength: 1, maxLength: 25 }), (dynamicExporter, steps) => compare(dynamicExporter, steps)),
      { numRuns: Number(process.env.DMABUF_COMPARISON_RUNS ?? 150) },
    );
  });
});
