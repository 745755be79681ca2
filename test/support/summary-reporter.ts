import { writeFileSync } from 'node:fs';
import Mocha from 'mocha';

/**
 * The spec reporter, plus a summary file (path in DMABUF_TEST_SUMMARY) so the
 * suite runner can add up host and guest results and notice a suite that ran
 * nothing.
 */
class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    const target = process.env.DMABUF_TEST_SUMMARY;
    if (!target) return;
    const skippedWhy: string[] = [];
    runner.on('pending', (test) => skippedWhy.push(test.fullTitle()));
    runner.once('end', () => {
      const stats = runner.stats ?? { passes: 0, failures: 0, pending: 0 };
      writeFileSync(target, JSON.stringify({ passes: stats.passes, failures: stats.failures, pending: stats.pending, skipped: skippedWhy }));
    });
  }
}

export = SummaryReporter;
