import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderJobScript, shellQuote } from '../../lib/vm/job';

// The guest runs the job script with /bin/sh; so does this test, on the host.
function runJob(script: string): { stdout: string; status: number | null } {
  const dir = mkdtempSync(join(tmpdir(), 'dmabuf-job-'));
  try {
    writeFileSync(join(dir, 'job.sh'), script);
    const result = spawnSync('sh', [join(dir, 'job.sh')], { encoding: 'utf8', env: {} });
    return { stdout: result.stdout, status: result.status };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('guest job script', () => {
  const awkward = ['plain', 'two words', "it's", '$HOME', '`id`', 'a"b', '', 'tab\there', 'new\nline', '*', '\\'];

  it('hands every argument to the command exactly', () => {
    const script = renderJobScript({
      command: [process.execPath, '-e', 'process.stdout.write(JSON.stringify(process.argv.slice(1)))', ...awkward],
      cwd: '/',
      env: {},
      modules: [],
      resultsDir: '/nonexistent',
    });
    const { stdout, status } = runJob(script);
    assert.equal(status, 0);
    assert.deepEqual(JSON.parse(stdout), awkward);
  });

  it('sets the working directory and environment, and runs a string through sh -c', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dmabuf job cwd '));
    try {
      const script = renderJobScript({ command: 'pwd; printf "%s" "$ODD"; exit 3', cwd: dir, env: { ODD: "x 'y' $z" }, modules: [], resultsDir: '/nonexistent' });
      const { stdout, status } = runJob(script);
      assert.equal(status, 3);
      assert.equal(stdout, `${dir}\nx 'y' $z`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a module that fails to load with its own status, before the command runs', () => {
    const results = mkdtempSync(join(tmpdir(), 'dmabuf-results-'));
    try {
      const script = renderJobScript({ command: ['echo', 'should not run'], cwd: '/', env: { PATH: '/nonexistent' }, modules: [{ path: '/nonexistent.ko', params: [] }], resultsDir: results });
      const { stdout, status } = runJob(script);
      assert.equal(status, 125);
      assert.equal(stdout, '');
      assert.match(readFileSync(join(results, 'module-error'), 'utf8'), /insmod \/nonexistent\.ko failed/);
    } finally {
      rmSync(results, { recursive: true, force: true });
    }
  });

  it('refuses environment names the shell cannot carry', () => {
    assert.throws(() => renderJobScript({ command: 'true', cwd: '/', env: { 'A-B': '1' }, modules: [], resultsDir: '/r' }), { name: 'RangeError', code: 'ERR_INVALID_ARG_VALUE', message: /'A-B'/ });
  });

  it('leaves safe words unquoted and quotes the rest', () => {
    assert.equal(shellQuote('/usr/bin/node'), '/usr/bin/node');
    assert.equal(shellQuote("it's"), `'it'\\''s'`);
  });
});
