import assert from 'node:assert/strict';
import { release } from 'node:os';
import { native } from '../../lib/native';

describe('native addon', () => {
  it('reports the running kernel release, as uname(2) does', () => {
    assert.equal(native().kernelRelease(), release());
  });

  it('probes memfd_create by calling it', () => {
    assert.equal(native().probeMemfdCreate(), 0);
  });
});
