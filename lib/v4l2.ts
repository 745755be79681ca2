import { readdirSync } from 'node:fs';
import { DmaBuf } from './dmabuf';
import { check as checkResult, codedError, errnoError, errnoName, kernelError, negativeErrno } from './errors';
import { closeFd, FdHandle, handleOf, isHandleOf } from './handle';
import { native, type NativeConstantName, type NativeV4l2Buffer, type NativeV4l2Control, type NativeV4l2Format } from './native';
import * as validate from './validate';
import { FdWaiter, type WaitOptions } from './wait';

// Names are made from the header's own macro names (V4L2_CAP_VIDEO_CAPTURE
// is 'video-capture'), so no value and no name list is retyped here.

/** The single-planar buffer queues this library drives. */
export type V4l2BufferType = 'video-capture' | 'video-output';
export type V4l2Memory = 'mmap' | 'dmabuf';
export type V4l2Field = 'any' | 'none' | 'top' | 'bottom' | 'interlaced' | 'seq-tb' | 'seq-bt' | 'alternate' | 'interlaced-tb' | 'interlaced-bt';

const bufferTypes: readonly V4l2BufferType[] = ['video-capture', 'video-output'];
const memories: readonly V4l2Memory[] = ['mmap', 'dmabuf'];
const fields: readonly V4l2Field[] = ['any', 'none', 'top', 'bottom', 'interlaced', 'seq-tb', 'seq-bt', 'alternate', 'interlaced-tb', 'interlaced-bt'];

function kebab(macro: string, prefix: string): string {
  return macro.slice(prefix.length).toLowerCase().replace(/_/g, '-');
}

function constant(name: string): number {
  return native().constants[name as NativeConstantName];
}

/** Every constant whose macro starts with `prefix`, by its name (minus the prefix, in kebab case). */
function family(prefix: string, skip: readonly string[] = []): [string, number][] {
  return Object.entries(native().constants)
    .filter(([name]) => name.startsWith(prefix) && !skip.includes(name))
    .map(([name, value]) => [kebab(name, prefix), value]);
}

const tables = new Map<string, [string, number][]>();
function table(prefix: string, skip: readonly string[] = []): [string, number][] {
  let entries = tables.get(prefix);
  if (!entries) tables.set(prefix, (entries = family(prefix, skip)));
  return entries;
}

/** The names of the single-bit flags set in `value`; bits no name covers come as `0x...`. */
function flagNames(value: number, prefix: string, skip: readonly string[] = []): string[] {
  const names: string[] = [];
  let rest = value >>> 0;
  for (const [name, bit] of table(prefix, skip)) {
    if (bit !== 0 && (bit & (bit - 1)) === 0 && (rest & bit) !== 0) {
      names.push(name);
      rest = (rest & ~bit) >>> 0;
    }
  }
  for (let bit = 1; rest !== 0 && bit !== 0; bit = (bit << 1) >>> 0) {
    if ((rest & bit) !== 0) {
      names.push(`0x${bit.toString(16)}`);
      rest = (rest & ~bit) >>> 0;
    }
  }
  return names;
}

function valueName(value: number, prefix: string): string {
  return table(prefix).find(([, number]) => number === value)?.[0] ?? String(value);
}

function typeValue(type: V4l2BufferType): number {
  return constant(`V4L2_BUF_TYPE_${type.toUpperCase().replace(/-/g, '_')}`);
}

function memoryValue(memory: V4l2Memory): number {
  return constant(`V4L2_MEMORY_${memory.toUpperCase()}`);
}

function fieldValue(field: V4l2Field): number {
  return constant(`V4L2_FIELD_${field.toUpperCase().replace(/-/g, '_')}`);
}

/** A fourcc code as its four characters ('YUYV'); formats with the big-endian bit get a '-BE' suffix. */
export function fourccToString(code: number): string {
  const bytes = [code & 0xff, (code >>> 8) & 0xff, (code >>> 16) & 0xff, (code >>> 24) & 0x7f];
  return String.fromCharCode(...bytes) + ((code >>> 31) !== 0 ? '-BE' : '');
}

/** The fourcc code of four characters, as v4l2_fourcc() makes it. */
export function fourccFromString(name: string): number {
  const text = validate.string('pixelformat', name);
  const bigEndian = text.endsWith('-BE');
  const chars = bigEndian ? text.slice(0, -3) : text;
  if (chars.length !== 4 || !/^[\x20-\x7e]{4}$/.test(chars)) throw validate.invalidValue('pixelformat', "four printable ASCII characters (a fourcc such as 'YUYV'), optionally followed by '-BE'", name);
  const code = chars.charCodeAt(0) | (chars.charCodeAt(1) << 8) | (chars.charCodeAt(2) << 16) | (chars.charCodeAt(3) << 24);
  return (bigEndian ? code | (1 << 31) : code) >>> 0;
}

export interface V4l2Capabilities {
  driver: string;
  card: string;
  busInfo: string;
  /** KERNEL_VERSION of the V4L2 core: (major << 16) | (minor << 8) | patch. */
  version: number;
  /** The capabilities of the whole physical device ('video-capture', 'streaming', 'device-caps', ...). */
  capabilities: string[];
  /** The capabilities of this node, the ones that matter for it. */
  deviceCapabilities: string[];
}

export interface V4l2FormatDescription {
  index: number;
  pixelformat: string;
  description: string;
  flags: string[];
}

export interface V4l2Format {
  width: number;
  height: number;
  /** A fourcc, e.g. 'YUYV', 'RGB3'. */
  pixelformat: string;
  field: V4l2Field;
  bytesperline: number;
  sizeimage: number;
  colorspace: number;
  quantization: number;
  xferFunc: number;
  ycbcrEnc: number;
}

