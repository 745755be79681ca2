#!/usr/bin/env node
'use strict';
// `npm run lint`: eslint (type-aware, eslint.config.mjs), clang-format's
// check of native/ (.clang-format), and typedoc's validation of the API
// reference (typedoc.json), each run even after another failed, so one run
// names every failure; the exit status is 1 if any failed. `npm run lint --
// eslint` runs only the checks named. With DMABUF_TEST_SUMMARY set (npm
// test's lint suite) it writes the counts in the summary reporter's form,
// one check one test, so the closing line counts a failed check.
const { spawnSync } = require('node:child_process');
const { readdirSync, writeFileSync } = require('node:fs');
const { dirname, join } = require('node:path');

const root = join(__dirname, '..');

/** The script of a devDependency's bin, run with this node (no shell, no PATH). */
function binOf(name) {
  const manifest = require.resolve(`${name}/package.json`, { paths: [root] });
  const { bin } = require(manifest);
  return [process.execPath, join(dirname(manifest), typeof bin === 'string' ? bin : bin[name])];
}

// The package's binary itself: its node wrapper adds a stack trace to every failure.
const clangFormat = () => require(require.resolve('clang-format', { paths: [root] })).getNativeBinary();

const nativeSources = () => readdirSync(join(root, 'native')).filter((file) => /\.(cc|h)$/.test(file)).sort().map((file) => join('native', file));

const checks = [
  { name: 'eslint', command: () => [...binOf('eslint'), '--max-warnings', '0', '.'], fix: 'see eslint.config.mjs for why a rule is on or off' },
  { name: 'clang-format', command: () => [clangFormat(), '--dry-run', '--Werror', ...nativeSources()], fix: 'npm run format:native rewrites native/ in .clang-format\'s style' },
  { name: 'typedoc', command: () => [...binOf('typedoc'), '--emit', 'none', '--treatValidationWarningsAsErrors'], fix: 'fix the TSDoc link, or export the type from its entry point' },
];

function main(names) {
  const unknown = names.filter((name) => !checks.some((check) => check.name === name));
  if (unknown.length > 0) {
    process.stderr.write(`lint: no check named ${unknown.join(', ')}; the checks are ${checks.map((check) => check.name).join(', ')}\n`);
    return 2;
  }
  const chosen = checks.filter((check) => names.length === 0 || names.includes(check.name));
  const failed = [];
  for (const check of chosen) {
    process.stdout.write(`lint: ${check.name}\n`);
    const started = Date.now();
    let why;
    let fix = check.fix;
    try {
      const [file, ...args] = check.command();
      const result = spawnSync(file, args, { cwd: root, stdio: 'inherit' });
      if (result.error) why = `did not start: ${result.error.message}`;
      else if (result.status !== 0) why = result.signal ? `killed by ${result.signal}` : `exit status ${result.status}`;
    } catch (error) {
      // A check whose tool is not installed (no npm install yet) fails; it is not skipped.
      why = `could not run: ${error.message.split('\n')[0]}`;
      fix = 'npm install brings the devDependencies';
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    if (why === undefined) {
      process.stdout.write(`lint: ${check.name} passed in ${seconds}s\n`);
    } else {
      failed.push(check.name);
      process.stdout.write(`lint: ${check.name} FAILED (${why}) in ${seconds}s: ${fix}\n`);
    }
  }
  const passed = chosen.length - failed.length;
  if (process.env.DMABUF_TEST_SUMMARY) {
    writeFileSync(process.env.DMABUF_TEST_SUMMARY, JSON.stringify({ passes: passed, failures: failed.length, pending: 0, skipped: [] }));
  }
  if (failed.length > 0) process.stdout.write(`lint: failed: ${failed.join(', ')}\n`);
  process.stdout.write(`lint: ${passed} passed, ${failed.length} failed\n`);
  return failed.length > 0 ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
