// `npm run build:main`: esbuild bundles main/ with the workbench, the job worker, the replica and the job process
// entry (ESM), and the preload (one CommonJS file), Electron and npm packages left external.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

describe('build:main', () => {
  let outdir = '';
  before(() => {
    outdir = mkdtempSync(join(tmpdir(), 'digpt-main-'));
    const r = spawnSync(process.execPath, ['scripts/build-main.mjs', '--outdir', outdir], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
  });
  after(() => rmSync(outdir, { recursive: true, force: true }));

  it("writes index.js, preload.cjs, worker.js, replica.js, job-process.js and the engine window's three", () => {
    assert.deepEqual(
      readdirSync(outdir)
        .filter((f) => !f.endsWith('.map'))
        .sort(),
      [
        'engine-preload.cjs',
        'engine-worker.js',
        'engine.cjs',
        'index.js',
        'job-process.js',
        'preload.cjs',
        'replica.js',
        'worker.js',
      ],
    );
  });

  it("the engine window's bundles: the engine as CommonJS, a classic worker script, a preload requiring only electron", () => {
    const engine = readFileSync(join(outdir, 'engine.cjs'), 'utf8');
    // Node's require in the worker: CommonJS, npm packages required, no import() (Chromium's loader in a renderer)
    assert.match(engine, /require\("@tensorflow\/tfjs-core"\)/);
    assert.doesNotMatch(engine, /^\s*(import|export)\s/m);
    assert.doesNotMatch(engine, /\bimport\(["']@tensorflow/);
    assert.doesNotMatch(engine, /import\.meta/);
    assert.ok(engine.includes('__digptResolve(__dirname, "../../app/datasets")'));
    const worker = readFileSync(join(outdir, 'engine-worker.js'), 'utf8');
    assert.doesNotMatch(worker, /^\s*(import|export)\s/m);
    assert.doesNotMatch(worker, /require\("/, 'it requires only the engine, by the path main sends');
    assert.match(worker, /digpt:engine-port/);
    const preload = readFileSync(join(outdir, 'engine-preload.cjs'), 'utf8');
    assert.deepEqual(
      [...preload.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]),
      ['electron'],
    );
    assert.doesNotMatch(preload, /contextBridge|exposeInMainWorld/);
  });

  it('bundles the workbench into the ESM main bundle, electron and npm packages external, no tfjs', () => {
    const code = readFileSync(join(outdir, 'index.js'), 'utf8');
    assert.match(code, /^import \{[^}]*\bapp\b[^}]*\} from "electron";$/m);
    assert.match(code, /^import \{[^}]*\} from "zod";$/m);
    assert.match(code, /^\/\/ app\/workbench\/index\.ts$/m);
    assert.doesNotMatch(code, /require\(/);
    // the main process starts without tfjs: the engine runs in the job worker
    assert.doesNotMatch(code, /from "@tensorflow\//);
    // the job host starts the bundled worker beside it
    assert.match(code, /new URL\("\.\/worker\.js", import\.meta\.url\)/);
  });

  it('keeps import.meta.dirname of app/ pointing at its source folders (built-in sample and teacher, install root)', () => {
    const code = readFileSync(join(outdir, 'index.js'), 'utf8');
    // main/ runs only as a bundle: its own folder is the bundle's
    assert.match(code, /^var here = import\.meta\.dirname;$/m);
    // relative to the bundles' place in an install, dist/main/
    for (const dir of ['app/datasets', 'app/teachers', 'app/runs']) {
      assert.ok(code.includes(`__digptResolve(import.meta.dirname, "../../${dir}")`), dir);
    }
  });

  it('the worker, replica and job-process bundles are ESM with npm packages external', () => {
    const worker = readFileSync(join(outdir, 'worker.js'), 'utf8');
    assert.match(worker, /^import \* as tf\d* from "@tensorflow\/tfjs-core";$/m);
    assert.match(worker, /new URL\(entry, import\.meta\.url\)/);
    assert.match(worker, /"\.\/replica\.js"/);
    assert.match(readFileSync(join(outdir, 'replica.js'), 'utf8'), /from "@tensorflow\/tfjs-core";$/m);
    const jobProcess = readFileSync(join(outdir, 'job-process.js'), 'utf8');
    assert.match(jobProcess, /new URL\("\.\/worker\.js", import\.meta\.url\)/);
    assert.doesNotMatch(jobProcess, /from "electron"/);
  });

  it('bundles the preload into one CommonJS file that requires only electron', () => {
    const code = readFileSync(join(outdir, 'preload.cjs'), 'utf8');
    assert.deepEqual(
      [...code.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]),
      ['electron'],
    );
    assert.doesNotMatch(code, /^\s*(import|export)\s/m);
  });

  it('the bundled preload exposes window.digpt through contextBridge', async () => {
    const code = readFileSync(join(outdir, 'preload.cjs'), 'utf8');
    const exposed: Record<string, unknown> = {};
    const invoked: unknown[][] = [];
    const electron = {
      contextBridge: {
        exposeInMainWorld: (key: string, api: unknown) => {
          exposed[key] = api;
        },
      },
      ipcRenderer: {
        invoke: async (...args: unknown[]) => {
          invoked.push(args);
          return { ok: true, value: 'pong' };
        },
        on: () => undefined,
      },
      webUtils: { getPathForFile: () => '/dropped/folder' },
    };
    const module = { exports: {} };
    const load = new Function('require', 'module', 'exports', code) as (
      r: (id: string) => unknown,
      m: object,
      e: object,
    ) => void;
    load(
      (id) => {
        if (id !== 'electron') throw new Error(`the sandbox cannot require ${id}`);
        return electron;
      },
      module,
      module.exports,
    );
    assert.deepEqual(Object.keys(exposed), ['digpt']);
    const digpt = exposed.digpt as Record<string, (...args: unknown[]) => unknown>;
    assert.deepEqual(Object.keys(digpt).sort(), [
      'chooseExportPath',
      'chooseFolder',
      'on',
      'pathForFile',
      'request',
    ]);
    assert.deepEqual(await digpt.request?.('app.info', {}), { ok: true, value: 'pong' });
    assert.deepEqual(invoked, [['digpt:request', 'app.info', {}]]);
    assert.equal(digpt.pathForFile?.({}), '/dropped/folder');
  });
});

describe('main/ layering', () => {
  it('only the thin Electron files import electron at run time', () => {
    const thin = [
      'engine-window-electron.ts',
      'engine-window-preload.ts',
      'index.ts',
      'menu.ts',
      'preload.ts',
      'window.ts',
    ];
    for (const file of readdirSync(join(root, 'main'))) {
      const code = readFileSync(join(root, 'main', file), 'utf8');
      const runtime = /^import (?!type\b)[^;]*from 'electron';/m.test(code);
      assert.equal(runtime, thin.includes(file), file);
    }
  });
});
