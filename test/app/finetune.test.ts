// Fine-tuning runs, linear probe and k-NN on a tiny synthetic 3-class set: learning, exact resume, export as a teacher.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { before, describe, it } from 'node:test';
import { initBackend } from '../../engine/backend.js';
import { resolveDigptConfig, type VitConfig } from '../../engine/config.js';
import { DigptModel } from '../../engine/models/digpt.js';
import { saveWeights } from '../../engine/models/naming.js';
import { Rng } from '../../engine/rng.js';
import { writeCheckpoint } from '../../app/runs/checkpoint.js';
import { readRunConfig } from '../../app/runs/config.js';
import { knn, probe, encoderFeatures } from '../../app/worker/evaluate.js';
import type { FinetuneEvalRecord, FinetuneStepRecord } from '../../app/runs/metrics.js';
import { FinetuneRun, type LabelledImageSet } from '../../app/worker/finetune-run.js';
import { openTeacher } from '../../app/worker/teacher.js';

before(async () => {
  await initBackend();
});

/**
 * `count` images of side `side` in 3 classes told apart by colour and texture: reddish horizontal stripes, greenish
 * vertical stripes, bluish checks; brightness, phase and noise vary per image.
 */
function synthetic(count: number, side: number, seed: number): LabelledImageSet {
  const rng = new Rng(seed);
  const pixels = new Uint8Array(count * side * side * 3);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const y = i % 3;
    labels[i] = y;
    const gain = 0.6 + 0.4 * rng.uniform();
    const phase = rng.int(4);
    for (let r = 0; r < side; r++)
      for (let c = 0; c < side; c++) {
        const on =
          y === 0
            ? ((r + phase) >> 1) % 2
            : y === 1
              ? ((c + phase) >> 1) % 2
              : ((r >> 1) + (c >> 1) + phase) % 2;
        for (let ch = 0; ch < 3; ch++) {
          const base = ch === y ? 200 : 60;
          const v = gain * (base + (on ? 50 : -40)) + 20 * rng.normal();
          pixels[((i * side + r) * side + c) * 3 + ch] = Math.max(0, Math.min(255, Math.round(v)));
        }
      }
  }
  return { count, side, pixels, labels, classes: ['red', 'green', 'blue'] };
}

const train = synthetic(48, 20, 1);
const val = synthetic(30, 20, 2);
const tiny: Partial<VitConfig> = { img_size: 16, patch_size: 4, embed_dim: 32, depth: 2, num_heads: 2 };
const tmp = (): string => fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-ft-'));
const lines = (dir: string): (FinetuneStepRecord | FinetuneEvalRecord)[] =>
  fs
    .readFileSync(nodePath.join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as FinetuneStepRecord | FinetuneEvalRecord);
const steps = (dir: string): FinetuneStepRecord[] =>
  lines(dir).filter((r): r is FinetuneStepRecord => 'loss' in r);
const evals = (dir: string): FinetuneEvalRecord[] =>
  lines(dir).filter((r): r is FinetuneEvalRecord => 'val_top1' in r);

/** A pretraining run folder holding one checkpoint of a small random D-iGPT (what PretrainRun writes). */
async function pretrainRun(): Promise<{ dir: string; model: DigptModel }> {
  const dir = tmp();
  const cfg = resolveDigptConfig({
    img_size: 16,
    patch_size: 4,
    embed_dim: 32,
    depth: 2,
    num_heads: 2,
    dec_dim: 32,
    dec_depth: 1,
    dec_heads: 2,
    clusters_per_side: 2,
    teacher_grid: 4,
    teacher_dim: 48,
  });
  const model = new DigptModel(cfg, { seed: 9 });
  fs.writeFileSync(nodePath.join(dir, 'config.json'), JSON.stringify({ kind: 'pretrain', model: cfg }));
  const weights = await model.params.exportTorch();
  writeCheckpoint(nodePath.join(dir, 'checkpoints'), 1, (folder) =>
    saveWeights(nodePath.join(folder, 'model.safetensors'), weights, {
      kind: 'digpt_workbench',
      config: JSON.stringify(cfg),
    }),
  );
  return { dir, model };
}

const recipe = {
  from: 'scratch',
  model: tiny,
  batch: 8,
  blr: 0.05,
  warmup_epochs: 1,
  seed: 3,
};

