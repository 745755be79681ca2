export { VmSetupError } from '../errors';

export const installHint = (packages: string) =>
  `Install it: sudo apt-get update && sudo apt-get install -y ${packages} (or run scripts/setup.sh from this package as root).`;
