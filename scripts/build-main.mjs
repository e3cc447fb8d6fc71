// Bundles the Electron main process and its preload with esbuild: dist/main/index.js (ESM) and
// dist/main/preload.cjs (one CommonJS file: a sandboxed preload can neither import ESM nor require our modules).
// Electron and the npm packages stay external; the workbench is loaded at run time from app/ (see main/index.ts).
// Usage: node scripts/build-main.mjs [--outdir DIR] (default dist/main; the tests build elsewhere).
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { outdir: { type: 'string' } } });
const outdir = resolve(root, values.outdir ?? 'dist/main');
rmSync(outdir, { recursive: true, force: true });

const common = {
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'info',
};

await build({
  ...common,
  entryPoints: ['main/index.ts'],
  outfile: `${outdir}/index.js`,
  format: 'esm',
  packages: 'external',
});

await build({
  ...common,
  entryPoints: ['main/preload.ts'],
  outfile: `${outdir}/preload.cjs`,
  format: 'cjs',
  // Only `electron` is external: everything else (zod is not used here) is inlined, as the sandbox requires.
  external: ['electron'],
  target: 'chrome130',
  platform: 'browser',
});
