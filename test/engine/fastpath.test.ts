// On wasm every product of a training step must stay on XNNPACK: no transpose flags, no batch dimension.
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

interface Call {
  kernel: string;
  transposeA: boolean;
  transposeB: boolean;
  shapes: number[][];
}

const calls: Call[] = [];
const originals: tf.KernelConfig[] = [];

/** Wraps the wasm matMul kernels so each call's flags and shapes are recorded. */
function spy(): void {
  for (const name of ['BatchMatMul', '_FusedMatMul']) {
    const k = tf.getKernel(name, 'wasm');
    assert.ok(k, `wasm has no ${name} kernel`);
    originals.push(k);
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({
      ...k,
      kernelFunc: (args) => {
        const attrs = args.attrs as { transposeA?: boolean; transposeB?: boolean };
        const inputs = args.inputs as Record<string, tf.TensorInfo>;
        calls.push({
          kernel: name,
          transposeA: attrs.transposeA ?? false,
          transposeB: attrs.transposeB ?? false,
          shapes: [inputs['a']?.shape ?? [], inputs['b']?.shape ?? []],
        });
        return k.kernelFunc(args);
      },
    });
  }
}

function offPath(): Call[] {
  return calls.filter(
    (c) =>
      c.transposeA || c.transposeB || c.shapes.some((s) => s.length > 3 || (s.length === 3 && s[0] !== 1)),
  );
}

before(async () => {
  await initBackend('wasm');
  spy();
});
after(() => {
  for (const k of originals) {
    tf.unregisterKernel(k.kernelName, 'wasm');
    tf.registerKernel(k);
  }
});

describe('wasm fast path', () => {
  it('the spy sees a transposed or batched product (so an empty list below means something)', () => {
    calls.length = 0;
    tf.tidy(() => {
      tf.matMul(tf.ones([2, 3]), tf.ones([2, 3]), false, true);
      tf.matMul(tf.ones([2, 2, 3]), tf.ones([2, 3, 2]));
    });
    assert.equal(offPath().length, 2);
  });

  it('a D-iGPT step (forward + backward, with the bilinear resize) uses only plain 2-D products', () => {
    calls.length = 0;
    const model = new DigptModel({ ...getPreset('digpt-micro-32').model, teacher_grid: 6 }, { seed: 1 });
    const batch = randomBatch(model, 2, 1);
    const { grads } = accumulateGrads(model.params.trainable(), () => model.forward(batch).loss, 1);
    disposeGrads(grads);
    assert.ok(calls.length > 50, `only ${calls.length} products recorded`);
    assert.deepEqual(offPath(), []);
    tf.dispose([batch.images, batch.teacher]);
    model.dispose();
  });

  it('a classifier step and a CLIP forward use only plain 2-D products', () => {
    calls.length = 0;
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
    const { grads } = accumulateGrads(vit.params.trainable(), () => tf.sum(vit.forward(x)) as tf.Scalar, 1);
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
    assert.ok(calls.length > 10);
    assert.deepEqual(offPath(), []);
    tf.dispose(x);
    vit.dispose();
    clip.dispose();
  });
});
