import { invalidValue } from '../validate';

/** Quotes a word for POSIX sh, so any argv reaches the guest exactly. */
export function shellQuote(word: string): string {
  if (word === '') return "''";
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export interface GuestJob {
  /** An argv run as is, or a string run by `sh -c`. */
  command: string | readonly string[];
  cwd: string;
  env: Record<string, string>;
  /** Kernel modules to load first, with their parameters. */
  modules: readonly { path: string; params: readonly string[] }[];
  /** Where the guest writes results, as the guest sees it. */
  resultsDir: string;
}

/** Exit status the job reports when a module did not load, so the host can tell it from the command's own. */
export const moduleLoadFailedStatus = 125;

/**
 * The script the guest's init runs: environment, modules, then the command.
 * It is plain sh so the host can run it too (the host tests do, to check the
 * quoting).
 */
export function renderJobScript(job: GuestJob): string {
  const lines = ['#!/bin/sh', '# Written by the dmabuf VM runner; run by vm/guest-init.sh inside the guest.'];
  for (const [name, value] of Object.entries(job.env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw invalidValue('env', 'environment variable names of letters, digits and _ (not starting with a digit)', name);
    lines.push(`export ${name}=${shellQuote(value)}`);
  }
  lines.push(`cd ${shellQuote(job.cwd)} || exit 126`);
  for (const module of job.modules) {
    const insmod = ['insmod', module.path, ...module.params].map(shellQuote).join(' ');
    lines.push(`${insmod} || { echo ${shellQuote(`insmod ${module.path} failed`)} >> ${shellQuote(`${job.resultsDir}/module-error`)}; exit ${moduleLoadFailedStatus}; }`);
  }
  const command = typeof job.command === 'string' ? `sh -c ${shellQuote(job.command)}` : job.command.map(shellQuote).join(' ');
  lines.push(`exec ${command}`);
  return `${lines.join('\n')}\n`;
}
