// Data parallelism: a step split with a replica thread equals the single-thread step up to float rounding.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { getPreset } from '../../engine/config.js';
import { createPretrainModel } from '../../engine/models/factory.js';
import { DataParallel } from '../../engine/parallel/data-parallel.js';
import { Rng } from '../../engine/rng.js';
import { digptOptimizer, drawOrders, pretrainStep } from '../../engine/train/pretrain.js';
import { maxAbsDiff, setup } from './helpers.js';

before(setup);

const cfg = { ...getPreset('digpt-micro-32').model, teacher_grid: 6 };

/** The same random micro-batch every time it is built from the same seed. */
function micro(seed: number, b: number, orderLength = 4) {
  return () => {
    const rng = new Rng(seed);
    return {
      images: tf.tensor4d(
        new Float32Array(b * 32 * 32 * 3).map(() => rng.normal()),
        [b, 32, 32, 3],
      ),
      teacher: tf.tensor3d(
        new Float32Array(b * 37 * 64).map(() => rng.normal()),
        [b, 37, 64],
      ),
      order: drawOrders(rng, b, orderLength),
    };
  };
}

describe('DataParallel', () => {
  it('gives the single-thread loss and update (odd batch, two micro-batches) and leaks nothing across steps', async () => {
    const a = createPretrainModel(cfg, { seed: 3, objective: 'digpt' });
    const b = createPretrainModel(cfg, { seed: 3, objective: 'digpt' });
    const oa = digptOptimizer(a);
    const ob = digptOptimizer(b);
    const dp = await DataParallel.create(b, 3);
    try {
      const counts: number[] = [];
      for (let s = 0; s < 3; s++) {
        const ra = await pretrainStep(a, oa, [micro(10 * s, 5), micro(10 * s + 1, 5)], 1e-3);
        const rb = await dp.step(b, ob, [micro(10 * s, 5), micro(10 * s + 1, 5)], 1e-3);
        assert.ok(Math.abs(ra.loss - rb.loss) < 1e-5, `step ${s}: ${ra.loss} vs ${rb.loss}`);
        assert.ok(Math.abs((ra.lossGen ?? 0) - (rb.lossGen ?? 0)) < 1e-5);
        assert.ok(Math.abs(ra.agreement - rb.agreement) < 1e-5);
        // the same step core: the whole last micro-batch's order and per-cluster errors, the replica's share included
        assert.deepEqual(rb.order, ra.order);
        assert.equal(rb.clusterError.length, 5 * 3);
        assert.ok(maxAbsDiff(ra.clusterError, rb.clusterError) < 1e-5);
        counts.push(tf.memory().numTensors);
      }
      assert.ok(
        counts.every((c) => c === counts[0]),
        `tensor counts drift: ${counts.join(', ')}`,
      );
      // Adam normalises each update to about lr, so rounding differences in tiny gradients show up to ~lr/10
      for (const n of a.params.names()) {
        const x = a.params.get(n).dataSync();
        const y = b.params.get(n).dataSync();
        let d = 0;
        for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs((x[i] as number) - (y[i] as number)));
        assert.ok(d < 3e-4, `${n} differs by ${d}`);
      }
    } finally {
      await dp.close();
      for (const m of [a, b]) m.dispose();
      oa.dispose();
      ob.dispose();
    }
  });

  for (const objective of ['kd', 'mae'] as const) {
    it(`${objective}: the replica's share goes through the same step core (loss, order, per-sample errors)`, async () => {
      const a = createPretrainModel(cfg, { seed: 4, objective });
      const b = createPretrainModel(cfg, { seed: 4, objective });
      const [oa, ob] = [digptOptimizer(a), digptOptimizer(b)];
      const dp = await DataParallel.create(b, 2);
      try {
        const ra = await pretrainStep(a, oa, [micro(7, 3, a.orderLength)], 1e-3);
        const rb = await dp.step(b, ob, [micro(7, 3, b.orderLength)], 1e-3);
        assert.ok(Math.abs(ra.loss - rb.loss) < 1e-5, `${ra.loss} vs ${rb.loss}`);
        assert.equal(rb.lossDis, rb.loss);
        assert.equal(rb.lossGen, undefined);
        assert.ok(Math.abs(ra.agreement - rb.agreement) < 1e-5);
        assert.equal(rb.order.length, 3 * a.orderLength);
        assert.deepEqual(rb.order, ra.order);
        assert.equal(rb.clusterError.length, 3);
        assert.ok(maxAbsDiff(ra.clusterError, rb.clusterError) < 1e-5);
      } finally {
        await dp.close();
        for (const m of [a, b]) m.dispose();
        oa.dispose();
        ob.dispose();
      }
    });
  }
});
