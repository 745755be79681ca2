import { spawn } from 'node:child_process';

/** Runs a build tool, its output into `log` (and line by line to `onLine`); resolves with its exit status. */
export function runLogged(command: string, args: string[], cwd: string, log: NodeJS.WritableStream, onLine?: (line: string) => void, env?: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let pending = '';
    const forward = (chunk: Buffer) => {
      log.write(chunk);
      if (!onLine) return;
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    };
    child.stdout.on('data', forward);
    child.stderr.on('data', forward);
    child.on('error', reject);
    child.on('close', (code, signal) => resolvePromise(code ?? (signal ? 128 : 1)));
  });
}
