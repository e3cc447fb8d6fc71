// The Workbench service directly: a crashed engine worker fails its run and the workbench keeps answering.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, describe, it } from 'node:test';
import type { RunSummary } from '../../app/api/contract.js';
import { Workbench } from '../../app/workbench/index.js';

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
      checkpointEvery: 1,
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
    const backend = logs.find((l) => l.startsWith(`run ${id}: backend:`)) ?? '';
    const line = logs.find((l) => l.startsWith(`run ${id}: training threads:`));
    const expected = /backend: wasm/.test(backend) && os.availableParallelism() >= 2 ? 2 : 1;
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
