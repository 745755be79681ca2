import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatLiveProgress, progressDisplay } from '../../lib/cli/progress';
import { buildKernel, buildPercent, findCachedKernel, describeBuildProgress, earlierBuildObjects, kernelBuildPhases, parseFragment, type KernelBuildProgress } from '../../lib/vm/kernel';
import { packageRoot } from '../../lib/vm/paths';

/** Runs `body` with DMABUF_CACHE_DIR pointing at `dir`: the runner reads it on every call. */
async function withCacheDir<T>(dir: string, body: () => Promise<T> | T): Promise<T> {
  const saved = process.env.DMABUF_CACHE_DIR;
  process.env.DMABUF_CACHE_DIR = dir;
  try {
    return await body();
  } finally {
    if (saved === undefined) delete process.env.DMABUF_CACHE_DIR;
    else process.env.DMABUF_CACHE_DIR = saved;
  }
}

// make's own lines, as a kernel build log has them; `true` marks the steps that produce an object.
const makeOutput: Array<[string, boolean]> = [
  ['  HOSTCC  scripts/basic/fixdep', false],
  ['  SYSHDR  arch/x86/include/generated/uapi/asm/unistd_64.h', false],
  ['  CC      kernel/fork.o', true],
  ['  AS      arch/x86/entry/entry_64.o', true],
  ['  LDS     arch/x86/kernel/vmlinux.lds', false],
  ['  CC [M]  drivers/dma-buf/selftest.o', true],
  ['  AR      lib/lib.a', true],
  ['  LD      vmlinux.o', true],
  ['  LD [M]  drivers/dma-buf/dmabuf_selftests.ko', true],
  ['#', false],
  ['  CLEAN   arch/x86/boot', false],
  ['  HDRINST usr/include/linux/dma-buf.h', false],
];
const objectLines = makeOutput.filter(([, isObject]) => isObject).length;

describe('kernel build progress: the data and its plain line', () => {
  const base = { key: '6.12-base-0123456789abcdef', elapsedMs: 192_000, source: '/src/linux.tar.xz', logPath: '/cache/6.12-base.build.log' };

  it('gives a percent only with an earlier build to compare with, and none once past it', () => {
    assert.equal(buildPercent({ done: 834, total: 1668 }), 50);
    assert.equal(buildPercent({ done: 1668, total: 1668 }), 100);
    assert.equal(buildPercent({ done: 834 }), undefined);
    assert.equal(buildPercent({ done: 1700, total: 1668 }), undefined);
  });

  it('describes the compile phase with done/total and percent, or with a count alone and why', () => {
    assert.equal(describeBuildProgress({ ...base, phase: 'compile', done: 834, total: 1668 }), 'kernel 6.12-base-0123456789abcdef: compile 834/1668 objects, 50% (3m12s)');
    const withoutBasis = describeBuildProgress({ ...base, phase: 'compile', done: 834 });
    assert.equal(withoutBasis, 'kernel 6.12-base-0123456789abcdef: compile 834 objects (no earlier build to compare with) (3m12s)');
    assert.doesNotMatch(withoutBasis, /%/);
    assert.doesNotMatch(describeBuildProgress({ ...base, phase: 'compile', done: 1700, total: 1668 }), /%/);
    assert.equal(describeBuildProgress({ ...base, phase: 'unpack', elapsedMs: 0 }), 'kernel 6.12-base-0123456789abcdef: building from /src/linux.tar.xz (once; log: /cache/6.12-base.build.log)');
    assert.equal(describeBuildProgress({ ...base, phase: 'done', done: 1668, total: 1668 }), 'kernel 6.12-base-0123456789abcdef: built in 3m12s (1668 objects)');
  });
});

