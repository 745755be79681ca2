/**
 * Lines of a kernel log that mean the kernel itself went wrong. Any of them
 * fails a VM run even when the guest command succeeded: a test that passes
 * while the kernel warns has not passed.
 */
const problemPatterns: readonly RegExp[] = [
  /Kernel panic/,
  /\bOops\b/,
  /\bWARNING:/, // WARN_ON and lockdep reports ("WARNING: possible circular locking dependency detected")
  /\bBUG:/, // BUG(), KASAN ("BUG: KASAN:"), sleeping in atomic context, bad page state
  /kernel BUG at/,
  /general protection fault/,
  /Unable to handle kernel/,
  /\bINFO: (possible|inconsistent|lockdep|task .* blocked|rcu)/,
  /rcu: INFO: .*detected stall/,
  /\bUBSAN:/,
  /unreferenced object 0x/, // kmemleak's report (vm/guest-init.sh copies it into the log at the end of the run)
  /kmemleak: (\d+ new suspected memory leaks|Memory pool empty|Cannot allocate|Kernel memory leak detector disabled)/, // a leak, or kmemleak gone blind
  // DMA_API_DEBUG: its errors are WARNs (caught above), but running out of
  // entries or cacheline tracking turns it off with a plain pr_err. Only the
  // boot-time lines and pool growth are harmless.
  /DMA-API: (?!preallocated \d+ debug entries|debugging enabled by kernel config|dma_debug_entry pool grown to )/,
  /\bCall Trace:/, // every splat ends in one; catches those the patterns above do not name
];

export interface KernelProblem {
  /** 1-based line number in the log. */
  line: number;
  text: string;
}

/** Finds the lines that show a kernel problem. */
export function scanKernelLog(log: string): KernelProblem[] {
  const problems: KernelProblem[] = [];
  log.split('\n').forEach((text, index) => {
    if (problemPatterns.some((pattern) => pattern.test(text))) problems.push({ line: index + 1, text: text.trimEnd() });
  });
  return problems;
}

/** The problem lines with some context after each, for a person to read. */
export function describeProblems(log: string, problems: KernelProblem[], contextLines = 12): string {
  const lines = log.split('\n');
  const shown = new Set<number>();
  const out: string[] = [];
  for (const problem of problems) {
    if (shown.has(problem.line)) continue;
    for (let index = problem.line - 1; index < Math.min(lines.length, problem.line - 1 + contextLines); index += 1) {
      if (shown.has(index + 1)) break;
      shown.add(index + 1);
      out.push(`  ${String(index + 1).padStart(5)} | ${lines[index]!.trimEnd()}`);
    }
    out.push('  ...');
  }
  return out.join('\n');
}
