import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Fails the suite at once outside the VM, instead of failing every test for a confusing reason. */
export function requireVm(): void {
  before(function () {
    if (process.env.DMABUF_IN_VM !== '1') throw new Error('the guest suite runs only inside the VM (npm test boots it)');
  });
}

export function openFdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** The kernel's count of live dma-bufs: the "Total N objects" line closing debugfs's bufinfo. */
export function kernelBufferCount(): number {
  const match = /^Total (\d+) objects/m.exec(readFileSync('/sys/kernel/debug/dma_buf/bufinfo', 'utf8'));
  assert.ok(match, 'bufinfo ends with its Total line');
  return Number(match[1]);
}

/** Mappings of dma-bufs in this process: their file is shown as /dmabuf:<name>. */
function dmaBufMappings(): string[] {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((line) => line.includes('/dmabuf:'));
}

export function dmaBufMappingCount(): number {
  return dmaBufMappings().length;
}

/** Asserts that `fn` leaves no fd and no dma-buf mapping behind. */
export async function expectNoLeak(fn: () => unknown): Promise<void> {
  const fds = openFdCount();
  const maps = dmaBufMappingCount();
  await fn();
  assert.equal(openFdCount(), fds, 'open fds before and after');
  const left = dmaBufMappings();
  // The lines themselves, so that an intermittent leftover says which buffer it maps.
  assert.equal(left.length, maps, `dma-buf mappings before and after (now: ${left.join('; ') || 'none'})`);
}

/** Settles whether a promise has settled after the event loop has had `ms` to run. */
export async function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((resolve) => setTimeout(resolve, ms));
  return settled;
}

export const pageSize = 4096;

export function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.on('exit', resolve)));
}

/** The first line a child prints on stdout. */
export async function firstLine(child: ChildProcess): Promise<string> {
  let text = '';
  for await (const chunk of child.stdout!) {
    text += String(chunk);
    if (text.includes('\n')) return text.slice(0, text.indexOf('\n'));
  }
  throw new Error('the child printed nothing');
}

/**
 * The VmFlags of this process's mapping of dma-buf `inode` (/proc/self/smaps):
 * `pf` when the exporter maps raw page frames (VM_PFNMAP).
 */
export function dmaBufVmFlags(inode: number): string[] {
  for (const block of readFileSync('/proc/self/smaps', 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const header = /^\S+ \S+ \S+ \S+ (\d+)\s+\/dmabuf:/.exec(block);
    if (header && Number(header[1]) === inode) return /^VmFlags:(.*)$/m.exec(block)![1]!.trim().split(/\s+/);
  }
  throw new Error(`no mapping of dma-buf inode ${inode} in /proc/self/smaps`);
}
