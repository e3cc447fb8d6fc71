// The pretraining objectives beside D-iGPT: feature distillation (kd) and MAE with teacher targets (mae), and their factory.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { StepRecord } from '../../app/runs/metrics.js';
import { PretrainRun } from '../../app/worker/pretrain-run.js';
import { initBackend } from '../../engine/backend.js';
import { getPreset, resolveDigptConfig, resolveVitConfig, type DigptConfig } from '../../engine/config.js';
import { DigptModel } from '../../engine/models/digpt.js';
import {
  createPretrainModel,
  PRETRAIN_OBJECTIVES,
  type PretrainModel,
  type PretrainObjective,
} from '../../engine/models/factory.js';
import { bilinearMatrix } from '../../engine/models/geometry.js';
import { KdModel } from '../../engine/models/kd.js';
import { MaeModel } from '../../engine/models/mae.js';
import type { DigptBatch } from '../../engine/models/pretrain-model.js';
import { isEncoderParam } from '../../engine/models/student.js';
import { vitSpecs } from '../../engine/models/vit.js';
import { Rng } from '../../engine/rng.js';
import { accumulateGrads, disposeGrads } from '../../engine/train/grads.js';
import { digptOptimizer, drawOrders, pretrainStep } from '../../engine/train/pretrain.js';
import { allFinite, expectNoLeaks } from './helpers.js';
import { spyMatMuls, type MatMulSpy } from './kernel-spy.js';

// wasm explicitly: the fast-path checks below spy on its matMul kernels
before(async () => {
  await initBackend('wasm');
});

const micro = getPreset('digpt-micro-32').model; // G = 8, teacher_grid 8
const G = micro.img_size / micro.patch_size;
const GG = G * G;
const tg6 = resolveDigptConfig({ ...micro, teacher_grid: 6, teacher_dim: 24 });
const tg10 = resolveDigptConfig({ ...micro, teacher_grid: 10, teacher_dim: 24 });

/** Plain data of a random batch (re-made into tensors each time, as pretrainStep disposes them). */
interface BatchData {
  readonly b: number;
  readonly images: Float32Array;
  readonly teacher: Float32Array;
  readonly order: Int32Array;
  readonly config: DigptConfig;
}

function batchData(model: PretrainModel, b: number, seed: number): BatchData {
  const c = model.config;
  const rng = new Rng(seed);
  return {
    b,
    config: c,
    images: new Float32Array(b * c.img_size * c.img_size * 3).map(() => rng.normal()),
    teacher: new Float32Array(b * (1 + c.teacher_grid ** 2) * c.teacher_dim).map(() => rng.normal()),
    order: drawOrders(rng, b, model.orderLength),
  };
}

function tensors(d: BatchData): DigptBatch {
  const c = d.config;
  return {
    images: tf.tensor4d(d.images, [d.b, c.img_size, c.img_size, 3]),
    teacher: tf.tensor3d(d.teacher, [d.b, 1 + c.teacher_grid ** 2, c.teacher_dim]),
    order: d.order,
  };
}

/** Runs the model's forward on plain data and returns plain numbers (loss, per-sample error, predictions). */
function run(model: PretrainModel, d: BatchData): { loss: number; err: Float32Array; pred: Float32Array } {
  return tf.tidy(() => {
    const batch = tensors(d);
    const out = model.forward(batch);
    assert.ok(out.dis);
    return {
      loss: out.loss.dataSync()[0] as number,
      err: out.dis.clusterError.dataSync() as Float32Array,
      pred: out.dis.pred.dataSync() as Float32Array,
    };
  });
}

/** Mean of 2 - 2cos over rows (JS, float64) between p [rows, D] and t [rows, D], rows weighted by w. */
function cosLoss(p: Float32Array, t: Float32Array, d: number, w?: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let r = 0; r < p.length / d; r++) {
    let pp = 0;
    let tt = 0;
    let pt = 0;
    for (let i = 0; i < d; i++) {
      const a = p[r * d + i] as number;
      const b = t[r * d + i] as number;
      pp += a * a;
      tt += b * b;
      pt += a * b;
    }
    const wr = w ? (w[r] as number) : 1;
    num += wr * (2 - (2 * pt) / Math.sqrt(pp * tt));
    den += wr;
  }
  return num / den;
}

