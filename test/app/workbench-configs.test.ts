// The workbench reads every run's config.json through the one checked reader (app/runs/config.ts): a damaged one is
// listed as a failed run naming the file and field instead of being cast and trusted, and what it writes reads back.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, describe, it } from 'node:test';
import type { RunSummary } from '../../app/api/contract.js';
import { readAnyRunConfig } from '../../app/runs/config.js';
import { Workbench } from '../../app/workbench/index.js';
import { initBackend } from '../../engine/backend.js';
import { oneStepRun } from './paths-helpers.js';

const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-wbcfg-'));
process.env['DIGPT_CACHE'] = nodePath.join(tmp, 'cache');
const ws = nodePath.join(tmp, 'ws');
const runs = nodePath.join(ws, 'runs');
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function until(pred: () => boolean, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('run configs in the workbench', () => {
  it('lists a run whose config.json does not check as failed, naming the file and field', async () => {
    await initBackend();
    const good = nodePath.join(runs, 'good');
    const bad = nodePath.join(runs, 'bad');
    await oneStepRun(good);
    await oneStepRun(bad);
    const file = nodePath.join(bad, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(file, JSON.stringify({ ...cfg, checkpoint_every: 0 }));
    fs.mkdirSync(nodePath.join(runs, 'not-a-run'));

    const wb = new Workbench({ workspace: ws, watch: false });
    try {
      const list = await wb.handle('runs.list', {});
      assert.ok(list.ok);
      const byId = new Map((list.value as RunSummary[]).map((r) => [r.id, r]));
      assert.ok(!byId.has('not-a-run'));
      assert.equal(byId.get('good')?.status, 'done');
      assert.equal(byId.get('good')?.totalSteps, 1);
      const b = byId.get('bad');
      assert.equal(b?.status, 'failed');
      assert.equal(b?.kind, 'pretrain');
      assert.match(b?.error ?? '', /bad\/config\.json: checkpoint_every: .*\(got 0\)/);
      const c = await wb.handle('runs.config', { id: 'bad' });
      assert.ok(!c.ok);
      assert.match(c.error, /checkpoint_every/);
      const g = await wb.handle('runs.config', { id: 'good' });
      assert.ok(g.ok);
      assert.equal((g.value as { kind: string }).kind, 'pretrain');
    } finally {
      await wb.close();
    }
  });

  it("writes a k-NN run's config.json checked, and it reads back as what it ran", async () => {
    const wb = new Workbench({ workspace: ws, watch: false });
    const status = new Map<string, string>();
    wb.on((name, payload) => {
      if (name === 'run.update') status.set((payload as RunSummary).id, (payload as RunSummary).status);
    });
    try {
      const r = await wb.handle('runs.launch', { kind: 'knn', dataset: 'builtin-sample', from: 'good' });
      assert.ok(r.ok, r.ok ? '' : r.error);
      const s = r.value as RunSummary;
      await until(() => status.get(s.id) === 'done' || status.get(s.id) === 'failed');
      assert.equal(status.get(s.id), 'done');
      const cfg = readAnyRunConfig(s.dir);
      assert.equal(cfg.kind, 'knn');
      assert.ok('title' in cfg && cfg.title === 'knn of good');
      assert.ok('source' in cfg && cfg.source === nodePath.join(runs, 'good'));
    } finally {
      await wb.close();
    }
  });
});