/** What setFormat and tryFormat ask for; the driver adjusts it to what it can do and says what it chose. */
export interface V4l2FormatRequest {
  width: number;
  height: number;
  pixelformat: string;
  /** Default 'any': the driver picks. */
  field?: V4l2Field;
  /** Default 0: the driver picks the smallest. */
  bytesperline?: number;
  sizeimage?: number;
}

export interface V4l2InputOrOutput {
  index: number;
  name: string;
  /** 'camera', 'tuner', 'touch' for inputs; 'analog', 'modulator', 'analogvgaoverlay' for outputs. */
  type: string;
  capabilities: number;
  status: number;
}

export interface V4l2BufferTypeOptions {
  /** The queue; by default the one this node has (its only video capture or output capability). */
  type?: V4l2BufferType;
}

export interface V4l2QueueOptions extends V4l2BufferTypeOptions {
  /** For DMABUF memory: the buffer the device reads or writes; it stays alive until dequeued. */
  dmaBuf?: DmaBuf;
  /** The bytes of payload (output queues); default the format's sizeimage for output, 0 for capture. */
  bytesUsed?: number;
  field?: V4l2Field;
}

export interface V4l2DequeueOptions extends V4l2BufferTypeOptions, WaitOptions {}

export interface V4l2Buffer {
  index: number;
  type: V4l2BufferType;
  memory: V4l2Memory;
  bytesUsed: number;
  /** The buffer's size: for DMABUF memory, the length that was queued. */
  length: number;
  /** Names of the V4L2_BUF_FLAG_* bits set ('mapped', 'queued', 'done', 'error', 'last', ...), timestamp kinds apart. */
  flags: string[];
  /** The V4L2_BUF_FLAG_ERROR bit: the data may be corrupt (a dequeued buffer still counts). */
  error: boolean;
  field: V4l2Field;
  sequence: number;
  /** In ns, of the clock `timestampType` names. */
  timestamp: bigint;
  /** 'monotonic', 'copy' (an output's own, copied to capture) or 'unknown'. */
  timestampType: string;
  /** For MMAP memory: the offset an mmap of the device would take. */
  offset?: number;
}

export interface V4l2DequeuedBuffer extends V4l2Buffer {
  /**
   * The DmaBuf queued into it (DMABUF memory). This V4l2Device no longer
   * keeps it alive; vb2 keeps its own reference attached to the slot until
   * the slot is queued with another buffer, the buffers are freed
   * (requestBuffers(..., 0)) or the device is closed.
   */
  dmaBuf?: DmaBuf;
}

/** 'integer', 'boolean', 'menu', 'button', 'integer64', 'string', 'bitmask', 'integer-menu', ... (V4L2_CTRL_TYPE_*), or the number of a type the headers did not name. */
export type V4l2ControlType = string;

export interface V4l2Control {
  id: number;
  name: string;
  type: V4l2ControlType;
  minimum: bigint;
  maximum: bigint;
  step: bigint;
  defaultValue: bigint;
  /** 'disabled', 'read-only', 'inactive', 'volatile', 'write-only', ... */
  flags: string[];
}

export interface V4l2MenuItem {
  index: number;
  /** The item's name (menus); for an integer menu its value as text. */
  name: string;
  /** An integer menu's value. */
  value?: bigint;
}

export type V4l2ControlValue = number | boolean | bigint | string;

export interface V4l2FindOptions {
  /** VIDIOC_QUERYCAP's driver name, e.g. 'vivid'. */
  driver?: string;
  /** A capability the node itself must have. */
  capability?: V4l2BufferType;
}

/** The /dev/video* nodes in number order (none when /dev cannot be read). */
export function videoNodes(): string[] {
  let names: string[];
  try {
    names = readdirSync('/dev').filter((name) => /^video\d+$/.test(name));
  } catch {
    return [];
  }
  return names.sort((a, b) => Number(a.slice(5)) - Number(b.slice(5))).map((name) => `/dev/${name}`);
}

/** The kernel option of each driver this library's tests know, for the hint of a failed find. */
const driverOptions: Record<string, string> = { vivid: 'CONFIG_VIDEO_VIVID' };

const bufferFlagSkips = [
  'V4L2_BUF_FLAG_TIMESTAMP_MASK',
  'V4L2_BUF_FLAG_TIMESTAMP_UNKNOWN',
  'V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC',
  'V4L2_BUF_FLAG_TIMESTAMP_COPY',
  'V4L2_BUF_FLAG_TSTAMP_SRC_MASK',
  'V4L2_BUF_FLAG_TSTAMP_SRC_EOF',
  'V4L2_BUF_FLAG_TSTAMP_SRC_SOE',
];

function formatFrom(raw: NativeV4l2Format): V4l2Format {
  return {
    width: raw.width,
    height: raw.height,
    pixelformat: fourccToString(raw.pixelformat),
    field: valueName(raw.field, 'V4L2_FIELD_') as V4l2Field,
    bytesperline: raw.bytesperline,
    sizeimage: raw.sizeimage,
    colorspace: raw.colorspace,
    quantization: raw.quantization,
    xferFunc: raw.xferFunc,
    ycbcrEnc: raw.ycbcrEnc,
  };
}

