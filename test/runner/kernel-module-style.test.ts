import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildKernel } from '../../lib/vm';

const moduleDir = join(__dirname, '..', '..', 'kernel-module');

// The module follows kernel style and builds without a warning against the
// VM's kernel: checked with the kernel tree's own tools.
describe('kernel module source', () => {
  let tree: string;
  before(async function () {
    this.timeout(30 * 60_000);
    tree = (await buildKernel()).tree!;
  });

  it('is checkpatch.pl --no-tree -f clean, header included', () => {
    const files = [join(moduleDir, 'dmabuf_test.c'), join(moduleDir, 'dbt_compat.h'), join(moduleDir, 'uapi', 'dmabuf_test.h')];
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
