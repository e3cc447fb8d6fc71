// AdamW against hand-computed PyTorch updates; the warm-up + cosine schedule; layer-wise lr decay.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { AdamW, layerDecayScale, lrAt, scaledLr, vitLayerId } from '../../engine/optim/adamw.js';
import { initBackend } from '../../engine/backend.js';
import { ADAMW_KERNEL, useFastWasmKernels } from '../../engine/ops/wasm_kernels.js';
import { Rng } from '../../engine/rng.js';
import { setup } from './helpers.js';

before(setup);

/** PyTorch's AdamW on one scalar, in float64. */
function reference(
  p: number,
  grads: number[],
  lr: number,
  wd: number,
  b1 = 0.9,
  b2 = 0.95,
  eps = 1e-8,
): number {
  let m = 0;
  let v = 0;
  grads.forEach((g, i) => {
    const t = i + 1;
    p *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const denom = Math.sqrt(v) / Math.sqrt(1 - b2 ** t) + eps;
    p -= (lr / (1 - b1 ** t)) * (m / denom);
  });
  return p;
}

describe('AdamW', () => {
  it('matches PyTorch over three steps, with and without decay, with an lr scale', async () => {
    const grads = [0.3, -1.2, 0.05];
    const a = tf.variable(tf.scalar(0.7));
    const b = tf.variable(tf.scalar(0.7));
    const opt = new AdamW([
      { name: 'a', variable: a, decay: true },
      { name: 'b', variable: b, decay: false, lrScale: 0.5 },
    ]);
    for (const g of grads)
      tf.tidy(() =>
        opt.apply(
          new Map([
            ['a', tf.scalar(g)],
            ['b', tf.scalar(g)],
          ]),
          0.01,
        ),
      );
    assert.ok(Math.abs((a.dataSync()[0] as number) - reference(0.7, grads, 0.01, 0.05)) < 1e-6);
    assert.ok(Math.abs((b.dataSync()[0] as number) - reference(0.7, grads, 0.005, 0)) < 1e-6);
    assert.equal(opt.step, 3);
    const state = await opt.exportState();
    const again = new AdamW([
      { name: 'a', variable: a, decay: true },
      { name: 'b', variable: b, decay: false },
    ]);
    again.importState(state);
    assert.equal(again.step, 3);
    assert.deepEqual((await again.exportState()).m.get('a'), state.m.get('a'));
    tf.dispose([a, b]);
    opt.dispose();
    again.dispose();
  });
});

describe('schedule', () => {
  const s = { baseLr: 1e-3, minLr: 1e-5, warmupSteps: 10, totalSteps: 110 };
  it('warms up linearly from 0', async () => {
    assert.equal(lrAt(s, 0), 0);
    assert.ok(Math.abs(lrAt(s, 5) - 5e-4) < 1e-12);
  });
  it('follows a half cosine down to min_lr', async () => {
    assert.ok(Math.abs(lrAt(s, 10) - 1e-3) < 1e-12);
    assert.ok(Math.abs(lrAt(s, 60) - (1e-5 + (1e-3 - 1e-5) * 0.5)) < 1e-12);
    assert.ok(Math.abs(lrAt(s, 110) - 1e-5) < 1e-12);
  });
  it('scales the base lr by batch / 256', async () => {
    assert.equal(scaledLr(1.5e-4, 4096), 2.4e-3);
  });
});

describe('layer-wise lr decay', () => {
  it('gives embeddings layer 0, blocks i+1 and the head depth+1', async () => {
    assert.equal(vitLayerId('pos_embed', 12), 0);
    assert.equal(vitLayerId('patch_embed.proj.weight', 12), 0);
    assert.equal(vitLayerId('blocks.3.attn.qkv.weight', 12), 4);
    assert.equal(vitLayerId('head.weight', 12), 13);
    assert.equal(layerDecayScale('head.bias', 12, 0.65), 1);
    assert.ok(Math.abs(layerDecayScale('cls_token', 12, 0.65) - 0.65 ** 13) < 1e-15);
  });
});

describe('tensor bookkeeping', () => {
  it('creating, restoring and disposing an optimizer leaves no tensors behind', async () => {
    const before = tf.memory().numTensors;
    const w = tf.tidy(() => tf.variable(tf.ones([3, 2])));
    const opt = new AdamW([{ name: 'w', variable: w, decay: true }]);
    opt.importState(await opt.exportState());
    opt.dispose();
    w.dispose();
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('AdamW on wasm: the fused kernel', () => {
  it('gives bit-for-bit the update of the separate tfjs operations (vector part and tail, with and without decay)', async () => {
    await initBackend('wasm');
    useFastWasmKernels();
    assert.ok(tf.getKernel(ADAMW_KERNEL, 'wasm'), 'the fused kernel is registered on wasm');
    const shapes = [[7, 5], [3], [16]];
    const run = async (fused: boolean) => {
      const kernel = tf.getKernel(ADAMW_KERNEL, 'wasm') as tf.KernelConfig;
      if (!fused) tf.unregisterKernel(ADAMW_KERNEL, 'wasm');
      try {
        const r = new Rng(9);
        const vars = shapes.map((s) => tf.variable(tf.randomNormal(s, 0, 1, 'float32', 1)));
        const opt = new AdamW(
          vars.map((variable, i) => ({ name: `p${i}`, variable, decay: i !== 1, lrScale: 0.5 + i })),
        );
        for (let step = 0; step < 3; step++) {
          const grads = new Map(
            shapes.map((s, i) => [
              `p${i}`,
              tf.tensor(
                Float32Array.from({ length: tf.util.sizeFromShape(s) }, () => r.normal()),
                s,
              ),
            ]),
          );
          opt.apply(grads, 1e-2);
          tf.dispose([...grads.values()]);
        }
        const out = vars.map((x) => x.dataSync().slice());
        const state = await opt.exportState();
        tf.dispose(vars);
        opt.dispose();
        return { out, m: [...state.m.values()], v: [...state.v.values()] };
      } finally {
        if (!fused) tf.registerKernel(kernel);
      }
    };
    const a = await run(true);
    const b = await run(false);
    assert.deepEqual(a.out, b.out);
    assert.deepEqual(a.m, b.m);
    assert.deepEqual(a.v, b.v);
  });
});
