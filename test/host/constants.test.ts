import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../lib/native';

// native().constants is built by the addon from the C headers' macros: this
// holds it to what gcc makes of the same macros from the same headers, and
// keeps lib/ from growing a retyped copy of any of them.

const root = join(__dirname, '..', '..');
const table = native().constants;

// The headers native/*.cc include for these values.
const headers = ['fcntl.h', 'poll.h', 'sys/mman.h', 'linux/magic.h', 'linux/dma-buf.h', 'linux/sync_file.h', 'sys/socket.h', 'linux/videodev2.h'];
// Values no macro names: the C expression each is derived by. SCM_MAX_FD is
// in no uapi header (include/net/scm.h), so the running kernel is asked.
const derived: Record<string, string> = {
  DMA_BUF_NAME_MAX_BYTES: 'DMA_BUF_NAME_LEN - 1',
  SYNC_NAME_MAX_BYTES: 'sizeof(((struct sync_merge_data *)0)->name) - 1',
  SCM_MAX_FD: 'kernel_scm_max_fd()',
};

// The most fds one SCM_RIGHTS message may carry, by sendmsg: the largest
// count sent before one is refused with EINVAL (-errno for any other refusal).
const scmMaxFdProbe = `
static int send_fds(int fd, int count) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) return errno;
  static char control[CMSG_SPACE(sizeof(int) * 1024)];
  char byte = 0;
  struct iovec iov = { &byte, 1 };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = CMSG_SPACE(sizeof(int) * count) };
  struct cmsghdr *header = CMSG_FIRSTHDR(&msg);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int) * count);
  for (int i = 0; i < count; i++) ((int *)CMSG_DATA(header))[i] = fd;
  int error = sendmsg(pair[0], &msg, 0) < 0 ? errno : 0;
  close(pair[0]);
  close(pair[1]);
  return error;
}

static long long kernel_scm_max_fd(void) {
  int fd = open("/dev/null", O_RDONLY);
  if (fd < 0) return -errno;
  int sent = 0, refused = 1024;
  int error = send_fds(fd, refused);
  if (error != EINVAL) return error == 0 ? -1 : -error;
  while (refused - sent > 1) {
    int count = (sent + refused) / 2;
    error = send_fds(fd, count);
    if (error == 0) sent = count;
    else if (error == EINVAL) refused = count;
    else return -error;
  }
  close(fd);
  return sent;
}
`;

function fromGcc(names: string[]): Record<string, number> {
  const directory = mkdtempSync(join(tmpdir(), 'dmabuf-constants-'));
  try {
    const source = join(directory, 'constants.c');
    const program = join(directory, 'constants');
    writeFileSync(
      source,
      [
        '#define _GNU_SOURCE',
        ...[...headers, 'errno.h', 'stdio.h', 'unistd.h'].map((header) => `#include <${header}>`),
        scmMaxFdProbe,
        'int main(void) {',
        ...names.map((name) => `  printf("%s %lld\\n", "${name}", (long long)(${derived[name] ?? name}));`),
        '  return 0;',
        '}',
      ].join('\n'),
    );
    const compiled = spawnSync('gcc', ['-Wall', '-Werror', '-o', program, source], { encoding: 'utf8' });
    assert.equal(compiled.status, 0, `gcc could not build every name of the table from ${headers.join(', ')}:\n${compiled.error ?? compiled.stderr}`);
    const run = spawnSync(program, { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    return Object.fromEntries(run.stdout.trim().split('\n').map((line) => line.split(' ')).map(([name, value]) => [name!, Number(value)]));
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

const sorted = (record: Record<string, number>) => Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)));
const uncommented = (code: string) => code.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');

/** Where `code` gives a table name a number of its own (`NAME = 0x2`, `NAME: 31`), or writes a distinctive value. */
function retypings(code: string): string[] {
  const found: string[] = [];
  for (const [name, value] of Object.entries(table)) {
    // An assignment, or an object literal's property (not a ternary's `? NAME : 0`).
    if (new RegExp(`(\\b${name}\\s*=(?![=>])|[{,]\\s*${name}\\s*:)\\s*[-(\\d]`).test(code)) found.push(`${name} defined as a number`);
    // Powers of two and small numbers are everywhere (sizes, shifts, bits):
    // only the other values can be looked for by value.
    const distinctive = value > 64 && (value & (value - 1)) !== 0;
    if (distinctive && new RegExp(`\\b(${value}|0x0*${value.toString(16)})\\b`, 'i').test(code)) found.push(`${name} (${value}) written as a literal`);
  }
  return found;
}

describe('native constants: the C headers\' values, defined once in the addon', () => {
  it('the table holds exactly the names lib/native.ts types NativeConstantName with, and is frozen', () => {
    const declaration = /export type NativeConstantName =([\s\S]*?);/.exec(readFileSync(join(root, 'lib', 'native.ts'), 'utf8'));
    assert.ok(declaration, 'lib/native.ts declares NativeConstantName');
    const typed = [...uncommented(declaration[1]!).matchAll(/'(\w+)'/g)].map(([, name]) => name!);
    assert.deepEqual(Object.keys(table).sort(), typed.sort());
    assert.throws(() => {
      (table as Record<string, number>).O_RDWR = 0;
    }, TypeError);
    assert.throws(() => {
      (table as Record<string, number>).NEW_NAME = 0;
    }, TypeError);
  });

  it('every value equals what gcc evaluates from the same headers (SCM_MAX_FD: the host kernel\'s sendmsg limit)', () => {
    assert.deepEqual(sorted(table), sorted(fromGcc(Object.keys(table))));
  });

  it('no file under lib/ gives one of the names a number of its own or writes a distinctive value as a literal', () => {
    // The scan finds the forms lib/constants.ts used to hold.
    assert.deepEqual(retypings('export const F_SEAL_SEAL = 0x1;\nconst limits = { SYNC_NAME_MAX_BYTES: 31, fds: 0xfd };\nf(hugetlb ? MFD_HUGETLB : 0);').sort(), [
      'F_SEAL_SEAL defined as a number',
      'SCM_MAX_FD (253) written as a literal',
      'SYNC_NAME_MAX_BYTES defined as a number',
    ]);
    const files = (readdirSync(join(root, 'lib'), { recursive: true }) as string[]).filter((file) => file.endsWith('.ts'));
    assert.ok(files.length > 20, files.join(' '));
    const found = files.flatMap((file) => retypings(uncommented(readFileSync(join(root, 'lib', file), 'utf8'))).map((what) => `lib/${file}: ${what}`));
    assert.deepEqual(found, []);
  });
});
