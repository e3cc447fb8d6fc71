// The engine's WebAssembly GEMM (engine/ops/wasm_gemm.ts): exact layouts, tails, blocking and both kernel variants,
// against float64 products computed here; and as tfjs-wasm's BatchMatMul / _FusedMatMul against the cpu backend.
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { initBackend } from '../../engine/backend.js';
import { gelu } from '../../engine/ops/nn.js';
import { enableRelaxedSimd, gemmModuleBytes, WasmGemm } from '../../engine/ops/wasm_gemm.js';
import { matMulStats, useFastWasmKernels } from '../../engine/ops/wasm_kernels.js';
import { Rng } from '../../engine/rng.js';

// the project's TypeScript libs declare no WebAssembly JS API
const WA = (
  globalThis as unknown as {
    WebAssembly: {
      Memory: new (d: { initial: number }) => { buffer: ArrayBuffer; grow(pages: number): number };
      validate(bytes: Uint8Array): boolean;
    };
  }
).WebAssembly;

interface Case {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  accumulate: boolean;
}

// tails in every dimension (m not a multiple of the register block, n not of 8), one and several k blocks (256)
const CASES: Case[] = [
  { m: 1, n: 1, k: 1, transA: false, transB: false, accumulate: false },
  { m: 7, n: 9, k: 5, transA: false, transB: false, accumulate: false },
  { m: 49, n: 49, k: 64, transA: false, transB: true, accumulate: false },
  { m: 13, n: 16, k: 300, transA: true, transB: false, accumulate: true },
  { m: 3, n: 5, k: 600, transA: true, transB: true, accumulate: true },
  { m: 66, n: 24, k: 513, transA: false, transB: false, accumulate: true },
  { m: 30, n: 40, k: 0, transA: false, transB: false, accumulate: true },
];

/** Runs one case on a fresh memory; returns the largest error against a float64 product, relative to sum |a||b|. */
function runCase(fma: boolean, c: Case, seed: number): number {
  const memory = new WA.Memory({ initial: 64 });
  let top = 64;
  const malloc = (bytes: number) => {
    const p = top;
    top += (bytes + 15) & ~15;
    const need = Math.ceil(top / 65536) - memory.buffer.byteLength / 65536;
    if (need > 0) memory.grow(need);
    return p;
  };
  const g = new WasmGemm(memory, fma, malloc, () => undefined);
  const ldc = Math.ceil(c.n / 8) * 8;
  const a = malloc(c.m * c.k * 4);
  const b = malloc(c.k * c.n * 4);
  const cPtr = malloc(c.m * ldc * 4);
  const rng = new Rng(seed);
  let h = new Float32Array(memory.buffer);
  for (let i = 0; i < c.m * c.k; i++) h[a / 4 + i] = rng.normal();
  for (let i = 0; i < c.k * c.n; i++) h[b / 4 + i] = rng.normal();
  for (let i = 0; i < c.m * ldc; i++) h[cPtr / 4 + i] = c.accumulate ? (i % 7) - 3 : Number.NaN;
  const init = h.slice(cPtr / 4, cPtr / 4 + c.m * ldc);
  g.run(
    { a, b, c: cPtr, m: c.m, n: c.n, k: c.k, transA: c.transA, transB: c.transB, accumulate: c.accumulate },
    ldc,
  );
  h = new Float32Array(memory.buffer);
  let worst = 0;
  for (let i = 0; i < c.m; i++)
    for (let j = 0; j < c.n; j++) {
      let s = c.accumulate ? (init[i * ldc + j] as number) : 0;
      let mag = Math.abs(s);
      for (let q = 0; q < c.k; q++) {
        const x = h[a / 4 + (c.transA ? q * c.m + i : i * c.k + q)] as number;
        const y = h[b / 4 + (c.transB ? j * c.k + q : q * c.n + j)] as number;
        s += x * y;
        mag += Math.abs(x * y);
      }
      const got = h[cPtr / 4 + i * ldc + j] as number;
      assert.ok(Number.isFinite(got), `C[${i},${j}] = ${got}`);
      worst = Math.max(worst, Math.abs(got - s) / Math.max(mag, 1e-30));
    }
  return worst;
}