describe('FinetuneRun', () => {
  it('fine-tuning from scratch raises val top-1 well above chance, evaluating each epoch', async () => {
    const dir = nodePath.join(tmp(), 'run');
    const run = FinetuneRun.create(dir, { ...recipe, epochs: 6 }, train, val);
    assert.equal(run.config.steps_per_epoch, 6);
    const before = (await run.score(val)).val_top1;
    await run.runSteps(1000);
    const after = (await run.score(val)).val_top1;
    run.dispose();
    const ev = evals(dir);
    assert.deepEqual(
      ev.map((r) => [r.step, r.epoch]),
      [0, 1, 2, 3, 4, 5].map((e) => [6 * (e + 1), e]),
    );
    assert.equal(ev[ev.length - 1]?.val_top1, after);
    assert.ok(after >= 0.7, `val top-1 ${after} (before ${before}, chance 1/3)`);
    const st = steps(dir);
    assert.equal(st.length, 36);
    assert.ok(st.every((r) => Number.isFinite(r.loss) && r.lr >= 0));
    assert.equal(st[0]?.lr, 0);
  });

  it('resumes to exactly the same losses and evaluations as an uninterrupted run', async () => {
    const cfg = { ...recipe, steps: 8, checkpoint_every: 3, accum: 2, batch: 4 };
    const full = nodePath.join(tmp(), 'full');
    const a = FinetuneRun.create(full, cfg, train, val);
    await a.runSteps(8);
    a.dispose();
    const cut = nodePath.join(tmp(), 'cut');
    const b = FinetuneRun.create(cut, cfg, train, val);
    await b.runSteps(4);
    b.dispose();
    const c = FinetuneRun.resume(cut, train, val);
    assert.equal(c.step, 3);
    await c.runSteps(100);
    c.dispose();
    const strip = (rs: (FinetuneStepRecord | FinetuneEvalRecord)[]): unknown[] =>
      rs.map((r) =>
        'loss' in r ? [r.step, r.loss, r.lr, r.epoch] : [r.step, r.epoch, r.val_top1, r.val_loss],
      );
    assert.deepEqual(strip(lines(cut)), strip(lines(full)));
    assert.equal(steps(full).length, 8);
    assert.ok(evals(full).length >= 2);
  });

  it("records crop_min (RandomResizedCrop's smallest area): 0.08 by default, as before; an older config.json without it resumes as 0.08", async () => {
    const cfg = { ...recipe, steps: 4, checkpoint_every: 2 };
    const losses = async (o: object): Promise<{ dir: string; losses: number[] }> => {
      const dir = nodePath.join(tmp(), 'run');
      const run = FinetuneRun.create(dir, { ...cfg, ...o }, train, val);
      await run.runSteps(4);
      run.dispose();
      return { dir, losses: steps(dir).map((r) => r.loss) };
    };
    const dflt = await losses({});
    const explicit = await losses({ crop_min: 0.08 });
    const whole = await losses({ crop_min: 1 });
    const written = readRunConfig(dflt.dir);
    assert.ok(written.kind === 'finetune');
    assert.equal(written.crop_min, 0.08);
    assert.deepEqual(explicit.losses, dflt.losses, 'the default is the crop the runs had before the setting');
    assert.notDeepEqual(whole.losses, dflt.losses);
    // a run folder written before the setting existed: config.json without crop_min
    const old = nodePath.join(tmp(), 'old');
    fs.cpSync(dflt.dir, old, { recursive: true });
    const file = nodePath.join(old, 'config.json');
    const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    delete raw['crop_min'];
    fs.writeFileSync(file, JSON.stringify(raw));
    fs.rmSync(nodePath.join(old, 'checkpoints', 'step-00000004'), { recursive: true });
    const resumed = FinetuneRun.resume(old, train, val);
    assert.equal(resumed.config.crop_min, undefined);
    assert.equal(resumed.step, 2);
    await resumed.runSteps(100);
    resumed.dispose();
    assert.deepEqual(
      steps(old).map((r) => r.loss),
      dflt.losses,
      'resumed with the 0.08 crop it trained with',
    );
  });

  it('starts from a pretraining run, exports a classifier that opens as a teacher and as an encoder', async () => {
    const { dir: pre, model } = await pretrainRun();
    const dir = nodePath.join(tmp(), 'from-pre');
    const run = FinetuneRun.create(dir, { from: pre, batch: 8, steps: 3, seed: 1 }, train, val);
    assert.deepEqual(
      await run.model.params.read('blocks.1.mlp.fc2.weight'),
      await model.params.read('blocks.1.mlp.fc2.weight'),
    );
    assert.deepEqual(await run.model.params.read('pos_embed'), model.posEmbedWithCls());
    assert.equal(run.config.model.num_classes, 3);
    await run.runSteps(3);
    const file = nodePath.join(dir, 'classifier.safetensors');
    await run.exportClassifier(file);
    const t = openTeacher(file, model.config);
    assert.equal(t.kind, 'vit');
    const x = tf.randomNormal([2, 16, 16, 3]) as tf.Tensor4D;
    const tok = t.tokens(x);
    assert.deepEqual(tok.shape, [2, 1 + 16, 32]);
    tf.dispose([x, tok]);
    t.dispose();
    // the file, the run folder and the run's model give the same features
    const fromFile = await encoderFeatures(file, train, val);
    const fromRun = await encoderFeatures(dir, train, val);
    assert.deepEqual(fromFile.val, fromRun.val);
    run.dispose();
    model.dispose();
  });
});

describe('probe and k-NN on frozen features', () => {
  it('both beat chance clearly from a pretraining run, and k-NN is chance on shuffled labels', async () => {
    const { dir, model } = await pretrainRun();
    model.dispose();
    const f = await encoderFeatures(dir, train, val);
    assert.equal(f.dim, 32);
    const p = await probe(f, train, val, { epochs: 60, batch: 16, lr: 0.01 });
    assert.ok(p.top1 >= 0.7, `probe top-1 ${p.top1}`);
    const k = await knn(dir, train, val);
    assert.equal(k.k, 20);
    assert.ok(k.top1 >= 0.7, `k-NN top-1 ${k.top1}`);
    const rng = new Rng(5);
    const shuffled = { ...train, labels: train.labels.map(() => rng.int(3)) };
    const s = await knn(f, shuffled, val);
    assert.ok(s.top1 < 0.6, `k-NN on shuffled labels ${s.top1}`);
  });
});
