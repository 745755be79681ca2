import { kernelError, type KernelError } from '../errors';

const errnos = { EINVAL: 22, EBUSY: 16, ENOMEM: 12, EDEADLK: 35, EALREADY: 114, EINTR: 4, ETIME: 62, ECANCELED: 125, EPIPE: 32, ENODEV: 19, ENOTSUP: 95 } as const;
export type PolicyErrno = keyof typeof errnos;

/** What the kernel returns, shaped as the library's other kernel errors (`syscall` names the policy call). */
export function policyErrno(code: PolicyErrno, call: string, hint?: string): KernelError {
  return kernelError(-errnos[code], call, { hint });
}

/**
 * Misuse the kernel answers with a WARN (a lock not held, a pin from a
 * static importer): a bug in the caller, never a condition to handle.
 */
export class PolicyRuleError extends Error {
  readonly code = 'ERR_DMABUF_POLICY_RULE';

  constructor(call: string, rule: string) {
    super(`${call}: ${rule} (the kernel would WARN here)`);
    this.name = 'PolicyRuleError';
  }
}
