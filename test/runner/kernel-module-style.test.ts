import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildKernel } from '../../lib/vm';

const moduleDir = join(__dirname, '..', '..', 'kernel-module');
// Every source the module has, not a list that a new part could miss (the
// dbt prefix leaves out what an in-place build writes: dmabuf_test.mod.c).
const sources = readdirSync(moduleDir).filter((name) => /^dbt.*\.[ch]$/.test(name));

describe('kernel module parts', () => {
  it("are every dbt*.c, as Kbuild's dmabuf_test-y lists them", () => {
    const parts = /^dmabuf_test-y := (.+)$/m.exec(readFileSync(join(moduleDir, 'Kbuild'), 'utf8'))?.[1]?.split(/\s+/);
    assert.deepEqual(parts?.sort(), sources.filter((name) => name.endsWith('.c')).map((name) => name.replace(/\.c$/, '.o')).sort());
  });
});

// The module follows kernel style and builds without a warning against the
// VM's kernel: checked with the kernel tree's own tools.
describe('kernel module source', () => {
  let tree: string;
  before(async function () {
    this.timeout(30 * 60_000);
    tree = (await buildKernel()).tree!;
  });

  it('is checkpatch.pl --no-tree -f clean, headers included', () => {
    const files = [...sources.map((name) => join(moduleDir, name)), join(moduleDir, 'uapi', 'dmabuf_test.h')];
    const result = spawnSync('perl', [join(tree, 'scripts', 'checkpatch.pl'), '--no-tree', '-f', ...files], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.equal((result.stdout.match(/total: 0 errors, 0 warnings/g) ?? []).length, files.length, result.stdout);
  });

  it('builds against the kernel tree with no compiler warning, even at W=1', function () {
    this.timeout(5 * 60_000);
    const scratch = mkdtempSync(join(tmpdir(), 'dmabuf-module-'));
    cpSync(moduleDir, scratch, { recursive: true });
    try {
      const result = spawnSync('make', ['-C', tree, `M=${scratch}`, 'W=1', 'modules'], { encoding: 'utf8' });
      assert.equal(result.status, 0, result.stderr);
      assert.doesNotMatch(result.stdout + result.stderr, /warning:/);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
