import { check, errnoError, errnoName, kernelError, type KernelError } from './errors';
import { native } from './native';
import { typeError } from './validate';

/**
 * Opens a device or debugfs file, close-on-exec, through the addon (see
 * native/fd.cc for why never through fs). `hint` says what to do about an errno.
 */
export function openFd(path: string, flags: 'r' | 'rw', hint: (code: string) => string | undefined): number {
  const { O_RDONLY, O_RDWR } = native().constants;
  const fd = native().openFile(path, flags === 'r' ? O_RDONLY : O_RDWR);
  if (fd < 0) throw kernelError(fd, 'open', { path, hint: hint(errnoName(-fd)) });
  return fd;
}

/** Closes an fd the library opened and never wrapped (an error path). */
export function closeFd(fd: number): void {
  native().closeFd(fd);
}

/** Duplicates, close-on-exec, of fds a send keeps past its call; closes what it made if one fails. */
export function duplicateFds(fds: readonly number[]): number[] {
  const copies: number[] = [];
  try {
    for (const fd of fds) copies.push(check(native().dupCloexec(fd), 'fcntl(F_DUPFD_CLOEXEC)'));
  } catch (error) {
    closeFds(copies);
    throw error;
  }
  return copies;
}

/** Closes the fds and returns none left. */
export function closeFds(fds: readonly number[]): number[] {
  for (const fd of fds) closeFd(fd);
  return [];
}

/** The error every method of a closed handle throws, as Node's FileHandle does: EBADF. */
export function closedError(what: string, syscall: string): KernelError {
  return errnoError('EBADF', syscall, { hint: `${what} is closed` });
}

// Brand checks, as Node's own handles have them: `instanceof` compares one
// copy's classes, and two copies of this package meet in one process (a
// dependency's own copy). A registered symbol is the same in every copy.
const kindBrand = Symbol.for('dmabuf.handleKind');

/** Whether `value` is a handle of this kind from any copy of the package. */
export function isHandleOf(value: unknown, kind: string): boolean {
  return typeof value === 'object' && value !== null && (value as { [kindBrand]?: unknown })[kindBrand] === kind;
}

/** A handle of `kind` from any copy of the package, named in a TypeError as `what` otherwise. */
export function handleOf<T>(name: string, value: unknown, kind: string, what: string): T {
  if (!isHandleOf(value, kind)) throw typeError(name, what, value);
  return value as T;
}

interface Leaked {
  fd: number;
  what: string;
  /** Set by close() and detach(): the registration stays (see FdHandle), the finalizer does nothing. */
  released: boolean;
}

// The safety net, not the plan: a handle that is garbage collected while
// open has its fd closed here, and the leak is reported as the caller's bug.
const leakRegistry = new FinalizationRegistry<Leaked>(({ fd, what, released }) => {
  if (released) return;
  // An error here means the fd was closed behind our back: nothing left to release.
  native().closeFd(fd);
  process.emitWarning(`${what} (fd ${fd}) was closed by garbage collection; call close() or use \`using\``, {
    type: 'DmaBufWarning',
    code: 'DMABUF_LEAKED_HANDLE',
  });
});

/**
 * Owns one fd. `close()` is idempotent and releases what the subclass holds
 * first (mappings, polls) and the fd last; any other use after close throws
 * an `EBADF` error; `detach()` hands the fd to the caller instead.
 */
export abstract class FdHandle implements Disposable {
  #fd: number;
  #closed = false;
  readonly #leak: Leaked;

  /** `owned`: the addon already counts the fd as this environment's (a poller's read received it). */
  protected constructor(fd: number, protected readonly kind: string, owned = false) {
    // The brand lives on the class's prototype, set by its first instance:
    // a property defined on every handle costs as much as the rest of it.
    const prototype = new.target.prototype as { [kindBrand]?: string };
    if (prototype[kindBrand] !== kind) Object.defineProperty(prototype, kindBrand, { value: kind });
    this.#fd = fd;
    // Registered without an unregister token, and marked released on close
    // instead: a token costs a hash table entry per handle (in the VM a
    // register and unregister took 9.5 us, a register alone 3.9 us).
    this.#leak = { fd, what: kind, released: false };
    leakRegistry.register(this, this.#leak);
    // A worker thread that ends with this still open runs no finalizer: the
    // addon's cleanup hook closes the fds its environment owns.
    if (!owned) native().ownFd(fd);
  }

  /** The file descriptor; throws once closed, so a stale number is never used. */
  get fd(): number {
    this.assertOpen('fd');
    return this.#fd;
  }

  get closed(): boolean {
    return this.#closed;
  }

  protected assertOpen(syscall: string): number {
    if (this.#closed) throw closedError(this.kind, syscall);
    return this.#fd;
  }

  /** Releases what the subclass holds besides the fd; runs once, before the fd is closed or detached. */
  protected releaseResources(): void {}

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#leak.released = true;
    try {
      this.releaseResources();
    } finally {
      check(native().closeFd(this.#fd), 'close');
    }
  }

  /** Gives up ownership: returns the fd, which the caller must close, and closes this handle without closing it. */
  detach(): number {
    const fd = this.assertOpen('detach');
    this.#closed = true;
    this.#leak.released = true;
    native().disownFd(fd);
    this.releaseResources();
    return fd;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