/** Bilinear resize in JS of one sample's [G*G, D] map to [tg*tg, D]. */
function resizeJs(x: Float32Array, g: number, t: number, d: number): Float32Array {
  if (g === t) return x;
  const m = bilinearMatrix(g, t);
  const out = new Float32Array(t * t * d);
  for (let o = 0; o < t * t; o++)
    for (let i = 0; i < g * g; i++) {
      const w = m[o * g * g + i] as number;
      if (w !== 0)
        for (let k = 0; k < d; k++)
          out[o * d + k] = (out[o * d + k] as number) + w * (x[i * d + k] as number);
    }
  return out;
}

describe('factory', () => {
  it('builds every objective with the right orderLength; rejects unknown ones', async () => {
    const k = micro.clusters_per_side ** 2;
    const expected: Record<PretrainObjective, number> = {
      digpt: k,
      'gen-only': k,
      'dis-only': k,
      kd: 0,
      mae: GG,
    };
    for (const objective of PRETRAIN_OBJECTIVES) {
      const m = createPretrainModel(micro, { objective, seed: 1 });
      assert.equal(m.objective, objective);
      assert.equal(m.orderLength, expected[objective], objective);
      assert.equal(m instanceof DigptModel, !['kd', 'mae'].includes(objective));
      m.dispose();
    }
    assert.throws(
      () => createPretrainModel(micro, { objective: 'bert' as PretrainObjective }),
      /unknown pretraining objective "bert"/,
    );
  });
});

describe('kd', () => {
  for (const [label, cfg] of [
    ['teacher grid = G', micro],
    ['teacher grid 6 < G (bilinear 8 -> 6)', tg6],
    ['teacher grid 10 > G (bilinear 8 -> 10)', tg10],
  ] as const) {
    it(`has the documented shapes, a finite loss in [0, 4], and the loss of the resized predictions (${label})`, async () => {
      const model = new KdModel(cfg, { seed: 1 });
      const d = batchData(model, 3, 2);
      const dt = cfg.teacher_dim;
      const tt = cfg.teacher_grid ** 2;
      let pred: Float32Array = new Float32Array(0);
      let loss = 0;
      expectNoLeaks(() =>
        tf.tidy(() => {
          const out = model.forward(tensors(d));
          assert.deepEqual(out.encoderOut.shape, [3, GG + 1, cfg.embed_dim]);
          assert.ok(out.dis && !out.gen);
          assert.deepEqual(out.dis.pred.shape, [3, GG + 1, dt]);
          assert.deepEqual(out.dis.clusterError.shape, [3, 1]);
          loss = out.loss.dataSync()[0] as number;
          pred = out.dis.pred.dataSync() as Float32Array;
          assert.ok(allFinite(pred) && allFinite(out.encoderOut.dataSync()));
          assert.ok(loss >= 0 && loss <= 4, `loss ${loss}`);
          // every sample has the same number of tokens, so the mean of the per-sample errors is the loss
          const err = out.dis.clusterError.dataSync();
          assert.ok(Math.abs((err[0]! + err[1]! + err[2]!) / 3 - loss) < 1e-5);
          const agree = out.dis.agreement.dataSync()[0] as number;
          assert.ok(Math.abs(2 - 2 * agree - loss) < 1e-5);
        }),
      );
      // the same loss computed in JS: patches resized G x G -> tg x tg, cls (last) against the teacher's cls (first)
      const rows = 1 + tt;
      const p = new Float32Array(3 * rows * dt);
      for (let s = 0; s < 3; s++) {
        const base = s * (GG + 1) * dt;
        p.set(pred.subarray(base + GG * dt, base + (GG + 1) * dt), s * rows * dt);
        p.set(resizeJs(pred.subarray(base, base + GG * dt), G, cfg.teacher_grid, dt), (s * rows + 1) * dt);
      }
      assert.ok(Math.abs(cosLoss(p, d.teacher, dt) - loss) < 1e-5);
      model.dispose();
    });
  }

  it("has DigptModel's encoder: the same parameter names, shapes and initial values, and loads into a ViT classifier", async () => {
    const kd = new KdModel(micro, { seed: 7 });
    const digpt = new DigptModel(micro, { seed: 7 });
    const enc = (ps: typeof kd.params): string[] => ps.names().filter(isEncoderParam);
    assert.deepEqual(enc(kd.params), enc(digpt.params));
    assert.equal(enc(kd.params).length, 3 + 12 * micro.depth);
    for (const n of enc(kd.params)) {
      assert.deepEqual(kd.params.specs.get(n)?.shape, digpt.params.specs.get(n)?.shape, n);
      assert.deepEqual(await kd.params.read(n), await digpt.params.read(n), n);
    }
    // the rest is the head, kd_norm + kd_pred
    assert.deepEqual(
      kd.params.names().filter((n) => !isEncoderParam(n)),
      ['kd_norm.weight', 'kd_norm.bias', 'kd_pred.weight', 'kd_pred.bias'],
    );
    // every encoder parameter exists, same shape, in timm's classifier
    const vit = new Map(
      vitSpecs(
        resolveVitConfig({
          img_size: micro.img_size,
          patch_size: micro.patch_size,
          embed_dim: micro.embed_dim,
          depth: micro.depth,
          num_heads: micro.num_heads,
          num_classes: 5,
        }),
      ).map((s) => [s.name, s.shape]),
    );
    for (const n of enc(kd.params)) assert.deepEqual(vit.get(n), kd.params.specs.get(n)?.shape, n);
    kd.dispose();
    digpt.dispose();
  });
});