describe('kernel build progress: the basis of the percent', () => {
  let cache: string;
  const entry = (name: string, info: object) => {
    mkdirSync(join(cache, 'kernels', name), { recursive: true });
    writeFileSync(join(cache, 'kernels', name, 'kernel.json'), JSON.stringify(info));
  };
  beforeEach(() => {
    cache = mkdtempSync(join(tmpdir(), 'dmabuf-progress-'));
  });
  afterEach(() => rmSync(cache, { recursive: true, force: true }));
  const source = { generation: '6.12' as const, path: '/src/linux-source-6.12.tar.xz' };

  it('takes the newest earlier entry of the same generation and profile: its recorded count, or the count of object steps in its build log', async () => {
    entry('6.12-base-aaaaaaaaaaaaaaaa', { profile: 'base', generation: '6.12', source: source.path, builtAt: '2026-01-01T00:00:00.000Z', objects: 1500 });
    entry('6.12-base-bbbbbbbbbbbbbbbb', { profile: 'base', generation: '6.12', source: source.path, builtAt: '2026-02-01T00:00:00.000Z' });
    writeFileSync(join(cache, 'kernels', '6.12-base-bbbbbbbbbbbbbbbb.build.log'), `${makeOutput.map(([line]) => line).join('\n')}\n`);
    entry('6.12-debug-cccccccccccccccc', { profile: 'debug', generation: '6.12', source: source.path, builtAt: '2026-03-01T00:00:00.000Z', objects: 9999 });
    mkdirSync(join(cache, 'kernels', '6.12-base-dddddddddddddddd.partial-123'));
    await withCacheDir(cache, () => {
      assert.equal(earlierBuildObjects('6.12-base-eeeeeeeeeeeeeeee', 'base', source), objectLines);
      unlinkSync(join(cache, 'kernels', '6.12-base-bbbbbbbbbbbbbbbb.build.log'));
      assert.equal(earlierBuildObjects('6.12-base-eeeeeeeeeeeeeeee', 'base', source), 1500);
      assert.equal(earlierBuildObjects('6.12-debug-eeeeeeeeeeeeeeee', 'debug', source), 9999);
      assert.equal(earlierBuildObjects('6.12-no-move-notify-eeeeeeeeeeeeeeee', 'no-move-notify', source), undefined);
    });
  });

  it('has no basis in an empty cache, or from an entry of another source of the user\'s own', async () => {
    await withCacheDir(cache, () => {
      assert.equal(earlierBuildObjects('6.12-base-eeeeeeeeeeeeeeee', 'base', source), undefined);
      entry('custom-base-aaaaaaaaaaaaaaaa', { profile: 'base', source: '/src/other-tree', builtAt: '2026-01-01T00:00:00.000Z', objects: 10 });
      assert.equal(earlierBuildObjects('custom-base-ffffffffffffffff', 'base', { generation: undefined, path: '/src/my-tree' }), undefined);
      assert.equal(earlierBuildObjects('custom-base-ffffffffffffffff', 'base', { generation: undefined, path: '/src/other-tree' }), 10);
    });
  });
});

/**
 * A source tree whose Makefile stands in for the kernel's: allnoconfig takes
 * the fragment as the config, bzImage and modules print make's object lines
 * and write an image and a release. buildKernel runs through every phase in
 * a second, without compiling anything.
 */
function fakeKernelTree(dir: string): void {
  const declared = [readFileSync(join(packageRoot(), 'vm', 'kernel-6.x.config'), 'utf8'), readFileSync(join(packageRoot(), 'vm', 'kernel-base.config'), 'utf8')]
    .flatMap((text) => [...parseFragment(text).keys()]);
  mkdirSync(join(dir, 'arch', 'x86', 'boot'), { recursive: true });
  mkdirSync(join(dir, 'drivers', 'dma-buf'), { recursive: true });
  writeFileSync(join(dir, 'Kconfig'), declared.map((name) => `config ${name.slice('CONFIG_'.length)}\n`).join(''));
  const echo = (lines: string[]) => lines.map((line) => `\t@echo '${line}'`).join('\n');
  writeFileSync(join(dir, 'Makefile'), [
    'allnoconfig:', '\tcp $(KCONFIG_ALLCONFIG) .config',
    // include/make-runs gets the directory of each make run: a tree copied from a compiled one starts with its lines.
    'bzImage:', echo(makeOutput.slice(0, 6).map(([line]) => line)), '\tmkdir -p include/config && echo fake > arch/x86/boot/bzImage && echo 6.99.0-fake > include/config/kernel.release && pwd >> include/make-runs',
    'modules: bzImage', echo(makeOutput.slice(6).map(([line]) => line)),
    // As the kernel's: the built modules go under $(INSTALL_MOD_PATH)/lib/modules/<release>.
    'modules_install:', '\tmkdir -p $(INSTALL_MOD_PATH)/lib/modules/6.99.0-fake/kernel && echo fake > $(INSTALL_MOD_PATH)/lib/modules/6.99.0-fake/kernel/dmabuf_selftests.ko',
    'clean:', '\t@true',
    'headers:', '\t@true',
    '',
  ].join('\n'));
}

