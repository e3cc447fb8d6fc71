// Backend selection: the best that loads wins, each better one says why not, DIGPT_BACKEND forces one.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { describeBackend, initBackend } from '../../engine/backend.js';
import { ADAMW_KERNEL } from '../../engine/ops/wasm_kernels.js';

function installed(pkg: string): boolean {
  try {
    createRequire(import.meta.url)(pkg);
    return true;
  } catch {
    return false;
  }
}

describe('initBackend', () => {
  it('picks the first candidate that loads and passes its self-check, explaining the skipped ones', async () => {
    const r = await initBackend('');
    const expected = installed('@tensorflow/tfjs-node') ? 'tensorflow' : 'wasm';
    if (expected === 'wasm') {
      assert.equal(r.name, 'wasm');
      assert.deepEqual(
        r.skipped.map((s) => s.name),
        ['tensorflow-gpu', 'tensorflow'],
      );
      for (const s of r.skipped) assert.match(s.reason, /@tensorflow\/tfjs-node(-gpu)?: /);
      assert.match(describeBackend(r), /^backend: wasm — not used: @tensorflow\/tfjs-node-gpu: /);
      // Node 20 has relaxed SIMD behind a flag, which start-up sets: the GEMM multiplies with fused multiply-add
      assert.deepEqual(r.gemm, {
        kind: 'fma',
        why: 'relaxed SIMD switched on with --experimental-wasm-relaxed-simd',
      });
      assert.match(
        describeBackend(r),
        /products: the engine's wasm GEMM, fused multiply-add \(relaxed SIMD switched on/,
      );
      // the engine's kernels are in place from start-up, before any model op (so no computation changes kernels later)
      assert.ok(tf.getKernel(ADAMW_KERNEL, 'wasm'));
    }
    assert.equal(tf.getBackend(), r.tfName);
  });

  it('is forced by DIGPT_BACKEND and says so', async () => {
    const r = await initBackend('cpu');
    assert.equal(r.name, 'cpu');
    assert.equal(r.forced, true);
    assert.equal(tf.getBackend(), 'cpu');
    assert.match(describeBackend(r), /forced by DIGPT_BACKEND/);
    const w = await initBackend('wasm');
    assert.equal(tf.getBackend(), 'wasm');
    assert.equal(w.name, 'wasm');
  });

  it('rejects an unknown name, listing the known ones', async () => {
    await assert.rejects(
      initBackend('webgpu'),
      /DIGPT_BACKEND=webgpu: unknown backend; use one of tensorflow, tensorflow-gpu, wasm, cpu/,
    );
  });
});
