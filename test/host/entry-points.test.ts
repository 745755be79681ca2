import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';

// Children load the compiled package (npm test compiles first) by its name,
// from a consumer directory whose node_modules/dmabuf links to this checkout:
// what an installed package's user gets, export map included.
const root = join(__dirname, '..', '..');
const compiled = join(root, 'dist', 'lib');

/** Each audience's subpath and the lib/ folder that is its own (the main entry owns none). */
const audiences = { dmabuf: undefined, 'dmabuf/policy': 'policy', 'dmabuf/vm': 'vm', 'dmabuf/kernel-test': 'kernel-test' } as const;
type Subpath = keyof typeof audiences;
const subpaths = Object.keys(audiences) as Subpath[];
const folders = Object.values(audiences).filter((folder) => folder !== undefined);

let consumer: string;

function node(args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  const child = spawnSync(process.execPath, args, { cwd, env, encoding: 'utf8', timeout: 20_000 });
  assert.equal(child.status, 0, `node ${args.join(' ')} failed:\n${child.stderr}`);
  return child.stdout;
}

const evalIn = (cwd: string, script: string) => JSON.parse(node(['-e', script], cwd)) as unknown;

before(() => {
  consumer = mkdtempSync(join(tmpdir(), 'dmabuf-consumer-'));
  mkdirSync(join(consumer, 'node_modules'));
  symlinkSync(root, join(consumer, 'node_modules', 'dmabuf'), 'dir');
});

after(() => rmSync(consumer, { recursive: true, force: true }));