describe('kernel build progress from buildKernel, on a stand-in source tree', () => {
  let cache: string;
  let tree: string;
  before(() => {
    cache = mkdtempSync(join(tmpdir(), 'dmabuf-progress-'));
    tree = join(cache, 'my-tree');
    fakeKernelTree(tree);
  });
  after(() => rmSync(cache, { recursive: true, force: true }));
  const build = () => withCacheDir(cache, async () => {
    const reports: Array<{ line: string; progress?: KernelBuildProgress }> = [];
    const built = await buildKernel({ kernel: tree, profile: 'base', progressIntervalMs: 0, onProgress: (line, progress) => reports.push({ line, progress }) });
    return { built, reports };
  });

  it('reports every phase in order, as data with the same plain line, and counts make\'s object steps; without an earlier build, no total', async () => {
    const { built, reports } = await build();
    assert.equal(built.cached, false);
    assert.equal(built.release, '6.99.0-fake');
    assert.ok(existsSync(join(built.modulesDir!, 'lib', 'modules', '6.99.0-fake', 'kernel', 'dmabuf_selftests.ko')), 'the modules are installed into the entry');
    const progress = reports.map((report) => report.progress!);
    assert.deepEqual([...new Set(progress.map((state) => state.phase))], [...kernelBuildPhases]);
    for (const report of reports) assert.equal(report.line, describeBuildProgress(report.progress!));
    const compile = progress.filter((state) => state.phase === 'compile').map((state) => state.done);
    assert.deepEqual(compile, [...compile].sort((a, b) => a! - b!), 'the count only grows');
    assert.equal(progress.at(-1)!.done, objectLines);
    assert.ok(progress.every((state) => state.total === undefined));
    assert.ok(progress.every((state, index) => index === 0 || state.elapsedMs >= progress[index - 1]!.elapsedMs));
    const info = JSON.parse(readFileSync(join(built.bzImage, '..', 'kernel.json'), 'utf8')) as { objects: number };
    assert.equal(info.objects, objectLines);
  }).timeout(60_000);

  it('gives the next build of the changed tree the first one\'s count as its total, reaching 100%', async () => {
    const later = new Date(Date.now() + 60_000);
    utimesSync(tree, later, later);
    const { built, reports } = await build();
    assert.equal(built.cached, false);
    const compile = reports.map((report) => report.progress!).filter((state) => state.phase === 'compile');
    assert.ok(compile.every((state) => state.total === objectLines));
    assert.equal(buildPercent(compile.at(-1)!), 100);
    assert.match(reports.find((report) => report.progress!.phase === 'compile' && report.progress!.done === objectLines)!.line, new RegExp(`compile ${objectLines}/${objectLines} objects, 100%`));
  }).timeout(60_000);
});

describe('a variant profile built from the base build\'s objects, on a stand-in source tree', () => {
  it('builds base and no-move-notify in one call: the variant\'s make runs on the compiled base tree, in the same directory, with its own fragment', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'dmabuf-variant-'));
    try {
      const tree = join(cache, 'my-tree');
      fakeKernelTree(tree);
      const built = await withCacheDir(cache, () => buildKernel({ kernel: tree, profile: 'base', variants: ['no-move-notify'] }));
      const variant = await withCacheDir(cache, async () => findCachedKernel('no-move-notify', tree));
      assert.ok(variant, 'the variant is in the cache after the base build returns');
      const baseRuns = readFileSync(join(built.tree!, 'include', 'make-runs'), 'utf8').trimEnd().split('\n');
      const variantRuns = readFileSync(join(variant.tree!, 'include', 'make-runs'), 'utf8').trimEnd().split('\n');
      assert.equal(baseRuns.length, 1);
      // Its own make ran on top of the base tree's, in the directory the base
      // was compiled in (a tree at another path rebuilds objtool, and with it
      // nearly every object).
      assert.deepEqual(variantRuns, [baseRuns[0], baseRuns[0]]);
      assert.notEqual(baseRuns[0], built.tree, 'compiled in a work directory, not in the entry');
      assert.deepEqual(readdirSync(join(cache, 'kernels')).filter((name) => name.includes('.work-') || name.includes('.partial-')), [], 'no work or partial directory is left');
      assert.match(readFileSync(join(variant.tree!, '.config'), 'utf8'), /^# CONFIG_DMABUF_MOVE_NOTIFY is not set$/m);
      assert.doesNotMatch(readFileSync(join(built.tree!, '.config'), 'utf8'), /^# CONFIG_DMABUF_MOVE_NOTIFY is not set$/m);
      const info = JSON.parse(readFileSync(join(variant.bzImage, '..', 'kernel.json'), 'utf8')) as { compileCpuSeconds?: number; buildSeconds?: number };
      assert.equal(typeof info.compileCpuSeconds, 'number');
      assert.equal(typeof info.buildSeconds, 'number');
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  }).timeout(60_000);
});

