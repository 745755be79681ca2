import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';
import { native } from './native';

// The library's errors are made here, as Node's lib/internal/errors.js makes
// its own, so that a code means one thing everywhere: each `ERR_*` code once,
// with its class and message, and the errno codes the library raises itself
// (besides passing the kernel's through) by name, their numbers from
// os.constants.errno. test/host/errors.test.ts holds README.md's table of
// codes, and the codes native/ uses, to this file.

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

/** A value as a message shows it: short, and a long string cut. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value.length > 40 ? `${value.slice(0, 40)}...` : value}'`;
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return 'a function';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'Object'}`;
  // What typeof leaves: a number, a boolean, a symbol or undefined.
  return String(value as number | boolean | symbol | undefined);
}

/**
 * Misuse the kernel answers with a WARN (a lock not held, a pin from a
 * static importer): a bug in the caller, never a condition to handle.
 */
export class PolicyRuleError extends Error {
  override name = 'PolicyRuleError';
  declare readonly code: 'ERR_DMABUF_POLICY_RULE';
}

/**
 * A problem on the host that stops the VM runner before or around the
 * guest: a missing tool, a failed kernel build. `hint` says what to do.
 */
export class VmSetupError extends Error {
  override name = 'VmSetupError';
  declare readonly code: 'ERR_DMABUF_VM_SETUP';
  declare readonly hint: string;
  declare readonly logPath?: string;
}

type ErrorClass = new (message: string) => Error;

interface Definition<Args extends unknown[], Extra extends object> {
  type: ErrorClass;
  message: (...args: Args) => string;
  extra?: (...args: Args) => Extra;
}

function define<T extends ErrorClass, Args extends unknown[], Extra extends object = object>(
  type: T,
  message: (...args: Args) => string,
  extra?: (...args: Args) => Extra,
): Definition<Args, Extra> & { type: T } {
  return { type, message, extra };
}

// In the words sharp and better-sqlite3 use: "Expected <what> for <name> but received <value>".
const argumentMessage = (name: string, expected: string, received: unknown) => `Expected ${expected} for ${name} but received ${describe(received)}`;

/** Every `ERR_*` code the library throws, with its class and message. */
export const errorCodes = {
  // Node's own codes, with the meaning Node gives them.
  ERR_INVALID_ARG_TYPE: define(TypeError, argumentMessage),
  // Node has a RangeError variant of this code too; the library uses only that one (bad values are RangeErrors here).
  ERR_INVALID_ARG_VALUE: define(RangeError, argumentMessage),
  ERR_OUT_OF_RANGE: define(RangeError, argumentMessage),
  ERR_MISSING_OPTION: define(TypeError, (option: string, because: string) => `${option} is required ${because}`),
  ERR_INCOMPATIBLE_OPTION_PAIR: define(TypeError, (option: string, other: string, advice: string) => `${option} cannot be used with ${other}; ${advice}`),
  // Made in native/addon.h and native/mapping.cc; listed so that the codes stay one set.
  ERR_INVALID_THIS: define(TypeError, (className: string) => `Illegal invocation: this is not a ${className}`),
  ERR_ILLEGAL_CONSTRUCTOR: define(TypeError, (className: string, maker: string) => `${className} cannot be constructed from JavaScript: ${maker} makes them`),

  // The library's own.
  ERR_DMABUF_NOT_A_DMABUF: define(Error, (fd: number, magic: number) => `fd ${fd} is not a dma-buf (its file system magic is 0x${magic.toString(16)}, a dma-buf's is 0x${native().constants.DMA_BUF_MAGIC.toString(16)})`),
  ERR_DMABUF_UNSAFE_MAPPING: define(Error, (release: string) =>
    `mmap of a hugetlb-backed udmabuf is refused on Linux ${release}: its udmabuf maps the memfd's pages, not page frames (no 'pf' in the mapping's VmFlags), and faulting in huge pages that way corrupts page state (6.12 and later map page frames); map its memfd instead (create with keepMemfd: true, then buffer.memfd.map())`),
  ERR_DMABUF_ACCESS_BEGUN: define(Error, (begun: string) => `CPU access (${begun}) already begun on this DmaBuf; end it first`),
  ERR_DMABUF_ACCESS_NOT_BEGUN: define(Error, () => 'endCpuAccess without beginCpuAccess'),
  ERR_DMABUF_ACCESS_MISMATCH: define(Error, (mode: string, begun: string) => `endCpuAccess('${mode}') does not match beginCpuAccess('${begun}')`),
  ERR_DMABUF_FENCES_PENDING: define(Error, (mode: string) =>
    `beginCpuAccess('${mode}'): the buffer has unsignalled fences, and the kernel would block this thread until they signal; await waitIdle({ mode: '${mode}' }) first, or pass { block: true }`),
  ERR_DMABUF_CHANNEL_FDS_LOST: define(Error, () => 'recvmsg MSG_CTRUNC: the kernel dropped fds this end had no room for; the channel is unusable'),
  ERR_DMABUF_SOCKET_FDS_LOST: define(Error, (bytes: Buffer, arrived: number) =>
    `recvmsg MSG_CTRUNC: the kernel dropped fds of a message for want of room; the ${arrived} that arrived were closed, its ${bytes.length} bytes are error.bytes`, (bytes: Buffer) => ({ bytes })),
  ERR_DMABUF_CHANNEL_TRUNCATED: define(Error, (bytes: number, fds: number) => `the peer closed the channel in the middle of a message (${bytes} bytes and ${fds} fds left over)`),
  ERR_DMABUF_CHANNEL_PROTOCOL: define(Error, (problem: string) => `not an FdChannel message: ${problem}`),
  ERR_DMABUF_CHANNEL_BAD_HANDLE: define(Error, (index: number, kind: string, reason: string) => `message refused: handle ${index} was sent as a ${kind} but is not one (${reason}); its fds were closed`),
  ERR_DMABUF_NOT_TEST_DEVICE: define(Error, (path: string, reason: string) => `${path} is not the dmabuf_test device (${reason})`, (path: string) => ({ path })),
  ERR_DMABUF_ADDON_MISMATCH: define(Error, (what: string, here: number, built: number) =>
    `${what}: the TypeScript side says ${here} bytes, the addon was built with ${built}; rebuild the addon (npm rebuild dmabuf)`),
  ERR_DMABUF_POLICY_RULE: define(PolicyRuleError, (call: string, rule: string) => `${call}: ${rule} (the kernel would WARN here)`),
  ERR_DMABUF_POLICY_NO_PROFILE: define(Error, (release: string, why: string) => `the ${release} kernel has no policy profile: ${why}`),
  ERR_DMABUF_VM_SETUP: define(
    VmSetupError,
    (problem: string, hint: string, _logPath?: string) => `${problem}\n  ${hint}`,
    (_problem: string, hint: string, logPath?: string) => (logPath === undefined ? { hint } : { hint, logPath }),
  ),
};