describe('mae', () => {
  it('has the documented shapes and a finite loss in [0, 4] (teacher grid = G and 6)', async () => {
    for (const cfg of [micro, tg6]) {
      const model = new MaeModel(cfg, { seed: 1 });
      assert.equal(model.visible, GG / 4);
      assert.equal(model.masked, (3 * GG) / 4);
      const d = batchData(model, 3, 2);
      expectNoLeaks(() =>
        tf.tidy(() => {
          const out = model.forward(tensors(d));
          assert.deepEqual(out.encoderOut.shape, [3, GG / 4 + 1, cfg.embed_dim]);
          assert.ok(out.dis && !out.gen);
          assert.deepEqual(out.dis.pred.shape, [3, GG + 1, cfg.teacher_dim]);
          assert.deepEqual(out.dis.clusterError.shape, [3, 1]);
          const loss = out.loss.dataSync()[0] as number;
          assert.ok(loss >= 0 && loss <= 4, `loss ${loss}`);
          assert.ok(allFinite(out.dis.pred.dataSync()) && allFinite(out.dis.clusterError.dataSync()));
        }),
      );
      model.dispose();
    }
  });

  it('checks the order (a permutation of the G*G patches per sample) and the mask ratio', async () => {
    const model = new MaeModel(micro, { seed: 1 });
    const d = batchData(model, 2, 3);
    assert.throws(() => run(model, { ...d, order: d.order.slice(0, GG) }), /expected 2 x 64/);
    const bad = d.order.slice();
    bad[5] = bad[6] as number;
    assert.throws(() => run(model, { ...d, order: bad }), /sample 0 is not a permutation/);
    model.dispose();
    assert.throws(() => new MaeModel(micro, { maskRatio: 1 }), /mask ratio/);
    const half = new MaeModel(micro, { maskRatio: 0.5 });
    assert.equal(half.visible, GG / 2);
    half.dispose();
  });

  it('counts only the masked patches: the loss is their mean, blind to the visible patches’ targets', async () => {
    const model = new MaeModel(micro, { seed: 2 });
    const d = batchData(model, 2, 4);
    const dt = micro.teacher_dim;
    const base = run(model, d);
    // the loss in JS: predictions (raster, cls last) against teacher patches (after the teacher's cls), masked only
    const w = model.maskValues(d.order, 2);
    const p = new Float32Array(2 * GG * dt);
    const t = new Float32Array(2 * GG * dt);
    for (let s = 0; s < 2; s++) {
      p.set(base.pred.subarray(s * (GG + 1) * dt, (s * (GG + 1) + GG) * dt), s * GG * dt);
      t.set(d.teacher.subarray((s * (GG + 1) + 1) * dt, (s + 1) * (GG + 1) * dt), s * GG * dt);
    }
    assert.ok(Math.abs(cosLoss(p, t, dt, w) - base.loss) < 1e-5);
    const perturb = (s: number, patch: number): Float32Array => {
      const teacher = d.teacher.slice();
      for (let i = 0; i < dt; i++) teacher[(s * (GG + 1) + 1 + patch) * dt + i] = 3 + i;
      return teacher;
    };
    const visible = d.order[GG + 0] as number; // sample 1's first visible patch
    const masked = d.order[GG + GG - 1] as number; // sample 1's last masked patch
    assert.equal(run(model, { ...d, teacher: perturb(1, visible) }).loss, base.loss);
    assert.notEqual(run(model, { ...d, teacher: perturb(1, masked) }).loss, base.loss);
    // the teacher's cls is not a target either
    const clsOnly = d.teacher.slice();
    clsOnly.fill(1, 0, dt);
    assert.equal(run(model, { ...d, teacher: clsOnly }).loss, base.loss);
    model.dispose();
  });

  it('the encoder sees only the visible patches, and mask tokens go back to the masked positions', async () => {
    const model = new MaeModel(micro, { seed: 3 });
    const d = batchData(model, 2, 5);
    const base = run(model, d);
    // pixels of a masked patch of sample 0 do not reach any prediction
    const patchPixels = (patch: number): Float32Array => {
      const images = d.images.slice();
      const p = micro.patch_size;
      const [r, c] = [Math.floor(patch / G), patch % G];
      for (let y = 0; y < p; y++)
        for (let x = 0; x < p; x++)
          for (let ch = 0; ch < 3; ch++) images[((r * p + y) * micro.img_size + c * p + x) * 3 + ch] = 5;
      return images;
    };
    const maskedPatch = d.order[GG - 1] as number;
    assert.deepEqual(run(model, { ...d, images: patchPixels(maskedPatch) }).pred, base.pred);
    const visiblePatch = d.order[0] as number;
    assert.notDeepEqual(run(model, { ...d, images: patchPixels(visiblePatch) }).pred, base.pred);
    // reordering the visible patches among themselves (and the masked ones among themselves) changes nothing: the
    // encoder and decoder are permutation-equivariant, so only a wrong restore would move a prediction
    const order = d.order.slice();
    const v = model.visible;
    order.set(d.order.slice(0, v).reverse(), 0);
    order.set(d.order.slice(v, GG).reverse(), v);
    const re = run(model, { ...d, order });
    let maxDiff = 0;
    for (let i = 0; i < re.pred.length; i++)
      maxDiff = Math.max(maxDiff, Math.abs(re.pred[i]! - base.pred[i]!));
    assert.ok(maxDiff < 1e-4, `max diff ${maxDiff}`);
    assert.ok(Math.abs(re.loss - base.loss) < 1e-5);
    model.dispose();
  });

  it('the gradient reaches the encoder, the decoder and mask_token', async () => {
    const model = new MaeModel(micro, { seed: 4 });
    const d = batchData(model, 2, 6);
    const batch = tensors(d);
    const { grads, losses } = accumulateGrads(model.params.trainable(), () => model.forward(batch).loss, 1);
    losses.dispose();
    const norms = new Map([...grads].map(([n, g]) => [n, tf.tidy(() => tf.norm(g).dataSync()[0] as number)]));
    disposeGrads(grads);
    for (const n of [
      'patch_embed.proj.weight',
      'cls_token',
      'blocks.0.attn.qkv.weight',
      `blocks.${micro.depth - 1}.mlp.fc2.weight`,
      'decoder_embed.weight',
      'mask_token',
      'decoder_blocks.0.attn.qkv.weight',
      'decoder_norm.weight',
      'decoder_pred.weight',
    ]) {
      const g = norms.get(n);
      assert.ok(g !== undefined && Number.isFinite(g) && g > 0, `${n}: gradient norm ${g}`);
    }
    assert.equal(norms.size, model.params.trainable().length);
    tf.dispose([batch.images, batch.teacher]);
    model.dispose();
  });
});

