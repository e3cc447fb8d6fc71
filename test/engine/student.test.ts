// The student encoder: one trunk under every pretraining objective (same parameters, same outputs), one set of input checks.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { getPreset } from '../../engine/config.js';
import { createPretrainModel, PRETRAIN_OBJECTIVES } from '../../engine/models/factory.js';
import type { PretrainModel } from '../../engine/models/pretrain-model.js';
import { encoderSpecs, isEncoderParam, StudentEncoder } from '../../engine/models/student.js';
import { Rng } from '../../engine/rng.js';
import { drawOrders } from '../../engine/train/pretrain.js';
import { expectNoLeaks, setup } from './helpers.js';

before(setup);

const micro = getPreset('digpt-micro-32').model; // G = 8, K = 4
const GG = (micro.img_size / micro.patch_size) ** 2;
let models: PretrainModel[] = [];

before(() => {
  models = PRETRAIN_OBJECTIVES.map((objective) => createPretrainModel(micro, { objective, seed: 11 }));
});
after(() => {
  for (const m of models) m.dispose();
});

function images(b: number, seed: number): tf.Tensor4D {
  const rng = new Rng(seed);
  return tf.tensor4d(
    new Float32Array(b * micro.img_size ** 2 * 3).map(() => rng.normal()),
    [b, micro.img_size, micro.img_size, 3],
  );
}