export type ErrorCode = keyof typeof errorCodes;
type DefinitionOf<C extends ErrorCode> = (typeof errorCodes)[C];
/** The arguments of a code's message. */
export type ErrorArgs<C extends ErrorCode> = Parameters<DefinitionOf<C>['message']>;
type ExtraOf<C extends ErrorCode> = DefinitionOf<C>['extra'] extends ((...args: never) => infer Extra) | undefined ? Extra : object;
export type CodedError<C extends ErrorCode> = InstanceType<DefinitionOf<C>['type']> & ExtraOf<C> & { readonly code: C };

/** The error of one registry code, with its class, its message and its code. */
export function codedError<C extends ErrorCode>(code: C, ...args: ErrorArgs<C>): CodedError<C> {
  const definition = errorCodes[code] as unknown as Definition<ErrorArgs<C>, object>;
  const error = new definition.type(definition.message(...args));
  return Object.assign(error, { code }, definition.extra?.(...args)) as CodedError<C>;
}

/**
 * The errno codes the library raises itself rather than passing on from a
 * syscall: a closed handle (EBADF), a wait that timed out (ETIME) or was
 * cancelled by a close (ECANCELED), a peer gone (ECONNRESET), what the
 * policy model (lib/policy) answers where the kernel would return an errno,
 * and its remote exporter's refusals (EIO, ENOENT).
 */
export const libraryErrnos = ['EBADF', 'ETIME', 'ECANCELED', 'ECONNRESET', 'EIO', 'ENOENT', 'EINVAL', 'EBUSY', 'ENOMEM', 'EDEADLK', 'EALREADY', 'ENODEV', 'ENOTSUP'] as const;
export type LibraryErrno = (typeof libraryErrnos)[number];

// What libuv's table does not describe but the library meets: ETIME from
// sync_file and policy waits, EBADFD from udmabuf, EDEADLK from ww-mutexes.
const descriptions: Partial<Record<string, string>> = {
  ETIME: 'timer expired',
  EBADFD: 'file descriptor in bad state',
  EDEADLK: 'resource deadlock avoided',
};

// Errnos os.constants.errno lacks (EBADFD), from the C library's errno.h through
// the addon. Without the addon no syscall ran, so nothing can return them.
function addonErrnos(): Record<string, number> {
  try {
    return native().errnos;
  } catch {
    return {};
  }
}

let namesByErrno: Map<number, [string, string]> | undefined;

function errnoTable(): Map<number, [string, string]> {
  if (namesByErrno) return namesByErrno;
  namesByErrno = new Map();
  for (const [negated, entry] of getSystemErrorMap()) namesByErrno.set(-negated, entry);
  for (const [name, value] of [...Object.entries(constants.errno), ...Object.entries(addonErrnos())]) {
    if (!namesByErrno.has(value)) namesByErrno.set(value, [name, descriptions[name] ?? name]);
  }
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

/** One of the errno errors the library raises itself, by name: its number is this system's. */
export function errnoError(code: LibraryErrno, syscall: string, options: { hint?: string; path?: string } = {}): KernelError {
  return kernelError(-constants.errno[code], syscall, options);
}

/** The negative errno of a name, to compare a binding's result with. */
export function negativeErrno(code: keyof typeof constants.errno): number {
  return -constants.errno[code];
}

/**
 * An error another process reported by code and message (the policy's
 * remote exporter): an errno code comes back Node-shaped with this
 * system's number, a registry code with its class.
 */
export function relayedError(code: string, message: string, syscall: string): Error & { code: string } {
  if (Object.hasOwn(constants.errno, code)) {
    return kernelError(-constants.errno[code as keyof typeof constants.errno], syscall, { hint: message });
  }
  const type = Object.hasOwn(errorCodes, code) ? errorCodes[code as ErrorCode].type : Error;
  return Object.assign(new type(`${syscall}: ${message}`), { code });
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
