// Index arithmetic: the block-causal mask, cluster tables, the permutation gather and its inverse, bilinear maps.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import {
  bilinearMatrix,
  bilinearWeights1d,
  clusterMask,
  clusterTable,
  invertPermutation,
  sincos2d,
} from '../../engine/models/geometry.js';
import { permuteRows } from '../../engine/ops/nn.js';
import { Rng } from '../../engine/rng.js';
import { expectNoLeaks, setup } from './helpers.js';

before(setup);

describe('clusterMask', () => {
  const visible = 3;
  const t = 4;
  const n = visible * t;
  const m = clusterMask(visible, t);
  const sees = (i: number, j: number): boolean => m[i * (n + 1) + j] === 0;

  it('is block-causal over the visible clusters', () => {
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++)
        assert.equal(sees(i, j), Math.floor(j / t) <= Math.floor(i / t), `token ${i} -> ${j}`);
  });
  it('lets cls see every token and only the last visible cluster see cls', () => {
    for (let j = 0; j <= n; j++) assert.ok(sees(n, j));
    for (let i = 0; i < n; i++)
      assert.equal(sees(i, n), Math.floor(i / t) === visible - 1, `token ${i} -> cls`);
  });
  it('uses exactly 0 and -Infinity', () => {
    assert.ok(m.every((v) => v === 0 || v === -Infinity));
  });
});

describe('clusterTable', () => {
  it('cuts a 4x4 grid into 2x2 clusters in raster order, tokens raster inside', () => {
    const tab = clusterTable(4, 2).map((r) => Array.from(r));
    assert.deepEqual(tab, [
      [0, 1, 4, 5],
      [2, 3, 6, 7],
      [8, 9, 12, 13],
      [10, 11, 14, 15],
    ]);
  });
  it('covers every token exactly once for a 3x3 cut of a 6x6 grid', () => {
    const all = clusterTable(6, 3)
      .flatMap((r) => Array.from(r))
      .sort((a, b) => a - b);
    assert.deepEqual(
      all,
      Array.from({ length: 36 }, (_, i) => i),
    );
  });
});

describe('permuteRows', () => {
  it('gathers by the permutation and its gradient gathers by the inverse (round trip is identity)', () => {
    const rng = new Rng(3);
    const perm = rng.permutation(12);
    const inv = invertPermutation(perm);
    const x = tf.tensor2d(
      Float32Array.from({ length: 36 }, (_, i) => i),
      [12, 3],
    );
    const p = tf.tensor1d(perm, 'int32');
    const q = tf.tensor1d(inv, 'int32');
    expectNoLeaks(() =>
      tf.tidy(() => {
        const y = permuteRows(x, p, q);
        const rows = y.arraySync();
        for (let i = 0; i < 12; i++) assert.equal(rows[i]?.[0], (perm[i] as number) * 3);
        assert.deepEqual(permuteRows(y, q, p).arraySync(), x.arraySync());
        // d/dx sum(w * P x) = P^T w: gathering the upstream gradient by the inverse
        const w = tf.tensor2d(
          Float32Array.from({ length: 36 }, (_, i) => (i * 7) % 5),
          [12, 3],
        );
        const g = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(permuteRows(xx as tf.Tensor2D, p, q), w)))(x);
        const wr = w.arraySync();
        const gr = g.arraySync() as number[][];
        for (let i = 0; i < 12; i++) assert.deepEqual(gr[perm[i] as number], wr[i]);
      }),
    );
    tf.dispose([x, p, q]);
  });
});

describe('bilinear maps', () => {
  it('are the identity when sizes match', () => {
    const m = bilinearMatrix(3, 3);
    for (let i = 0; i < 9; i++) for (let j = 0; j < 9; j++) assert.equal(m[i * 9 + j], i === j ? 1 : 0);
  });
  it('match PyTorch half-pixel weights for 4 -> 3 (align_corners=False)', () => {
    // src = (o + 0.5) * 4/3 - 0.5 = 1/6, 3/2, 17/6
    const w = Array.from(bilinearWeights1d(4, 3)).map((v) => Math.round(v * 1e6) / 1e6);
    const r = (x: number): number => Math.round(x * 1e6) / 1e6;
    assert.deepEqual(w, [r(5 / 6), r(1 / 6), 0, 0, 0, 0.5, 0.5, 0, 0, 0, r(1 / 6), r(5 / 6)]);
  });
  it('have rows that sum to one', () => {
    const m = bilinearMatrix(4, 3);
    for (let i = 0; i < 9; i++) {
      let s = 0;
      for (let j = 0; j < 16; j++) s += m[i * 16 + j] as number;
      assert.ok(Math.abs(s - 1) < 1e-6);
    }
  });
});

describe('sincos2d', () => {
  it('puts the w coordinate first and zeros in the cls row', () => {
    const e = sincos2d(8, 2, true);
    assert.deepEqual(Array.from(e.slice(0, 8)), [0, 0, 0, 0, 0, 0, 0, 0]);
    // position (h=0, w=1): quarter 1 -> omega [1, 1/100]
    const row = Array.from(e.slice(16, 24)).map((v) => Math.round(v * 1e5) / 1e5);
    const r = (x: number): number => Math.round(x * 1e5) / 1e5;
    assert.deepEqual(row, [r(Math.sin(1)), r(Math.sin(0.01)), r(Math.cos(1)), r(Math.cos(0.01)), 0, 0, 1, 1]);
  });
});
