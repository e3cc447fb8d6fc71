// Classification pieces: smoothed cross-entropy, Beta draws, mixup/cutmix, random erasing, decay groups, k-NN, probe.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { resolveVitConfig } from '../../engine/config.js';
import { VitClassifier } from '../../engine/models/vit.js';
import { Rng } from '../../engine/rng.js';
import {
  classifierOptimizer,
  classifierParams,
  classifierStep,
  extractFeatures,
  knnPredict,
  mixBatch,
  randomErase,
  sampleBeta,
  smoothedTargets,
  softTargetCrossEntropy,
  top1,
  trainLinearProbe,
} from '../../engine/train/classify.js';
import { expectNoLeaks, expectNoLeaksAsync, setup } from './helpers.js';
import { spyMatMuls } from './kernel-spy.js';
import { initBackend } from '../../engine/backend.js';

before(setup);

describe('soft-target cross-entropy with label smoothing', () => {
  it('matches a hand computation', async () => {
    const logits = [
      [2, 0.5, -1],
      [0, 0, 3],
    ];
    const labels = [0, 1];
    const t = smoothedTargets(labels, 3, 0.1);
    // off = 0.1/3, on = 0.9 + 0.1/3
    assert.ok(
      Math.abs((t[0] as number) - (0.9 + 0.1 / 3)) < 1e-7 && Math.abs((t[1] as number) - 0.1 / 3) < 1e-7,
    );
    let want = 0;
    for (let i = 0; i < 2; i++) {
      const z = logits[i] as number[];
      const lse = Math.log(z.reduce((a, v) => a + Math.exp(v), 0));
      for (let c = 0; c < 3; c++) want -= (t[i * 3 + c] as number) * ((z[c] as number) - lse);
    }
    want /= 2;
    const got = expectNoLeaks(() =>
      tf.tidy(
        () => softTargetCrossEntropy(tf.tensor2d(logits), tf.tensor2d(t, [2, 3])).dataSync()[0] as number,
      ),
    );
    assert.ok(Math.abs(got - want) < 1e-5, `${got} vs ${want}`);
    // with smoothing 0 it is the plain cross-entropy of the labels
    const hard = tf.tidy(
      () =>
        softTargetCrossEntropy(
          tf.tensor2d(logits),
          tf.tensor2d(smoothedTargets(labels, 3, 0), [2, 3]),
        ).dataSync()[0] as number,
    );
    const lse0 = Math.log(Math.exp(2) + Math.exp(0.5) + Math.exp(-1));
    const lse1 = Math.log(2 + Math.exp(3));
    assert.ok(Math.abs(hard - (lse0 - 2 + lse1 - 0) / 2) < 1e-5);
  });
});

describe('Beta sampler', () => {
  it('has the mean and variance of Beta(a, a) for a = 0.8 and 1', async () => {
    const rng = new Rng(7);
    for (const a of [0.8, 1]) {
      const n = 20000;
      let s = 0;
      let s2 = 0;
      for (let i = 0; i < n; i++) {
        const x = sampleBeta(rng, a, a);
        assert.ok(x >= 0 && x <= 1);
        s += x;
        s2 += x * x;
      }
      const mean = s / n;
      const variance = s2 / n - mean * mean;
      // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
      assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
      assert.ok(Math.abs(variance - 1 / (4 * (2 * a + 1))) < 0.005, `variance ${variance}`);
    }
  });
});

/** B images of side s, each filled with its own index (so where each value came from is visible). */
function indexImages(b: number, s: number): Float32Array {
  const x = new Float32Array(b * s * s * 3);
  for (let i = 0; i < b; i++) x.fill(i, i * s * s * 3, (i + 1) * s * s * 3);
  return x;
}