function bufferFrom(raw: NativeV4l2Buffer): V4l2Buffer {
  const { V4L2_BUF_FLAG_ERROR, V4L2_BUF_FLAG_TIMESTAMP_MASK } = native().constants;
  const timestampBits = raw.flags & V4L2_BUF_FLAG_TIMESTAMP_MASK;
  const timestampType = ['UNKNOWN', 'MONOTONIC', 'COPY'].find((kind) => constant(`V4L2_BUF_FLAG_TIMESTAMP_${kind}`) === timestampBits)?.toLowerCase() ?? String(timestampBits);
  return {
    index: raw.index,
    type: valueName(raw.type, 'V4L2_BUF_TYPE_') as V4l2BufferType,
    memory: valueName(raw.memory, 'V4L2_MEMORY_') as V4l2Memory,
    bytesUsed: raw.bytesused,
    length: raw.length,
    flags: flagNames(raw.flags & ~V4L2_BUF_FLAG_TIMESTAMP_MASK, 'V4L2_BUF_FLAG_', bufferFlagSkips),
    error: (raw.flags & V4L2_BUF_FLAG_ERROR) !== 0,
    field: valueName(raw.field, 'V4L2_FIELD_') as V4l2Field,
    sequence: raw.sequence,
    timestamp: BigInt(raw.timestampSec) * 1_000_000_000n + BigInt(raw.timestampUsec) * 1000n,
    timestampType,
    ...(raw.offset !== undefined ? { offset: raw.offset } : {}),
  };
}

function controlFrom(raw: NativeV4l2Control): V4l2Control {
  return {
    id: raw.id,
    name: raw.name,
    type: valueName(raw.type, 'V4L2_CTRL_TYPE_'),
    minimum: raw.minimum,
    maximum: raw.maximum,
    step: raw.step,
    defaultValue: raw.defaultValue,
    flags: flagNames(raw.flags, 'V4L2_CTRL_FLAG_', ['V4L2_CTRL_FLAG_NEXT_CTRL', 'V4L2_CTRL_FLAG_NEXT_COMPOUND']),
  };
}

function openHint(path: string): (code: string) => string | undefined {
  return (code) => {
    if (code === 'ENOENT' || code === 'ENXIO' || code === 'ENODEV') return `${path} is not a V4L2 device here (is its driver loaded?)`;
    if (code === 'EACCES') return `${path} is usually mode 0660, group video: add the user to that group or run as root`;
    return undefined;
  };
}

/**
 * A V4L2 video node (/dev/videoN), opened read-write, non-blocking and
 * close-on-exec. Buffers go both ways: the device's own (MMAP memory,
 * exported as DmaBufs with `exportBuffer`) and DmaBufs from elsewhere
 * (DMABUF memory: a udmabuf, a dma-heap buffer, another device's). Dequeue
 * waits on the event loop; no thread blocks.
 */
export class V4l2Device extends FdHandle {
  readonly path: string;
  #waiter: FdWaiter | undefined;
  /** The memory each queue's buffers were requested with. */
  readonly #memory = new Map<V4l2BufferType, V4l2Memory>();
  /** Buffers queued and not yet dequeued, by `${type}:${index}`, with the DmaBuf each holds. */
  readonly #queued = new Map<string, DmaBuf | undefined>();
  #controlIds: Map<string, number> | undefined;
  /** This node's video queues, from its device capabilities (fixed for its life). */
  #ownTypes: V4l2BufferType[] | undefined;

  private constructor(fd: number, path: string) {
    super(fd, 'V4l2Device');
    this.path = path;
  }

  /** Opens a video node; a file that is not a V4L2 device is refused (ENOTTY from VIDIOC_QUERYCAP). */
  static open(path: string): V4l2Device {
    validate.string('path', path);
    const { O_RDWR, O_NONBLOCK } = native().constants;
    const fd = native().openFile(path, O_RDWR | O_NONBLOCK);
    if (fd < 0) throw kernelError(fd, 'open', { path, hint: openHint(path)(errnoName(-fd)) });
    const capabilities = native().v4l2.queryCapabilities(fd);
    if (typeof capabilities === 'number') {
      closeFd(fd);
      throw kernelError(capabilities, 'ioctl(VIDIOC_QUERYCAP)', { path, hint: capabilities === negativeErrno('ENOTTY') ? `${path} is not a V4L2 device` : undefined });
    }
    return new V4l2Device(fd, path);
  }

  /**
   * The first /dev/videoN (in number order) whose driver and node
   * capabilities match. None is an ENODEV error that names the module to
   * load.
   */
  static find(options: V4l2FindOptions = {}): V4l2Device {
    const { driver, capability } = validate.options<V4l2FindOptions>('options', options);
    if (driver !== undefined) validate.string('options.driver', driver);
    if (capability !== undefined) validate.oneOf('options.capability', capability, bufferTypes);
    const nodes = videoNodes();
    const refused: string[] = [];
    for (const path of nodes) {
      let device: V4l2Device;
      try {
        device = V4l2Device.open(path);
      } catch (error) {
        refused.push(`${path} (${(error as { code?: string }).code})`);
        continue;
      }
      let caps: V4l2Capabilities;
      try {
        caps = device.capabilities;
      } catch (error) {
        device.close();
        throw error;
      }
      if ((driver === undefined || caps.driver === driver) && (capability === undefined || caps.deviceCapabilities.includes(capability))) return device;
      device.close();
    }
    const wanted = [driver !== undefined ? `driver '${driver}'` : undefined, capability !== undefined ? `capability '${capability}'` : undefined].filter(Boolean).join(' and ');
    const load = driver === undefined ? 'load a V4L2 driver' : `load ${driver}${driverOptions[driver] ? ` (${driverOptions[driver]})` : ''}`;
    const skipped = refused.length > 0 ? `; could not open ${refused.join(', ')}` : '';
    throw errnoError('ENODEV', 'open', { hint: `no V4L2 device${wanted ? ` with ${wanted}` : ''} among ${nodes.length} /dev/video* nodes${skipped}: ${load}` });
  }

