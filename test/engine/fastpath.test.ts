// On wasm every product of a training step must run on the engine's GEMM (engine/ops/wasm_gemm.ts), none on
// tfjs-wasm's own product kernels.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { initBackend } from '../../engine/backend.js';
import { getPreset, resolveClipConfig, resolveVitConfig } from '../../engine/config.js';
import { ClipVision } from '../../engine/models/clip.js';
import { DigptModel } from '../../engine/models/digpt.js';
import { VitClassifier } from '../../engine/models/vit.js';
import { accumulateGrads, disposeGrads } from '../../engine/train/grads.js';
import { randomBatch } from './helpers.js';
import { spyMatMuls, type MatMulSpy } from './kernel-spy.js';

let spy: MatMulSpy;

before(async () => {
  await initBackend('wasm');
  spy = spyMatMuls();
});
after(() => spy.restore());

describe('wasm fast path', () => {
  it('the spy sees a product that falls back (so an empty list below means something)', async () => {
    spy.calls.length = 0;
    tf.tidy(() => {
      tf.matMul(tf.ones([2, 3]), tf.ones([2, 3]), false, true);
      tf.matMul(tf.ones([2, 2, 3]), tf.ones([2, 3, 2]));
      tf.fused.matMul({ a: tf.ones([2, 3]), b: tf.ones([3, 2]), activation: 'relu' });
    });
    assert.equal(spy.calls.length, 3);
    assert.deepEqual(
      spy.offPath().map((c) => c.kernel),
      ['_FusedMatMul'],
    );
  });

  it('a D-iGPT step (forward + backward, with the bilinear resize) runs every product on the engine GEMM', async () => {
    spy.calls.length = 0;
    const model = new DigptModel({ ...getPreset('digpt-micro-32').model, teacher_grid: 6 }, { seed: 1 });
    const batch = randomBatch(model, 2, 1);
    const { grads, losses } = accumulateGrads(model.params.trainable(), () => model.forward(batch).loss, 1);
    losses.dispose();
    disposeGrads(grads);
    assert.ok(spy.calls.length > 50, `only ${spy.calls.length} products recorded`);
    assert.deepEqual(spy.offPath(), []);
    tf.dispose([batch.images, batch.teacher]);
    model.dispose();
  });

  it('a classifier step and a CLIP forward run every product on the engine GEMM', async () => {
    spy.calls.length = 0;
    const vit = new VitClassifier(
      resolveVitConfig({
        img_size: 16,
        patch_size: 4,
        embed_dim: 32,
        depth: 2,
        num_heads: 2,
        num_classes: 3,
      }),
    );
    const x = tf.randomNormal([2, 16, 16, 3]) as tf.Tensor4D;
    const { grads, losses } = accumulateGrads(
      vit.params.trainable(),
      () => tf.sum(vit.forward(x)) as tf.Scalar,
      1,
    );
    losses.dispose();
    disposeGrads(grads);
    const clip = new ClipVision(
      resolveClipConfig({
        resolution: 16,
        patch_size: 4,
        width: 32,
        layers: 1,
        heads: 2,
        output_dim: 8,
        activation: 'gelu',
      }),
    );
    tf.tidy(() => clip.forward(x));
    assert.ok(spy.calls.length > 10);
    assert.deepEqual(spy.offPath(), []);
    tf.dispose(x);
    vit.dispose();
    clip.dispose();
  });
});