describe('StudentEncoder', () => {
  it('is one trunk: every objective lists the same encoder parameters first, with the same initial values', async () => {
    const names = encoderSpecs(micro).map((s) => s.name);
    assert.equal(names.length, 3 + 12 * micro.depth);
    assert.ok(names.every(isEncoderParam));
    const first = models[0] as PretrainModel;
    for (const m of models) {
      assert.ok(m.encoder instanceof StudentEncoder, m.objective);
      assert.deepEqual(m.params.names().slice(0, names.length), names, m.objective);
      assert.ok(!m.params.names().slice(names.length).some(isEncoderParam), m.objective);
      for (const n of names)
        assert.deepEqual(await m.params.read(n), await first.params.read(n), `${m.objective} ${n}`);
    }
  });

  it('gives bit-identical outputs under every objective, with taps in the order named', async () => {
    const x = images(2, 1);
    const outs = models.map((m) =>
      expectNoLeaks(() =>
        tf.tidy(() => {
          const { out, taps } = m.encoder.forward(x, null, null, [2, 1]);
          assert.deepEqual(out.shape, [2 * (GG + 1), micro.embed_dim]);
          // the last block's output is the tap of block `depth`; taps come back as named, not in block order
          const again = m.encoder.forward(x, null, null, [micro.depth, 1]);
          assert.deepEqual(again.taps[0]?.dataSync(), out.dataSync());
          assert.deepEqual(again.taps[1]?.dataSync(), taps[1]?.dataSync());
          return [out.dataSync() as Float32Array, (taps[0] as tf.Tensor).dataSync() as Float32Array];
        }),
      ),
    );
    for (const [i, o] of outs.entries()) {
      assert.deepEqual(o[0], outs[0]?.[0], models[i]?.objective);
      assert.deepEqual(o[1], outs[0]?.[1], models[i]?.objective);
    }
    x.dispose();
  });

  it('a selection shows the encoder only the kept patches, in the permuted order, cls last', async () => {
    const enc = (models[0] as PretrainModel).encoder;
    const G = micro.img_size / micro.patch_size;
    const C = micro.embed_dim;
    const base = new Rng(2);
    const pixels = new Float32Array(2 * micro.img_size ** 2 * 3).map(() => base.normal());
    /** Sample 0's patch `p` painted over. */
    const painted = (p: number): Float32Array => {
      const out = pixels.slice();
      const [r, c] = [Math.floor(p / G), p % G];
      for (let y = 0; y < micro.patch_size; y++)
        for (let x = 0; x < micro.patch_size; x++)
          for (let ch = 0; ch < 3; ch++)
            out[((r * micro.patch_size + y) * micro.img_size + c * micro.patch_size + x) * 3 + ch] = 4;
      return out;
    };
    // each sample's patches reversed, the first 5 kept: raster patches GG-1, ..., GG-5
    const reversed = Int32Array.from(
      { length: 2 * GG },
      (_, r) => Math.floor(r / GG) * GG + (GG - 1 - (r % GG)),
    );
    // the same 5 patches in raster order: GG-5, ..., GG-1, then the rest
    const raster = Int32Array.from({ length: 2 * GG }, (_, r) => {
      const [s, i] = [Math.floor(r / GG), r % GG];
      return s * GG + (i < 5 ? GG - 5 + i : i - 5);
    });
    const run = (px: Float32Array, perm: Int32Array): Float32Array =>
      tf.tidy(() => {
        const x = tf.tensor4d(px, [2, micro.img_size, micro.img_size, 3]);
        const { out } = enc.forward(x, enc.select(perm, 5), null);
        assert.deepEqual(out.shape, [2 * 6, C]);
        return out.dataSync() as Float32Array;
      });
    const out = expectNoLeaks(() => run(pixels, reversed));
    assert.deepEqual(run(painted(0), reversed), out); // patch 0 is not kept
    assert.notDeepEqual(run(painted(GG - 1), reversed), out);
    // full attention without a mask is permutation-equivariant: the same tokens in the other order, up to rounding
    const other = run(pixels, raster);
    let maxDiff = 0;
    for (let s = 0; s < 2; s++)
      for (let i = 0; i < 6; i++) {
        const j = i === 5 ? 5 : 4 - i; // cls stays last
        for (let k = 0; k < C; k++)
          maxDiff = Math.max(maxDiff, Math.abs(out[(s * 6 + i) * C + k]! - other[(s * 6 + j) * C + k]!));
      }
    assert.ok(maxDiff < 1e-4, `max diff ${maxDiff}`);
  });

  it('checks inputs the same way for every objective, naming the shapes', async () => {
    for (const m of models) {
      const rng = new Rng(3);
      const teacher = tf.zeros([2, 1 + micro.teacher_grid ** 2, micro.teacher_dim]) as tf.Tensor3D;
      const x = images(2, 3);
      const order = drawOrders(rng, 2, m.orderLength);
      const wrongImages = tf.zeros([2, 16, 16, 3]) as tf.Tensor4D;
      const fewTeachers = tf.zeros([1, 1 + micro.teacher_grid ** 2, micro.teacher_dim]) as tf.Tensor3D;
      const wrongDim = tf.zeros([2, 1 + micro.teacher_grid ** 2, 3]) as tf.Tensor3D;
      assert.throws(
        () => m.forward({ images: wrongImages, teacher, order }),
        /images have shape \[2, 16, 16, 3\], the model expects \[B, 32, 32, 3\]/,
        m.objective,
      );
      for (const t of [fewTeachers, wrongDim])
        assert.throws(
          () => m.forward({ images: x, teacher: t, order }),
          new RegExp(
            `teacher tokens have shape \\[${t.shape.join(', ')}\\], the model expects \\[2, 65, 64\\]`,
          ),
          m.objective,
        );
      if (m.orderLength > 0) {
        const bad = order.slice();
        bad[1] = bad[0] as number;
        assert.throws(
          () => m.forward({ images: x, teacher, order: bad }),
          /order of sample 0 is not a permutation/,
          m.objective,
        );
        assert.throws(
          () => m.forward({ images: x, teacher, order: order.slice(1) }),
          new RegExp(`order has ${2 * m.orderLength - 1} entries, expected 2 x ${m.orderLength}`),
          m.objective,
        );
      }
      tf.dispose([teacher, x, wrongImages, fewTeachers, wrongDim]);
    }
  });
});
