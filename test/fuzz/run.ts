/**
 * `npm run fuzz -- [--minutes N | --api-calls N --api-minutes M --module-minutes M] [--profile P] [--seed S]`
 *
 * Boots the VM (the debug kernel by default: lockdep, KASAN, kmemleak,
 * DMA_API_DEBUG) with the test module loaded, fuzzes the public API and then
 * the module's ioctls (test/fuzz/guest.ts), and prints what happened. Exits
 * non-zero on any crash, hang, error of the wrong shape, fd, mapping or
 * kernel leak, or kernel splat (the runner's log scan, kmemleak included).
 *
 * --minutes N splits N minutes evenly: half for the API fuzz (which also
 * stops at --api-calls, default 100,000), half for the module fuzz.
 */
import { join, resolve } from 'node:path';
import { run, type KernelProfile } from '../../lib/vm';
import { debugGeneration } from '../support/matrix';
import type { FuzzSummary, WorkerTotals } from './guest';

const root = resolve(__dirname, '..', '..', '..');

interface Args {
  apiCalls: number;
  apiMinutes: number;
  moduleMinutes: number;
  profile: KernelProfile;
  kernel: string;
  seed: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { apiCalls: 100_000, apiMinutes: 15, moduleMinutes: 10, profile: 'debug', kernel: debugGeneration(), seed: Date.now() % 2 ** 31 };
  for (let index = 0; index < argv.length; index += 2) {
    const [flag, text] = [argv[index]!, argv[index + 1]];
    if (flag === '--profile') {
      args.profile = text as KernelProfile;
      continue;
    }
    if (flag === '--kernel') {
      args.kernel = text ?? '';
      continue;
    }
    const value = Number(text);
    if (text === undefined || !Number.isFinite(value) || value < 0) throw new Error(`fuzz: ${flag} needs a number, got ${text}`);
    if (flag === '--minutes') {
      args.apiMinutes = value / 2;
      args.moduleMinutes = value / 2;
    } else if (flag === '--api-calls') args.apiCalls = Math.floor(value);
    else if (flag === '--api-minutes') args.apiMinutes = value;
    else if (flag === '--module-minutes') args.moduleMinutes = value;
    else if (flag === '--seed') args.seed = Math.floor(value);
    else throw new Error(`fuzz: unknown option ${flag} (--minutes, --api-calls, --api-minutes, --module-minutes, --kernel, --profile, --seed)`);
  }
  return args;
}

function table(outcomes: Record<string, number>): string {
  return Object.entries(outcomes).sort((a, b) => b[1] - a[1]).map(([key, value]) => `${key} ${value}`).join(', ');
}

function describe(name: string, totals: WorkerTotals & { minutes: number }, unit: string): string {
  return `${name}: ${totals.calls} ${unit} in ${totals.minutes.toFixed(1)} min (${totals.workers} worker processes); crashes ${totals.crashes}, hangs ${totals.hangs}, fd leaks ${totals.fdLeaks}, mapping leaks ${totals.mappingLeaks}\n  outcomes: ${table(totals.outcomes)}`;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const result = await run({
    command: [process.execPath, join(root, 'dist', 'test', 'fuzz', 'guest.js'), '--api-calls', String(args.apiCalls), '--api-minutes', String(args.apiMinutes), '--module-minutes', String(args.moduleMinutes), '--seed', String(args.seed)],
    cwd: root,
    kernel: args.kernel,
    profile: args.profile,
    modules: [{ path: join(root, 'kernel-module') }],
    memoryMiB: 3072,
    timeoutMs: Math.ceil((args.apiMinutes + args.moduleMinutes + 10) * 60_000),
    onStdout: (chunk) => {
      for (const line of chunk.toString('utf8').split('\n')) if (line.startsWith('fuzz:')) process.stdout.write(`${line}\n`);
    },
    onStderr: (chunk) => process.stderr.write(chunk),
    onProgress: (line) => process.stdout.write(`${line}\n`),
  });
  const line = result.stdout.split('\n').find((text) => text.startsWith('FUZZ-SUMMARY '));
  const summary = line ? (JSON.parse(line.slice('FUZZ-SUMMARY '.length)) as FuzzSummary) : undefined;
  const out: string[] = [`\nfuzz on the ${args.kernel} ${args.profile} kernel (${result.kernel.release ?? result.kernel.bzImage}), seed ${args.seed}, ${((Date.now() - started) / 60_000).toFixed(1)} min in all`];
  let ok = result.ok;
  if (!summary) {
    out.push('the fuzzer printed no summary: it did not finish');
    ok = false;
  } else {
    out.push(describe('API fuzz', summary.api, 'calls'), describe('module fuzz', summary.module, 'ioctls'));
    const notes = Object.entries(summary.api.notes).sort((a, b) => b[1] - a[1]);
    if (notes.length > 0) out.push(`  TypeErrors and RangeErrors without a code (allowed, but an argument reached V8 past the checks):\n${notes.slice(0, 15).map(([note, count]) => `    ${count}x ${note}`).join('\n')}`);
    out.push(`kernel dma-bufs (bufinfo) before/after: ${summary.bufinfo ? summary.bufinfo.join('/') : 'no bufinfo'}; test module unloaded at the end: ${summary.moduleUnloaded ?? 'not loaded'}`);
    out.push(`kmemleak: ${result.kmemleak === undefined ? 'not in this kernel' : result.kmemleak === '' ? 'scanned, no leaks' : 'REPORTED LEAKS (see below)'}`);
    out.push(`findings: ${summary.findings.length}`);
    const seen = new Map<string, number>();
    for (const finding of summary.findings) {
      const key = `${finding.kind}: ${finding.detail}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
      if (seen.get(key)! <= 3) out.push(`  - ${finding.kind}\n      call: ${finding.call}\n      ${finding.detail}`);
    }
    for (const [key, count] of seen) if (count > 3) out.push(`  (${count - 3} more of: ${key.slice(0, 160)})`);
    if (summary.findings.length > 0) ok = false;
    if (summary.api.calls < args.apiCalls && args.apiMinutes > 0) out.push(`note: the API fuzz made ${summary.api.calls} of ${args.apiCalls} calls before its ${args.apiMinutes} minutes ran out`);
  }
  out.push(`VM run: ${result.ok ? 'clean (exit 0, no kernel problem in the log)' : `failed (${result.failures.join(', ')})`}`);
  if (!result.ok) out.push(result.summary);
  if (result.exitCode !== 0 && result.stderr) out.push(`guest stderr (tail):\n${result.stderr.split('\n').slice(-30).join('\n')}`);
  out.push(ok ? 'fuzz: PASS' : 'fuzz: FAIL');
  process.stdout.write(`${out.join('\n')}\n`);
  return ok ? 0 : 1;
}

main().then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    process.stderr.write(`fuzz: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
