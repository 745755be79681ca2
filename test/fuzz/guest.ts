/**
 * The fuzz supervisor, run in the VM by test/fuzz/run.ts: API fuzz workers
 * until the call budget (or its time) is spent, then the module fuzz worker
 * until its minutes are up. Each worker is a child process, so a crash is
 * counted, reported with the call it died in, and the run goes on; a worker
 * silent for three minutes is killed and counted as a hang. At the end the
 * kernel's own count of dma-bufs (debugfs bufinfo) must be back where it
 * started and the test module must unload (nothing of it still referenced).
 * Prints one line `FUZZ-SUMMARY {json}` for the host.
 *
 * argv: --api-calls N --api-minutes M --module-minutes M --seed S
 */
import { fork, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseBufinfo } from '../../lib';
import { lastCallPath, type Finding, type WorkerMessage } from './common';

interface Options {
  apiCalls: number;
  apiMinutes: number;
  moduleMinutes: number;
  seed: number;
  callsPerWorker: number;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { apiCalls: 100_000, apiMinutes: 20, moduleMinutes: 10, seed: Date.now() % 2 ** 31, callsPerWorker: 10_000 };
  for (let index = 0; index < argv.length; index += 2) {
    const value = Number(argv[index + 1]);
    const key = { '--api-calls': 'apiCalls', '--api-minutes': 'apiMinutes', '--module-minutes': 'moduleMinutes', '--seed': 'seed', '--calls-per-worker': 'callsPerWorker' }[argv[index]!] as keyof Options | undefined;
    if (!key || !Number.isFinite(value) || value < 0) throw new Error(`fuzz guest: bad argument ${argv[index]} ${argv[index + 1]}`);
    options[key] = value;
  }
  return options;
}

export interface WorkerTotals {
  workers: number;
  calls: number;
  crashes: number;
  hangs: number;
  outcomes: Record<string, number>;
  notes: Record<string, number>;
  fdLeaks: number;
  mappingLeaks: number;
}

export interface FuzzSummary {
  seed: number;
  api: WorkerTotals & { minutes: number };
  module: WorkerTotals & { minutes: number };
  findings: Finding[];
  bufinfo: [number, number] | undefined;
  moduleUnloaded: boolean | undefined;
}

const scratch = process.env.TMPDIR ?? '/tmp';
// Workers report every 2 s; a VM starved of CPU on a busy host can still go quiet for a while.
const silenceLimitMs = 180_000;

function emptyTotals(): WorkerTotals {
  return { workers: 0, calls: 0, crashes: 0, hangs: 0, outcomes: {}, notes: {}, fdLeaks: 0, mappingLeaks: 0 };
}

function add(into: Record<string, number>, from: Record<string, number>): void {
  for (const [key, value] of Object.entries(from)) into[key] = (into[key] ?? 0) + value;
}

/** Runs one worker to its end; whatever happens to it is added to `totals` and `findings`. */
function runWorker(script: string, args: string[], worker: number, totals: WorkerTotals, findings: Finding[]): Promise<void> {
  return new Promise((resolve) => {
    totals.workers += 1;
    const child = fork(join(__dirname, script), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: process.env.FUZZ_WORKER_ARGV ? process.env.FUZZ_WORKER_ARGV.split(' ') : [] });
    let calls = 0;
    let done = false;
    let hung = false;
    let heard = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - heard > silenceLimitMs) {
        hung = true;
        child.kill('SIGKILL');
      }
    }, 1000);
    child.on('message', (message: WorkerMessage) => {
      heard = Date.now();
      if (message.type === 'progress') calls = message.calls;
      else if (message.type === 'finding') {
        findings.push(message.finding);
        process.stdout.write(`fuzz: finding: ${message.finding.kind}: ${message.finding.call.slice(0, 300)}: ${message.finding.detail.split('\n')[0]!.slice(0, 300)}\n`);
      }
      else if (message.type === 'done') {
        done = true;
        calls = message.calls;
        add(totals.outcomes, message.outcomes);
        add(totals.notes, message.notes);
        if (message.fds[0] !== message.fds[1]) {
          totals.fdLeaks += 1;
          findings.push({ kind: 'fd leak', call: `${script} worker ${worker}`, detail: `open fds ${message.fds[0]} before, ${message.fds[1]} after closing everything` });
        }
        if (message.mappings[0] !== message.mappings[1]) {
          totals.mappingLeaks += 1;
          findings.push({ kind: 'mapping leak', call: `${script} worker ${worker}`, detail: `dma-buf/memfd mappings ${message.mappings[0]} before, ${message.mappings[1]} after closing everything` });
        }
      }
    });
    child.on('exit', (code, signal) => {
      clearInterval(watchdog);
      totals.calls += calls;
      if (!done || code !== 0) {
        const path = lastCallPath(scratch, worker);
        const lastCall = existsSync(path) ? readFileSync(path, 'utf8').trim() : '(unknown)';
        if (hung) totals.hangs += 1;
        else totals.crashes += 1;
        process.stdout.write(`fuzz: ${hung ? 'hang' : 'crash'} in ${script} worker ${worker} (exit ${code}, signal ${signal}), last call: ${lastCall.slice(0, 300)}\n`);
        findings.push({ kind: hung ? `hang (no word for ${silenceLimitMs / 1000} s, killed)` : `crash (exit ${code}, signal ${signal})`, call: lastCall, detail: `${script} worker ${worker}, seed ${args[0]}` });
      }
      resolve();
    });
  });
}