describe('WasmGemm', () => {
  let relaxed = false;
  before(async () => {
    relaxed = (await enableRelaxedSimd()).fma;
  });

  it('generates a module that validates without relaxed SIMD (multiply + add)', () => {
    assert.ok(WA.validate(gemmModuleBytes(false, 5)));
  });

  it('with relaxed SIMD (Node 20 behind the flag that enableRelaxedSimd sets) validates the fused kernels', () => {
    assert.equal(relaxed, true, 'relaxed SIMD could not be enabled in this Node');
    assert.ok(WA.validate(gemmModuleBytes(true, 6)));
  });

  for (const fma of [false, true])
    for (const [i, c] of CASES.entries())
      it(`${fma ? 'fused' : 'mul+add'} ${c.m}x${c.k} @ ${c.k}x${c.n}${c.transA ? ' A^T' : ''}${c.transB ? ' B^T' : ''}${c.accumulate ? ' +=' : ''}`, () => {
        const err = runCase(fma, c, 10 + i);
        assert.ok(err < 1e-6, `relative error ${err}`);
      });
});

describe('BatchMatMul and _FusedMatMul on wasm', () => {
  before(async () => {
    await initBackend('wasm');
    useFastWasmKernels();
  });

  /** Runs fn on wasm and on cpu with the same inputs; returns both results. */
  function both(
    shapes: number[][],
    fn: (xs: tf.Tensor[]) => tf.Tensor,
  ): [Float32Array, Float32Array, number[]] {
    const rng = new Rng(shapes.flat().reduce((s, d) => s * 31 + d, 7));
    const data = shapes.map((s) =>
      Float32Array.from({ length: tf.util.sizeFromShape(s) }, () => rng.normal()),
    );
    const run = (backend: string) => {
      tf.setBackend(backend);
      return tf.tidy(() => {
        const y = fn(shapes.map((s, i) => tf.tensor(data[i] as Float32Array, s)));
        return [y.dataSync() as Float32Array, y.shape] as const;
      });
    };
    const [cpu, cpuShape] = run('cpu');
    const [wasm, shape] = run('wasm');
    assert.deepEqual(shape, cpuShape);
    return [wasm, cpu, shape];
  }

  const close = (a: Float32Array, b: Float32Array) => {
    assert.equal(a.length, b.length);
    for (let i = 0; i < a.length; i++)
      assert.ok(
        Math.abs((a[i] as number) - (b[i] as number)) < 1e-4 * (1 + Math.abs(b[i] as number)),
        `at ${i}`,
      );
  };

  const products: [string, number[][], boolean, boolean, number[]][] = [
    [
      '2-D',
      [
        [37, 19],
        [19, 11],
      ],
      false,
      false,
      [37, 11],
    ],
    [
      'A^T B^T',
      [
        [19, 37],
        [11, 19],
      ],
      true,
      true,
      [37, 11],
    ],
    [
      'batched, B^T',
      [
        [2, 3, 9, 17],
        [2, 3, 10, 17],
      ],
      false,
      true,
      [2, 3, 9, 10],
    ],
    [
      'batched A against one B',
      [
        [4, 9, 17],
        [17, 10],
      ],
      false,
      false,
      [4, 9, 10],
    ],
    [
      'one A against batched B^T',
      [
        [1, 17, 9],
        [4, 10, 17],
      ],
      true,
      true,
      [4, 9, 10],
    ],
  ];
  for (const [label, shapes, ta, tb, outShape] of products)
    it(`matMul ${label} equals the cpu backend's and runs on the GEMM`, () => {
      const before = { ...matMulStats };
      const [w, c, shape] = both(shapes, ([a, b]) => tf.matMul(a as tf.Tensor, b as tf.Tensor, ta, tb));
      assert.deepEqual(shape, outShape);
      close(w, c);
      assert.equal(matMulStats.gemm, before.gemm + 1);
      assert.equal(matMulStats.fallback, before.fallback);
    });

  it('fused matMul with a bias (vector and broadcast scalar) equals the cpu backend', () => {
    for (const n of [11, 16]) {
      const [w, c] = both([[23, 300], [n, 300], [n]], ([a, b, bias]) =>
        tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, transposeB: true, bias }),
      );
      close(w, c);
    }
    const [w, c] = both([[5, 7], [7, 3], [1]], ([a, b, bias]) =>
      tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias }),
    );
    close(w, c);
  });

  it('an empty inner dimension gives zeros (or the bias), even on a reused heap', () => {
    for (let i = 0; i < 3; i++)
      tf.tidy(() => tf.matMul(tf.fill([40, 30], 7), tf.fill([30, 20], 3)).dataSync());
    const [w, c, shape] = both(
      [
        [4, 0],
        [0, 5],
      ],
      ([a, b]) => tf.matMul(a as tf.Tensor, b as tf.Tensor),
    );
    assert.deepEqual(shape, [4, 5]);
    assert.deepEqual([...w], new Array<number>(20).fill(0));
    close(w, c);
    const [wb] = both([[3, 0], [0, 2], [2]], ([a, b, bias]) =>
      tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias }),
    );
    assert.equal(wb[0], wb[2]);
    assert.equal(wb[1], wb[3]);
  });

  it('falls back to tfjs for a fused activation, with the same result', () => {
    const before = matMulStats.fallback;
    const [w, c] = both([[6, 5], [5, 4], [4]], ([a, b, bias]) =>
      tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias, activation: 'relu' }),
    );
    close(w, c);
    assert.equal(matMulStats.fallback, before + 1);
  });

  const reductions: [number[], number | number[], boolean][] = [
    [[7, 5], 0, false],
    [[7, 5], 1, false],
    [[7, 5], -1, true],
    [[2, 3, 9], [0, 1], false],
    [[2, 3, 9], [1, 2], true],
    [[2, 3, 9], [0, 1, 2], false],
    [[2, 3, 9], 1, false], // an inner axis: tfjs's kernel
    [[1, 6], 0, true],
    [[600, 192], 0, false],
  ];
  for (const [shape, axis, keepDims] of reductions)
    it(`sum and mean of ${shape.join('x')} over ${String(axis)}${keepDims ? ' (keepDims)' : ''} equal the cpu backend`, () => {
      for (const op of [tf.sum, tf.mean]) {
        const [w, c] = both([shape], ([x]) => op(x as tf.Tensor, axis, keepDims));
        close(w, c);
      }
    });

  it('GELU forward and backward (one pass each) match float64 to float32 precision, tails included', () => {
    // erf and the Gaussian in float64: erf by its Taylor series (|z| < 3) or continued fraction, to ~1e-15
    const erf64 = (z: number): number => {
      const a = Math.abs(z);
      if (a < 3) {
        let term = a;
        let sum = a;
        for (let k = 1; k < 200; k++) {
          term *= (-a * a) / k;
          sum += term / (2 * k + 1);
        }
        return Math.sign(z) * sum * (2 / Math.sqrt(Math.PI));
      }
      let f = 0;
      for (let k = 60; k >= 1; k--) f = k / 2 / (a + f);
      return Math.sign(z) * (1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + f));
    };
    const n = 2003; // not a multiple of 4: the tail goes through the scratch area
    const xs = Float32Array.from({ length: n }, (_, i) => -12 + (24 * i) / (n - 1));
    const dys = Float32Array.from({ length: n }, (_, i) => Math.cos(i));
    tf.setBackend('wasm');
    const [y, dx] = tf.tidy(() => {
      const x = tf.tensor1d(xs);
      const dy = tf.tensor1d(dys);
      const g = tf.valueAndGrad((t: tf.Tensor) => tf.sum(tf.mul(gelu(t), dy)));
      const { value, grad } = g(x);
      void value;
      return [gelu(x).dataSync(), grad.dataSync()];
    });
    let worstY = 0;
    let worstDx = 0;
    for (let i = 0; i < n; i++) {
      const x = xs[i] as number;
      const cdf = 0.5 * (1 + erf64(x / Math.SQRT2));
      const pdf = Math.exp((-x * x) / 2) / Math.sqrt(2 * Math.PI);
      worstY = Math.max(worstY, Math.abs((y[i] as number) - x * cdf) / (1e-6 + Math.abs(x)));
      worstDx = Math.max(worstDx, Math.abs((dx[i] as number) - (dys[i] as number) * (cdf + x * pdf)));
    }
    assert.ok(worstY < 3e-7, `forward error ${worstY} (relative to |x|)`);
    assert.ok(worstDx < 1e-6, `backward error ${worstDx}`);
  });

  it('gradients of a batched, transposed product equal the cpu backend', () => {
    const [w, c] = both(
      [
        [3, 8, 5],
        [3, 6, 5],
      ],
      ([a, b]) => {
        const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.square(tf.matMul(x, y, false, true))));
        const [ga, gb] = g([a as tf.Tensor, b as tf.Tensor]);
        return tf.concat([tf.reshape(ga as tf.Tensor, [-1]), tf.reshape(gb as tf.Tensor, [-1])]);
      },
    );
    close(w, c);
  });
});
