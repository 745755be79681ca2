import type { HostDiagnosis } from '../devices';

const stateText = { y: 'y', m: 'm (module)', n: 'not set', absent: 'absent' } as const;

/** The host diagnosis as a person reads it: options, module, device nodes, user, then what to do. */
export function formatHostDiagnosis(diagnosis: HostDiagnosis): string {
  const lines = [`this host (kernel ${diagnosis.kernelRelease}):`];
  if (diagnosis.configPath) {
    lines.push(`  kernel options, from ${diagnosis.configPath}:`);
    const width = Math.max(...diagnosis.options.map((option) => option.name.length));
    for (const option of diagnosis.options) lines.push(`    ${option.name.padEnd(width)}  ${stateText[option.state].padEnd(10)}  ${option.gives}`);
    if (diagnosis.options.some((option) => option.state === 'absent')) lines.push('    (absent: not in the config at all, as when an option it depends on is off)');
  } else {
    lines.push('  kernel options: unknown (no readable /proc/config.gz or /boot/config-<release>)');
  }
  const { udmabufModule } = diagnosis;
  lines.push(`  udmabuf module: ${udmabufModule.state}${udmabufModule.path ? ` (${udmabufModule.path})` : ''}`);
  for (const node of diagnosis.nodes) {
    lines.push(`  ${node.path}: ${node.present ? `${node.mode} ${node.owner}:${node.group}, ${node.canOpen ? 'you can open it' : 'you cannot open it'}${node.userInGroup ? ` (you are in ${node.group})` : ''}` : 'absent'}`);
  }
  lines.push(`  user: ${diagnosis.user.name} (uid ${diagnosis.user.uid}), groups ${diagnosis.user.groups.join(', ')}`);
  if (diagnosis.steps.length === 0) lines.push('  nothing is missing');
  else lines.push('what it would take on this host:', ...diagnosis.steps.map((step) => `  - ${step}`));
  return lines.join('\n');
}
