import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { parseFdinfo } from './dmabuf';

/** One dma-buf as one process holds it: by fd, by mapping, or both. */
export interface ProcessBuffer {
  inode: number;
  size: number;
  exporter: string | undefined;
  name: string | undefined;
  /** The fds that refer to it. */
  fds: number[];
  /** Its mappings in the address space, as [start, end) byte addresses in hex. */
  mappings: { start: string; end: string; bytes: number }[];
}

export interface ProcessReport {
  pid: number;
  command: string;
  buffers: ProcessBuffer[];
  /** Set when this process could not be read (another user's, or gone): the rest of the report stands. */
  error?: { code: string; message: string };
}

/** One dma-buf of the system, once, with every process that holds it. */
export interface SystemBuffer {
  inode: number;
  size: number;
  exporter: string | undefined;
  name: string | undefined;
  holders: { pid: number; command: string; fds: number[]; mappings: number }[];
  /** From debugfs bufinfo, where readable: devices attached and fences in its reservation. */
  attachedDevices?: string[];
  fences?: BufinfoFence[];
}

/**
 * One fence of a buffer's reservation as debugfs's bufinfo shows it. Linux
 * 6.1 and 6.12 print `<usage> fence:<driver> <timeline> seq <seqno>
 * [un]signalled`; 7.2 prints `<usage> fence:<context>:<seqno> <timeline>
 * <driver> [un]signalled`, with both names left empty once the fence has
 * signalled. Whatever a kernel does not print is undefined.
 */
export interface BufinfoFence {
  /** kernel, write or read (bufinfo never lists bookkeep fences). */
  usage: string;
  driver: string | undefined;
  timeline: string | undefined;
  /** The fence context (7.2 and later print it). */
  context: number | undefined;
  seqno: number | undefined;
  signalled: boolean | undefined;
  /** The line as the kernel wrote it, trimmed. */
  text: string;
}

export interface BufinfoEntry {
  inode: number;
  size: number;
  flags: number;
  mode: number;
  count: number;
  exporter: string;
  name: string | undefined;
  attachedDevices: string[];
  fences: BufinfoFence[];
}

export interface SystemReport {
  buffers: SystemBuffer[];
  processes: ProcessReport[];
  totals: {
    perProcess: { pid: number; command: string; buffers: number; bytes: number }[];
    perExporter: { exporter: string; buffers: number; bytes: number }[];
    buffers: number;
    bytes: number;
  };
  /** Undefined where debugfs is not mounted or not readable (it is root-only). */
  bufinfo: BufinfoEntry[] | undefined;
}

const bufinfoPath = '/sys/kernel/debug/dma_buf/bufinfo';

function errorOf(error: unknown): { code: string; message: string } {
  const failure = error as NodeJS.ErrnoException;
  return { code: failure.code ?? 'EIO', message: failure.message };
}

