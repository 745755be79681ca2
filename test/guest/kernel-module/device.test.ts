import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kernelTest } from '../../../lib/kernel-test';
import { openFdCount } from '../helpers';
import { requireModule } from './helpers';

describe('kernel module: opening the device', () => {
  requireModule();
  let scratch: string;
  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'dbt-open-'));
  });
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('open refuses files that are not the test device (/dev/null, another misc device, a regular file), closing what it opened', () => {
    const regular = join(scratch, 'regular');
    writeFileSync(regular, 'not a device');
    const fds = openFdCount();
    for (const path of ['/dev/null', '/dev/udmabuf', regular]) {
      assert.throws(() => kernelTest.open(path), { code: 'ERR_DMABUF_NOT_TEST_DEVICE', path }, path);
    }
    assert.equal(openFdCount(), fds, 'no fd left open');
  });

  it('open accepts a device node made elsewhere with the module\'s device number: the number decides, not the path', () => {
    const [major, minor] = readFileSync('/sys/class/misc/dmabuf_test/dev', 'utf8').trim().split(':');
    const node = join(scratch, 'dbt');
    const mknod = spawnSync('mknod', [node, 'c', major!, minor!], { encoding: 'utf8' });
    assert.equal(mknod.status, 0, mknod.stderr);
    const device = kernelTest.open(node);
    try {
      const exporter = device.export({ pages: 1, dynamic: true });
      exporter.dmabuf.close();
      assert.equal(exporter.info().pages, 1);
    } finally {
      device.close();
    }
  });

  it('readEvents ends on a read of 0 bytes (the device fd swapped for /dev/null under it; in a child, so that a loop that never ends is a timeout)', () => {
    const script = `
      const { closeSync, openSync } = require('node:fs');
      const { kernelTest } = require(${JSON.stringify(require.resolve('../../../lib/kernel-test'))});
      const device = kernelTest.open();
      const fd = device.fd;
      closeSync(fd);
      // The lowest free number is taken: open until it is the device's.
      const extra = [];
      for (let next = openSync('/dev/null', 'r'); next !== fd; next = openSync('/dev/null', 'r')) extra.push(next);
      extra.forEach((other) => closeSync(other));
      process.stdout.write(JSON.stringify(device.readEvents()));
    `;
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(child.signal, null, `the child was killed (${child.signal}): readEvents did not return`);
    assert.equal(child.status, 0, child.stderr);
    assert.deepEqual(JSON.parse(child.stdout), []);
  });

  it('events() on a closed device rejects with EBADF at the first next() instead of waiting for a close that already happened', async () => {
    const device = kernelTest.open();
    device.close();
    const iterator = device.events();
    const outcome = await Promise.race([
      iterator.next().then(
        () => 'resolved',
        (error: { code?: string }) => error.code,
      ),
      new Promise((resolve) => setTimeout(() => resolve('still pending after 3 s'), 3000)),
    ]);
    assert.equal(outcome, 'EBADF');
  });
});