describe('mixup / cutmix', () => {
  const b = 4;
  const s = 16;
  const labels = [0, 1, 2, 1];

  it('label mass sums to 1, cutmix lambda equals the kept area, mixup blends with the reversed batch', async () => {
    const rng = new Rng(3);
    const seen = new Set<string>();
    for (let trial = 0; trial < 40; trial++) {
      const x = indexImages(b, s);
      const r = mixBatch(rng, x, labels, s, {
        mixupAlpha: 0.8,
        cutmixAlpha: 1,
        smoothing: 0.1,
        numClasses: 3,
      });
      seen.add(r.mode);
      for (let i = 0; i < b; i++) {
        const row = r.targets.subarray(i * 3, i * 3 + 3);
        assert.ok(Math.abs(row.reduce((a, v) => a + v, 0) - 1) < 1e-6);
        // the own label's weight: lambda*on + (1-lambda)*(on or off)
        const off = 0.1 / 3;
        const on = 0.9 + off;
        const own = labels[i] as number;
        const other = labels[b - 1 - i] as number;
        const want = r.lambda * on + (1 - r.lambda) * (own === other ? on : off);
        assert.ok(Math.abs((row[own] as number) - want) < 1e-6);
      }
      if (r.mode === 'cutmix') {
        const box = r.box;
        assert.ok(box);
        // every pixel of image 0 is 0 (own) or 3 (from the reversed batch); the pasted area is 1 - lambda
        let pasted = 0;
        for (let p = 0; p < s * s; p++) {
          const v = x[p * 3] as number;
          assert.ok(v === 0 || v === 3);
          if (v === 3) {
            pasted++;
            const yy = Math.floor(p / s);
            const xx = p % s;
            assert.ok(yy >= box.y0 && yy < box.y1 && xx >= box.x0 && xx < box.x1);
          }
        }
        assert.ok(Math.abs(1 - pasted / (s * s) - r.lambda) < 1e-9, `${pasted} pasted vs lambda ${r.lambda}`);
      } else if (r.mode === 'mixup') {
        assert.ok(Math.abs((x[0] as number) - (1 - r.lambda) * 3) < 1e-5);
        assert.ok(Math.abs((x[s * s * 3] as number) - (r.lambda * 1 + (1 - r.lambda) * 2)) < 1e-5);
      }
    }
    assert.ok(seen.has('cutmix') && seen.has('mixup'), [...seen].join());
  });

  it('without mixup or cutmix the targets are the smoothed labels and the images untouched', async () => {
    const x = indexImages(b, s);
    const r = mixBatch(new Rng(1), x, labels, s, {
      mixupAlpha: 0,
      cutmixAlpha: 0,
      smoothing: 0.1,
      numClasses: 3,
    });
    assert.equal(r.mode, 'none');
    assert.deepEqual(r.targets, smoothedTargets(labels, 3, 0.1));
    assert.deepEqual(x, indexImages(b, s));
  });
});

describe('random erasing', () => {
  it('touches only one box of one image, with an area in range, at the given rate', async () => {
    const s = 32;
    const rng = new Rng(11);
    let erased = 0;
    const n = 400;
    for (let t = 0; t < n; t++) {
      const img = new Float32Array(2 * s * s * 3).fill(100);
      const box = randomErase(rng, img, s * s * 3, s, { prob: 0.25 });
      assert.ok(img.subarray(0, s * s * 3).every((v) => v === 100)); // the other image
      if (!box) {
        assert.ok(img.every((v) => v === 100));
        continue;
      }
      erased++;
      const area = (box.y1 - box.y0) * (box.x1 - box.x0);
      assert.ok(area >= 0.015 * s * s && area <= 0.4 * s * s, `area ${area}`);
      for (let y = 0; y < s; y++)
        for (let x = 0; x < s; x++) {
          const inside: boolean = y >= box.y0 && y < box.y1 && x >= box.x0 && x < box.x1;
          const v = img[s * s * 3 + (y * s + x) * 3] as number;
          assert.equal(v === 100, !inside, `pixel ${y},${x}`);
        }
    }
    assert.ok(Math.abs(erased / n - 0.25) < 0.07, `erased ${erased}/${n}`);
  });
});

