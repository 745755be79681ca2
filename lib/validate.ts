// Argument checks, made before any syscall. The errors are the registry's
// (lib/errors.ts), with the codes Node gives them: ERR_INVALID_ARG_TYPE for
// a wrong type, ERR_OUT_OF_RANGE for a number outside its range, and
// ERR_INVALID_ARG_VALUE for any other value refused (a string, a length, an
// object of the wrong kind).
import { codedError, type CodedError } from './errors';

export function typeError(name: string, expected: string, value: unknown): CodedError<'ERR_INVALID_ARG_TYPE'> {
  return codedError('ERR_INVALID_ARG_TYPE', name, expected, value);
}

/** A number or bigint outside the range it must lie in. */
export function outOfRange(name: string, expected: string, value: unknown): CodedError<'ERR_OUT_OF_RANGE'> {
  return codedError('ERR_OUT_OF_RANGE', name, expected, value);
}

/** A value of the right type refused for what it is: a string, a length, the wrong kind of object. */
export function invalidValue(name: string, expected: string, value: unknown): CodedError<'ERR_INVALID_ARG_VALUE'> {
  return codedError('ERR_INVALID_ARG_VALUE', name, expected, value);
}

/** A whole number in [min, max]; a non-number is a TypeError, anything else out of range a RangeError. */
export function integer(name: string, value: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') throw typeError(name, 'an integer', value);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw outOfRange(name, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

/** The longest wait a timer can hold: Node's setTimeout fires after 1 ms for anything longer. */
export const maxTimeoutMs = 2 ** 31 - 1;

/** A wait's `timeoutMs`: whole milliseconds a timer can really wait. */
export function timeoutMs(name: string, value: unknown): number {
  return integer(name, value, 0, maxTimeoutMs);
}

/** A bigint in [min, max]; any other type is a TypeError. */
export function bigint(name: string, value: unknown, min: bigint, max: bigint): bigint {
  if (typeof value !== 'bigint') throw typeError(name, 'a bigint', value);
  if (value < min || value > max) throw outOfRange(name, `a bigint from ${min}n to ${max}n`, value);
  return value;
}

/** A finite number in [min, max], fractions allowed (durations). */
export function finite(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number') throw typeError(name, 'a number', value);
  if (!Number.isFinite(value) || value < min || value > max) throw outOfRange(name, `a number from ${min} to ${max}`, value);
  return value;
}

/** A size the kernel takes in whole pages. */
export function pageMultiple(name: string, value: unknown, pageSize: number, min = pageSize): number {
  const size = integer(name, value, min);
  if (size % pageSize !== 0) throw outOfRange(name, `a multiple of the page size (${pageSize})`, value);
  return size;
}

export function fd(name: string, value: unknown): number {
  return integer(name, value, 0, 0x7fffffff);
}

export function string(name: string, value: unknown): string {
  if (typeof value !== 'string') throw typeError(name, 'a string', value);
  return value;
}

/** A kernel name field: at most `maxBytes` bytes of UTF-8, no NUL. */
export function kernelName(name: string, value: unknown, maxBytes: number): string {
  const text = string(name, value);
  if (Buffer.byteLength(text) > maxBytes || text.includes('\0')) throw invalidValue(name, `at most ${maxBytes} bytes of UTF-8 with no NUL`, value);
  return text;
}

export function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string') throw typeError(name, `one of ${allowed.map((item) => `'${item}'`).join(', ')}`, value);
  if (!allowed.includes(value as T)) throw invalidValue(name, `one of ${allowed.map((item) => `'${item}'`).join(', ')}`, value);
  return value as T;
}

export function options<T extends object>(name: string, value: unknown): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw typeError(name, 'an object', value);
  return value as Partial<T>;
}

export function optionalBoolean(name: string, value: unknown): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw typeError(name, 'a boolean', value);
  return value;
}

export function optionalSignal(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw typeError(name, 'an AbortSignal', value);
  return value;
}

export function functionArg<T extends (...args: never[]) => unknown>(name: string, value: unknown): T {
  if (typeof value !== 'function') throw typeError(name, 'a function', value);
  return value as T;
}

export function array(name: string, value: unknown): unknown[] {
  if (!Array.isArray(value)) throw typeError(name, 'an array', value);
  return value;
}

