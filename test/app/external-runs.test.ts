// Runs trained elsewhere (digpt_torch, scaleout/) coming back: an external run folder followed live by the workbench
// (curves, patch orders, checkpoints), kept in the workspace's list, refused outside digpt serve's --external roots;
// and the change of engine written into metrics.jsonl when the workbench resumes such a run.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MetricRecord, PatchOrderFrame, Result, RunSummary } from '../../app/api/contract.js';
import { metricsTable } from '../../app/runs/csv.js';
import { appendMetrics, readMetrics } from '../../app/runs/metrics.js';
import { metricScalars } from '../../app/runs/tensorboard.js';
import { Workbench } from '../../app/workbench/index.js';
import { PretrainRun } from '../../app/worker/pretrain-run.js';
import { initBackend } from '../../engine/backend.js';
import { images, MICRO, sandbox } from './runs-helpers.js';

before(async () => {
  await initBackend();
});

const box = sandbox('digpt-external-');
const data = images(8, 36, 2);
const opened: Workbench[] = [];
after(async () => {
  await Promise.all(opened.map((w) => w.close()));
});

function workbench(o: { restrictPaths?: boolean; externalRoots?: string[] } = {}): Workbench {
  const w = new Workbench({ workspace: nodePath.join(box.dir, 'ws'), watch: false, ...o });
  opened.push(w);
  return w;
}

/** A 3-step run, as a cluster run's synced copy looks once digpt_torch wrote its lines. */
async function clusterRun(name: string): Promise<string> {
  const dir = nodePath.join(box.dir, 'cluster', name);
  fs.mkdirSync(nodePath.dirname(dir), { recursive: true });
  const r = PretrainRun.create(dir, { ...MICRO, checkpoint_every: 3 }, data);
  await r.runSteps(3);
  r.dispose();
  return dir;
}

/** A request's value; fails the test with the error when it was refused. */
function value<T>(r: Result<unknown>): T {
  assert.ok(r.ok, JSON.stringify(r));
  return r.value as T;
}