  /** Whether `value` is a V4l2Device, made by this copy of the package or another. */
  static isV4l2Device(value: unknown): value is V4l2Device {
    return isHandleOf(value, 'V4l2Device');
  }

  /** VIDIOC_QUERYCAP, decoded. */
  get capabilities(): V4l2Capabilities {
    const raw = check(native().v4l2.queryCapabilities(this.assertOpen('ioctl(VIDIOC_QUERYCAP)')), 'ioctl(VIDIOC_QUERYCAP)');
    const { V4L2_CAP_DEVICE_CAPS } = native().constants;
    return {
      driver: raw.driver,
      card: raw.card,
      busInfo: raw.busInfo,
      version: raw.version,
      capabilities: flagNames(raw.capabilities, 'V4L2_CAP_'),
      deviceCapabilities: flagNames((raw.capabilities & V4L2_CAP_DEVICE_CAPS) !== 0 ? raw.deviceCaps : raw.capabilities, 'V4L2_CAP_'),
    };
  }

  /** The queue a call without `type` means: this node's only video capture or output queue. */
  #type(options: V4l2BufferTypeOptions | undefined, name = 'options.type'): V4l2BufferType {
    if (options?.type !== undefined) return validate.oneOf(name, options.type, bufferTypes);
    const own = (this.#ownTypes ??= this.capabilities.deviceCapabilities.filter((cap): cap is V4l2BufferType => (bufferTypes as readonly string[]).includes(cap)));
    if (own.length !== 1) throw validate.invalidValue(name, `a buffer type: ${this.path} has ${own.length === 0 ? 'no single-planar video queue' : `both ${own.join(' and ')}`}, so say which`, options?.type);
    return own[0]!;
  }

  /** VIDIOC_ENUM_FMT: the pixel formats of a queue. */
  formats(options?: V4l2BufferTypeOptions): V4l2FormatDescription[] {
    const fd = this.assertOpen('ioctl(VIDIOC_ENUM_FMT)');
    const type = typeValue(this.#type(validate.options<V4l2BufferTypeOptions>('options', options)));
    const list: V4l2FormatDescription[] = [];
    for (let index = 0; ; index += 1) {
      const raw = native().v4l2.enumFormat(fd, type, index);
      if (raw === negativeErrno('EINVAL')) return list;
      const entry = check(raw, 'ioctl(VIDIOC_ENUM_FMT)');
      list.push({ index: entry.index, pixelformat: fourccToString(entry.pixelformat), description: entry.description, flags: flagNames(entry.flags, 'V4L2_FMT_FLAG_') });
    }
  }

  /** VIDIOC_G_FMT of a single-planar queue. */
  getFormat(options?: V4l2BufferTypeOptions): V4l2Format {
    const fd = this.assertOpen('ioctl(VIDIOC_G_FMT)');
    const type = typeValue(this.#type(validate.options<V4l2BufferTypeOptions>('options', options)));
    return formatFrom(check(native().v4l2.getFormat(fd, type), 'ioctl(VIDIOC_G_FMT)'));
  }

  /** VIDIOC_S_FMT: returns what the driver set, which may differ from what was asked (size, bytesperline). EBUSY while buffers are allocated. */
  setFormat(format: V4l2FormatRequest, options?: V4l2BufferTypeOptions): V4l2Format {
    return this.#format('VIDIOC_S_FMT', format, options);
  }

  /** VIDIOC_TRY_FMT: what setFormat would give, changing nothing. */
  tryFormat(format: V4l2FormatRequest, options?: V4l2BufferTypeOptions): V4l2Format {
    return this.#format('VIDIOC_TRY_FMT', format, options);
  }

  #format(command: 'VIDIOC_S_FMT' | 'VIDIOC_TRY_FMT', format: V4l2FormatRequest, options: V4l2BufferTypeOptions | undefined): V4l2Format {
    const syscall = `ioctl(${command})`;
    const fd = this.assertOpen(syscall);
    const request = validate.options<V4l2FormatRequest>('format', format);
    if (format === undefined) throw validate.typeError('format', 'an object', format);
    const type = typeValue(this.#type(validate.options<V4l2BufferTypeOptions>('options', options)));
    const width = validate.integer('format.width', request.width, 0, 0xffffffff);
    const height = validate.integer('format.height', request.height, 0, 0xffffffff);
    const pixelformat = fourccFromString(request.pixelformat as string);
    const field = fieldValue(request.field === undefined ? 'any' : validate.oneOf('format.field', request.field, fields));
    const bytesperline = request.bytesperline === undefined ? 0 : validate.integer('format.bytesperline', request.bytesperline, 0, 0xffffffff);
    const sizeimage = request.sizeimage === undefined ? 0 : validate.integer('format.sizeimage', request.sizeimage, 0, 0xffffffff);
    const raw = native().v4l2.setFormat(fd, constant(command), type, width, height, pixelformat, field, bytesperline, sizeimage);
    return formatFrom(check(raw, syscall, (code) => (code === 'EBUSY' ? 'buffers are allocated on this queue: requestBuffers(type, memory, 0) first' : undefined)));
  }

  /** VIDIOC_ENUMINPUT: every input of the device. */
  inputs(): V4l2InputOrOutput[] {
    return this.#enumerate(false);
  }

  /** VIDIOC_ENUMOUTPUT: every output of the device. */
  outputs(): V4l2InputOrOutput[] {
    return this.#enumerate(true);
  }

  #enumerate(output: boolean): V4l2InputOrOutput[] {
    const syscall = output ? 'ioctl(VIDIOC_ENUMOUTPUT)' : 'ioctl(VIDIOC_ENUMINPUT)';
    const fd = this.assertOpen(syscall);
    const prefix = output ? 'V4L2_OUTPUT_TYPE_' : 'V4L2_INPUT_TYPE_';
    const list: V4l2InputOrOutput[] = [];
    for (let index = 0; ; index += 1) {
      const raw = native().v4l2.enumIo(fd, output, index);
      // ENOTTY: a node with no inputs (or outputs) at all.
      if (raw === negativeErrno('EINVAL') || raw === negativeErrno('ENOTTY')) return list;
      const entry = check(raw, syscall);
      list.push({ ...entry, type: valueName(entry.type, prefix) });
    }
  }

  /** The current input's index (VIDIOC_G_INPUT). */
  get input(): number {
    return check(native().v4l2.getIo(this.assertOpen('ioctl(VIDIOC_G_INPUT)'), false), 'ioctl(VIDIOC_G_INPUT)');
  }

  /** The current output's index (VIDIOC_G_OUTPUT). */
  get output(): number {
    return check(native().v4l2.getIo(this.assertOpen('ioctl(VIDIOC_G_OUTPUT)'), true), 'ioctl(VIDIOC_G_OUTPUT)');
  }

  /** VIDIOC_S_INPUT; EBUSY while buffers are allocated. The format may change with the input: read it again. */
  selectInput(index: number): void {
    this.#select(false, index);
  }

  /** VIDIOC_S_OUTPUT; EBUSY while buffers are allocated. */
  selectOutput(index: number): void {
    this.#select(true, index);
  }

  #select(output: boolean, index: number): void {
    const syscall = output ? 'ioctl(VIDIOC_S_OUTPUT)' : 'ioctl(VIDIOC_S_INPUT)';
    const fd = this.assertOpen(syscall);
    validate.integer('index', index, 0, 0x7fffffff);
    check(native().v4l2.setIo(fd, output, index), syscall, (code) =>
      code === 'EINVAL' ? `no ${output ? 'output' : 'input'} ${index}: ${output ? 'outputs()' : 'inputs()'} lists them` : code === 'EBUSY' ? 'buffers are allocated: requestBuffers(type, memory, 0) first' : undefined,
    );
  }

