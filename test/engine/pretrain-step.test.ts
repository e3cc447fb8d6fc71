// The pretraining step core: microStep's metrics per objective, pretrainStep as their mean, nothing leaked on failure.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { getPreset } from '../../engine/config.js';
import { createPretrainModel, PRETRAIN_OBJECTIVES } from '../../engine/models/factory.js';
import type { DigptBatch, PretrainModel } from '../../engine/models/pretrain-model.js';
import { Rng } from '../../engine/rng.js';
import { disposeGrads } from '../../engine/train/grads.js';
import {
  digptOptimizer,
  drawOrders,
  microStep,
  pretrainStep,
  unpackMetrics,
} from '../../engine/train/pretrain.js';
import { setup } from './helpers.js';

before(setup);

const micro = getPreset('digpt-micro-32').model;

/** A random batch for `model`, the same for the same seed. */
function batchOf(model: PretrainModel, b: number, seed: number): () => DigptBatch {
  const c = model.config;
  return () => {
    const rng = new Rng(seed);
    return {
      images: tf.tensor4d(
        new Float32Array(b * c.img_size ** 2 * 3).map(() => rng.normal()),
        [b, c.img_size, c.img_size, 3],
      ),
      teacher: tf.tensor3d(
        new Float32Array(b * (1 + c.teacher_grid ** 2) * c.teacher_dim).map(() => rng.normal()),
        [b, 1 + c.teacher_grid ** 2, c.teacher_dim],
      ),
      order: drawOrders(rng, b, model.orderLength),
    };
  };
}

describe('microStep', () => {
  for (const objective of PRETRAIN_OBJECTIVES) {
    it(`${objective}: reads the loss parts, the agreement and (when asked) errors per sample; a gradient per parameter`, async () => {
      const model = createPretrainModel(micro, { objective, seed: 2 });
      const make = batchOf(model, 3, 5);
      const before = tf.memory().numTensors;
      for (const withErrors of [false, true]) {
        const batch = make();
        const { grads, packed } = microStep(model, batch, withErrors);
        const metrics = unpackMetrics((await packed.data()) as Float32Array);
        packed.dispose();
        tf.dispose([batch.images, batch.teacher]);
        assert.deepEqual(
          [...grads.keys()].sort(),
          model.params
            .trainable()
            .map((p) => p.name)
            .sort(),
        );
        disposeGrads(grads);
        assert.equal(metrics.clusterError.length, withErrors ? 3 * model.errorLength : 0);
        assert.ok(
          Math.abs(metrics.loss - (metrics.lossGen + metrics.lossDis)) < 1e-5,
          JSON.stringify(metrics),
        );
        assert.equal(metrics.lossGen === 0, objective !== 'digpt' && objective !== 'gen-only');
        assert.equal(metrics.lossDis === 0, objective === 'gen-only');
        assert.ok(metrics.agreement > -1 && metrics.agreement < 1);
      }
      assert.equal(tf.memory().numTensors, before);
      model.dispose();
    });
  }
});

describe('pretrainStep', () => {
  it('reports the mean of its micro-batches’ metrics, and the last one’s order and errors', async () => {
    const model = createPretrainModel(micro, { objective: 'digpt', seed: 3 });
    const [m1, m2] = [batchOf(model, 2, 8), batchOf(model, 2, 9)];
    // microStep's metrics before any update, from an identical model
    const probe = createPretrainModel(micro, { objective: 'digpt', seed: 3 });
    const read = async (make: () => DigptBatch) => {
      const batch = make();
      const r = microStep(probe, batch, true);
      disposeGrads(r.grads);
      tf.dispose([batch.images, batch.teacher]);
      const metrics = unpackMetrics((await r.packed.data()) as Float32Array);
      r.packed.dispose();
      return { ...metrics, order: batch.order };
    };
    const [a, b] = [await read(m1), await read(m2)];
    const opt = digptOptimizer(model);
    const step = await pretrainStep(model, opt, [m1, m2], 1e-3);
    assert.equal(step.loss, (a.loss + b.loss) / 2);
    assert.equal(step.lossGen, (a.lossGen + b.lossGen) / 2);
    assert.equal(step.lossDis, (a.lossDis + b.lossDis) / 2);
    assert.equal(step.agreement, (a.agreement + b.agreement) / 2);
    assert.deepEqual(step.order, b.order);
    assert.deepEqual(step.clusterError, b.clusterError);
    opt.dispose();
    model.dispose();
    probe.dispose();
  });

  it('frees everything when a micro-batch fails, and leaves the weights as they were', async () => {
    const model = createPretrainModel(micro, { objective: 'mae', seed: 1 });
    const opt = digptOptimizer(model);
    const good = batchOf(model, 2, 1);
    const bad = (): DigptBatch => ({ ...good(), order: new Int32Array(3) });
    const weights = await model.params.read('blocks.0.attn.qkv.weight');
    const before = tf.memory().numTensors;
    await assert.rejects(() => pretrainStep(model, opt, [good, bad], 1e-3), /mae patch order has 3 entries/);
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(await model.params.read('blocks.0.attn.qkv.weight'), weights);
    opt.dispose();
    model.dispose();
  });
});