describe('kernel build progress on a terminal and in a log', () => {
  // Reports as a build of 6.12 gives them, with the previous build's 1668 objects as the basis.
  const recorded: KernelBuildProgress[] = [
    ['unpack', undefined, 0],
    ['configure', undefined, 41_000],
    ['compile', 0, 63_000],
    ['compile', 417, 300_000],
    ['compile', 1251, 900_000],
    ['headers', 1668, 1_200_000],
    ['prune', 1668, 1_230_000],
    ['done', 1668, 1_240_000],
  ].map(([phase, done, elapsedMs]) => ({ key: '6.12-base-f7edf352c592c479', phase: phase as KernelBuildProgress['phase'], ...(done === undefined ? {} : { done: done as number }), total: 1668, elapsedMs: elapsedMs as number, source: '/src/linux-source-6.12.tar.xz', logPath: '/cache/kernels/6.12-base-f7edf352c592c479.build.log' }));

  const capture = (columns = 200) => {
    const writes: string[] = [];
    return { writes, stream: { write: (text: string) => writes.push(text), isTTY: true, columns } };
  };

  it('writes one plain line per report when not a terminal, and asks for the default report interval', () => {
    const { writes, stream } = capture();
    const display = progressDisplay({ ...stream, isTTY: false });
    assert.equal(display.intervalMs, undefined);
    for (const progress of recorded) display.onProgress(describeBuildProgress(progress), progress);
    display.finish();
    assert.deepEqual(writes, recorded.map((progress) => `dmabuf: ${describeBuildProgress(progress)}\n`));
  });

  it('on a terminal, prints the first report (which names the log) as a line, then rewrites one line in place (phase, objects, percent, elapsed), ending with the finished build\'s line', () => {
    const { writes, stream } = capture();
    const display = progressDisplay(stream, { now: () => 0 });
    assert.equal(display.intervalMs, 1000);
    for (const progress of recorded) display.onProgress(describeBuildProgress(progress), progress);
    display.finish();
    assert.equal(writes[0], `dmabuf: ${describeBuildProgress(recorded[0]!)}\n`);
    const live = writes.slice(1, -1);
    assert.equal(live.length, recorded.length - 1, 'one redraw per report from unpack to prune');
    assert.ok(live.every((text) => text.startsWith('\r\x1b[K') && !text.includes('\n')), JSON.stringify(live));
    assert.equal(live[1], '\r\x1b[Kdmabuf: kernel 6.12-base-f7edf352c592c479  configure  0m41s');
    assert.equal(live[3], '\r\x1b[Kdmabuf: kernel 6.12-base-f7edf352c592c479  compile  417/1668 objects  25%  5m00s');
    assert.equal(writes.at(-1), `\r\x1b[Kdmabuf: ${describeBuildProgress(recorded.at(-1)!)}\n`);
  });

  it('shows counts without a percent on a terminal when there is no basis', () => {
    const { total: _total, ...withoutBasis } = recorded[3]!;
    assert.equal(formatLiveProgress(withoutBasis), 'kernel 6.12-base-f7edf352c592c479  compile  417 objects  5m00s');
  });

  it('prints a line that is not build progress above the live line, then redraws the live line', () => {
    const { writes, stream } = capture();
    const display = progressDisplay(stream, { now: () => 0 });
    display.onProgress('', recorded[3]);
    display.onProgress('kernel source: fetching linux-source-6.12');
    display.finish();
    assert.deepEqual(writes.slice(1), ['\r\x1b[Kdmabuf: kernel source: fetching linux-source-6.12\n', writes[0], '\n']);
  });

  it('keeps the elapsed time ticking between reports, and each line within the terminal\'s width', async () => {
    let now = 0;
    const { writes, stream } = capture(40);
    const display = progressDisplay(stream, { now: () => now, tickMs: 5 });
    display.onProgress('', recorded[3]);
    now = 61_000;
    await new Promise((resolve) => setTimeout(resolve, 50));
    display.finish();
    const drawn = writes.filter((text) => text.startsWith('\r\x1b[K')).map((text) => text.slice('\r\x1b[K'.length));
    assert.ok(drawn.length >= 2, `redrawn ${drawn.length} times`);
    assert.ok(drawn.every((text) => text.length < 40), JSON.stringify(drawn));
    const full = formatLiveProgress(recorded[3]!, recorded[3]!.elapsedMs + 61_000);
    assert.ok(full.endsWith('6m01s'));
    assert.equal(drawn.at(-1), `${`dmabuf: ${full}`.slice(0, 38)}…`);
  });
});
