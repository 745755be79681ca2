import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { uapiLayouts } from '../../lib/kernel-test/device';
import { native } from '../../lib/native';

// TypeScript takes the test module's values from the addon, which is built
// with the uapi header: these hold the addon, and the struct layouts
// lib/kernel-test/device.ts packs, to the header's own text, so that neither a value
// retyped in TypeScript nor a header change the addon missed goes unseen.

const root = join(__dirname, '..', '..');
const header = readFileSync(join(root, 'kernel-module', 'uapi', 'dmabuf_test.h'), 'utf8');

type FieldType = 'u32' | 's32' | 'u64';
interface Ioctl {
  direction: number;
  nr: number;
  tag: string;
}

const values = new Map<string, number>();
const ioctls = new Map<string, Ioctl>();
// asm-generic's _IOC: write 1, read 2 (the architectures this runs on).
const directionBits: Record<string, number> = { W: 1, R: 2, WR: 3 };
for (const [, name, body] of header.matchAll(/^#define (DBT_\w+) (.+)$/gm) as IterableIterator<[string, string, string]>) {
  const ioctl = /^_IO(W|R|WR)\(DBT_IOC_MAGIC, (0x[0-9a-f]+|\d+), struct (\w+)\)$/i.exec(body);
  const shift = /^\((\d+) << (\d+)\)$/.exec(body);
  if (ioctl) ioctls.set(name, { direction: directionBits[ioctl[1]!]!, nr: Number(ioctl[2]), tag: ioctl[3]! });
  else if (shift) values.set(name, Number(shift[1]) << Number(shift[2]));
  else if (/^(0x[0-9a-f]+|\d+)$/i.test(body)) values.set(name, Number(body));
  else throw new Error(`uapi header: #define ${name} ${body} is a form this test does not read: teach it`);
}

const structFields = new Map<string, [string, FieldType][]>();
for (const [, tag, body] of header.matchAll(/^struct (dbt_\w+) \{\n([\s\S]*?)^\};/gm) as IterableIterator<[string, string, string]>) {
  structFields.set(tag, [...body.matchAll(/^\t__(u32|s32|u64) (\w+);/gm)].map(([, type, field]) => [field!, type as FieldType]));
}

/** Offsets and size with natural alignment, as the compiler lays the header's structs out. */
function layout(fields: [string, FieldType][]): { offsets: Map<string, number>; size: number } {
  const offsets = new Map<string, number>();
  let offset = 0;
  let alignment = 1;
  for (const [field, type] of fields) {
    const width = type === 'u64' ? 8 : 4;
    alignment = Math.max(alignment, width);
    offset = Math.ceil(offset / width) * width;
    offsets.set(field, offset);
    offset += width;
  }
  return { offsets, size: Math.ceil(offset / alignment) * alignment };
}

const camel = (field: string) => field.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());
const sorted = (record: Record<string, number>) => Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)));

interface Layout {
  size: number;
  encode(values: Record<string, number>): Buffer;
  decode(buffer: Buffer): Record<string, number>;
}

/** How a TypeScript layout writes `field`: where (the byte a 1 lands on) and as what (which values it refuses). */
function probe(struct: Layout, field: string): { offset: number; type: FieldType } {
  const offset = struct.encode({ [field]: 1 }).indexOf(1);
  const accepts = (value: number) => {
    try {
      struct.encode({ [field]: value });
      return true;
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      return false;
    }
  };
  return { offset, type: accepts(2 ** 32) ? 'u64' : accepts(-1) ? 's32' : 'u32' };
}

