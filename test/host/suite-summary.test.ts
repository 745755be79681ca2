import assert from 'node:assert/strict';
import { summarizeSuites, type MochaSummary } from '../support/suite-summary';

const clean = (passes: number, skipped: string[] = []): MochaSummary => ({ passes, failures: 0, pending: skipped.length, skipped });
const release = '6.1.158';

describe('npm test summary', () => {
  it('passes when every suite ran tests and nothing failed, and lists the skips by title', () => {
    const summary = summarizeSuites([
      { name: 'host', status: 0, mocha: clean(10, ['host a skipped test']) },
      { name: 'guest', status: 0, kernel: release, mocha: clean(5), vmFailures: [] },
    ]);
    assert.equal(summary.ok, true);
    assert.deepEqual(summary.lines, [
      'host: 10 passed, 0 failed, 1 skipped',
      '  skipped: host a skipped test',
      `guest (kernel ${release}): 5 passed, 0 failed, 0 skipped`,
      'verdict: passed (2 suites, 1 skipped as listed above)',
      'tests: 15 passed, 0 failed, 1 skipped',
    ]);
  });

  it('counts a suite that wrote no summary as one failure', () => {
    const summary = summarizeSuites([{ name: 'host', status: 0, mocha: clean(3) }, { name: 'runner', status: 1 }]);
    assert.equal(summary.ok, false);
    assert.equal(summary.failed, 1);
    assert.deepEqual(summary.suites[1]!.reasons, ['wrote no results (exit status 1)']);
    assert.equal(summary.lines.at(-1), 'tests: 3 passed, 1 failed, 0 skipped');
    assert.match(summary.lines.at(-2)!, /^verdict: FAILED \(1 of 2 suites failed: runner: wrote no results/);
  });

  it('counts a VM run that failed on a kernel problem after mocha reported 0 failures as one failure', () => {
    const summary = summarizeSuites([{ name: 'guest', status: 0, kernel: release, mocha: clean(40), vmFailures: ['kernel-problem'] }]);
    assert.equal(summary.ok, false);
    assert.equal(summary.failed, 1);
    assert.deepEqual(summary.suites[0]!.reasons, ['VM run failed (kernel-problem) after mocha reported 0 failures']);
    assert.ok(summary.lines.includes(`guest (kernel ${release}): 40 passed, 1 failed, 0 skipped`), summary.lines.join('\n'));
    assert.equal(summary.lines.at(-1), 'tests: 40 passed, 1 failed, 0 skipped');
  });

  it('counts a timeout or kernel problem besides mocha failures once more, but not the exit status the failures explain', () => {
    const withWarn = summarizeSuites([{ name: 'guest', status: 2, mocha: { passes: 8, failures: 2, pending: 0, skipped: [] }, vmFailures: ['exit-status', 'kernel-problem'] }]);
    assert.equal(withWarn.failed, 3);
    const exitOnly = summarizeSuites([{ name: 'guest', status: 2, mocha: { passes: 8, failures: 2, pending: 0, skipped: [] }, vmFailures: ['exit-status'] }]);
    assert.equal(exitOnly.failed, 2);
    assert.deepEqual(exitOnly.suites[0]!.reasons, []);
    assert.equal(exitOnly.lines.at(-1), 'tests: 8 passed, 2 failed, 0 skipped');
  });

  it('counts a host mocha that exited non-zero after reporting 0 failures as one failure', () => {
    const summary = summarizeSuites([{ name: 'host', status: 1, mocha: clean(7) }]);
    assert.equal(summary.failed, 1);
    assert.deepEqual(summary.suites[0]!.reasons, ['exit status 1 after mocha reported 0 failures']);
  });

  it('counts a suite that ran 0 tests as one failure, even when all were skipped', () => {
    const summary = summarizeSuites([{ name: 'guest', status: 0, mocha: clean(0, ['guest only test']) }]);
    assert.equal(summary.ok, false);
    assert.equal(summary.failed, 1);
    assert.ok(summary.lines.includes('  skipped: guest only test'));
    assert.equal(summary.lines.at(-1), 'tests: 0 passed, 1 failed, 1 skipped');
  });

  it('counts each suite that could not run, with its reason, and keeps the others\' counts', () => {
    const summary = summarizeSuites([
      { name: 'host', status: 0, mocha: clean(3) },
      { name: 'guest-debug', notRun: 'the debug kernel did not build: make exited 2' },
      { name: 'guest-no-move-notify', notRun: 'the no-move-notify kernel did not build: make exited 2' },
    ]);
    assert.equal(summary.failed, 2);
    assert.ok(summary.lines.includes('  suite failed: could not run: the debug kernel did not build: make exited 2'));
    assert.equal(summary.lines.at(-2), 'verdict: FAILED (2 of 3 suites failed: guest-debug: could not run: the debug kernel did not build: make exited 2 | guest-no-move-notify: could not run: the no-move-notify kernel did not build: make exited 2)');
    assert.equal(summary.lines.at(-1), 'tests: 3 passed, 2 failed, 0 skipped');
  });

  it('keeps the verdict to one line when a reason runs over several', () => {
    const summary = summarizeSuites([{ name: 'guest', notRun: 'the base kernel did not build: source not found.\n  Install it: apt-get install linux-source-6.1' }]);
    assert.equal(summary.lines.at(-2), 'verdict: FAILED (1 of 1 suite failed: guest: could not run: the base kernel did not build: source not found.)');
    assert.ok(summary.lines.includes('    Install it: apt-get install linux-source-6.1'), summary.lines.join('\n'));
    assert.ok(summary.lines.every((line) => !line.includes('\n')));
  });

  it('fails when no suite ran at all', () => {
    const summary = summarizeSuites([]);
    assert.equal(summary.ok, false);
    assert.equal(summary.lines.at(-1), 'tests: 0 passed, 1 failed, 0 skipped');
  });
});