  /**
   * VIDIOC_REQBUFS: allocates `count` buffers (MMAP memory) or slots for
   * DmaBufs (DMABUF memory); the driver may give more or fewer, and says how
   * many. Count 0 frees them all (and returns queued buffers, whose DmaBufs
   * this device then stops holding).
   */
  requestBuffers(type: V4l2BufferType, memory: V4l2Memory, count: number): { count: number; capabilities: string[] } {
    const syscall = 'ioctl(VIDIOC_REQBUFS)';
    const fd = this.assertOpen(syscall);
    validate.oneOf('type', type, bufferTypes);
    validate.oneOf('memory', memory, memories);
    validate.integer('count', count, 0, 0xffffffff);
    const raw = check(native().v4l2.requestBuffers(fd, typeValue(type), memoryValue(memory), count), syscall, (code) =>
      code === 'EBUSY' ? 'buffers of this queue are in use (mapped, exported, or the queue is streaming): streamOff and close their DmaBufs first' : code === 'EINVAL' ? `this queue does not take ${memory} memory, or the type is not one of this node's` : undefined,
    );
    this.#release(type);
    if (count === 0) this.#memory.delete(type);
    else this.#memory.set(type, memory);
    return { count: raw.count, capabilities: flagNames(raw.capabilities, 'V4L2_BUF_CAP_SUPPORTS_') };
  }

