import assert from 'node:assert/strict';
import { hugetlbMappingIsUnsafe } from '../../lib/udmabuf';

describe('kernel version gates', () => {
  it('treats udmabuf hugetlb mappings as unsafe before 6.12', () => {
    for (const release of ['6.1.192', '6.1.0-56-amd64', '5.15.0-105-generic', '6.11.9', '4.19.0']) assert.equal(hugetlbMappingIsUnsafe(release), true, release);
    for (const release of ['6.12.0', '6.18.44-fc-v669', '7.0.1']) assert.equal(hugetlbMappingIsUnsafe(release), false, release);
  });
});
