// The D-iGPT model: shapes and finite values per layer, objectives, leaks across steps, accumulation, official names.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { getPreset, resolveDigptConfig } from '../../engine/config.js';
import { DigptModel } from '../../engine/models/digpt.js';
import { exportDigptOfficial, loadDigptOfficial, mapSource } from '../../engine/models/naming.js';
import { WeightsError } from '../../engine/models/params.js';
import { accumulateGrads, disposeGrads, readMeanLoss } from '../../engine/train/grads.js';
import { digptOptimizer, pretrainStep } from '../../engine/train/pretrain.js';
import { allFinite, expectNoLeaks, maxAbsDiff, randomBatch, setup } from './helpers.js';

before(setup);

const micro = getPreset('digpt-micro-32').model;
// a config with a bilinear resize (4x4 patches per cluster -> 3x3 teacher tokens) and 3 taps
const resizing = resolveDigptConfig({ ...micro, teacher_grid: 6, teacher_dim: 24, taps: [1, 2, 3] });

describe('DigptModel forward', () => {
  for (const [label, cfg] of [
    ['micro preset', micro],
    ['teacher grid 6 (resize 4 -> 3)', resizing],
  ] as const) {
    it(`has the spec's shapes and finite values in every layer (${label})`, async () => {
      const model = new DigptModel(cfg, { seed: 1 });
      const g = model.geometry;
      const batch = randomBatch(model, 3, 2);
      expectNoLeaks(() =>
        tf.tidy(() => {
          const { out, taps } = model.forwardEncoder(batch.images, batch.order);
          assert.deepEqual(out.shape, [3 * (g.n + 1), cfg.embed_dim]);
          assert.equal(taps.length, cfg.taps.length);
          for (const t of taps) {
            assert.deepEqual(t.shape, out.shape);
            assert.ok(allFinite(t.dataSync()));
          }
          for (const role of ['gen', 'dis'] as const) {
            const pred = model.forwardDecoder(role, taps, batch.order, 3);
            assert.deepEqual(pred.shape, [3 * (g.n + 1), cfg.teacher_dim]);
            assert.ok(allFinite(pred.dataSync()));
            const tgt = model.targets(role, batch.teacher, batch.order);
            assert.deepEqual(tgt.shape, [3 * ((g.k - 1) * g.tside ** 2 + 1), cfg.teacher_dim]);
          }
          const res = model.forward(batch);
          assert.deepEqual(res.encoderOut.shape, [3, g.n + 1, cfg.embed_dim]);
          assert.deepEqual(res.gen?.clusterError.shape, [3, g.k - 1]);
          const lg = res.gen?.loss.dataSync()[0] as number;
          const ld = res.dis?.loss.dataSync()[0] as number;
          // 2 - 2cos lies in [0, 4]
          for (const l of [lg, ld]) assert.ok(l >= 0 && l <= 4, `loss ${l}`);
          assert.ok(Math.abs((res.loss.dataSync()[0] as number) - (lg + ld)) < 1e-5);
        }),
      );
      tf.dispose([batch.images, batch.teacher]);
      model.dispose();
    });
  }

  it('gen-only and dis-only build and train only their decoder', async () => {
    for (const objective of ['gen-only', 'dis-only'] as const) {
      const model = new DigptModel(micro, { seed: 1, objective });
      const names = model.params.names();
      const own = objective === 'gen-only' ? 'gen_' : 'dis_';
      const other = objective === 'gen-only' ? 'dis_' : 'gen_';
      assert.ok(names.some((n) => n.startsWith(own)));
      assert.ok(!names.some((n) => n.startsWith(other)));
      const batch = randomBatch(model, 2, 5);
      tf.tidy(() => {
        const res = model.forward(batch);
        assert.equal(res[objective === 'gen-only' ? 'dis' : 'gen'], undefined);
        assert.ok(Number.isFinite(res.loss.dataSync()[0]));
      });
      tf.dispose([batch.images, batch.teacher]);
      model.dispose();
    }
  });

  it('rejects a cluster order that is not a permutation', async () => {
    const model = new DigptModel(micro);
    const batch = randomBatch(model, 1, 1);
    assert.throws(
      () => tf.tidy(() => model.forward({ ...batch, order: Int32Array.from([0, 0, 1, 2]) }).loss),
      /not a permutation/,
    );
    tf.dispose([batch.images, batch.teacher]);
    model.dispose();
  });
});

