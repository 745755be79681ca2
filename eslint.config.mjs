// `npm run lint`'s first check. The TypeScript is linted with its types (the
// rules that matter most here see promises: a floating or misused one is a
// lost error or an unhandled rejection in a library that is mostly async);
// the JavaScript (examples, test fixtures, the bin script) without.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'docs/api/'] },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Where a return inside try/catch/finally needs its await to be caught
      // or cleaned up after: the async mistake recommended does not catch.
      '@typescript-eslint/return-await': ['error', 'error-handling-correctness-only'],
      // An async function without await is how code that must return a
      // promise turns its synchronous throws into rejections (bench
      // sessions, test callbacks): dropping `async` would change that.
      '@typescript-eslint/require-await': 'off',
      // The code marks with `!` the indexes and keys it knows are there;
      // without noUncheckedIndexedAccess the rule calls each of those (over
      // 200) unnecessary, and that option would want them all back.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      // tsc's convention: a name starting with _ is unused on purpose (a
      // `using _buffer` that exists to be disposed, a destructured leftover).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
    },
  },
  {
    // The fuzzer hands the API values of any type on purpose, through
    // call(name, args, fn: (...args: any[]) => unknown).
    files: ['test/fuzz/api-worker.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [js.configs.recommended],
    languageOptions: { sourceType: 'commonjs', globals: { ...globals.node } },
  },
  { files: ['**/*.mjs'], languageOptions: { sourceType: 'module' } },
);
