// Bundles what the desktop app runs with esbuild, so that it needs neither tsx nor esbuild at run time:
//   index.js        the Electron main process with the workbench of app/ (ESM)
//   preload.cjs     the window's preload (one CommonJS file: a sandboxed preload can neither import ESM nor require)
//   worker.js       a job's engine (app/worker/entry.ts), started as a worker thread or a child process
//   replica.js      the data-parallel replica thread (engine/parallel/replica.ts), started by worker.js
//   job-process.js  a job's utility process in the packaged app (main/job-process-entry.ts), which loads worker.js
//   engine-preload.cjs, engine-worker.js, engine.cjs
//                   a webgpu job's hidden engine window (main/engine-window.ts): its preload (hands the page a port),
//                   its dedicated Worker's classic script (main/engine-window-worker-entry.ts), and the job engine
//                   (app/worker/entry.ts) as CommonJS, which that worker's Node requires: in a renderer, import() is
//                   Chromium's ESM loader, which resolves neither npm packages nor node: modules
// npm packages stay external (tfjs-wasm, sharp and tfjs-node find their .wasm and native files beside their own code).
// The code that starts worker.js and replica.js (app/jobs/host.ts, engine/parallel/data-parallel.ts) picks the bundled
// file beside itself when it runs from a bundle, and the tsx boot file when it runs from its TypeScript source.
// Usage: node scripts/build-main.mjs [--outdir DIR] (default dist/main; the tests build elsewhere). Also importable:
// buildMain(outdir).
import { build } from 'esbuild';
import { readFile, rm } from 'node:fs/promises';
import { dirname, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The ESM bundles (name -> entry); they run in Node: Electron's main process, a worker thread, a child process. */
export const NODE_ENTRIES = {
  index: 'main/index.ts',
  worker: 'app/worker/entry.ts',
  replica: 'engine/parallel/replica.ts',
  'job-process': 'main/job-process-entry.ts',
};

/** Where the bundles sit in an install (the repository, or app.asar): INSTALL/dist/main/. */
const INSTALLED_AT = resolve(root, 'dist/main');

/**
 * `import.meta.dirname` in a bundled module of app/ or engine/ means its source folder in the install, as it does
 * under tsx: the built-in sample (app/datasets/), the built-in teacher (app/teachers/) and the install root
 * (app/runs/paths.ts) are found from there. The path is relative to the bundle's place in an install (INSTALLED_AT:
 * two folders below the root), so it holds wherever the install is, and for bundles built two folders below a copy
 * of it. main/ runs only as a bundle: its import.meta.dirname is the bundle's folder, and is left as it is.
 */
function sourceDirnames() {
  return {
    name: 'source-dirnames',
    setup(b) {
      b.onLoad({ filter: /\.ts$/ }, async (args) => {
        const source = relative(root, args.path).split(sep);
        if (source[0] !== 'app' && source[0] !== 'engine') return;
        const code = await readFile(args.path, 'utf8');
        if (!code.includes('import.meta.dirname')) return;
        const rel = relative(INSTALLED_AT, dirname(args.path)).split(sep).join('/');
        const contents = code.replaceAll(
          'import.meta.dirname',
          `__digptResolve(import.meta.dirname, ${JSON.stringify(rel)})`,
        );
        return { contents, loader: 'ts' };
      });
    },
  };
}

/** Writes the bundles into `outdir` (emptied first). */
export async function buildMain(outdir = INSTALLED_AT, { quiet = false } = {}) {
  await rm(outdir, { recursive: true, force: true });
  const common = {
    absWorkingDir: root,
    bundle: true,
    platform: 'node',
    target: 'node20',
    sourcemap: 'linked',
    logLevel: quiet ? 'warning' : 'info',
  };
  await build({
    ...common,
    entryPoints: NODE_ENTRIES,
    outdir,
    format: 'esm',
    packages: 'external',
    banner: { js: "import { resolve as __digptResolve } from 'node:path';" },
    plugins: [sourceDirnames()],
  });
  // the engine for the engine window's worker: CommonJS, import.meta as a CommonJS module has it, import() as require
  await build({
    ...common,
    entryPoints: { engine: 'app/worker/entry.ts' },
    outdir,
    outExtension: { '.js': '.cjs' },
    format: 'cjs',
    packages: 'external',
    supported: { 'dynamic-import': false },
    define: { 'import.meta.url': '__digptModuleUrl', 'import.meta.dirname': '__dirname' },
    banner: {
      js: "const { resolve: __digptResolve } = require('node:path'); const __digptModuleUrl = require('node:url').pathToFileURL(__filename).href;",
    },
    plugins: [sourceDirnames()],
  });
  // a classic worker script: Chromium starts it, Node's require (nodeIntegrationInWorker) is a global there
  await build({
    ...common,
    entryPoints: { 'engine-worker': 'main/engine-window-worker-entry.ts' },
    outdir,
    format: 'iife',
  });
  await build({
    ...common,
    entryPoints: ['main/engine-window-preload.ts'],
    outfile: `${outdir}/engine-preload.cjs`,
    format: 'cjs',
    external: ['electron'],
    target: 'chrome130',
    platform: 'browser',
  });
  await build({
    ...common,
    entryPoints: ['main/preload.ts'],
    outfile: `${outdir}/preload.cjs`,
    format: 'cjs',
    // Only `electron` is external: everything else is inlined, as the sandbox requires.
    external: ['electron'],
    target: 'chrome130',
    platform: 'browser',
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const { values } = parseArgs({ options: { outdir: { type: 'string' } } });
  await buildMain(values.outdir ? resolve(root, values.outdir) : INSTALLED_AT);
}
