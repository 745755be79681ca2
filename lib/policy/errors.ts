import { errnoError, type KernelError, type LibraryErrno } from '../errors';

export { PolicyRuleError } from '../errors';

/** The errnos the policy answers with, where the kernel would return them. */
export type PolicyErrno = Extract<LibraryErrno, 'EINVAL' | 'EBUSY' | 'ENOMEM' | 'EDEADLK' | 'EALREADY' | 'ETIME' | 'ENODEV' | 'ENOTSUP'>;

/** What the kernel returns, shaped as the library's other kernel errors (`syscall` names the policy call). */
export function policyErrno(code: PolicyErrno, call: string, hint?: string): KernelError {
  return errnoError(code, call, { hint });
}