/** Every dma-buf a process holds by fd or by mapping (/proc/<pid>/fd, fdinfo, maps). */
export function inspectProcess(pid: number = process.pid): ProcessReport {
  let command = '';
  try {
    command = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    const byInode = new Map<number, ProcessBuffer>();
    const entry = (inode: number): ProcessBuffer => {
      let buffer = byInode.get(inode);
      if (!buffer) {
        buffer = { inode, size: 0, exporter: undefined, name: undefined, fds: [], mappings: [] };
        byInode.set(inode, buffer);
      }
      return buffer;
    };
    for (const name of readdirSync(`/proc/${pid}/fd`)) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${name}`);
      } catch {
        continue; // closed while we looked
      }
      if (!target.startsWith('/dmabuf:')) continue;
      let fields: Map<string, string>;
      try {
        fields = parseFdinfo(readFileSync(`/proc/${pid}/fdinfo/${name}`, 'utf8'));
      } catch {
        continue;
      }
      const buffer = entry(Number(fields.get('ino')));
      buffer.fds.push(Number(name));
      buffer.size = Number(fields.get('size'));
      buffer.exporter = fields.get('exp_name');
      buffer.name = fields.get('name');
    }
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const columns = line.split(/\s+/);
      if (columns.length < 6 || !columns[5]!.startsWith('/dmabuf:')) continue;
      const [start, end] = columns[0]!.split('-') as [string, string];
      const buffer = entry(Number(columns[4]));
      const bytes = Number(BigInt(`0x${end}`) - BigInt(`0x${start}`));
      buffer.mappings.push({ start, end, bytes });
      if (buffer.name === undefined && columns[5]!.length > '/dmabuf:'.length) buffer.name = columns[5]!.slice('/dmabuf:'.length);
    }
    for (const buffer of byInode.values()) {
      if (buffer.size === 0) buffer.size = Math.max(...buffer.mappings.map((mapping) => mapping.bytes)); // mapped only: the mapping's extent
    }
    return { pid, command, buffers: [...byInode.values()].sort((a, b) => a.inode - b.inode) };
  } catch (error) {
    return { pid, command, buffers: [], error: errorOf(error) };
  }
}

// Driver names have no spaces; timeline names may (sw_sync names its timeline
// after the opening task's comm), so the timeline takes what is left.
const fenceWithContext = /^(\w+) fence:(\d+):(\d+) (.*) (\S*) (un)?signalled$/;
const fenceWithSeq = /^(\w+) fence:(\S+) (.*) seq (\d+) (un)?signalled$/;

/** Parses one fence line of bufinfo, in the format of Linux 6.1/6.12 or of 7.2. */
export function parseBufinfoFence(line: string): BufinfoFence {
  const text = line.trim();
  const withContext = fenceWithContext.exec(text);
  if (withContext) {
    const signalled = withContext[6] === undefined;
    return {
      usage: withContext[1]!,
      context: Number(withContext[2]),
      seqno: Number(withContext[3]),
      // 7.2 leaves the names out of a signalled fence: its driver may be gone.
      timeline: signalled && withContext[4] === '' ? undefined : withContext[4],
      driver: signalled && withContext[5] === '' ? undefined : withContext[5],
      signalled,
      text,
    };
  }
  const withSeq = fenceWithSeq.exec(text);
  if (withSeq) {
    return { usage: withSeq[1]!, driver: withSeq[2], timeline: withSeq[3], context: undefined, seqno: Number(withSeq[4]), signalled: withSeq[5] === undefined, text };
  }
  return { usage: /^(\w+) fence:/.exec(text)?.[1] ?? '', driver: undefined, timeline: undefined, context: undefined, seqno: undefined, signalled: undefined, text };
}

/** Parses debugfs's dma_buf/bufinfo (the formats of Linux 6.1, 6.12 and 7.2). */
export function parseBufinfo(text: string): BufinfoEntry[] {
  const entries: BufinfoEntry[] = [];
  let current: BufinfoEntry | undefined;
  let inDevices = false;
  for (const line of text.split('\n')) {
    const row = /^(\d{8,})\t([0-9a-f]{8})\t([0-9a-f]{8})\t(\d{8,})\t(.*)\t(\d{8,})\t(.*)$/.exec(line);
    if (row) {
      current = {
        size: Number(row[1]),
        flags: Number.parseInt(row[2]!, 16),
        mode: Number.parseInt(row[3]!, 16),
        count: Number(row[4]),
        exporter: row[5]!,
        inode: Number(row[6]),
        name: row[7] === '<none>' ? undefined : row[7],
        attachedDevices: [],
        fences: [],
      };
      entries.push(current);
      inDevices = false;
      continue;
    }
    if (!current) continue;
    if (line === '\tAttached Devices:') inDevices = true;
    else if (/^\t\w+ fence:/.test(line)) current.fences.push(parseBufinfoFence(line));
    else if (inDevices && line.startsWith('\t')) current.attachedDevices.push(line.trim());
    else if (/^Total \d+ devices attached/.test(line)) inDevices = false;
  }
  return entries;
}

function readBufinfo(): BufinfoEntry[] | undefined {
  try {
    return parseBufinfo(readFileSync(bufinfoPath, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Every process's dma-bufs, each buffer once with its holders, and the totals. */
export function inspectSystem(): SystemReport {
  const pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number).sort((a, b) => a - b);
  const processes = pids.map((pid) => inspectProcess(pid)).filter((report) => report.error?.code !== 'ENOENT');
  const bufinfo = readBufinfo();
  const byInode = new Map<number, SystemBuffer>();
  for (const report of processes) {
    for (const held of report.buffers) {
      let buffer = byInode.get(held.inode);
      if (!buffer) {
        buffer = { inode: held.inode, size: held.size, exporter: held.exporter, name: held.name, holders: [] };
        byInode.set(held.inode, buffer);
      }
      // An fd's fdinfo knows size and exporter; a mapping alone does not.
      if (held.fds.length > 0) Object.assign(buffer, { size: held.size, exporter: held.exporter, name: held.name ?? buffer.name });
      buffer.holders.push({ pid: report.pid, command: report.command, fds: held.fds, mappings: held.mappings.length });
    }
  }
  for (const entry of bufinfo ?? []) {
    const buffer = byInode.get(entry.inode);
    if (!buffer) continue;
    buffer.size = entry.size;
    buffer.exporter = entry.exporter;
    buffer.name = entry.name ?? buffer.name;
    buffer.attachedDevices = entry.attachedDevices;
    buffer.fences = entry.fences;
  }
  const buffers = [...byInode.values()].sort((a, b) => a.inode - b.inode);
  const perExporter = new Map<string, { exporter: string; buffers: number; bytes: number }>();
  for (const buffer of buffers) {
    const key = buffer.exporter ?? '(mapped only)';
    const total = perExporter.get(key) ?? { exporter: key, buffers: 0, bytes: 0 };
    total.buffers += 1;
    total.bytes += buffer.size;
    perExporter.set(key, total);
  }
  const perProcess = processes
    .filter((report) => report.buffers.length > 0)
    .map((report) => ({ pid: report.pid, command: report.command, buffers: report.buffers.length, bytes: report.buffers.reduce((sum, buffer) => sum + buffer.size, 0) }));
  return {
    buffers,
    processes,
    totals: { perProcess, perExporter: [...perExporter.values()], buffers: buffers.length, bytes: buffers.reduce((sum, buffer) => sum + buffer.size, 0) },
    bufinfo,
  };
}

function humanBytes(bytes: number): string {
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  if (bytes >= 1 << 10) return `${(bytes / (1 << 10)).toFixed(1)} KiB`;
  return `${bytes} B`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()).join('\n');
}

/** The system report as a person reads it. */
export function formatSystemReport(report: SystemReport): string {
  const lines: string[] = [];
  const rows = [['INODE', 'SIZE', 'EXPORTER', 'NAME', 'HELD BY (pid command: fds, maps)']];
  for (const buffer of report.buffers) {
    const holders = buffer.holders.map((holder) => `${holder.pid} ${holder.command}: ${holder.fds.length} fd${holder.fds.length === 1 ? '' : 's'}, ${holder.mappings} map${holder.mappings === 1 ? '' : 's'}`).join('; ');
    rows.push([String(buffer.inode), humanBytes(buffer.size), buffer.exporter ?? '?', buffer.name ?? '', holders]);
  }
  lines.push(report.buffers.length > 0 ? table(rows) : 'no dma-bufs held by any readable process');
  if (report.totals.perProcess.length > 0) {
    lines.push('', table([['PID', 'COMMAND', 'BUFFERS', 'BYTES'], ...report.totals.perProcess.map((row) => [String(row.pid), row.command, String(row.buffers), humanBytes(row.bytes)])]));
    lines.push('', table([['EXPORTER', 'BUFFERS', 'BYTES'], ...report.totals.perExporter.map((row) => [row.exporter, String(row.buffers), humanBytes(row.bytes)])]));
  }
  lines.push('', `total: ${report.totals.buffers} buffers, ${humanBytes(report.totals.bytes)}`);
  const unreadable = report.processes.filter((process) => process.error);
  if (unreadable.length > 0) lines.push(`not readable: ${unreadable.length} process(es) (${unreadable.slice(0, 5).map((process) => `${process.pid}: ${process.error!.code}`).join(', ')}${unreadable.length > 5 ? ', ...' : ''}); run as root to see them`);
  if (!report.bufinfo) lines.push(`debugfs ${bufinfoPath} not readable: attachments and fences not shown`);
  return lines.join('\n');
}

/** One process's report as a person reads it. */
export function formatProcessReport(report: ProcessReport): string {
  if (report.error) return `${report.pid}: ${report.error.code} (${report.error.message})`;
  const rows = [['INODE', 'SIZE', 'EXPORTER', 'NAME', 'FDS', 'MAPPINGS']];
  for (const buffer of report.buffers) {
    rows.push([String(buffer.inode), humanBytes(buffer.size), buffer.exporter ?? '?', buffer.name ?? '', buffer.fds.join(',') || '-', buffer.mappings.map((mapping) => `${mapping.start}-${mapping.end}`).join(',') || '-']);
  }
  return `${report.pid} ${report.command}: ${report.buffers.length} dma-buf(s)\n${report.buffers.length > 0 ? table(rows) : ''}`.trimEnd();
}
