import assert from 'node:assert/strict';
import fc from 'fast-check';
import { kernelTest, type DmaDirection } from '../../lib/kernel-test';
import * as policy from '../../lib/policy';

/**
 * One scenario language for the model and the kernel: the same steps run
 * through lib/policy (with a counting exporter) and through the kernel test
 * module, with an importer that locks the way the module's does (dynamic:
 * reservation lock around map and unmap; static: the _unlocked calls;
 * detach unmaps and unpins first, as 7.2 requires of it). A revocable
 * importer (7.2) unmaps and drops its pins inside the invalidation and maps
 * or pins no more (ENODEV); a revoke invalidates without moving, pinned or
 * not. Outcomes and counters must agree. The rules are those of
 * docs/dynamic-policy.md (detach: rule 10; revocation: rules 11 and 12).
 */
export type Step =
  | { op: 'attach'; dynamic: boolean; revocable?: boolean }
  | { op: 'map'; target: number; direction: DmaDirection }
  | { op: 'unmap' | 'pin' | 'unpin' | 'detach'; target: number }
  | { op: 'move' | 'revoke' };

export interface ScenarioOptions {
  /** Draw revocable importers and revokes: only where the kernel has dma_buf_attach_revocable(). */
  revocation?: boolean;
}

export function scenarioStep(options: ScenarioOptions = {}): fc.Arbitrary<Step> {
  const attach = options.revocation
    ? fc.oneof(fc.record({ op: fc.constant('attach' as const), dynamic: fc.constant(false) }), fc.record({ op: fc.constant('attach' as const), dynamic: fc.constant(true), revocable: fc.boolean() }))
    : fc.record({ op: fc.constant('attach' as const), dynamic: fc.boolean() });
  return fc.oneof(
    attach,
    fc.record({ op: fc.constant('map' as const), target: fc.nat(7), direction: fc.constantFrom<DmaDirection>('bidirectional', 'to-device', 'from-device') }),
    fc.record({ op: fc.constantFrom('unmap' as const, 'pin' as const, 'unpin' as const, 'detach' as const), target: fc.nat(7) }),
    // A revoke ends a revocable importer's use of the buffer: drawn as often as a move, not more.
    options.revocation ? fc.record({ op: fc.constantFrom('move' as const, 'revoke' as const) }) : fc.record({ op: fc.constant('move' as const) }),
  );
}

/**
 * Scenarios of 1 to `maxLength` steps, drawn across that whole range.
 * `size: 'max'` because fast-check 4 otherwise caps an array at its 'small'
 * size (2 * minLength + 10 elements) whatever maxLength says: a 1..25 array
 * would never have more than 12 steps.
 */
export function scenarioSteps(maxLength: number, options: ScenarioOptions = {}): fc.Arbitrary<Step[]> {
  return fc.array(scenarioStep(options), { minLength: 1, maxLength, size: 'max' });
}

/** The module's counters, by the names the model's counting exporter shares with it. */
export type Snapshot = policy.ExporterCounters;

export interface StepOutcome {
  step: string;
  /** 'ok', or the errno code the step failed with. */
  result: string;
  counters: Snapshot;
  /** move notifications so far, per attachment in creation order (detached ones keep their last count). */
  notifications: number[];
}

export interface ScenarioResult {
  outcomes: StepOutcome[];
  final: Snapshot;
  /** How often the model went down paths only some kernels have, to show a comparison reached them. */
  reached: { pinOnMap: number; unmapBeforeDetach: number; revokeOfPinned: number; revocableUnmapped: number };
}

function describeStep(step: Step, attachmentIndex?: number): string {
  const target = attachmentIndex === undefined ? '' : ` #${attachmentIndex}`;
  if (step.op === 'attach') return `attach ${step.dynamic ? (step.revocable ? 'revocable' : 'dynamic') : 'static'}`;
  if (step.op === 'map') return `map${target} ${step.direction}`;
  return `${step.op}${target}`;
}

function codeOf(error: unknown): string {
  const code = (error as { code?: string }).code;
  if (!code || code === 'ERR_DMABUF_POLICY_RULE') throw error;
  return code;
}

/** The importer's own bookkeeping, the same on both sides. */
interface ImporterState {
  index: number;
  dynamic: boolean;
  revocable: boolean;
  revoked: boolean;
  mapped: boolean;
  pins: number;
  notifications: number;
}

// The model's own refusals, Node-shaped as the library's are.
function errno(code: policy.PolicyErrno, message: string): Error {
  return policy.policyErrno(code, 'model', message);
}

function pick(live: ImporterState[], target: number): ImporterState | undefined {
  return live.length === 0 ? undefined : live[target % live.length];
}

