import { readFileSync } from 'node:fs';

/**
 * The bench's one timing scaffold: every row of `npm run bench`, JavaScript
 * and C alike, is measured by measureRow(), so that every row gets the same
 * warm-up, the same kept-open peers and the same rounds by construction.
 */

/**
 * Rounds before measuring, for every side of every row: under TCG the JIT
 * needs thousands of iterations before event-loop code runs at speed, and the
 * C side gets the same rounds so that neither side is measured cold.
 */
export const warmupRounds = 2;
export const rounds = 5;

export interface Measurement {
  ops: number;
  seconds: number;
  /**
   * CPU time (user + system) the round took in every process of the side,
   * this one and its peer. The two processes of a ping-pong mostly take
   * turns, so it tracks the rate; what overlaps (V8's threads, the
   * kernel's work) puts rate × CPU a little above 1.
   */
  cpuSeconds?: number;
}

/** One side of a row, opened once and kept for the warm-up and every round. */
export interface Session {
  run(iterations: number): Promise<Measurement>;
  close(): Promise<void>;
}

export interface Spread {
  min: number;
  median: number;
  max: number;
}

export interface Row {
  workload: string;
  iterations?: number;
  /** Rates (ops per second) over the measured rounds. */
  js?: Spread;
  /** Absent for a reference row: it has no C counterpart. */
  c?: Spread;
  /**
   * Reference sessions measured in the same rounds as this row's sides,
   * alternating with them: a ratio between them never mixes moments of a
   * boot (Node net's median moved from 1.8k to 3.3k round trips/s between
   * two boots, and between two rows of one).
   */
  alongside?: Record<string, Spread>;
  /** CPU seconds per op over the measured rounds, by side ('js', 'c', or an alongside name), for the sides that measure it. */
  cpu?: Record<string, Spread>;
  /** Set when the row could not be measured: why its process ended. */
  error?: string;
}

/**
 * Times `loop`. With `peers` (the pids of the side's other processes) the
 * measurement also has the CPU time of this process and of each peer.
 */
export async function timed(ops: number, loop: () => unknown, peers?: readonly number[]): Promise<Measurement> {
  const cpuBefore = peers ? cpuOf(peers) : 0;
  const start = process.hrtime.bigint();
  await loop();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return peers ? { ops, seconds, cpuSeconds: cpuOf(peers) - cpuBefore } : { ops, seconds };
}

function cpuOf(peers: readonly number[]): number {
  const own = process.cpuUsage();
  return (own.user + own.system) / 1e6 + peers.reduce((sum, pid) => sum + processCpuSeconds(pid), 0);
}

/**
 * A process's CPU time so far (user + system), from /proc/<pid>/stat. Its
 * unit is USER_HZ, which Linux fixes at 100 per second for user space: a
 * peer that spends 0.3 s of a round is measured to about 3%.
 */
export function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: the fields start after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export function spread(values: readonly number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
  return { min: sorted[0]!, median, max: sorted[sorted.length - 1]! };
}

/**
 * Opens each side once (JavaScript first, then C when the row has one),
 * runs `warmupRounds` unmeasured rounds and `rounds` measured ones of
 * `iterations` each, the sides alternating within a round, and closes them.
 */
export async function measureRow(
  workload: string,
  iterations: number,
  open: ReadonlyArray<() => Promise<Session> | Session>,
  alongside: Readonly<Record<string, () => Promise<Session>>> = {},
): Promise<Row> {
  const sides: Session[] = [];
  const alongsideNames = Object.keys(alongside);
  const names = [...open.map((_, index) => (index === 0 ? 'js' : 'c')), ...alongsideNames];
  try {
    for (const opener of [...open, ...Object.values(alongside)]) sides.push(await opener());
    const rates = sides.map((): number[] => []);
    const cpu = sides.map((): number[] => []);
    for (let round = 0; round < warmupRounds + rounds; round += 1) {
      for (const [index, side] of sides.entries()) {
        const { ops, seconds, cpuSeconds } = await side.run(iterations);
        if (round >= warmupRounds) rates[index]!.push(ops / seconds);
        if (round >= warmupRounds && cpuSeconds !== undefined) cpu[index]!.push(cpuSeconds / ops);
        // Progress on stderr: under TCG on a busy host a row can take minutes.
        process.stderr.write(`bench: ${workload} ${round < warmupRounds ? 'warm-up' : 'round'} ${round + 1}/${warmupRounds + rounds} ${names[index]} ${seconds.toFixed(2)} s\n`);
      }
    }
    const spreads = rates.map(spread);
    const [js, c] = spreads.slice(0, open.length);
    const measuredAlongside = Object.fromEntries(alongsideNames.map((name, index) => [name, spreads[open.length + index]!]));
    // A side's CPU counts only when every measured round had it.
    const measuredCpu = Object.fromEntries(names.flatMap((name, index) => (cpu[index]!.length === rounds ? [[name, spread(cpu[index]!)]] : [])));
    return {
      workload,
      iterations,
      js,
      ...(c ? { c } : {}),
      ...(alongsideNames.length > 0 ? { alongside: measuredAlongside } : {}),
      ...(Object.keys(measuredCpu).length > 0 ? { cpu: measuredCpu } : {}),
    };
  } finally {
    for (const side of sides) await side.close();
  }
}
