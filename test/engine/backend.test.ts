// Backend selection: the best that loads wins, each better one says why not, DIGPT_BACKEND forces one; the GPU only with a GPU device.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import {
  describeBackend,
  initBackend,
  NO_GPU_DEVICE,
  probeTensorflow,
  tf32Note,
  type BackendReport,
  type TensorflowFacts,
} from '../../engine/backend.js';
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
        ['tensorflow-gpu', 'webgpu', 'tensorflow'],
      );
      for (const s of r.skipped) assert.match(s.reason, /^(@tensorflow\/tfjs-node(-gpu)?|webgpu): /);
      // no GPU here: Dawn finds no adapter, or only SwiftShader (which is never picked unforced)
      assert.match(r.skipped[1]?.reason ?? '', /^webgpu: (Dawn found no adapter|only a software adapter)/);
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
      initBackend('webgl'),
      /DIGPT_BACKEND=webgl: unknown backend; use one of tensorflow, tensorflow-gpu, webgpu, wasm, cpu/,
    );
  });
});

/** Facts as `require` would give them: `modules` are the packages that resolve, `throws` the ones whose native library fails. */
function facts(o: {
  modules?: Record<string, unknown>;
  throws?: string[];
  backend?: unknown;
  loaded?: string;
  env?: Record<string, string>;
}): TensorflowFacts & { loads: string[] } {
  const loads: string[] = [];
  return {
    loads,
    installed: (pkg) => pkg in (o.modules ?? {}) || (o.throws ?? []).includes(pkg),
    load: (pkg) => {
      loads.push(pkg);
      if ((o.throws ?? []).includes(pkg))
        throw new Error('libcudart.so.11.0: cannot open shared object file\nmore');
      return o.modules?.[pkg];
    },
    backend: () => o.backend,
    loaded: o.loaded,
    env: o.env ?? {},
  };
}

const GPU_PKG = '@tensorflow/tfjs-node-gpu';
const CPU_PKG = '@tensorflow/tfjs-node';
/** What require('@tensorflow/tfjs-node-gpu') returns: the tfjs API (its backend is found through the registry). */
const tfjsModule = { version: { 'tfjs-node': '4.22.0' }, node: {} };

describe('probeTensorflow (tensorflow-gpu only with a GPU device)', () => {
  it('refuses tfjs-node-gpu that loaded but made no GPU device, with the exact reason, whatever /dev/nvidia* says', () => {
    // a CUDA-12-only machine: libtensorflow 2.9.1 finds no CUDA 11.2 runtime and lists only its CPU device
    const f = facts({
      modules: { [GPU_PKG]: tfjsModule },
      backend: { isGPUPackage: true, isUsingGpuDevice: false },
    });
    assert.deepEqual(probeTensorflow('tensorflow-gpu', f), {
      ok: false,
      pkg: GPU_PKG,
      reason: NO_GPU_DEVICE,
    });
    assert.equal(NO_GPU_DEVICE, 'tensorflow-gpu: loaded, but no GPU device (needs CUDA 11.2 and cuDNN 8.1)');
  });

  it('takes tensorflow-gpu when the backend reports a GPU device (boolean, method or binding function)', () => {
    for (const backend of [
      { isGPUPackage: true, isUsingGpuDevice: true },
      { isUsingGpuDevice: () => true },
      { binding: { isUsingGpuDevice: () => true } },
    ]) {
      const f = facts({ modules: { [GPU_PKG]: tfjsModule }, backend });
      assert.deepEqual(probeTensorflow('tensorflow-gpu', f), { ok: true, pkg: GPU_PKG, gpu: true });
    }
    const none = facts({ modules: { [GPU_PKG]: tfjsModule }, backend: null });
    assert.equal(probeTensorflow('tensorflow-gpu', none).ok, false);
  });

  it('falls through to tensorflow on the already loaded tfjs-node-gpu (CPU), never loading a second TensorFlow', () => {
    const f = facts({ modules: { [GPU_PKG]: tfjsModule, [CPU_PKG]: tfjsModule }, loaded: GPU_PKG });
    assert.deepEqual(probeTensorflow('tensorflow', f), { ok: true, pkg: GPU_PKG, gpu: false });
    assert.deepEqual(f.loads, []);
  });

  it('says why: not installed, a library that does not load, CUDA_VISIBLE_DEVICES hiding every GPU', () => {
    assert.deepEqual(probeTensorflow('tensorflow-gpu', facts({})), {
      ok: false,
      reason: '@tensorflow/tfjs-node-gpu: not installed',
    });
    assert.deepEqual(probeTensorflow('tensorflow-gpu', facts({ throws: [GPU_PKG] })), {
      ok: false,
      reason:
        '@tensorflow/tfjs-node-gpu: installed but does not load (libcudart.so.11.0: cannot open shared object file)',
    });
    const hidden = facts({ modules: { [GPU_PKG]: tfjsModule }, env: { CUDA_VISIBLE_DEVICES: '-1' } });
    assert.deepEqual(probeTensorflow('tensorflow-gpu', hidden), {
      ok: false,
      reason: "tensorflow-gpu: CUDA_VISIBLE_DEVICES='-1' hides every GPU",
    });
    assert.deepEqual(hidden.loads, []);
    const cpu = facts({ modules: { [CPU_PKG]: tfjsModule } });
    assert.deepEqual(probeTensorflow('tensorflow', cpu), { ok: true, pkg: CPU_PKG, gpu: false });
  });

  it('the backend line of a GPU says TF32 is on by default on Ampere and newer, unless NVIDIA_TF32_OVERRIDE=0', () => {
    assert.match(tf32Note({}), /TF32 is on by default on Ampere and newer GPUs/);
    assert.match(tf32Note({}), /NVIDIA_TF32_OVERRIDE=0 keeps fp32 products/);
    assert.equal(
      tf32Note({ NVIDIA_TF32_OVERRIDE: '0' }),
      'TF32 off (NVIDIA_TF32_OVERRIDE=0): products in fp32',
    );
    const gpu: BackendReport = {
      name: 'tensorflow-gpu',
      tfName: 'tensorflow',
      skipped: [],
      forced: false,
      tf32: tf32Note({}),
    };
    assert.match(describeBackend(gpu), /^backend: tensorflow-gpu — TF32 is on by default on Ampere/);
    const fellThrough: BackendReport = {
      name: 'tensorflow',
      tfName: 'tensorflow',
      skipped: [{ name: 'tensorflow-gpu', reason: NO_GPU_DEVICE }],
      forced: false,
    };
    assert.equal(describeBackend(fellThrough), `backend: tensorflow — not used: ${NO_GPU_DEVICE}`);
  });
});
