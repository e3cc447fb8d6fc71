// Pretraining runs on disk: metrics, checkpoints, exact resume, an interrupted checkpoint write, NaN handling, k-NN.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { before, describe, it } from 'node:test';
import { initBackend } from '../../engine/backend.js';
import { getPreset } from '../../engine/config.js';
import { Rng } from '../../engine/rng.js';
import { latestGoodCheckpoint, listCheckpoints } from '../../app/runs/checkpoint.js';
import type { StepRecord } from '../../app/runs/metrics.js';
import type { LabelledImageSet } from '../../app/worker/finetune-run.js';
import { PretrainRun, type ImageSet } from '../../app/worker/pretrain-run.js';

before(async () => {
  await initBackend();
});

function images(count: number, side: number, seed: number): ImageSet {
  const rng = new Rng(seed);
  const pixels = new Uint8Array(count * side * side * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = rng.int(256);
  return { count, side, pixels };
}

const data = images(10, 36, 1);
const base = {
  data: 'synthetic',
  preset: 'digpt-micro-32',
  model: getPreset('digpt-micro-32').model,
  teacher: 'pixels',
  objective: 'digpt' as const,
  steps: 6,
  batch: 3,
  accum: 2,
  seed: 5,
  blr: 1.5e-3,
  min_lr: 0,
  warmup_steps: 2,
  weight_decay: 0.05,
  checkpoint_every: 3,
};
const tmp = (): string => fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-run-'));
const metrics = (dir: string): StepRecord[] =>
  fs
    .readFileSync(nodePath.join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as StepRecord);

describe('PretrainRun', () => {
  it('logs every step, checkpoints on schedule, and resumes to exactly the same losses', async () => {
    const full = nodePath.join(tmp(), 'full');
    const a = PretrainRun.create(full, base, data);
    await a.runSteps(6);
    a.dispose();
    const ref = metrics(full);
    assert.deepEqual(
      ref.map((r) => r.step),
      [1, 2, 3, 4, 5, 6],
    );
    for (const r of ref)
      assert.ok(Number.isFinite(r.loss) && r.loss_gen !== undefined && r.loss_dis !== undefined);
    assert.equal(ref[0]?.lr, 0); // warm-up starts at 0
    assert.deepEqual(
      listCheckpoints(nodePath.join(full, 'checkpoints')).map((p) => nodePath.basename(p)),
      ['step-00000006', 'step-00000003'],
    );

    // the same run interrupted after step 4 (one step past its checkpoint), then resumed
    const cut = nodePath.join(tmp(), 'cut');
    const b = PretrainRun.create(cut, base, data);
    await b.runSteps(4);
    b.dispose();
    const c = PretrainRun.resume(cut, data);
    assert.equal(c.step, 3);
    await c.runSteps(10);
    c.dispose();
    const got = metrics(cut);
    assert.deepEqual(
      got.map((r) => r.step),
      [1, 2, 3, 4, 5, 6],
    );
    assert.deepEqual(
      got.map((r) => r.loss),
      ref.map((r) => r.loss),
    );
  });

  it('with two workers (a replica thread) also resumes to exactly the same losses', async () => {
    const cfg = { ...base, workers: 2 as const, steps: 4, checkpoint_every: 2 };
    const full = nodePath.join(tmp(), 'full2');
    const a = PretrainRun.create(full, cfg, data);
    await a.startWorkers();
    await a.runSteps(4);
    await a.stopWorkers();
    a.dispose();
    const cut = nodePath.join(tmp(), 'cut2');
    const b = PretrainRun.create(cut, cfg, data);
    await b.startWorkers();
    await b.runSteps(3);
    await b.stopWorkers();
    b.dispose();
    const c = PretrainRun.resume(cut, data);
    await c.startWorkers();
    await c.runSteps(10);
    await c.stopWorkers();
    c.dispose();
    assert.deepEqual(
      metrics(cut).map((r) => r.loss),
      metrics(full).map((r) => r.loss),
    );
  });

  it('an interrupted checkpoint write leaves the previous checkpoint loadable', async () => {
    const dir = nodePath.join(tmp(), 'run');
    const a = PretrainRun.create(dir, { ...base, steps: 3 }, data);
    await a.runSteps(3);
    a.dispose();
    const ck = nodePath.join(dir, 'checkpoints');
    // a crash mid-write leaves a temporary folder; a damaged newer checkpoint fails its checksum
    fs.mkdirSync(nodePath.join(ck, '.tmp-step-00000006-1-1'));
    fs.writeFileSync(nodePath.join(ck, '.tmp-step-00000006-1-1', 'model.safetensors'), 'partial');
    fs.cpSync(nodePath.join(ck, 'step-00000003'), nodePath.join(ck, 'step-00000005'), { recursive: true });
    fs.appendFileSync(nodePath.join(ck, 'step-00000005', 'model.safetensors'), 'x');
    const good = latestGoodCheckpoint(ck);
    assert.equal(nodePath.basename(good?.folder ?? ''), 'step-00000003');
    assert.match(
      good?.rejected[0] ?? '',
      /step-00000005.*model\.safetensors: size differs from the manifest/,
    );
    const r = PretrainRun.resume(dir, data);
    assert.equal(r.step, 3);
    r.dispose();
  });

  it('stops on a non-finite loss, naming the step and the last good checkpoint, without updating', async () => {
    const dir = nodePath.join(tmp(), 'run');
    // step 1 runs at lr 0 (warm-up); step 2's absurd lr blows the weights up, so step 3's loss is not finite
    const a = PretrainRun.create(
      dir,
      { ...base, steps: 6, blr: 1e36, warmup_steps: 1, checkpoint_every: 1 },
      data,
    );
    await assert.rejects(
      () => a.runSteps(6),
      /loss became NaN at step 3; the run stopped and kept its last good checkpoint .*step-00000002/,
    );
    assert.equal(a.step, 2);
    a.dispose();
    assert.equal(metrics(dir).length, 2);
  });

  it('with k-NN sets, evaluates at each of their epochs and at the end, before the checkpoint, changing no loss', async () => {
    const labelled = (count: number, seed: number): LabelledImageSet => ({
      ...images(count, 36, seed),
      labels: Int32Array.from({ length: count }, (_, i) => i % 2),
      classes: ['a', 'b'],
    });
    const cfg = { ...base, steps: 5, batch: 2, accum: 1, checkpoint_every: 2 };
    const plain = nodePath.join(tmp(), 'plain');
    const a = PretrainRun.create(plain, cfg, data);
    await a.runSteps(5);
    a.dispose();
    const dir = nodePath.join(tmp(), 'knn');
    const b = PretrainRun.create(dir, cfg, data);
    const sets = { train: labelled(8, 2), val: labelled(4, 3) };
    const first = await b.evaluateOn(sets); // 8 / (2 * 1): an epoch is 4 steps
    // a run at step 0 is evaluated at once (the random encoder), and only once
    assert.equal(first?.step, 0);
    assert.equal(await b.evaluateOn(sets), undefined);
    const evals: unknown[] = [];
    try {
      await b.runSteps(5, undefined, (e) => {
        const ck = nodePath.join(b.checkpointDir, `step-${String(e.step).padStart(8, '0')}`);
        assert.equal(fs.existsSync(ck), false, `${ck} written before its step's k-NN`);
        evals.push(e);
      });
    } finally {
      b.dispose();
    }
    const lines = fs
      .readFileSync(nodePath.join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    assert.deepEqual(
      lines.map((l) => ('knn_top1' in l ? `knn@${l['step']}` : l['step'])),
      ['knn@0', 1, 2, 3, 4, 'knn@4', 5, 'knn@5'],
    );
    assert.deepEqual(
      evals.map((e) => (e as { epoch: number }).epoch),
      [1, 1.25],
    );
    for (const e of evals) {
      const top1 = (e as { knn_top1: number }).knn_top1;
      assert.ok(top1 >= 0 && top1 <= 1, `knn_top1 ${top1}`);
    }
    // the k-NN reads the weights and draws nothing from the run's Rng
    assert.deepEqual(
      lines.filter((l) => !('knn_top1' in l)).map((l) => l['loss']),
      metrics(plain).map((r) => r.loss),
    );
  });

  it('refuses to overwrite a run folder', async () => {
    const dir = nodePath.join(tmp(), 'run');
    PretrainRun.create(dir, { ...base, steps: 1 }, data).dispose();
    assert.throws(() => PretrainRun.create(dir, base, data), /already holds a run/);
  });
});
