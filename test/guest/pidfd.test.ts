import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Memfd, pidfdGetFd } from '../../lib';
import { closeFd } from '../../lib/handle';
import { copyPackage } from '../support/second-copy';
import { exited, firstLine, requireVm } from './helpers';

// The scripts run as uid 65534 from a copy of the package anyone can read:
// the checkout may sit under a directory only its owner can enter.
let copy: ReturnType<typeof copyPackage>;
const scripts = () => join(copy.dir, 'test', 'fixtures', 'scripts');
const nobody = 65534;

interface Taken {
  ok: boolean;
  text?: string;
  code?: string;
  errno?: number;
  syscall?: string;
  message?: string;
}

/** pidfdGetFd(pid, fd) in a process of uid/gid 65534, as it reported. */
function takeAsNobody(pid: number, fd: number): Taken {
  const result = spawnSync(process.execPath, [join(scripts(), 'pidfd-caller.js'), String(pid), String(fd)], { uid: nobody, gid: nobody, encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(result.stdout) as Taken;
}

// pidfd_getfd needs PTRACE_MODE_ATTACH_REALCREDS: the caller must have the
// target's uids and gids and the target must be dumpable, or the caller must
// have CAP_SYS_PTRACE. The VM's kernel has no Yama, so those are the rules.
describe('pidfdGetFd across privilege lines', () => {
  requireVm();
  before(() => {
    copy = copyPackage();
  });
  after(() => copy.remove());
  let targets: ChildProcess[] = [];
  afterEach(async () => {
    for (const child of targets) child.kill();
    await Promise.all(targets.map(exited));
    targets = [];
  });

  async function target(mode: 'dumpable' | 'non-dumpable'): Promise<{ pid: number; fd: number }> {
    // The dumpable one starts as uid 65534 (an exec leaves it dumpable); the
    // other starts as root and drops to 65534 itself.
    const options = mode === 'dumpable' ? { uid: nobody, gid: nobody } : {};
    const child = spawn(process.execPath, [join(scripts(), 'pidfd-target.js'), mode], { ...options, stdio: ['ignore', 'pipe', 'inherit'] });
    targets.push(child);
    const started = JSON.parse(await firstLine(child)) as { pid: number; fd: number };
    // Its /proc files (not the directory) belong to its uid while it is dumpable, and to root when it is not.
    assert.equal(statSync(`/proc/${started.pid}/environ`).uid, mode === 'dumpable' ? nobody : 0, `/proc/${started.pid} shows the process as ${mode}`);
    return started;
  }

  it('takes the fd of a dumpable process of the same user (the control for the two below)', async () => {
    const { pid, fd } = await target('dumpable');
    assert.deepEqual(takeAsNobody(pid, fd), { ok: true, text: `held by dumpable ${pid}` });
  });

  it('EPERM from a process of the same user that is not dumpable, with a message that says why', async () => {
    const { pid, fd } = await target('non-dumpable');
    const taken = takeAsNobody(pid, fd);
    assert.deepEqual([taken.ok, taken.code, taken.errno, taken.syscall], [false, 'EPERM', -1, 'pidfd_getfd'], taken.message);
    assert.match(taken.message!, new RegExp(`not allowed to take fds from process ${pid}: it must be this user's and dumpable`));
    // The same fd is root's to take: CAP_SYS_PTRACE overrides both rules.
    const mine = pidfdGetFd(pid, fd);
    try {
      const text = Buffer.alloc(64);
      assert.equal(text.toString('utf8', 0, readSync(mine, text, 0, 64, 0)).replace(/\0+$/, ''), `held by non-dumpable ${pid}`);
    } finally {
      closeFd(mine);
    }
  });

  it('EPERM from another user\'s process', () => {
    using memfd = Memfd.create(4096);
    const taken = takeAsNobody(process.pid, memfd.fd);
    assert.deepEqual([taken.ok, taken.code, taken.syscall], [false, 'EPERM', 'pidfd_getfd'], taken.message);
    assert.match(taken.message!, /it must be this user's and dumpable/);
  });
});
