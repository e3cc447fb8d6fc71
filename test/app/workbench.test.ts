// The Workbench service directly: a crashed engine worker fails its run and the workbench keeps answering; FIFOs in
// datasets hang nothing; teachers are read and exports written only where the path rules allow.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BackendInfo, type DatasetEntry, type RunSummary } from '../../app/api/contract.js';
import { encodeIdx } from '../../app/datasets/idx.js';
import { BUILTIN_TEACHER } from '../../app/teachers/index.js';
import { Workbench } from '../../app/workbench/index.js';
import { describeBackend, initBackend } from '../../engine/backend.js';
import { failIfHangs, mkfifo, oneStepRun, unixSocket } from './paths-helpers.js';
import sharp from 'sharp';

const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-wb-'));
process.env['DIGPT_CACHE'] = nodePath.join(tmp, 'cache');
const wb = new Workbench({ workspace: nodePath.join(tmp, 'ws'), watch: false });
after(async () => {
  await wb.close();
});

async function until(pred: () => boolean, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('Workbench', () => {
  it('marks a run failed when its worker thread dies, and goes on serving', async () => {
    const updates: RunSummary[] = [];
    wb.on((name, payload) => {
      if (name === 'run.update') updates.push(payload as RunSummary);
    });
    const r = await wb.handle('runs.launch', {
      kind: 'pretrain',
      dataset: 'builtin-sample',
      preset: 'digpt-micro-32',
      teacher: 'pixels',
      objective: 'digpt',
      steps: 500,
      batch: 4,
      accum: 1,
      blr: 1e-3,
      seed: 0,
      checkpoint_every: 1,
    });
    assert.ok(r.ok);
    const id = (r.value as RunSummary).id;
    // step 2 reported: the checkpoint of step 1 is written (a run with steps and no checkpoint refuses to resume)
    await until(() => updates.some((u) => u.id === id && u.step >= 2));
    // the worker dies as an out-of-memory abort would take it: at once, without a word
    const runs = (wb as unknown as { runs: { get(id: string): { handle?: { kill(): Promise<void> } } } })
      .runs;
    await runs.get(id).handle?.kill();
    await until(() => updates.some((u) => u.id === id && u.status === 'failed'));
    const failed = updates.filter((u) => u.id === id).at(-1);
    assert.match(failed?.error ?? '', /engine worker exited with code 1/);
    const list = await wb.handle('runs.list', {});
    assert.ok(list.ok);
    assert.equal((list.value as RunSummary[]).find((x) => x.id === id)?.status, 'failed');
    // the failed run resumes from its last checkpoint
    const resumed = await wb.handle('runs.control', { id, action: 'resume' });
    assert.ok(resumed.ok);
    await until(() => updates.some((u) => u.id === id && u.status === 'running' && u.step >= 1));
    const stop = await wb.handle('runs.control', { id, action: 'stop' });
    assert.ok(stop.ok);
    await until(() => updates.some((u) => u.id === id && u.status === 'stopped'));
  });

  it("launches with workers 'auto': 2 threads on wasm with 2+ cores, recorded in the run's config", async () => {
    const logs: string[] = [];
    const updates: RunSummary[] = [];
    wb.on((name, payload) => {
      if (name === 'log') logs.push((payload as { text: string }).text);
      if (name === 'run.update') updates.push(payload as RunSummary);
    });
    const r = await wb.handle('runs.launch', {
      kind: 'pretrain',
      dataset: 'builtin-sample',
      preset: 'digpt-micro-32',
      teacher: 'pixels',
      objective: 'digpt',
      steps: 2,
      batch: 4,
      accum: 1,
      blr: 1e-3,
      seed: 0,
      workers: 'auto',
    });
    assert.ok(r.ok, JSON.stringify(r));
    const id = (r.value as RunSummary).id;
    await until(
      () => updates.some((u) => u.id === id && (u.status === 'done' || u.status === 'failed')),
      180_000,
    );
    assert.equal(updates.filter((u) => u.id === id).at(-1)?.status, 'done');
    // the backend as data (app.info), and the same facts as the line in the log
    const info = await wb.handle('app.info', {});
    assert.ok(info.ok);
    const backend = (info.value as { backend: BackendInfo | null }).backend;
    assert.ok(backend, JSON.stringify(info.value));
    assert.deepEqual(BackendInfo.parse(backend), backend);
    assert.ok(logs.includes(`run ${id}: ${backend.text}`), logs.join('\n'));
    const report = await initBackend();
    assert.deepEqual(
      { ...backend, text: undefined },
      { ...report, skipped: [...report.skipped], text: undefined },
    );
    assert.equal(backend.text, describeBackend(report));
    const line = logs.find((l) => l.startsWith(`run ${id}: training threads:`));
    const expected = backend.name === 'wasm' && os.availableParallelism() >= 2 ? 2 : 1;
    assert.ok(line, logs.join('\n'));
    assert.match(line, new RegExp(`training threads: ${expected} \\(auto: `));
    const cfg = JSON.parse(fs.readFileSync(nodePath.join(tmp, 'ws', 'runs', id, 'config.json'), 'utf8')) as {
      workers?: number;
    };
    assert.equal(cfg.workers ?? 1, expected);
  });

  it('answers bad requests with the contract message, never throwing', async () => {
    assert.deepEqual(await wb.handle('runs.control', { id: 'nope', action: 'explode' }), {
      ok: false,
      error: 'runs.control: action: Invalid option: expected one of "pause"|"continue"|"stop"|"resume"',
    });
    const r = await wb.handle('runs.metrics', { id: 'nope' });
    assert.deepEqual(r, { ok: false, error: 'no run with id nope' });
  });
});

describe('Workbench: special files in datasets, and where teachers are read and exports written', () => {
  let red: Buffer;
  before(async () => {
    red = await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: 255, g: 0, b: 0 } } })
      .png()
      .toBuffer();
  });

  it('a FIFO in a registered dataset hangs neither datasets.add nor datasets.list', async () => {
    const dir = nodePath.join(tmp, 'idx-with-fifo');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(
      nodePath.join(dir, 'train-images-idx3-ubyte.gz'),
      await encodeIdx([4, 4, 4], new Uint8Array(64).fill(9), true),
    );
    fs.writeFileSync(
      nodePath.join(dir, 'train-labels-idx1-ubyte.gz'),
      await encodeIdx([4], new Uint8Array([0, 1, 0, 1]), true),
    );
    const fifo = nodePath.join(dir, 'classes.txt');
    mkfifo(fifo);
    const added = await failIfHangs(wb.handle('datasets.add', { path: dir }), [fifo], 'datasets.add');
    assert.ok(added.ok, JSON.stringify(added));
    const entry = added.value as DatasetEntry;
    assert.equal(entry.status, 'ready');
    assert.deepEqual(entry.classes, ['0', '1']);
    assert.deepEqual(entry.skipped, [
      { path: 'classes.txt', reason: 'not a regular file (FIFO): class names are numbers' },
    ]);
    const list = await failIfHangs(wb.handle('datasets.list', {}), [fifo], 'datasets.list');
    assert.ok(list.ok);
    assert.ok((list.value as DatasetEntry[]).some((d) => d.id === entry.id && d.images === 4));
    const thumbs = await failIfHangs(
      wb.handle('datasets.thumbnails', { id: entry.id, split: 'train', offset: 0, limit: 2 }),
      [fifo],
      'datasets.thumbnails',
    );
    assert.ok(thumbs.ok, JSON.stringify(thumbs));
  });

  it('the watcher rescans a folder holding a FIFO, a socket and a link out, neither opening nor following them', async () => {
    const ws = nodePath.join(tmp, 'ws-watch');
    const dir = nodePath.join(tmp, 'watched');
    const outside = nodePath.join(tmp, 'watched-outside');
    fs.mkdirSync(nodePath.join(dir, 'cat'), { recursive: true });
    fs.mkdirSync(outside, { recursive: true });
    fs.writeFileSync(nodePath.join(dir, 'cat', 'a.png'), red);
    fs.writeFileSync(nodePath.join(outside, 'o.png'), red);
    const fifo = nodePath.join(dir, 'cat', 'pipe.png');
    mkfifo(fifo);
    const server = await unixSocket(nodePath.join(dir, 'cat', 'sock.png'));
    fs.symlinkSync(outside, nodePath.join(dir, 'linked'));
    const watching = new Workbench({ workspace: ws, watch: true });
    const updates: DatasetEntry[] = [];
    watching.on((name, payload) => {
      if (name === 'dataset.update') updates.push(payload as DatasetEntry);
    });
    try {
      const added = await failIfHangs(watching.handle('datasets.add', { path: dir }), [fifo], 'datasets.add');
      assert.ok(added.ok, JSON.stringify(added));
      const id = (added.value as DatasetEntry).id;
      fs.writeFileSync(nodePath.join(dir, 'cat', 'b.png'), red);
      await failIfHangs(
        until(() => updates.some((u) => u.id === id && u.images === 2)),
        [fifo],
        'the rescan after a new image',
      );
      const last = updates.filter((u) => u.id === id).at(-1) as DatasetEntry;
      assert.deepEqual(last.classes, ['cat']);
      assert.deepEqual(last.skipped, [
        { path: 'cat/pipe.png', reason: 'not a regular file (FIFO)' },
        { path: 'cat/sock.png', reason: 'not a regular file (socket)' },
        {
          path: 'linked',
          reason: `symbolic link to ${fs.realpathSync(outside)}, outside the dataset folder: not followed`,
        },
      ]);
    } finally {
      server.close();
      await watching.close();
    }
  });

  describe('digpt serve (restricted paths)', () => {
    const ws = nodePath.join(tmp, 'ws-serve');
    const runDir = nodePath.join(ws, 'runs', 'a');
    const dataset = nodePath.join(tmp, 'serve-dataset');
    const outside = nodePath.join(tmp, 'serve-outside');
    let serve: Workbench;

    before(async () => {
      await initBackend();
      await oneStepRun(runDir);
      fs.mkdirSync(nodePath.join(dataset, 'cat'), { recursive: true });
      fs.mkdirSync(outside, { recursive: true });
      fs.writeFileSync(nodePath.join(dataset, 'cat', 'a.png'), red);
      fs.copyFileSync(BUILTIN_TEACHER, nodePath.join(outside, 'secret.safetensors'));
      fs.symlinkSync(
        nodePath.join(outside, 'secret.safetensors'),
        nodePath.join(dataset, 'teacher.safetensors'),
      );
      fs.symlinkSync(BUILTIN_TEACHER, nodePath.join(dataset, 'builtin.safetensors'));
      serve = new Workbench({ workspace: ws, restrictPaths: true, watch: false });
      assert.ok((await serve.handle('datasets.add', { path: dataset })).ok);
    });
    after(async () => {
      await serve.close();
    });

    it('reads a teacher only where its real path lies in a dataset, the runs or the built-in teacher', async () => {
      const launch = (teacher: string) =>
        serve.handle('runs.launch', {
          kind: 'pretrain',
          dataset: 'builtin-sample',
          preset: 'digpt-micro-32',
          teacher,
          objective: 'digpt',
          steps: 1,
          batch: 4,
          accum: 1,
          blr: 1e-3,
          seed: 0,
        });
      const link = nodePath.join(dataset, 'teacher.safetensors');
      const r = await launch(link);
      assert.equal(r.ok, false);
      const real = fs.realpathSync(nodePath.join(outside, 'secret.safetensors'));
      assert.equal(
        (r as { error: string }).error,
        `teacher file ${link} (a link to ${real}) is outside the registered dataset and run folders`,
      );
      assert.match(
        ((await launch(nodePath.join(outside, 'secret.safetensors'))) as { error: string }).error,
        /secret\.safetensors is outside the registered dataset and run folders/,
      );
      // a link inside a dataset to the built-in teacher is fine, and the job is given the real path
      assert.equal(
        serve.teacherPath(nodePath.join(dataset, 'builtin.safetensors')),
        fs.realpathSync(BUILTIN_TEACHER),
      );
    });

    it("writes exports only into the run's export/ or the workspace's exports/, never over a file unless asked", async () => {
      const exp = (out?: string, overwrite?: boolean) =>
        serve.handle('runs.export', {
          id: 'a',
          format: 'timm',
          ...(out !== undefined ? { out } : {}),
          ...(overwrite !== undefined ? { overwrite } : {}),
        });
      const errorOf = (r: Awaited<ReturnType<typeof exp>>): string => (r.ok ? '' : r.error);
      const config = fs.readFileSync(nodePath.join(runDir, 'config.json'));
      // a registered dataset folder is read, not written; a run's own files are never an export target
      assert.match(
        errorOf(await exp(nodePath.join(dataset, 'cat', 'model.safetensors'))),
        /is outside the export folders/,
      );
      assert.match(
        errorOf(await exp(nodePath.join(runDir, 'config.json'), true)),
        /is inside the run folder/,
      );
      assert.match(
        errorOf(await exp(nodePath.join(runDir, 'metrics.jsonl'), true)),
        /is inside the run folder/,
      );
      assert.ok(fs.readFileSync(nodePath.join(runDir, 'config.json')).equals(config));
      assert.deepEqual(fs.readdirSync(nodePath.join(dataset, 'cat')), ['a.png']);
      // the default path; the workspace's exports/ folder, once, then only with overwrite
      const dflt = await exp();
      assert.ok(dflt.ok, errorOf(dflt));
      const out = nodePath.join(ws, 'exports', 'a.safetensors');
      const first = await exp(out);
      assert.ok(first.ok, errorOf(first));
      assert.match(errorOf(await exp(out)), /a\.safetensors already exists; export with overwrite/);
      const replaced = await exp(out, true);
      assert.ok(replaced.ok, errorOf(replaced));
    });

    it('without restrictions (the desktop app) an export still never goes into a registered dataset folder', async () => {
      await serve.close();
      serve = new Workbench({ workspace: ws, watch: false });
      const r = await serve.handle('runs.export', {
        id: 'a',
        format: 'timm',
        out: nodePath.join(dataset, 'cat', 'model.safetensors'),
      });
      assert.equal(r.ok, false);
      assert.match(
        (r as { error: string }).error,
        /is inside the dataset folder .*; a dataset folder is read, never written/,
      );
      assert.deepEqual(fs.readdirSync(nodePath.join(dataset, 'cat')), ['a.png']);
    });
  });
});
