/**
 * A problem on the host that stops the runner before or around the guest: a
 * missing tool, a failed kernel build. `hint` says what to do about it.
 */
export class VmSetupError extends Error {
  override name = 'VmSetupError';
  constructor(
    message: string,
    readonly hint: string,
    readonly logPath?: string,
  ) {
    super(`${message}\n  ${hint}`);
  }
}

export const installHint = (packages: string) =>
  `Install it: sudo apt-get update && sudo apt-get install -y ${packages} (or run scripts/setup.sh from this package as root).`;