/** Runs the steps on the model, checking the profile's invariants after each. */
export async function runScenario(profile: policy.PolicyProfile, dynamicExporter: boolean, steps: readonly Step[]): Promise<ScenarioResult> {
  const exporter = new policy.MovableExporter(policy.modelStore(), { size: 4096, dynamic: dynamicExporter, profile });
  const { buffer } = exporter;
  const all: ImporterState[] = [];
  const live: ImporterState[] = [];
  const attachments = new Map<ImporterState, policy.Attachment<policy.ModelMapping>>();
  const mappings = new Map<ImporterState, { mapping: policy.ModelMapping; direction: DmaDirection }>();
  const notifiedSinceMap = new Set<ImporterState>();
  const outcomes: StepOutcome[] = [];
  const reached = { pinOnMap: 0, unmapBeforeDetach: 0, revokeOfPinned: 0, revocableUnmapped: 0 };
  /** An error inside an invalidation callback, which cannot throw into the exporter: rethrown after the step. */
  let callbackError: Error | undefined;

  const withLock = <T>(fn: () => Promise<T> | T) => buffer.resv.withLock(fn);

  async function unmap(state: ImporterState): Promise<void> {
    const attachment = attachments.get(state)!;
    const { mapping, direction } = mappings.get(state)!;
    if (state.dynamic) await withLock(() => policy.unmapAttachment(attachment, mapping, direction));
    else await policy.unmapAttachmentUnlocked(attachment, mapping, direction);
    mappings.delete(state);
    state.mapped = false;
  }

  async function detachState(state: ImporterState): Promise<void> {
    const attachment = attachments.get(state)!;
    if (state.mapped) {
      if (!profile.rules.detachUnmapsCachedMapping && attachment.liveMappings.length > 0) reached.unmapBeforeDetach += 1;
      await unmap(state);
    }
    if (state.pins > 0) {
      await withLock(() => {
        for (; state.pins > 0; state.pins -= 1) policy.unpin(attachment);
      });
    }
    await policy.detach(buffer, attachment);
    live.splice(live.indexOf(state), 1);
  }

  async function apply(step: Step, state: ImporterState | undefined): Promise<void> {
    switch (step.op) {
      case 'attach': {
        const revocable = step.revocable === true;
        // The module's checks, before it attaches.
        if (revocable && !step.dynamic) throw errno('EINVAL', 'a revocable importer is a dynamic one');
        if (revocable && !profile.rules.revocableAttachQuery) throw errno('ENOTSUP', 'no dma_buf_attach_revocable() in this kernel');
        const created: ImporterState = { index: all.length, dynamic: step.dynamic, revocable, revoked: false, mapped: false, pins: 0, notifications: 0 };
        const ops = step.dynamic
          ? {
              moveNotify: (attachment: policy.Attachment<policy.ModelMapping>) => {
                created.notifications += 1;
                if (created.revocable) {
                  // Inside the callback, with the exporter's lock held: unmap and unpin at once.
                  if (created.mapped) {
                    const { mapping, direction } = mappings.get(created)!;
                    policy.unmapAttachment(attachment, mapping, direction).catch((error: Error) => (callbackError = error));
                    mappings.delete(created);
                    created.mapped = false;
                    reached.revocableUnmapped += 1;
                  }
                  for (; created.pins > 0; created.pins -= 1) policy.unpin(attachment);
                  created.revoked = true;
                }
                if (profile.rules.invalidationReaches === 'live-mappings-once') {
                  assert.ok(created.mapped, 'tracking: a notification reached an attachment with no mapping');
                  assert.ok(!notifiedSinceMap.has(created), 'tracking: a mapping was notified twice');
                }
                notifiedSinceMap.add(created);
              },
            }
          : undefined;
        const attachment = await policy.dynamicAttach(buffer, { ops });
        if (profile.rules.revocableAttachQuery) assert.equal(policy.attachRevocable(attachment), step.dynamic, 'dma_buf_attach_revocable: true for every importer with the callback');
        attachments.set(created, attachment);
        all.push(created);
        live.push(created);
        return;
      }
      case 'move': {
        const before = new Map(live.map((importer) => [importer, { count: importer.notifications, notified: notifiedSinceMap.has(importer) }]));
        await exporter.move();
        for (const importer of live) {
          const { count, notified } = before.get(importer)!;
          const expected = profile.rules.invalidationReaches === 'live-mappings-once' ? Number(importer.dynamic && importer.mapped && !notified) : Number(importer.dynamic);
          assert.equal(importer.notifications - count, expected, `${policy.profileLabel(profile)}: notifications of attachment #${importer.index} for one move`);
        }
        return;
      }
      case 'revoke': {
        const pinned = exporter.counters.pinCount > 0;
        const before = live.map((importer) => importer.notifications);
        await exporter.revoke();
        if (pinned) reached.revokeOfPinned += 1;
        live.forEach((importer, i) => assert.equal(importer.notifications - before[i]!, Number(importer.dynamic), `${policy.profileLabel(profile)}: a revoke tells attachment #${importer.index} once if it is dynamic`));
        return;
      }
      default:
        break;
    }
    if (!state) return;
    const attachment = attachments.get(state)!;
    switch (step.op) {
      case 'map': {
        if (state.revoked) throw errno('ENODEV', 'revoked');
        if (state.mapped) throw errno('EBUSY', 'already mapped');
        if (profile.rules.pinOnMap(attachment) && !attachment.sgt) reached.pinOnMap += 1;
        const mapping = state.dynamic ? await withLock(() => policy.mapAttachment(attachment, step.direction)) : await policy.mapAttachmentUnlocked(attachment, step.direction);
        mappings.set(state, { mapping, direction: step.direction });
        state.mapped = true;
        notifiedSinceMap.delete(state);
        return;
      }
      case 'unmap':
        if (!state.mapped) throw Object.assign(new Error('not mapped'), { code: 'EINVAL' });
        return unmap(state);
      case 'pin':
        if (!state.dynamic) throw errno('EINVAL', 'static importers do not pin');
        if (state.revoked) throw errno('ENODEV', 'revoked');
        await withLock(() => policy.pin(attachment));
        state.pins += 1;
        return;
      case 'unpin':
        if (!state.dynamic || state.pins === 0) throw Object.assign(new Error('no pin'), { code: 'EINVAL' });
        await withLock(() => policy.unpin(attachment));
        state.pins -= 1;
        return;
      case 'detach':
        return detachState(state);
    }
  }

  for (const step of steps) {
    const state = 'target' in step ? pick(live, step.target) : undefined;
    if ('target' in step && !state) continue;
    let result = 'ok';
    try {
      await apply(step, state);
    } catch (error) {
      result = codeOf(error);
    }
    if (callbackError) throw callbackError;
    // Invariants the core must keep, whatever the profile.
    assert.equal(exporter.counters.pinCount, buffer.pinCount, 'the exporter\'s pins are the core\'s');
    assert.ok(exporter.counters.pinCount >= 0);
    for (const attachment of buffer.attachments) {
      if (attachment.sgt) assert.equal(attachment.sgt.generation, exporter.generation, 'a cached mapping never goes stale under its attachment');
    }
    outcomes.push({ step: describeStep(step, state?.index), result, counters: { ...exporter.counters }, notifications: all.map((importer) => importer.notifications) });
  }
  for (const state of [...live]) await detachState(state);
  policy.release(buffer);
  return { outcomes, final: { ...exporter.counters }, reached };
}

