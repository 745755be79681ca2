import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

/**
 * An error from the kernel, shaped like Node's own (`fs`, `net`): `code` is the
 * errno name, `errno` the negative errno as Node reports it, `syscall` what
 * was called (ioctls are named, e.g. `ioctl(UDMABUF_CREATE)`).
 */
export interface KernelError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

// libuv's table lacks the errnos that dma-buf and udmabuf are fondest of
// (ETIME from sync_file waits, EBADFD from udmabuf), so they are added here.
const extraErrnos: Record<number, [string, string]> = {
  62: ['ETIME', 'timer expired'],
  77: ['EBADFD', 'file descriptor in bad state'],
};

let namesByErrno: Map<number, [string, string]> | undefined;

function errnoTable(): Map<number, [string, string]> {
  if (namesByErrno) return namesByErrno;
  namesByErrno = new Map();
  for (const [negated, entry] of getSystemErrorMap()) namesByErrno.set(-negated, entry);
  for (const [name, value] of Object.entries(constants.errno)) {
    if (!namesByErrno.has(value)) namesByErrno.set(value, [name, name]);
  }
  for (const [value, entry] of Object.entries(extraErrnos)) namesByErrno.set(Number(value), entry);
  return namesByErrno;
}

/** The symbolic name of a positive errno value, `'E<number>'` when unknown. */
export function errnoName(errno: number): string {
  return errnoTable().get(errno)?.[0] ?? `E${errno}`;
}

/** Builds a Node-shaped error from a positive or negative errno. */
export function kernelError(
  errno: number,
  syscall: string,
  options: { hint?: string; path?: string } = {},
): KernelError {
  const positive = Math.abs(errno);
  const [code, description] = errnoTable().get(positive) ?? [`E${positive}`, 'unknown error'];
  const where = options.path ? ` '${options.path}'` : '';
  const hint = options.hint ? `: ${options.hint}` : '';
  const error = new Error(`${syscall}${where} ${code} (${description})${hint}`) as KernelError;
  error.code = code;
  error.errno = -positive;
  error.syscall = syscall;
  if (options.path !== undefined) error.path = options.path;
  return error;
}

/**
 * Native bindings return a negative errno instead of throwing: this turns such
 * a result into the value, or throws the Node-shaped error.
 */
export function check<T>(result: T | number, syscall: string, hint?: (code: string) => string | undefined): T {
  if (typeof result === 'number' && result < 0) {
    const code = errnoName(-result);
    throw kernelError(result, syscall, { hint: hint?.(code) });
  }
  return result as T;
}
