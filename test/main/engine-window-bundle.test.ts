// The engine window's job path with what ships: the bundled worker script and engine (dist/main/engine-worker.js and
// engine.cjs of `npm run build:main`), the first run as a classic script, the second required as the window's worker
// requires it, train a tiny job through main/engine-window.ts's transport, with Node standing in for Chromium
// (test/main/engine-window-harness.ts).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';
import type { PretrainJob } from '../../app/jobs/protocol.js';
import { ENGINE_URL } from '../../main/engine-window-wire.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'digpt-engine-window-'));
// inside the repository, so that the bundle's npm packages (external) resolve from its node_modules, as in the app
mkdirSync(join(root, 'dist'), { recursive: true });
const outdir = mkdtempSync(join(root, 'dist', '.test-engine-window-'));

describe('the bundled engine behind the engine window', () => {
  before(() => {
    const r = spawnSync(process.execPath, ['scripts/build-main.mjs', '--outdir', outdir], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
  });
  after(() => {
    rmSync(outdir, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  });

  it('trains over the port: backend, run, steps 1 and 2 (typed arrays intact), done, one exit; the window destroyed', async () => {
    const job: PretrainJob = {
      kind: 'pretrain',
      data: BUILTIN_SAMPLE_DIR,
      preset: 'digpt-micro-32',
      teacher: 'pixels',
      objective: 'digpt',
      steps: 2,
      batch: 4,
      accum: 1,
      seed: 1,
      blr: 0.01,
      out: join(tmp, 'run'),
      checkpoint_every: 1000,
      workers: 1,
    };
    const reportFile = join(tmp, 'report.jsonl');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(root, 'test/main/engine-window-harness.ts'),
        join(outdir, 'engine-worker.js'),
        join(outdir, 'engine.cjs'),
        JSON.stringify(job),
        reportFile,
      ],
      {
        // where --import tsx resolves
        cwd: root,
        env: {
          ...process.env,
          DIGPT_BACKEND: 'wasm',
          DIGPT_CACHE: join(tmp, 'cache'),
          DIGPT_WORKSPACE: join(tmp, 'ws'),
        },
        stdio: ['ignore', 'inherit', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(code, 0, stderr);
    const lines = readFileSync(reportFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines[0], { loaded: ENGINE_URL });
    const events = lines.filter((l) => 'type' in l);
    assert.deepEqual(events[0], { type: 'backend', name: 'wasm' });
    assert.deepEqual(
      events.filter((e) => e['type'] === 'step').map((e) => [e['step'], e['order'], e['clusterError']]),
      [
        [1, 'Int32Array', 'Float32Array'],
        [2, 'Int32Array', 'Float32Array'],
      ],
    );
    assert.ok(events.some((e) => e['type'] === 'run'));
    assert.equal(events.at(-1)?.['type'], 'done');
    assert.deepEqual(
      lines.filter((l) => !('type' in l) && !('loaded' in l)),
      [{ workerClosed: true }, { destroyed: true }, { done: { ok: true }, pid: true }],
    );
    const records = readFileSync(join(tmp, 'run', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { step: number; loss?: number });
    assert.deepEqual(
      records.filter((r) => r.loss !== undefined).map((r) => r.step),
      [1, 2],
    );
  });
});