function bufferCount(): number | undefined {
  const path = '/sys/kernel/debug/dma_buf/bufinfo';
  return existsSync(path) ? parseBufinfo(readFileSync(path, 'utf8')).length : undefined;
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const findings: Finding[] = [];
  const buffersBefore = bufferCount();
  process.stdout.write(`fuzz: seed ${options.seed}; API: ${options.apiCalls} calls within ${options.apiMinutes} min; module: ${options.moduleMinutes} min\n`);

  const api = emptyTotals();
  let started = Date.now();
  const apiDeadline = started + options.apiMinutes * 60_000;
  let worker = 0;
  while (api.calls < options.apiCalls && Date.now() < apiDeadline) {
    const budget = Math.min(options.callsPerWorker, options.apiCalls - api.calls);
    await runWorker('api-worker.js', [String(options.seed + worker), String(budget), String(apiDeadline), String(worker), scratch], worker, api, findings);
    worker += 1;
    process.stdout.write(`fuzz: API ${api.calls} calls, ${api.workers} workers, ${findings.length} findings, ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  }
  const apiMinutes = (Date.now() - started) / 60_000;

  const module = emptyTotals();
  started = Date.now();
  const moduleDeadline = started + options.moduleMinutes * 60_000;
  while (options.moduleMinutes > 0 && Date.now() < moduleDeadline) {
    await runWorker('module-worker.js', [String(options.seed + worker), String(moduleDeadline), String(worker), scratch], worker, module, findings);
    worker += 1;
    process.stdout.write(`fuzz: module ${module.calls} ioctls, ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  }
  const moduleMinutes = (Date.now() - started) / 60_000;

  // Every worker has exited, so every fd it had is closed: any dma-buf the
  // kernel still lists is one something in the kernel holds on to.
  const buffersAfter = bufferCount();
  let moduleUnloaded: boolean | undefined;
  if (existsSync('/sys/module/dmabuf_test')) {
    const rmmod = spawnSync('rmmod', ['dmabuf_test'], { encoding: 'utf8' });
    moduleUnloaded = rmmod.status === 0;
    if (!moduleUnloaded) findings.push({ kind: 'module still referenced', call: 'rmmod dmabuf_test', detail: rmmod.stderr.trim() });
  }
  if (buffersBefore !== undefined && buffersAfter !== buffersBefore) {
    findings.push({ kind: 'kernel dma-buf leak', call: '(all workers exited)', detail: `bufinfo lists ${buffersBefore} buffers before, ${buffersAfter} after` });
  }
  const summary: FuzzSummary = {
    seed: options.seed,
    api: { ...api, minutes: apiMinutes },
    module: { ...module, minutes: moduleMinutes },
    findings,
    bufinfo: buffersBefore === undefined ? undefined : [buffersBefore, buffersAfter ?? -1],
    moduleUnloaded,
  };
  process.stdout.write(`FUZZ-SUMMARY ${JSON.stringify(summary)}\n`);
}

void main();