describe('training steps (kd, mae)', () => {
  for (const objective of ['kd', 'mae'] as const) {
    it(`${objective}: leak no tensors across steps and lower the loss on a fixed batch`, async () => {
      const model = createPretrainModel(micro, { objective, seed: 3 });
      const opt = digptOptimizer(model);
      const d = batchData(model, 4, 9);
      const make = (): DigptBatch => tensors(d);
      const losses: number[] = [];
      const counts: number[] = [];
      const first = await pretrainStep(model, opt, [make], 1e-3);
      assert.equal(first.lossGen, undefined);
      assert.equal(first.lossDis, first.loss);
      assert.equal(first.clusterError.length, 4);
      assert.equal(first.order.length, 4 * model.orderLength);
      losses.push(first.loss);
      for (let i = 0; i < 4; i++) {
        losses.push((await pretrainStep(model, opt, [make, make], 1e-3)).loss);
        counts.push(tf.memory().numTensors);
      }
      assert.ok(
        counts.every((c) => c === counts[0]),
        `tensor counts drift: ${counts.join(', ')}`,
      );
      assert.ok(losses.every(Number.isFinite));
      assert.ok((losses.at(-1) as number) < (losses[0] as number), `losses ${losses.join(', ')}`);
      opt.dispose();
      model.dispose();
    });
  }

  it('a PretrainRun trains kd and mae (drawing mae’s patch permutation) and resumes to the same losses', async () => {
    const rng = new Rng(1);
    const data = { count: 6, side: 36, pixels: new Uint8Array(6 * 36 * 36 * 3).map(() => rng.int(256)) };
    for (const objective of ['kd', 'mae'] as const) {
      const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), `digpt-${objective}-`));
      const cfg = {
        data: 'synthetic',
        preset: 'digpt-micro-32',
        model: micro,
        teacher: 'pixels',
        objective,
        steps: 3,
        batch: 2,
        accum: 1,
        seed: 5,
        blr: 1.5e-3,
        min_lr: 0,
        warmup_steps: 1,
        weight_decay: 0.05,
        checkpoint_every: 2,
      };
      const a = PretrainRun.create(dir, cfg, data);
      const orders: number[] = [];
      await a.runSteps(3, (_r, m) => orders.push(m.order.length));
      a.dispose();
      assert.deepEqual(
        orders,
        [1, 2, 3].map(() => 2 * (objective === 'mae' ? GG : 0)),
      );
      const lines = (): StepRecord[] =>
        fs
          .readFileSync(nodePath.join(dir, 'metrics.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as StepRecord);
      const before = lines();
      assert.equal(before.length, 3);
      for (const r of before) {
        assert.ok(
          Number.isFinite(r.loss) && r.loss_gen === undefined && r.loss_dis === r.loss,
          JSON.stringify(r),
        );
      }
      // step 3 again from the step-2 checkpoint
      fs.rmSync(nodePath.join(a.checkpointDir, fs.readdirSync(a.checkpointDir).sort().at(-1) as string), {
        recursive: true,
      });
      const b = PretrainRun.resume(dir, data);
      assert.equal(b.step, 2);
      await b.runSteps(1);
      b.dispose();
      assert.equal(lines()[2]?.loss, before[2]?.loss);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('wasm fast path (kd, mae)', () => {
  let spy: MatMulSpy;
  before(() => {
    spy = spyMatMuls();
  });
  after(() => spy.restore());

  it('the spy sees a product that falls back (so an empty list below means something)', async () => {
    spy.calls.length = 0;
    tf.tidy(() => tf.fused.matMul({ a: tf.ones([2, 3]), b: tf.ones([3, 2]), activation: 'relu' }));
    assert.equal(spy.offPath().length, 1);
  });

  for (const [objective, cfg] of [
    ['kd', tg6],
    ['mae', micro],
    ['mae', tg10],
  ] as const) {
    it(`a ${objective} step (forward + backward${cfg.teacher_grid !== G ? ', with the bilinear resize' : ''}) runs every product on the engine GEMM`, async () => {
      spy.calls.length = 0;
      const model = createPretrainModel(cfg, { objective, seed: 1 });
      const batch = tensors(batchData(model, 2, 1));
      const { grads, losses } = accumulateGrads(model.params.trainable(), () => model.forward(batch).loss, 1);
      losses.dispose();
      disposeGrads(grads);
      assert.ok(spy.calls.length > 40, `only ${spy.calls.length} products recorded`);
      assert.deepEqual(spy.offPath(), []);
      tf.dispose([batch.images, batch.teacher]);
      model.dispose();
    });
  }
});