describe('training steps', () => {
  it('leak no tensors across steps and lower the loss on a fixed batch', async () => {
    const model = new DigptModel(micro, { seed: 3 });
    const opt = digptOptimizer(model);
    const fixed = randomBatch(model, 4, 9);
    const data = { images: fixed.images.dataSync().slice(), teacher: fixed.teacher.dataSync().slice() };
    const make = () => ({
      images: tf.tensor4d(data.images, fixed.images.shape),
      teacher: tf.tensor3d(data.teacher, fixed.teacher.shape),
      order: fixed.order,
    });
    const losses: number[] = [];
    losses.push((await pretrainStep(model, opt, [make], 1e-3)).loss);
    const counts: number[] = [];
    for (let i = 0; i < 4; i++) {
      losses.push((await pretrainStep(model, opt, [make, make], 1e-3)).loss);
      counts.push(tf.memory().numTensors);
    }
    assert.ok(
      counts.every((c) => c === counts[0]),
      `tensor counts drift: ${counts.join(', ')}`,
    );
    assert.ok((losses.at(-1) as number) < (losses[0] as number), `losses ${losses.join(', ')}`);
    tf.dispose([fixed.images, fixed.teacher]);
    opt.dispose();
    model.dispose();
  });

  it('accumulating two micro-batches gives the gradient of their mean loss', async () => {
    const model = new DigptModel(micro, { seed: 4 });
    const full = randomBatch(model, 4, 11);
    const half = (i: number) => ({
      images: tf.slice(full.images, [2 * i, 0, 0, 0], [2, -1, -1, -1]),
      teacher: tf.slice(full.teacher, [2 * i, 0, 0], [2, -1, -1]),
      order: full.order.slice(2 * i * model.geometry.k, (2 * i + 2) * model.geometry.k),
    });
    const params = model.params.trainable();
    const one = accumulateGrads(params, () => model.forward(full).loss, 1);
    const two = accumulateGrads(params, (i) => model.forward(half(i)).loss, 2);
    assert.ok(Math.abs((await readMeanLoss(one.losses)) - (await readMeanLoss(two.losses))) < 1e-5);
    for (const p of params) {
      const a = one.grads.get(p.name)?.dataSync() as Float32Array;
      const b = two.grads.get(p.name)?.dataSync() as Float32Array;
      let scale = 0;
      for (const v of a) scale = Math.max(scale, Math.abs(v));
      assert.ok(maxAbsDiff(a, b) <= 1e-4 * scale + 1e-9, p.name);
    }
    disposeGrads(one.grads);
    disposeGrads(two.grads);
    tf.dispose([full.images, full.teacher]);
    model.dispose();
  });
});

describe('official names', () => {
  it('round-trip: export, load into a fresh model, identical outputs', async () => {
    const a = new DigptModel(resizing, { seed: 7 });
    const b = new DigptModel(resizing, { seed: 8 });
    const exported = await exportDigptOfficial(a);
    assert.ok(
      exported.has('ar_enc_norm.3.weight') && exported.has('kd_enc2dec.weight') && exported.has('mask'),
    );
    loadDigptOfficial(b, mapSource('exported', exported));
    const batch = randomBatch(a, 2, 3);
    const [la, lb] = [a, b].map((m) => tf.tidy(() => m.forward(batch).loss.dataSync()[0] as number));
    assert.equal(la, lb);
    tf.dispose([batch.images, batch.teacher]);
    a.dispose();
    b.dispose();
  });

  it('wires the generative decoder to the kd_ memory (the official quirk)', async () => {
    const m = new DigptModel(micro, { seed: 1 });
    const exported = await exportDigptOfficial(m);
    const gen = await m.params.read('gen_enc2dec.bias');
    assert.deepEqual(exported.get('kd_enc2dec.bias')?.data, gen);
    assert.deepEqual(
      exported.get('ar_blocks.0.norm1.weight')?.data,
      await m.params.read('gen_blocks.0.norm1.weight'),
    );
    m.dispose();
  });

  it('names missing and unexpected keys, and wrong shapes', async () => {
    const m = new DigptModel(micro, { seed: 1 });
    const good = await exportDigptOfficial(m);
    const missing = new Map(good);
    missing.delete('ar_pred.weight');
    missing.set('ar_pred.extra', { shape: [1], data: new Float32Array(1) });
    assert.throws(
      () => loadDigptOfficial(m, mapSource('ckpt.safetensors', missing)),
      (e: unknown) =>
        e instanceof WeightsError &&
        /missing keys: ar_pred\.weight/.test(e.message) &&
        /unexpected keys: ar_pred\.extra/.test(e.message),
    );
    const wrong = new Map(good);
    wrong.set('blocks.0.attn.qkv.weight', { shape: [3, 64], data: new Float32Array(192) });
    assert.throws(
      () => loadDigptOfficial(m, mapSource('ckpt.safetensors', wrong)),
      /blocks\.0\.attn\.qkv\.weight has shape \[3, 64\], the model needs \[192, 64\]/,
    );
    const unshared = new Map(good);
    unshared.set('ar_enc_norm.2.bias', { shape: [64], data: new Float32Array(64).fill(3) });
    assert.throws(
      () => loadDigptOfficial(m, mapSource('ckpt.safetensors', unshared)),
      /ar_enc_norm\.2\.bias differs/,
    );
    m.dispose();
  });
});