/** The same steps against the kernel, through the test module (in the VM). */
export function runScenarioOnKernel(dynamicExporter: boolean, steps: readonly Step[]): ScenarioResult {
  const device = kernelTest.open();
  try {
    const exporter = device.export({ pages: 1, dynamic: dynamicExporter });
    const all: { state: ImporterState; attachment: ReturnType<typeof device.attach> }[] = [];
    const live: typeof all = [];
    const outcomes: StepOutcome[] = [];
    const snapshot = (): Snapshot => {
      const { attachCalls, detachCalls, pinCalls, unpinCalls, mapCalls, unmapCalls, moves, pinCount, attachments } = exporter.info();
      return { attachCalls, detachCalls, pinCalls, unpinCalls, mapCalls, unmapCalls, moves, pinCount, attachments };
    };
    const notifications = () => all.map(({ state, attachment }) => (live.some((entry) => entry.state === state) ? attachment.info().moveNotifies : state.notifications));
    for (const step of steps) {
      const entry = !('target' in step) || live.length === 0 ? undefined : live[step.target % live.length];
      if ('target' in step && !entry) continue;
      let result = 'ok';
      try {
        switch (step.op) {
          case 'attach': {
            const attachment = device.attach(exporter.dmabuf, { dynamic: step.dynamic, revocable: step.revocable === true });
            const created = { state: { index: all.length, dynamic: step.dynamic, revocable: step.revocable === true, revoked: false, mapped: false, pins: 0, notifications: 0 }, attachment };
            all.push(created);
            live.push(created);
            break;
          }
          case 'move':
            exporter.move();
            break;
          case 'revoke':
            exporter.revoke();
            break;
          case 'map':
            entry!.attachment.map(step.direction);
            break;
          case 'unmap':
            entry!.attachment.unmap();
            break;
          case 'pin':
            entry!.attachment.pin();
            break;
          case 'unpin':
            entry!.attachment.unpin();
            break;
          case 'detach':
            entry!.state.notifications = entry!.attachment.info().moveNotifies;
            entry!.attachment.detach();
            live.splice(live.indexOf(entry!), 1);
            break;
        }
      } catch (error) {
        result = codeOf(error);
      }
      outcomes.push({ step: describeStep(step, entry?.state.index), result, counters: snapshot(), notifications: notifications() });
    }
    for (const entry of [...live]) entry.attachment.detach();
    const final = snapshot();
    exporter.dmabuf.close();
    return { outcomes, final, reached: { pinOnMap: 0, unmapBeforeDetach: 0, revokeOfPinned: 0, revocableUnmapped: 0 } };
  } finally {
    device.close();
  }
}
