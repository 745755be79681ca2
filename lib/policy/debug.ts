import type { PolicyBuffer } from './core';
import { profileLabel } from './profiles';

export interface BufferView {
  name: string;
  size: number;
  profile: string;
  dynamic: boolean;
  locked: boolean;
  pinCount: number;
  fences: { usage: string; context: number; seqno: number; signaled: boolean; error?: number }[];
  attachments: {
    name: string;
    dynamic: boolean;
    pins: number;
    cached?: string;
    liveMappings: number;
    invalidatedMappings: number;
  }[];
}

/** The model's state, as debugfs `bufinfo` shows the kernel's. */
export function describeBuffer(buffer: PolicyBuffer<unknown>): BufferView {
  return {
    name: buffer.name,
    size: buffer.size,
    profile: profileLabel(buffer.profile),
    dynamic: buffer.dynamic,
    locked: buffer.resv.locked,
    pinCount: buffer.pinCount,
    fences: buffer.resv.entries().map(({ fence, usage }) => ({ usage, context: fence.context, seqno: fence.seqno, signaled: fence.signaled, ...(fence.error !== undefined ? { error: fence.error } : {}) })),
    attachments: buffer.attachments.map((attachment) => ({
      name: attachment.name,
      dynamic: attachment.dynamic,
      pins: attachment.pins,
      ...(attachment.sgt !== undefined ? { cached: attachment.dir } : {}),
      liveMappings: attachment.liveMappings.length,
      invalidatedMappings: attachment.liveMappings.filter((record) => record.invalidated).length,
    })),
  };
}

export function formatBuffers(buffers: readonly PolicyBuffer<unknown>[]): string {
  const lines: string[] = [];
  for (const view of buffers.map(describeBuffer)) {
    lines.push(`${view.name}\t${view.size} bytes\t${view.profile}\t${view.dynamic ? 'dynamic' : 'static'}\tpins ${view.pinCount}${view.locked ? '\tlocked' : ''}`);
    for (const fence of view.fences) lines.push(`\t${fence.usage} fence ${fence.context}:${fence.seqno} ${fence.signaled ? (fence.error ? `signalled (${fence.error})` : 'signalled') : 'unsignalled'}`);
    lines.push(`\tAttached Devices:`);
    for (const attachment of view.attachments) {
      const state = [attachment.dynamic ? 'dynamic' : 'static', attachment.pins ? `pins ${attachment.pins}` : '', attachment.cached ? `cached ${attachment.cached}` : '', attachment.liveMappings ? `mappings ${attachment.liveMappings} (${attachment.invalidatedMappings} invalidated)` : '']
        .filter(Boolean)
        .join(', ');
      lines.push(`\t${attachment.name}\t${state}`);
    }
    lines.push(`Total ${view.attachments.length} devices attached`, '');
  }
  return lines.join('\n');
}