describe('uapi values: TypeScript takes kernel-module/uapi/dmabuf_test.h from the addon, not retyped', () => {
  it('the header was read: its flags, ioctls and structs are all found', () => {
    assert.ok(values.has('DBT_EXPORT_DYNAMIC') && values.has('DBT_IOC_MAGIC') && values.has('DBT_MAX_PAGES'), [...values.keys()].join(' '));
    assert.ok(ioctls.has('DBT_IOCTL_EXPORT') && ioctls.has('DBT_IOCTL_FENCE_SIGNAL'), [...ioctls.keys()].join(' '));
    assert.deepEqual(structFields.get('dbt_event'), [['type', 'u32'], ['id', 'u32'], ['sequence', 'u64']]);
  });

  it("the addon's dmabufTestValues are exactly the header's other #defines, value for value", () => {
    assert.deepEqual(sorted(native().dmabufTestValues), sorted(Object.fromEntries(values)));
  });

  it("the addon's sizeof of each struct is what the header's fields come to with natural alignment", () => {
    const fromHeader = Object.fromEntries([...structFields].map(([tag, fields]) => [tag, layout(fields).size]));
    assert.deepEqual(sorted(native().dmabufTestSizes), sorted(fromHeader));
  });

  it("the addon's dmabufTestCommands are the header's _IOW/_IOWR(DBT_IOC_MAGIC, nr, struct) numbers", () => {
    const magic = values.get('DBT_IOC_MAGIC')!;
    const expected = Object.fromEntries(
      [...ioctls].map(([name, { direction, nr, tag }]) => [name.replace(/^DBT_IOCTL_/, ''), ((direction << 30) | (layout(structFields.get(tag)!).size << 16) | (magic << 8) | nr) >>> 0]),
    );
    assert.deepEqual(sorted(native().dmabufTestCommands), sorted(expected));
  });

  it("lib/kernel-test/device.ts lays out each command's struct, and the event, field by field as the header does", () => {
    const pairs: [string, Layout, string][] = Object.entries(uapiLayouts.commands).map(([command, struct]) => [command, struct as Layout, ioctls.get(`DBT_IOCTL_${command}`)!.tag]);
    pairs.push(['event', uapiLayouts.event as Layout, 'dbt_event']);
    assert.deepEqual(pairs.map(([command]) => command).sort(), [...[...ioctls.keys()].map((name) => name.replace(/^DBT_IOCTL_/, '')), 'event'].sort());
    for (const [command, struct, tag] of pairs) {
      const fields = structFields.get(tag)!;
      const { offsets, size } = layout(fields);
      assert.equal(struct.size, size, `${command} (struct ${tag}): size`);
      assert.deepEqual(Object.keys(struct.decode(Buffer.alloc(struct.size))), fields.map(([field]) => camel(field)), `${command} (struct ${tag}): fields in order`);
      for (const [field, type] of fields) {
        assert.deepEqual(probe(struct, camel(field)), { offset: offsets.get(field), type }, `${command} (struct ${tag}).${field}`);
      }
    }
  });

  it("lib/kernel-test/device.ts and the module's fuzzers define none of the header's names and write none of its larger values as literals", () => {
    const files = ['lib/kernel-test/device.ts', 'test/fuzz/module-worker.ts', 'test/guest/kernel-module/ioctl.test.ts'];
    // Values up to 64 are everywhere (shifts, sizes): only the distinctive ones can be looked for.
    const distinctive = [...values].filter(([, value]) => value > 64);
    assert.ok(distinctive.length >= 2, 'DBT_MAX_PAGES and DBT_IOC_MAGIC at least');
    for (const file of files) {
      const code = readFileSync(join(root, file), 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/\/\/.*$/gm, '');
      for (const name of [...values.keys(), ...ioctls.keys()]) {
        const bare = name.replace(/^DBT_/, '');
        assert.doesNotMatch(code, new RegExp(`\\b(DBT_)?${bare}\\s*=\\s*[-(\\d]`), `${file} defines ${name} itself`);
      }
      for (const [name, value] of distinctive) {
        assert.doesNotMatch(code, new RegExp(`\\b(${value}|0x0*${value.toString(16)})\\b`, 'i'), `${file} writes ${name} (${value}) as a literal`);
      }
    }
  });
});