describe('fine-tuning optimiser and step', () => {
  const cfg = resolveVitConfig({
    img_size: 16,
    patch_size: 4,
    embed_dim: 32,
    depth: 2,
    num_heads: 2,
    num_classes: 3,
  });

  it('layer-wise lr scales and no decay for 1-D params, biases, pos_embed and cls_token', async () => {
    const vit = new VitClassifier(cfg, 1);
    const params = classifierParams(vit, 0.5);
    const by = new Map(params.map((p) => [p.name, p]));
    assert.equal(by.get('head.weight')?.lrScale, 1);
    assert.equal(by.get('blocks.1.attn.qkv.weight')?.lrScale, 0.5);
    assert.equal(by.get('blocks.0.attn.qkv.weight')?.lrScale, 0.25);
    assert.equal(by.get('patch_embed.proj.weight')?.lrScale, 0.125);
    assert.equal(by.get('head.weight')?.decay, true);
    assert.equal(by.get('patch_embed.proj.weight')?.decay, true);
    for (const n of ['pos_embed', 'cls_token', 'head.bias', 'fc_norm.weight', 'blocks.0.norm1.weight'])
      assert.equal(by.get(n)?.decay, false, n);
    vit.dispose();
  });

  it('classifierStep lowers the loss on a fixed batch, with drop path, and leaks nothing', async () => {
    const vit = new VitClassifier(cfg, 2);
    const opt = classifierOptimizer(vit, {
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.05,
      layerDecay: 0.75,
    });
    const rng = new Rng(5);
    const x = new Float32Array(6 * 16 * 16 * 3).map(() => rng.normal());
    const t = smoothedTargets([0, 1, 2, 0, 1, 2], 3, 0.1);
    const batch = (): { images: tf.Tensor4D; targets: tf.Tensor2D } => ({
      images: tf.tensor4d(x, [6, 16, 16, 3]),
      targets: tf.tensor2d(t, [6, 3]),
    });
    const losses: number[] = [];
    await expectNoLeaksAsync(async () => {
      for (let i = 0; i < 12; i++)
        losses.push((await classifierStep(vit, opt, [batch, batch], 3e-3, { dropPath: 0.1, rng })).loss);
    });
    assert.ok(losses.every(Number.isFinite));
    assert.ok((losses[11] as number) < (losses[0] as number) * 0.7, losses.join(', '));
    opt.dispose();
    vit.dispose();
  });

  it('extracts features in batches without leaks, equal to one big batch', async () => {
    const vit = new VitClassifier(cfg, 3);
    const rng = new Rng(9);
    const x = new Float32Array(5 * 16 * 16 * 3).map(() => rng.normal());
    const per = 16 * 16 * 3;
    const f = await expectNoLeaksAsync(() =>
      extractFeatures(vit, 5, 2, (s, n) => x.slice(s * per, (s + n) * per)),
    );
    const whole = tf.tidy(() => vit.features(tf.tensor4d(x, [5, 16, 16, 3])).dataSync());
    assert.equal(f.length, 5 * 32);
    for (let i = 0; i < f.length; i++) assert.ok(Math.abs((f[i] as number) - (whole[i] as number)) < 1e-4);
    vit.dispose();
  });
});

/** n features of `dim` per class around class centres (separation `sep`), or pure noise when sep = 0. */
function clusters(
  n: number,
  k: number,
  dim: number,
  sep: number,
  rng: Rng,
): { x: Float32Array; y: Int32Array } {
  const centres = Array.from({ length: k }, () => Array.from({ length: dim }, () => rng.normal()));
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % k;
    y[i] = c;
    for (let d = 0; d < dim; d++) x[i * dim + d] = sep * (centres[c]?.[d] as number) + rng.normal();
  }
  return { x, y };
}

