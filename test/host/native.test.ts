import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { release } from 'node:os';
import { join } from 'node:path';
import { native } from '../../lib/native';

// A child runs plain JavaScript: it loads the compiled library (npm test compiles first).
const compiled = join(__dirname, '..', '..', 'dist', 'lib', 'index.js');

describe('native addon', () => {
  it('reports the running kernel release, as uname(2) does', () => {
    assert.equal(native().kernelRelease(), release());
  });

  it('probes memfd_create by calling it', () => {
    assert.equal(native().probeMemfdCreate(), 0);
  });

  // The mapping's ArrayBuffer was held only weakly between the native call
  // and JavaScript's reading it back: a collection in between left map()
  // with null (tens of failures per 10,000 maps under this flag).
  it('map() returns the memory of 10,000 fresh mappings under --stress-incremental-marking, never null', function () {
    this.timeout(120000);
    const script = `
      const { Memfd } = require(${JSON.stringify(compiled)});
      let failures = 0, first;
      for (let i = 0; i < 10000; i += 1) {
        const memfd = Memfd.create(4096);
        try {
          const view = memfd.map();
          view[0] = i & 0xff;
          if (view.length !== 4096 || view[0] !== (i & 0xff)) throw new Error('view of ' + view.length + ' bytes');
        } catch (error) {
          failures += 1;
          first ??= error.message;
        }
        memfd.close();
      }
      console.log(JSON.stringify({ failures, first }));`;
    const child = spawnSync(process.execPath, ['--stress-incremental-marking', '--expose-gc', '-e', script], { encoding: 'utf8' });
    assert.equal(child.status, 0, child.stderr);
    assert.deepEqual(JSON.parse(child.stdout), { failures: 0 });
  });
});