async function until(pred: () => boolean, what: string, ms = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const stepLine = (step: number) => ({
  step,
  loss: 4 - step / 10,
  loss_gen: 2,
  loss_dis: 2 - step / 10,
  lr: 1e-3,
  agreement: 0.1,
  img_per_s: 500,
  epoch: 0,
  time: new Date().toISOString(),
});

describe('an external run folder', () => {
  it('is listed as external and followed live: new lines, a line cut by a sync only once whole, patch orders with their images', async () => {
    const dir = await clusterRun('a');
    const wb = workbench();
    const metrics: MetricRecord[][] = [];
    const frames: PatchOrderFrame[] = [];
    const updates: RunSummary[] = [];
    wb.on((name, p) => {
      if (name === 'run.metrics') metrics.push((p as { records: MetricRecord[] }).records);
      if (name === 'run.patchOrder') frames.push(p as PatchOrderFrame);
      if (name === 'run.update') updates.push(p as RunSummary);
    });
    const r = await wb.handle('runs.watch', { path: dir });
    assert.ok(r.ok, JSON.stringify(r));
    const s = r.value as RunSummary;
    assert.deepEqual([s.external, s.step, s.totalSteps, s.status], [true, 3, 6, 'idle']);
    assert.match(s.title, /^external · /);
    assert.equal(s.id, 'external-a');
    const again = await wb.handle('runs.watch', { path: dir });
    assert.equal(value<RunSummary>(again).id, s.id, 'the same folder is followed once');

    // digpt_torch appends: an engine event, a step line, and the start of the next line (a sync in progress)
    const m = nodePath.join(dir, 'metrics.jsonl');
    fs.appendFileSync(
      m,
      `${JSON.stringify({ event: 'engine', step: 3, engine: 'digpt_torch', world_size: 2 })}\n`,
    );
    fs.appendFileSync(m, `${JSON.stringify(stepLine(4))}\n${JSON.stringify(stepLine(5)).slice(0, 20)}`);
    await until(() => metrics.length > 0, 'the new lines');
    assert.deepEqual(
      metrics.flat().map((x) => x['step']),
      [4],
      'the event line is no measurement; the cut line waits',
    );
    await until(() => updates.some((u) => u.id === s.id && u.step === 4), 'the summary at step 4');
    fs.appendFileSync(m, `${JSON.stringify(stepLine(5)).slice(20)}\n`);
    await until(() => metrics.flat().length === 2, 'the completed line');
    assert.equal(metrics.flat()[1]?.['step'], 5);

    const pixels = Buffer.alloc(2 * 4 * 4 * 3, 200);
    const line = {
      step: 5,
      order: [
        [3, 1, 0, 2],
        [0, 1, 2, 3],
      ],
      cluster_error: [
        [0.5, 0.25, 0.125],
        [1, 1, 1],
      ],
      samples: { count: 2, size: 4, pixels_b64: pixels.toString('base64') },
    };
    fs.appendFileSync(nodePath.join(dir, 'patch-order.jsonl'), `${JSON.stringify(line)}\n`);
    await until(() => frames.length > 0, 'the patch-order frame');
    const f = frames[0] as PatchOrderFrame;
    assert.deepEqual(
      [f.runId, f.step, f.k, f.order, f.clusterError],
      [s.id, 5, 4, line.order, line.cluster_error],
    );
    assert.equal(f.images.length, 2);
    assert.match(f.images[0] as string, /^data:image\/png;base64,/);
    // a later line without crops (digpt_torch writes them every 10th step): the frame is still the one with them
    fs.appendFileSync(
      nodePath.join(dir, 'patch-order.jsonl'),
      `${JSON.stringify({ step: 6, order: line.order, cluster_error: line.cluster_error })}\n`,
    );
    const asked = value<PatchOrderFrame>(await wb.handle('runs.patchOrder', { id: s.id }));
    assert.deepEqual([asked.step, asked.order, asked.images.length], [5, line.order, 2]);
    // the curves the app loads: no event lines among them
    const listedMetrics = value<MetricRecord[]>(await wb.handle('runs.metrics', { id: s.id }));
    assert.ok(listedMetrics.every((x) => !('event' in x)));
    assert.deepEqual(listedMetrics.map((x) => x['step']).slice(-2), [4, 5]);
  });

  it('stays in the workspace list: a new workbench follows it again; unwatch forgets it and leaves the folder', async () => {
    const dir = await clusterRun('b');
    const first = workbench();
    const r = await first.handle('runs.watch', { path: dir });
    assert.ok(r.ok, JSON.stringify(r));
    const id = (r.value as RunSummary).id;
    const second = workbench();
    const list = value<RunSummary[]>(await second.handle('runs.list', {}));
    assert.ok(list.some((x) => x.id === id && x.external === true && x.dir === fs.realpathSync(dir)));
    const gone = await second.handle('runs.unwatch', { id });
    assert.ok(gone.ok, JSON.stringify(gone));
    assert.ok(fs.existsSync(nodePath.join(dir, 'config.json')));
    const third = workbench();
    const after3 = value<RunSummary[]>(await third.handle('runs.list', {}));
    assert.ok(!after3.some((x) => x.dir === fs.realpathSync(dir)));
    const own = after3.find((x) => !x.external);
    if (own) {
      const refused = await third.handle('runs.unwatch', { id: own.id });
      assert.match(refused.ok ? '' : refused.error, /is not an external run/);
    }
  });

  it('under digpt serve: only inside the --external roots; not a run, or a probe result, is refused naming the folder', async () => {
    const inside = await clusterRun('c');
    const outside = nodePath.join(box.dir, 'elsewhere');
    fs.mkdirSync(outside, { recursive: true });
    fs.cpSync(inside, nodePath.join(outside, 'c'), { recursive: true });
    const served = workbench({ restrictPaths: true, externalRoots: [nodePath.join(box.dir, 'cluster')] });
    const no = await served.handle('runs.watch', { path: nodePath.join(outside, 'c') });
    assert.match(no.ok ? '' : no.error, /outside the folders this server follows/);
    const link = nodePath.join(box.dir, 'cluster', 'link-out');
    fs.symlinkSync(nodePath.join(outside, 'c'), link);
    const viaLink = await served.handle('runs.watch', { path: link });
    assert.match(viaLink.ok ? '' : viaLink.error, /outside the folders this server follows/);
    const yes = await served.handle('runs.watch', { path: inside });
    assert.ok(yes.ok, JSON.stringify(yes));
    const none = workbench({ restrictPaths: true });
    const noRoots = await none.handle('runs.watch', { path: inside });
    assert.match(noRoots.ok ? '' : noRoots.error, /--external DIR/);

    const notRun = nodePath.join(box.dir, 'cluster', 'empty');
    fs.mkdirSync(notRun);
    const bad = await workbench().handle('runs.watch', { path: notRun });
    assert.match(bad.ok ? '' : bad.error, /empty: no config\.json; not a run folder/);
  });
});

describe('a change of engine', () => {
  it('resuming a run digpt_torch trained writes an engine event; tables and TensorBoard leave event lines out', async () => {
    const dir = await clusterRun('d');
    const plain = await clusterRun('plain');
    appendMetrics(dir, { event: 'engine', step: 3, engine: 'digpt_torch', world_size: 2, time: 'T' });
    const r = PretrainRun.resume(dir, data);
    await r.runSteps(1);
    r.dispose();
    const events = readMetrics(dir).filter((x) => 'event' in x);
    assert.deepEqual(
      events.map((e) => [e['engine'], e['step']]),
      [
        ['digpt_torch', 3],
        ['workbench', 3],
      ],
    );
    assert.equal(typeof events[1]?.['backend'], 'string');
    // a run that never left the workbench gets none
    const p = PretrainRun.resume(plain, data);
    p.dispose();
    assert.ok(readMetrics(plain).every((x) => !('event' in x)));
    const table = metricsTable(readMetrics(dir));
    assert.ok(!table.columns.includes('event') && !table.columns.includes('engine'));
    assert.deepEqual(metricScalars(events[0] as Record<string, unknown>), []);
  });
});