describe('entry points', () => {
  it('package.json exports exactly the four audiences and ./package.json, each with types first and a default, files that exist', () => {
    const exportsMap = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, string | Record<string, string>> }).exports;
    assert.deepEqual(Object.keys(exportsMap).sort(), [...subpaths.map((spec) => spec.replace(/^dmabuf/, '.')), './package.json'].sort());
    for (const spec of subpaths) {
      const entry = exportsMap[spec.replace(/^dmabuf/, '.')] as Record<string, string>;
      // Node and TypeScript take the first condition that matches: types first.
      assert.equal(Object.keys(entry)[0], 'types', spec);
      assert.ok('default' in entry, `${spec} has no default`);
      for (const file of Object.values(entry)) assert.ok(existsSync(join(root, file)), `${spec}: ${file} does not exist`);
    }
  });

  it('each subpath loads no file of another audience\'s lib/ folder (the main entry none of lib/vm, lib/policy, lib/kernel-test)', () => {
    for (const spec of subpaths) {
      const loaded = evalIn(consumer, `require(${JSON.stringify(spec)}); console.log(JSON.stringify(Object.keys(require.cache)));`) as string[];
      const ownFolders = [audiences[spec]];
      assert.ok(loaded.some((path) => path.startsWith(realpathSync(compiled))), `${spec} loaded nothing from dist/lib`);
      const foreign = loaded.filter((path) => folders.some((folder) => !ownFolders.includes(folder) && path.startsWith(join(realpathSync(compiled), folder) + '/')));
      assert.deepEqual(foreign, [], `${spec} loaded another audience's files`);
    }
  });

  it('importing each subpath calls no fs function beyond the module loader\'s own reads of the modules it loads', () => {
    const probed = ['existsSync', 'statSync', 'lstatSync', 'accessSync', 'readdirSync', 'openSync', 'readFileSync', 'realpathSync'];
    for (const spec of subpaths) {
      const calls = evalIn(consumer, `
        const fs = require('node:fs');
        const realpath = fs.realpathSync;
        const calls = [];
        for (const name of ${JSON.stringify(probed)}) {
          const original = fs[name];
          fs[name] = function (...args) { calls.push([name, String(args[0])]); return original.apply(this, args); };
        }
        require(${JSON.stringify(spec)});
        const real = (path) => { try { return realpath(path); } catch { return path; } };
        const loaderRead = ([name, path]) => (name === 'readFileSync' || name === 'realpathSync') && real(path) in require.cache;
        console.log(JSON.stringify(calls.filter((call) => !loaderRead(call))));`);
      assert.deepEqual(calls, [], spec);
    }
  });

  describe('from a copy of dist/lib with no package.json named dmabuf above it', () => {
    let copy: string;

    beforeEach(() => {
      copy = realpathSync(mkdtempSync(join(tmpdir(), 'dmabuf-copy-')));
      cpSync(compiled, join(copy, 'dist', 'lib'), { recursive: true });
      symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'), 'dir');
    });

    afterEach(() => rmSync(copy, { recursive: true, force: true }));

    it('each subpath imports, and the runner\'s first use of its root throws ERR_DMABUF_VM_SETUP', () => {
      for (const spec of subpaths) {
        const file = join(copy, 'dist', 'lib', audiences[spec] ?? '', 'index.js');
        assert.deepEqual(evalIn(copy, `console.log(JSON.stringify(Object.keys(require(${JSON.stringify(file)})).length > 0));`), true, spec);
      }
      const outcome = evalIn(copy, `
        const { packageRoot } = require('./dist/lib/vm/paths.js');
        try { console.log(JSON.stringify(packageRoot())); } catch (error) { console.log(JSON.stringify({ code: error.code, name: error.name })); }`);
      assert.deepEqual(outcome, { code: 'ERR_DMABUF_VM_SETUP', name: 'VmSetupError' });
    });

    it('the runner finds its root by vm/guest-init.sh and package.json, whatever the package is named', () => {
      mkdirSync(join(copy, 'vm'));
      cpSync(join(root, 'vm', 'guest-init.sh'), join(copy, 'vm', 'guest-init.sh'));
      writeFileSync(join(copy, 'package.json'), JSON.stringify({ name: 'vendored-dmabuf', version: '0.0.0' }));
      const found = evalIn(copy, `
        const { packageRoot, guestInitScript } = require('./dist/lib/vm/paths.js');
        console.log(JSON.stringify([packageRoot(), guestInitScript()]));`);
      assert.deepEqual(found, [copy, join(copy, 'vm', 'guest-init.sh')]);
    });
  });

  it('an .mjs file\'s named imports from each subpath are the CommonJS exports, and every CommonJS export is an ESM name', () => {
    writeFileSync(join(consumer, 'consumer.mjs'), `
      import { createRequire } from 'node:module';
      import { udmabuf } from 'dmabuf';
      import { createMovingBuffer } from 'dmabuf/policy';
      import { run } from 'dmabuf/vm';
      import { kernelTest } from 'dmabuf/kernel-test';
      const require = createRequire(import.meta.url);
      const same = [udmabuf === require('dmabuf').udmabuf, createMovingBuffer === require('dmabuf/policy').createMovingBuffer, run === require('dmabuf/vm').run, kernelTest === require('dmabuf/kernel-test').kernelTest];
      const missing = {};
      for (const spec of ${JSON.stringify(subpaths)}) {
        const esm = Object.keys(await import(spec));
        missing[spec] = Object.keys(require(spec)).filter((name) => !esm.includes(name));
      }
      console.log(JSON.stringify({ same, missing }));`);
    const result = JSON.parse(node(['consumer.mjs'], consumer)) as { same: boolean[]; missing: Record<string, string[]> };
    assert.deepEqual(result.same, [true, true, true, true]);
    assert.deepEqual(result.missing, Object.fromEntries(subpaths.map((spec) => [spec, []])));
  });

  // Types come from the export map's `types`; an untyped or unresolved import
  // is an error under strict, so a missing entry fails the compile.
  const typedConsumer = `
    import { createRequire } from 'node:module';
    import { udmabuf, type KernelError } from 'dmabuf';
    import { createMovingBuffer, type PolicyProfile } from 'dmabuf/policy';
    import { run, type VmRunOptions } from 'dmabuf/vm';
    import { kernelTest, type KernelTestFeatures } from 'dmabuf/kernel-test';
    const require = createRequire(import.meta.url);
    const options: VmRunOptions = { command: ['true'] };
    const typed: [KernelError | undefined, PolicyProfile | undefined, KernelTestFeatures | undefined, number] = [undefined, undefined, undefined, options.command.length];
    const same: boolean[] = [udmabuf === require('dmabuf').udmabuf, createMovingBuffer === require('dmabuf/policy').createMovingBuffer, run === require('dmabuf/vm').run, kernelTest === require('dmabuf/kernel-test').kernelTest];
    console.log(JSON.stringify({ same, typed: typed.length }));
  `;

  for (const [mode, file, output] of [['node16', 'consumer.mts', 'consumer.mjs'], ['bundler', 'consumer.ts', 'consumer.js']] as const) {
    it(`a TypeScript consumer compiles under moduleResolution ${mode} against the package's types and its output runs`, function () {
      this.timeout(120_000);
      const dir = join(consumer, mode);
      mkdirSync(dir);
      writeFileSync(join(dir, file), typedConsumer);
      const module = mode === 'node16' ? { module: 'node16', moduleResolution: 'node16' } : { module: 'esnext', moduleResolution: 'bundler' };
      const config = ts.parseJsonConfigFileContent({
        compilerOptions: { ...module, target: 'es2022', lib: ['es2022', 'esnext.disposable'], strict: true, skipLibCheck: true, types: ['node'], typeRoots: [join(root, 'node_modules', '@types')], outDir: join(dir, 'out') },
        files: [file],
      }, ts.sys, dir);
      assert.deepEqual(config.errors.map((error) => ts.flattenDiagnosticMessageText(error.messageText, '\n')), []);
      const program = ts.createProgram(config.fileNames, config.options);
      const emitted = program.emit();
      const diagnostics = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics];
      const host = { getCanonicalFileName: (name: string) => name, getCurrentDirectory: () => dir, getNewLine: () => '\n' };
      assert.equal(ts.formatDiagnostics(diagnostics, host), '');
      // The bundler build emits .js: the package.json makes Node run it as ESM.
      writeFileSync(join(dir, 'out', 'package.json'), JSON.stringify({ type: 'module' }));
      assert.deepEqual(JSON.parse(node([join(dir, 'out', output)], dir)), { same: [true, true, true, true], typed: 4 });
    });
  }

  // TypeScript's old resolution reads no export map: typesVersions gives it
  // the subpaths' types, and the CommonJS it emits runs through the map.
  it('a CommonJS TypeScript consumer compiles under moduleResolution node10 (typesVersions) and its output runs', function () {
    this.timeout(120_000);
    const dir = join(consumer, 'node10');
    mkdirSync(dir);
    writeFileSync(join(dir, 'consumer.ts'), `
      import { udmabuf, type KernelError } from 'dmabuf';
      import { createMovingBuffer, type PolicyProfile } from 'dmabuf/policy';
      import { run, type VmRunOptions } from 'dmabuf/vm';
      import { kernelTest, type KernelTestFeatures } from 'dmabuf/kernel-test';
      const options: VmRunOptions = { command: ['true'] };
      const typed: [KernelError | undefined, PolicyProfile | undefined, KernelTestFeatures | undefined, number] = [undefined, undefined, undefined, options.command.length];
      const functions = [udmabuf.create, createMovingBuffer, run, kernelTest.open].map((value) => typeof value === 'function');
      console.log(JSON.stringify({ functions, typed: typed.length }));
    `);
    const config = ts.parseJsonConfigFileContent({
      compilerOptions: { module: 'commonjs', moduleResolution: 'node10', target: 'es2022', lib: ['es2022', 'esnext.disposable'], strict: true, skipLibCheck: true, types: ['node'], typeRoots: [join(root, 'node_modules', '@types')], outDir: join(dir, 'out') },
      files: ['consumer.ts'],
    }, ts.sys, dir);
    const program = ts.createProgram(config.fileNames, config.options);
    const emitted = program.emit();
    const host = { getCanonicalFileName: (name: string) => name, getCurrentDirectory: () => dir, getNewLine: () => '\n' };
    assert.equal(ts.formatDiagnostics([...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics], host), '');
    assert.deepEqual(JSON.parse(node([join(dir, 'out', 'consumer.js')], dir)), { functions: [true, true, true, true], typed: 4 });
  });
});