  #memoryOf(type: V4l2BufferType, syscall: string): V4l2Memory {
    const memory = this.#memory.get(type);
    if (memory === undefined) throw errnoError('EINVAL', syscall, { hint: `no buffers are requested on the ${type} queue: requestBuffers('${type}', memory, count) first` });
    return memory;
  }

  /** VIDIOC_QUERYBUF: one buffer's state. */
  queryBuffer(index: number, options?: V4l2BufferTypeOptions): V4l2Buffer {
    const syscall = 'ioctl(VIDIOC_QUERYBUF)';
    const fd = this.assertOpen(syscall);
    validate.integer('index', index, 0, 0xffffffff);
    const type = this.#type(validate.options<V4l2BufferTypeOptions>('options', options));
    return bufferFrom(check(native().v4l2.queryBuffer(fd, typeValue(type), memoryValue(this.#memoryOf(type, syscall)), index), syscall));
  }

  /** VIDIOC_EXPBUF: an MMAP buffer of the device as a DmaBuf of its own (read-write, close-on-exec). */
  exportBuffer(index: number, options?: V4l2BufferTypeOptions): DmaBuf {
    const syscall = 'ioctl(VIDIOC_EXPBUF)';
    const fd = this.assertOpen(syscall);
    validate.integer('index', index, 0, 0xffffffff);
    const type = this.#type(validate.options<V4l2BufferTypeOptions>('options', options));
    const { O_RDWR, O_CLOEXEC } = native().constants;
    const exported = check(native().v4l2.exportBuffer(fd, typeValue(type), index, O_RDWR | O_CLOEXEC), syscall, (code) =>
      code === 'EINVAL' ? `buffer ${index} of the ${type} queue is not an MMAP buffer of this device (requestBuffers('${type}', 'mmap', count) first)` : undefined,
    );
    // The dma-buf's own size (whole pages), not the buffer's payload length.
    return DmaBuf.adopt(exported);
  }

  /**
   * VIDIOC_QBUF. For DMABUF memory `dmaBuf` is required: the device holds
   * its own reference from here on (vb2 takes it at QBUF), and this object
   * holds the DmaBuf until the buffer is dequeued, so closing it meanwhile
   * is safe.
   */
  queue(index: number, options?: V4l2QueueOptions): V4l2Buffer {
    const syscall = 'ioctl(VIDIOC_QBUF)';
    const fd = this.assertOpen(syscall);
    validate.integer('index', index, 0, 0xffffffff);
    const opts = validate.options<V4l2QueueOptions>('options', options);
    const type = this.#type(opts);
    const memory = this.#memoryOf(type, syscall);
    let dmaBuf: DmaBuf | undefined;
    if (memory === 'dmabuf') {
      if (opts.dmaBuf === undefined) throw codedError('ERR_MISSING_OPTION', 'options.dmaBuf', `to queue into the ${type} queue, whose buffers are DMABUF memory`);
      dmaBuf = handleOf<DmaBuf>('options.dmaBuf', opts.dmaBuf, 'DmaBuf', 'a DmaBuf');
    } else if (opts.dmaBuf !== undefined) {
      throw validate.invalidValue('options.dmaBuf', `undefined: the ${type} queue's buffers are MMAP memory, the device's own`, opts.dmaBuf);
    }
    const field = fieldValue(opts.field === undefined ? 'any' : validate.oneOf('options.field', opts.field, fields));
    let bytesUsed = opts.bytesUsed === undefined ? undefined : validate.integer('options.bytesUsed', opts.bytesUsed, 0, 0xffffffff);
    // vb2 reads a zero bytesused on an output queue as "the whole buffer" and warns that it is deprecated.
    if (bytesUsed === undefined) bytesUsed = type === 'video-output' ? this.getFormat({ type }).sizeimage : 0;
    const dmaBufFd = dmaBuf?.fd ?? -1;
    const length = dmaBuf === undefined ? 0 : Math.min(dmaBuf.size, 0xffffffff);
    const raw = check(native().v4l2.queueBuffer(fd, typeValue(type), memoryValue(memory), index, dmaBufFd, length, bytesUsed, field), syscall, (code) => queueHint(code, type, memory, dmaBuf));
    this.#queued.set(`${type}:${index}`, dmaBuf);
    return bufferFrom(raw);
  }

  /** The time per frame a queue runs at (VIDIOC_G_PARM): `{ numerator: 1, denominator: 5 }` is 5 frames/s. */
  frameInterval(options?: V4l2BufferTypeOptions): { numerator: number; denominator: number } {
    const syscall = 'ioctl(VIDIOC_G_PARM)';
    const fd = this.assertOpen(syscall);
    const type = this.#type(validate.options<V4l2BufferTypeOptions>('options', options));
    const { numerator, denominator } = check(native().v4l2.frameInterval(fd, typeValue(type), 0, 0), syscall, (code) => (code === 'ENOTTY' ? `the driver has no frame interval on its ${type} queue` : undefined));
    return { numerator, denominator };
  }

  /**
   * Asks for a time per frame (VIDIOC_S_PARM) and returns the one the driver
   * chose: the nearest it can do (vivid's webcam input: the nearest interval
   * it lists for the format's size). ENOTSUP when the driver sets no
   * interval (V4L2_CAP_TIMEPERFRAME); ENOTTY when it has no S_PARM for the
   * queue even so (vivid's output reports the capability and has none).
   */
  setFrameInterval(interval: { numerator: number; denominator: number }, options?: V4l2BufferTypeOptions): { numerator: number; denominator: number } {
    const syscall = 'ioctl(VIDIOC_S_PARM)';
    const fd = this.assertOpen(syscall);
    const asked = validate.options<{ numerator: number; denominator: number }>('interval', interval);
    const numerator = validate.integer('interval.numerator', asked.numerator, 1, 0xffffffff);
    const denominator = validate.integer('interval.denominator', asked.denominator, 1, 0xffffffff);
    const type = this.#type(validate.options<V4l2BufferTypeOptions>('options', options));
    const noInterval = (code: string) => (code === 'ENOTTY' ? `the driver sets no frame interval on its ${type} queue` : undefined);
    const current = check(native().v4l2.frameInterval(fd, typeValue(type), 0, 0), 'ioctl(VIDIOC_G_PARM)', noInterval);
    if (!current.settable) throw errnoError('ENOTSUP', syscall, { hint: `${this.capabilities.card} sets no frame interval on its ${type} queue (no V4L2_CAP_TIMEPERFRAME)` });
    const chosen = check(native().v4l2.frameInterval(fd, typeValue(type), numerator, denominator), syscall, (code) => (code === 'EBUSY' ? 'the queue is streaming: set the interval before streamOn()' : noInterval(code)));
    return { numerator: chosen.numerator, denominator: chosen.denominator };
  }

  /** VIDIOC_STREAMON. */
  streamOn(options?: V4l2BufferTypeOptions): void {
    const fd = this.assertOpen('ioctl(VIDIOC_STREAMON)');
    const type = this.#type(validate.options<V4l2BufferTypeOptions>('options', options));
    check(native().v4l2.stream(fd, true, typeValue(type)), 'ioctl(VIDIOC_STREAMON)', (code) => (code === 'EINVAL' ? `no buffers are requested on the ${type} queue` : undefined));
  }

  /** VIDIOC_STREAMOFF: every queued buffer comes back to userspace (this device stops keeping their DmaBufs alive; vb2 keeps its slot references, see V4l2DequeuedBuffer.dmaBuf). */
  streamOff(options?: V4l2BufferTypeOptions): void {
    const fd = this.assertOpen('ioctl(VIDIOC_STREAMOFF)');
    const type = this.#type(validate.options<V4l2BufferTypeOptions>('options', options));
    check(native().v4l2.stream(fd, false, typeValue(type)), 'ioctl(VIDIOC_STREAMOFF)');
    this.#release(type);
  }

  #release(type: V4l2BufferType): void {
    for (const key of [...this.#queued.keys()]) if (key.startsWith(`${type}:`)) this.#queued.delete(key);
  }

  /** How many buffers of a queue are queued and not yet dequeued. */
  queuedCount(options?: V4l2BufferTypeOptions): number {
    this.assertOpen('queuedCount');
    const type = this.#type(validate.options<V4l2BufferTypeOptions>('options', options));
    let count = 0;
    for (const key of this.#queued.keys()) if (key.startsWith(`${type}:`)) count += 1;
    return count;
  }

  /**
   * The next done buffer (VIDIOC_DQBUF), waited for on the event loop: the
   * fd is polled (POLLIN for capture, POLLOUT for output), and DQBUF on the
   * non-blocking fd is tried when it is ready. Rejects with ETIME after
   * `timeoutMs`, with the signal's reason when aborted, and with ECANCELED
   * when the device is closed meanwhile. With nothing queued, a capture
   * queue rejects at once only before the first queue() after streamOn()
   * (vb2 reports that case, for capture only); otherwise a dequeue waits for
   * a buffer another task queues, as a blocking DQBUF would: pass a timeout
   * or a signal when none may come.
   */
  async dequeue(options?: V4l2DequeueOptions): Promise<V4l2DequeuedBuffer> {
    const syscall = 'ioctl(VIDIOC_DQBUF)';
    const fd = this.assertOpen(syscall);
    const opts = validate.options<V4l2DequeueOptions>('options', options);
    const type = this.#type(opts);
    const memory = this.#memoryOf(type, syscall);
    const signal = validate.optionalSignal('options.signal', opts.signal);
    const timeoutMs = opts.timeoutMs === undefined ? undefined : validate.timeoutMs('options.timeoutMs', opts.timeoutMs);
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    const poller = native().Poller;
    const events = type === 'video-output' ? poller.WRITABLE : poller.READABLE;
    let wokenByError = false;
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const raw = native().v4l2.dequeueBuffer(this.assertOpen(syscall), typeValue(type), memoryValue(memory));
      if (typeof raw === 'object') {
        const key = `${type}:${raw.index}`;
        const dmaBuf = this.#queued.get(key);
        this.#queued.delete(key);
        return { ...bufferFrom(raw), ...(dmaBuf ? { dmaBuf } : {}) };
      }
      if (raw !== negativeErrno('EAGAIN')) throw kernelError(raw, syscall, { hint: dequeueHint(errnoName(-raw), type) });
      // vb2's poll reports an error (EPOLLERR, which libuv passes as a
      // status) when the capture queue is streaming with no buffer queued:
      // nothing can ever complete.
      // Once buffers were queued, an empty queue is not an error: another
      // task may queue one (a blocking DQBUF waits the same way), so only
      // vb2's own report ends the wait.
      if (wokenByError) throw errnoError('EINVAL', syscall, { hint: `no buffer is queued on the ${type} queue, so none can complete: queue() one first` });
      this.#waiter ??= new FdWaiter(fd, 'V4l2Device');
      const remaining = deadline === undefined ? undefined : Math.max(0, deadline - Date.now());
      const ready = await this.#waiter.wait(events, syscall, { signal, timeoutMs: remaining, wakeOnError: true });
      wokenByError = ready === 0;
    }
  }

  /** Every control (VIDIOC_QUERY_EXT_CTRL with V4L2_CTRL_FLAG_NEXT_CTRL), control class headings left out. */
  controls(): V4l2Control[] {
    const syscall = 'ioctl(VIDIOC_QUERY_EXT_CTRL)';
    const fd = this.assertOpen(syscall);
    const { V4L2_CTRL_FLAG_NEXT_CTRL, V4L2_CTRL_TYPE_CTRL_CLASS } = native().constants;
    const list: V4l2Control[] = [];
    for (let id = 0; ; ) {
      const raw = native().v4l2.queryControl(fd, (id | V4L2_CTRL_FLAG_NEXT_CTRL) >>> 0);
      if (raw === negativeErrno('EINVAL')) break;
      const entry = check(raw, syscall);
      id = entry.id;
      if (entry.type !== V4L2_CTRL_TYPE_CTRL_CLASS) list.push(controlFrom(entry));
    }
    this.#controlIds = new Map(list.map((control) => [control.name, control.id]));
    return list;
  }

  /** The control of this name, with its current flags, or undefined when the device has none of that name. */
  control(name: string): V4l2Control | undefined {
    validate.string('name', name);
    const syscall = 'ioctl(VIDIOC_QUERY_EXT_CTRL)';
    const fd = this.assertOpen(syscall);
    if (this.#controlIds === undefined) this.controls();
    const id = this.#controlIds!.get(name);
    if (id === undefined) return undefined;
    return controlFrom(check(native().v4l2.queryControl(fd, id), syscall));
  }

  #requireControl(name: string): V4l2Control {
    const control = this.control(name);
    if (control === undefined) throw validate.invalidValue('name', `the name of one of ${this.path}'s controls (controls() lists them)`, name);
    return control;
  }

  /** The items of a menu or integer-menu control (VIDIOC_QUERYMENU), the indices the driver skips left out. */
  menu(name: string): V4l2MenuItem[] {
    const control = this.#requireControl(name);
    if (control.type !== 'menu' && control.type !== 'integer-menu') throw validate.invalidValue('name', 'the name of a menu control', name);
    const syscall = 'ioctl(VIDIOC_QUERYMENU)';
    const fd = this.assertOpen(syscall);
    const items: V4l2MenuItem[] = [];
    for (let index = Number(control.minimum); index <= Number(control.maximum); index += 1) {
      const raw = native().v4l2.queryMenu(fd, control.id, index);
      if (raw === negativeErrno('EINVAL')) continue;
      const item = check(raw, syscall);
      items.push(control.type === 'menu' ? { index, name: item.name } : { index, name: String(item.value), value: item.value });
    }
    return items;
  }

  /**
   * The current value: a boolean for boolean controls, the item's name for
   * menus, a bigint for 64-bit controls, a number otherwise.
   */
  getControl(name: string): V4l2ControlValue {
    const control = this.#requireControl(name);
    const syscall = 'ioctl(VIDIOC_G_EXT_CTRLS)';
    const fd = this.assertOpen(syscall);
    unsupportedControl(control);
    const value = check(native().v4l2.getControl(fd, control.id, control.type === 'integer64'), syscall);
    switch (control.type) {
      case 'boolean':
        return value !== 0n;
      case 'integer64':
        return value;
      case 'menu':
        return this.menu(name).find((item) => BigInt(item.index) === value)?.name ?? Number(value);
      case 'bitmask':
        return Number(value) >>> 0; // 32 bits, the kernel's s32 field read unsigned
      default:
        return Number(value);
    }
  }

  /**
   * Sets a control: a boolean (boolean controls), a menu item's name or
   * index (menus), a bigint or number (64-bit), a number otherwise. The
   * driver may clamp; read it back to see.
   */
  setControl(name: string, value: V4l2ControlValue): void {
    const control = this.#requireControl(name);
    const syscall = 'ioctl(VIDIOC_S_EXT_CTRLS)';
    const fd = this.assertOpen(syscall);
    unsupportedControl(control);
    let raw: bigint;
    if (control.type === 'boolean') {
      if (typeof value !== 'boolean') throw validate.typeError('value', 'a boolean', value);
      raw = value ? 1n : 0n;
    } else if (control.type === 'menu' && typeof value === 'string') {
      const items = this.menu(name);
      const item = items.find((entry) => entry.name === value);
      if (!item) throw validate.invalidValue('value', `one of the items of '${name}': ${items.map((entry) => `'${entry.name}'`).join(', ')}`, value);
      raw = BigInt(item.index);
    } else if (control.type === 'integer64' && typeof value === 'bigint') {
      raw = value;
    } else if (control.type === 'button') {
      raw = 1n;
    } else if (control.type === 'bitmask') {
      raw = BigInt(validate.integer('value', value, 0, 0xffffffff) | 0); // its 32 bits, into the kernel's s32 field
    } else {
      const wide = control.type === 'integer64';
      raw = BigInt(validate.integer('value', value, wide ? -Number.MAX_SAFE_INTEGER : -0x80000000, wide ? Number.MAX_SAFE_INTEGER : 0x7fffffff));
    }
    check(native().v4l2.setControl(fd, control.id, raw, control.type === 'integer64'), syscall, (code) =>
      code === 'ERANGE' ? `${value} is outside '${name}' (${control.minimum} to ${control.maximum}, step ${control.step})` : code === 'EACCES' ? `'${name}' is read-only` : code === 'EBUSY' ? `'${name}' cannot change now (the queue is streaming, or another file handle grabbed it)` : undefined,
    );
  }

  protected override releaseResources(): void {
    this.#waiter?.close('ioctl(VIDIOC_DQBUF)');
    this.#queued.clear();
    this.#memory.clear();
  }
}

function unsupportedControl(control: V4l2Control): void {
  if (['integer', 'boolean', 'menu', 'button', 'integer64', 'bitmask', 'integer-menu'].includes(control.type)) return;
  throw validate.invalidValue('name', `a control of a plain type ('${control.name}' is a ${control.type} control, which this library does not read or write)`, control.name);
}

function queueHint(code: string, type: V4l2BufferType, memory: V4l2Memory, dmaBuf: DmaBuf | undefined): string | undefined {
  switch (code) {
    case 'EINVAL':
      return memory === 'dmabuf'
        ? `the DmaBuf (${dmaBuf!.size} bytes) is smaller than the format's sizeimage, the index is beyond the buffers requested, or the buffer is already queued`
        : 'the index is beyond the buffers requested, or the buffer is already queued';
    case 'EFAULT':
      return memory === 'dmabuf' ? "the device could not map the DmaBuf into the kernel (dma_buf_vmap failed: its exporter has no vmap, as Linux 6.1's udmabuf)" : undefined;
    case 'EIO':
      return `the ${type} queue is in an error state: streamOff, then start again`;
    default:
      return undefined;
  }
}

const deviceGoneHint = 'the device is gone (its driver was unbound or the hardware unplugged): close() this V4l2Device';

/**
 * The library's check, plus what ENODEV means on a node that was opened: V4L2
 * answers every call with it once the device is unregistered (v4l2_ioctl in
 * v4l2-dev.c), and the file stays open until its user closes it.
 */
function check<T>(result: T | number, syscall: string, hint?: (code: string) => string | undefined): T {
  return checkResult(result, syscall, (code) => hint?.(code) ?? (code === 'ENODEV' ? deviceGoneHint : undefined));
}

function dequeueHint(code: string, type: V4l2BufferType): string | undefined {
  if (code === 'EINVAL') return `the ${type} queue is not streaming: streamOn first`;
  if (code === 'EPIPE') return 'the last buffer was dequeued (V4L2_BUF_FLAG_LAST)';
  if (code === 'EIO') return `the ${type} queue is in an error state: streamOff, then start again`;
  if (code === 'ENODEV') return deviceGoneHint;
  return undefined;
}
