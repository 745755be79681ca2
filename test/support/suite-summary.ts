/**
 * The arithmetic of `npm test`'s closing lines, kept apart from the running so
 * a host test can prove it. Every failure counts in the closing line: a test
 * that failed, and also a suite that failed as a whole (did not run, wrote no
 * results, ran no test, or whose VM run failed although mocha reported no
 * failure). The last line keeps one plain form, which CI reads.
 */

/** What the summary reporter writes (test/support/summary-reporter.ts). */
export interface MochaSummary {
  passes: number;
  failures: number;
  pending: number;
  /** Full titles of the skipped tests. */
  skipped: string[];
}

export interface SuiteOutcome {
  name: string;
  /** `uname -r` of the VM kernel the suite ran on; absent for a suite that boots none. */
  kernel?: string;
  /** Why the suite could not run at all (its kernel did not build, ...). */
  notRun?: string;
  /** Exit status of mocha, or of the command in the VM. */
  status?: number;
  /** What mocha reported; absent when it wrote no summary. */
  mocha?: MochaSummary;
  /** Why the VM run failed, as lib/vm reports it (exit-status, timeout, kernel-problem, ...). */
  vmFailures?: string[];
}

export interface SuiteTally {
  name: string;
  kernel?: string;
  passed: number;
  /** Mocha's failures, plus one when the suite failed as a whole. */
  failed: number;
  skipped: number;
  skippedTitles: string[];
  /** Why the suite failed as a whole; empty when it did not. */
  reasons: string[];
}

export interface SuitesSummary {
  suites: SuiteTally[];
  passed: number;
  failed: number;
  skipped: number;
  ok: boolean;
  /** The lines to print, the verdict second to last and the counts last. */
  lines: string[];
}

/** Why a suite failed as a whole, beyond the failures mocha counted. */
function suiteReasons(outcome: SuiteOutcome): string[] {
  if (outcome.notRun !== undefined) return [`could not run: ${outcome.notRun}`];
  const vmFailures = outcome.vmFailures ?? [];
  const vm = vmFailures.length > 0 ? `VM run failed (${vmFailures.join(', ')})` : undefined;
  const { mocha } = outcome;
  if (!mocha) return [`wrote no results (exit status ${outcome.status ?? 'unknown'}${vm ? `; ${vm}` : ''})`];
  const reasons: string[] = [];
  if (mocha.passes + mocha.failures === 0) reasons.push('ran no test');
  if (mocha.failures === 0) {
    if (vm) reasons.push(`${vm} after mocha reported 0 failures`);
    else if (outcome.status !== undefined && outcome.status !== 0) reasons.push(`exit status ${outcome.status} after mocha reported 0 failures`);
  } else if (vmFailures.some((failure) => failure !== 'exit-status')) {
    // Mocha's failures explain a non-zero exit status, not a timeout or a kernel problem.
    reasons.push(`${vm} besides mocha's ${mocha.failures} failure${mocha.failures === 1 ? '' : 's'}`);
  }
  return reasons;
}

function tally(outcome: SuiteOutcome): SuiteTally {
  const reasons = suiteReasons(outcome);
  const mocha = outcome.notRun === undefined ? outcome.mocha : undefined;
  return {
    name: outcome.name,
    kernel: outcome.kernel,
    passed: mocha?.passes ?? 0,
    failed: (mocha?.failures ?? 0) + (reasons.length > 0 ? 1 : 0),
    skipped: mocha?.pending ?? 0,
    skippedTitles: mocha?.skipped ?? [],
    reasons,
  };
}

const plural = (count: number, word: string) => `${count} ${word}${count === 1 ? '' : 's'}`;

export function summarizeSuites(outcomes: SuiteOutcome[]): SuitesSummary {
  const suites = outcomes.map(tally);
  const lines: string[] = [];
  const verdictParts: string[] = [];
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const suite of suites) {
    passed += suite.passed;
    failed += suite.failed;
    skipped += suite.skipped;
    const where = suite.kernel ? ` (kernel ${suite.kernel})` : '';
    lines.push(`${suite.name}${where}: ${suite.passed} passed, ${suite.failed} failed, ${suite.skipped} skipped`);
    for (const title of suite.skippedTitles) lines.push(`  skipped: ${title}`);
    for (const reason of suite.reasons) {
      const [first, ...more] = reason.split('\n');
      lines.push(`  suite failed: ${first}`, ...more.map((line) => `    ${line.trim()}`));
    }
    if (suite.reasons.length > 0) lines.push('  (counted as 1 failed)');
    const testFailures = suite.failed - (suite.reasons.length > 0 ? 1 : 0);
    const parts = [...suite.reasons, ...(testFailures > 0 ? [`${plural(testFailures, 'test')} failed`] : [])];
    // One line for the verdict: each reason's first line; the rest is printed above.
    if (parts.length > 0) verdictParts.push(`${suite.name}: ${parts.map((part) => part.split('\n')[0]).join('; ')}`);
  }
  if (suites.length === 0) {
    // Nothing ran: that is a failure, not a pass with nothing in it.
    failed += 1;
    verdictParts.push('no suite ran');
  }
  const ok = failed === 0;
  const failedSuites = suites.filter((suite) => suite.failed > 0).length;
  lines.push(ok
    ? `verdict: passed (${plural(suites.length, 'suite')}${skipped > 0 ? `, ${skipped} skipped as listed above` : ''})`
    : `verdict: FAILED (${failedSuites} of ${plural(suites.length, 'suite')} failed: ${verdictParts.join(' | ')})`);
  lines.push(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
  return { suites, passed, failed, skipped, ok, lines };
}