describe('weighted k-NN', () => {
  it('is perfect on separable features and near chance on random ones', async () => {
    const rng = new Rng(21);
    const dim = 16;
    const k = 4;
    const tr = clusters(200, k, dim, 4, rng);
    const te = clusters(100, k, dim, 0, rng);
    // test points drawn around the same centres: rebuild with the train centres by reusing train rows plus noise
    const near = new Float32Array(100 * dim);
    const nearY = new Int32Array(100);
    for (let i = 0; i < 100; i++) {
      nearY[i] = tr.y[i] as number;
      for (let d = 0; d < dim; d++) near[i * dim + d] = (tr.x[i * dim + d] as number) + 0.3 * rng.normal();
    }
    const pred = await expectNoLeaksAsync(() => knnPredict(tr.x, tr.y, near, dim, k, { chunk: 32 }));
    assert.equal(top1(pred, nearY), 1);
    // random features with random labels: accuracy about 1/k
    const rx = new Float32Array(400 * dim).map(() => rng.normal());
    const ry = new Int32Array(400).map(() => rng.int(k));
    const px = await knnPredict(rx, ry, te.x, dim, k);
    const acc = top1(
      px,
      new Int32Array(100).map(() => rng.int(k)),
    );
    assert.ok(acc > 0.1 && acc < 0.45, `chance-level accuracy ${acc}`);
  });
});

describe('linear probe', () => {
  it('beats chance clearly on separable features and leaks nothing', async () => {
    const rng = new Rng(4);
    const dim = 12;
    const all = clusters(300, 3, dim, 1.5, rng);
    const trX = all.x.subarray(0, 200 * dim);
    const trY = all.y.subarray(0, 200);
    const teX = all.x.subarray(200 * dim);
    const teY = all.y.subarray(200);
    const p = await expectNoLeaksAsync(() =>
      trainLinearProbe(trX, trY, dim, 3, new Rng(1), { epochs: 30, batch: 50, lr: 0.01 }),
    );
    assert.ok((p.losses[p.losses.length - 1] as number) < (p.losses[0] as number));
    const acc = top1(await p.predict(teX), teY);
    assert.ok(acc > 0.8, `probe top-1 ${acc}`);
  });
});

describe('wasm fast path', () => {
  it('a fine-tune step with drop path, k-NN and the probe run every product on the engine GEMM', async () => {
    // the property belongs to the wasm backend (the others use their native products), so test it there
    await initBackend('wasm');
    const spy = spyMatMuls();
    try {
      const cfg = resolveVitConfig({
        img_size: 16,
        patch_size: 4,
        embed_dim: 32,
        depth: 2,
        num_heads: 2,
        num_classes: 3,
      });
      const vit = new VitClassifier(cfg, 1);
      const opt = classifierOptimizer(vit, {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0.05,
        layerDecay: 0.65,
      });
      const rng = new Rng(2);
      const x = new Float32Array(2 * 16 * 16 * 3).map(() => rng.normal());
      await classifierStep(
        vit,
        opt,
        [
          () => ({
            images: tf.tensor4d(x, [2, 16, 16, 3]),
            targets: tf.tensor2d(smoothedTargets([0, 2], 3, 0.1), [2, 3]),
          }),
        ],
        1e-3,
        { dropPath: 0.1, rng },
      );
      const f = new Float32Array(40 * 8).map(() => rng.normal());
      const y = new Int32Array(40).map((_, i) => i % 3);
      await knnPredict(f, y, f.subarray(0, 10 * 8), 8, 3, { k: 5 });
      (await trainLinearProbe(f, y, 8, 3, rng, { epochs: 2, batch: 20 })).predict(f);
      opt.dispose();
      vit.dispose();
    } finally {
      spy.restore();
    }
    assert.ok(spy.calls.length > 20);
    assert.deepEqual(spy.offPath(), []);
  });
});
