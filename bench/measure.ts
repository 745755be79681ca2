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
  /** Set when the row could not be measured: why its process ended. */
  error?: string;
}

export async function timed(ops: number, loop: () => unknown): Promise<Measurement> {
  const start = process.hrtime.bigint();
  await loop();
  return { ops, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
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
  try {
    for (const opener of [...open, ...Object.values(alongside)]) sides.push(await opener());
    const rates = sides.map((): number[] => []);
    for (let round = 0; round < warmupRounds + rounds; round += 1) {
      for (const [index, side] of sides.entries()) {
        const { ops, seconds } = await side.run(iterations);
        if (round >= warmupRounds) rates[index]!.push(ops / seconds);
        // Progress on stderr: under TCG on a busy host a row can take minutes.
        const name = index === 0 ? 'js' : index < open.length ? 'c' : alongsideNames[index - open.length]!;
        process.stderr.write(`bench: ${workload} ${round < warmupRounds ? 'warm-up' : 'round'} ${round + 1}/${warmupRounds + rounds} ${name} ${seconds.toFixed(2)} s\n`);
      }
    }
    const spreads = rates.map(spread);
    const [js, c] = spreads.slice(0, open.length);
    const measuredAlongside = Object.fromEntries(alongsideNames.map((name, index) => [name, spreads[open.length + index]!]));
    return { workload, iterations, js, ...(c ? { c } : {}), ...(alongsideNames.length > 0 ? { alongside: measuredAlongside } : {}) };
  } finally {
    for (const side of sides) await side.close();
  }
}
