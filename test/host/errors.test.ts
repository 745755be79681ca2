import assert from 'node:assert/strict';
import { constants, totalmem } from 'node:os';
import { heap } from '../../lib';
import { errnoName, kernelError } from '../../lib/errors';

describe('kernel errors', () => {
  it('names the errnos libuv does not know, which dma-buf returns', () => {
    assert.equal(errnoName(62), 'ETIME');
    assert.equal(errnoName(77), 'EBADFD');
  });

  it('names ordinary errnos as Node does', () => {
    assert.equal(errnoName(constants.errno.EINVAL), 'EINVAL');
    assert.equal(errnoName(constants.errno.ENOTTY), 'ENOTTY');
    assert.equal(errnoName(100000), 'E100000');
  });

  it('builds errors shaped like Node fs errors', () => {
    const error = kernelError(-22, 'ioctl(DMA_BUF_IOCTL_SYNC)', { hint: 'flags must name a direction' });
    assert.ok(error instanceof Error);
    assert.equal(error.code, 'EINVAL');
    assert.equal(error.errno, -22);
    assert.equal(error.syscall, 'ioctl(DMA_BUF_IOCTL_SYNC)');
    assert.equal(error.message, 'ioctl(DMA_BUF_IOCTL_SYNC) EINVAL (invalid argument): flags must name a direction');
  });

  it('carries a path when one is involved', () => {
    const error = kernelError(2, 'open', { path: '/dev/udmabuf' });
    assert.equal(error.path, '/dev/udmabuf');
    assert.match(error.message, /^open '\/dev\/udmabuf' ENOENT/);
  });
});

describe('heap.allocate size bound', () => {
  it('refuses a size above MemTotal with RangeError ERR_OUT_OF_RANGE, before opening any heap', () => {
    // A heap name that cannot exist: the size is judged before the open, or this would be ENOENT.
    assert.throws(() => heap.allocate('no-such-heap', totalmem() + 1), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: new RegExp(`MemTotal, ${totalmem()} bytes`) });
    assert.throws(() => heap.allocate('no-such-heap', totalmem()), { code: 'ENOENT', syscall: 'open' });
  });
});
