// ESLint flat config: typescript-eslint's recommended rules (not type-aware, to stay fast) and the layer
// rules of STYLE.md, which say which folder may import which.
import js from '@eslint/js';
import { builtinModules } from 'node:module';
import svelte from 'eslint-plugin-svelte';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/** An import specifier that reaches into one of these top-level folders (relative or not). */
const into = (...folders) => `(^|/)(${folders.join('|')})(/|$)`;

/** no-restricted-imports for one layer: the modules and specifier regexes it may not import. */
const layer = (message, { modules = [], regexes = [] }) => ({
  'no-restricted-imports': [
    'error',
    {
      paths: modules.map((name) => ({ name, message })),
      patterns: regexes.map((regex) => ({ regex, message })),
    },
  ],
});

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'out/', 'release/', 'runs/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  ...svelte.configs.recommended,
  {
    files: ['**/*.svelte', '**/*.svelte.ts'],
    languageOptions: { parserOptions: { parser: tseslint.parser } },
  },
  { ignores: ['renderer/**'], languageOptions: { globals: globals.node } },
  { files: ['renderer/**'], languageOptions: { globals: globals.browser } },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },

  // --- layers (STYLE.md) ---
  {
    files: ['engine/**'],
    rules: layer('engine/ is tfjs + Node only: it may not import app/, main/, renderer/ or Electron.', {
      modules: ['electron'],
      regexes: [into('app', 'main', 'renderer')],
    }),
  },
  {
    files: ['app/**'],
    ignores: ['app/worker/**'],
    rules: layer(
      'app/ outside app/worker/ runs in the host (CLI, serve, Electron main): it may not import tfjs, the engine ' +
        '(beyond its tfjs-free engine/config, engine/rng and engine/webgpu-adapter), app/worker/ (start it as a job through app/jobs/host), ' +
        'main/, renderer/ or Electron.',
      {
        modules: ['electron'],
        regexes: [
          into('main', 'renderer'),
          '^@tensorflow/',
          '(^|/)engine/(?!(config|rng|webgpu-adapter)\\.[jt]s$)',
          '(^|/)worker/',
        ],
      },
    ),
  },
  {
    files: ['app/worker/**'],
    rules: layer('app/worker/ is the engine side of a job: it may not import main/, renderer/ or Electron.', {
      modules: ['electron'],
      regexes: [into('main', 'renderer')],
    }),
  },
  {
    files: ['main/**'],
    rules: layer(
      'main/ reaches the engine through app/ jobs: it may not import engine/, tfjs, app/worker/ or renderer/.',
      { regexes: [into('engine', 'renderer'), '^@tensorflow/', '(^|/)worker/'] },
    ),
  },
  {
    files: ['renderer/**'],
    rules: layer(
      'renderer/ talks only to the API contract (app/api): it may not import engine/, main/, the rest of app/, Node or Electron.',
      {
        modules: ['electron', ...builtinModules],
        regexes: [into('engine', 'main'), '(^|/)app(?!/api(/|\\.[jt]s$|$))(/|$)', '^node:'],
      },
    ),
  },
);
