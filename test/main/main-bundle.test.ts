// The bundled Electron main process (dist/main/index.js) started under plain Node with a stand-in for the electron
// module (stand-in-electron/): the scheme registered before ready, the page served over app://, IPC from the page and
// from a stranger, no tfjs in the main process, and a process job run in a (stand-in) utility process through the
// bundled job-process.js and worker.js. Electron's binary cannot be downloaded here; this is as near as it gets.
import assert from 'node:assert/strict';
import { fork, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const register = fileURLToPath(new URL('./stand-in-electron/register.mjs', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'digpt-main-bundle-'));
mkdirSync(join(root, 'dist'), { recursive: true });
// a copy of the install's layout: INSTALL/dist/main beside INSTALL/dist/renderer, npm packages from the repository's
const install = mkdtempSync(join(root, 'dist', '.test-install-'));

type Message = { type: string; [key: string]: unknown };

describe('the bundled main process, under a stand-in Electron', () => {
  const messages: Message[] = [];
  let code: number | null = null;
  const find = (type: string): Message | undefined => messages.find((m) => m.type === type);

  before(async () => {
    const r = spawnSync(
      process.execPath,
      ['scripts/build-main.mjs', '--outdir', join(install, 'dist', 'main')],
      { cwd: root, encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    // what the package holds besides the bundles: package.json, the built-in sample and teacher, a page
    writeFileSync(join(install, 'package.json'), readFileSync(join(root, 'package.json')));
    cpSync(join(root, 'app', 'datasets', 'sample'), join(install, 'app', 'datasets', 'sample'), {
      recursive: true,
    });
    cpSync(join(root, 'app', 'teachers'), join(install, 'app', 'teachers'), { recursive: true });
    mkdirSync(join(install, 'dist', 'renderer'));
    writeFileSync(join(install, 'dist', 'renderer', 'index.html'), '<!doctype html><title>D-iGPT</title>');
    const child = fork(join(install, 'dist', 'main', 'index.js'), [], {
      cwd: tmp,
      // plain Node, and the stand-in's module hook: no tsx
      execArgv: ['--import', register],
      env: {
        ...process.env,
        NODE_OPTIONS: '',
        DIGPT_WORKSPACE: join(tmp, 'ws'),
        DIGPT_CACHE: join(tmp, 'cache'),
        DIGPT_BACKEND: 'wasm',
        // a process job even on wasm, so the utility-process path runs
        DIGPT_JOB_PROCESS: '1',
      },
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.on('message', (m) => messages.push(m as Message));
    code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  });
  after(() => {
    rmSync(install, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  });

  it('starts and quits cleanly, with no error box', () => {
    assert.equal(find('error-box'), undefined, JSON.stringify(find('error-box')));
    assert.equal(code, 0);
    assert.ok(find('quit'));
  });

  it('registers app:// as privileged before the app is ready', () => {
    assert.deepEqual(find('schemes'), {
      type: 'schemes',
      schemes: [{ scheme: 'app', privileges: { standard: true, secure: true, supportFetchAPI: true } }],
      beforeReady: true,
    });
  });

  it('loads app://workbench/index.html through its protocol handler, with the CSP', (t) => {
    const page = find('page');
    assert.equal(page?.url, 'app://workbench/index.html');
    assert.equal(page?.status, 200);
    assert.equal(page?.contentType, 'text/html; charset=utf-8');
    assert.match(String(page?.csp), /^default-src 'self'; script-src 'self'/);
    const prefs = find('window')?.webPreferences as Record<string, unknown>;
    assert.equal(prefs.sandbox, true);
    assert.equal(prefs.contextIsolation, true);
    assert.equal(prefs.preload, join(install, 'dist', 'main', 'preload.cjs'));
    t.diagnostic(
      `main bundle under Node: page loaded ${Math.round(Number(page?.msToPage))} ms after the stand-in was imported, ` +
        `RSS ${Math.round(Number(page?.rss) / 2 ** 20)} MiB`,
    );
  });

  it('gives the engine window its own session at start-up, and opens none for a wasm job', () => {
    assert.deepEqual(find('partition'), { type: 'partition', partition: 'digpt-engine' });
    assert.equal(messages.filter((m) => m.type === 'window').length, 1);
  });

  it('answers the page, refuses a stranger, and has loaded no tfjs', () => {
    const info = find('info')?.result as { ok: boolean; value: { workspace: string } };
    assert.equal(info.ok, true);
    assert.equal(info.value.workspace, join(tmp, 'ws'));
    assert.deepEqual(find('stranger')?.result, { ok: false, error: 'unknown sender' });
    assert.deepEqual(find('modules')?.tfjs, []);
  });

  it('runs a process job in a utility process: job-process.js, then the bundled worker, to done', () => {
    assert.deepEqual(find('fork'), {
      type: 'fork',
      modulePath: join(install, 'dist', 'main', 'job-process.js'),
      serviceName: 'D-iGPT job',
      stdio: 'inherit',
    });
    const launched = find('launched')?.result as { ok: boolean; error?: string };
    assert.equal(launched.ok, true, launched.error);
    const run = find('run')?.summary as { status: string; step: number; error?: string };
    assert.equal(run.status, 'done', run.error);
    assert.equal(run.step, 2);
    const names = find('events')?.names as string[];
    assert.ok(names.includes('run.metrics') && names.includes('run.patchOrder'), names.join(', '));
  });
});
