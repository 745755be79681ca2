import { buildPercent, formatElapsed, type KernelBuildProgress } from '../vm/kernel';

/** The stream progress is written to; `isTTY` and `columns` as a tty.WriteStream has them. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressDisplay {
  /** For `onProgress`: a line, and for kernel-build steps the same as data. */
  onProgress: (line: string, progress?: KernelBuildProgress) => void;
  /** Ends an updating line so that what follows starts on a line of its own. */
  finish(): void;
  /** How often the build should report its compile phase: often enough for a live line on a terminal. */
  readonly intervalMs: number | undefined;
}

/** The live line's text: phase, objects, percent where there is a basis, elapsed. */
export function formatLiveProgress(progress: KernelBuildProgress, elapsedMs = progress.elapsedMs): string {
  const parts = [`kernel ${progress.key}`, progress.phase];
  if (progress.phase === 'compile' || progress.done !== undefined) {
    const percent = buildPercent(progress);
    if (percent !== undefined) parts.push(`${progress.done}/${progress.total} objects`, `${percent}%`);
    else parts.push(`${progress.done ?? 0} objects${progress.total !== undefined ? ` (previous build: ${progress.total})` : ''}`);
  }
  parts.push(formatElapsed(elapsedMs));
  return parts.join('  ');
}

/**
 * Progress as a person reads it: on a terminal one line that updates in place
 * (`\r`), its elapsed time ticking between reports; elsewhere (CI logs, a
 * pipe) the plain line of each report.
 */
export function progressDisplay(stream: ProgressStream, options: { tty?: boolean; prefix?: string; now?: () => number; tickMs?: number } = {}): ProgressDisplay {
  const prefix = options.prefix ?? 'dmabuf: ';
  const tty = options.tty ?? stream.isTTY === true;
  const now = options.now ?? Date.now;
  if (!tty) {
    return { onProgress: (line) => void stream.write(`${prefix}${line}\n`), finish: () => {}, intervalMs: undefined };
  }
  let live: { progress: KernelBuildProgress; receivedAt: number } | undefined;
  let ticker: NodeJS.Timeout | undefined;
  // A line longer than the terminal wraps, and `\r` then rewrites only its last row.
  const fit = (text: string) => {
    // A pseudo-terminal may report 0 columns: that is "unknown", not "none".
    const columns = stream.columns !== undefined && stream.columns > 20 ? stream.columns : 80;
    return text.length < columns ? text : `${text.slice(0, Math.max(0, columns - 2))}…`;
  };
  const render = () => {
    if (!live) return;
    stream.write(`\r\x1b[K${fit(`${prefix}${formatLiveProgress(live.progress, live.progress.elapsedMs + now() - live.receivedAt)}`)}`);
  };
  const stop = () => {
    if (ticker) clearInterval(ticker);
    ticker = undefined;
  };
  return {
    intervalMs: 1000,
    onProgress(line, progress) {
      // A line that stays: a source fetch, the build's first report (it names the log), the finished build.
      if (!progress || progress.phase === 'unpack' || progress.phase === 'done') {
        stream.write(`${live ? '\r\x1b[K' : ''}${prefix}${line}\n`);
        if (progress) live = undefined;
      }
      if (progress && progress.phase !== 'done') {
        live = { progress, receivedAt: now() };
        if (!ticker) {
          ticker = setInterval(render, options.tickMs ?? 1000);
          ticker.unref();
        }
      } else if (progress) {
        stop();
      }
      render();
    },
    finish() {
      stop();
      if (live) stream.write('\n');
      live = undefined;
    },
  };
}
