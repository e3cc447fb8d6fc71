// Records every matMul the wasm backend runs, so tests can assert that all of them run on the engine's GEMM.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { matMulStats, useFastWasmKernels } from '../../engine/ops/wasm_kernels.js';

export interface MatMulCall {
  readonly kernel: string;
  readonly transposeA: boolean;
  readonly transposeB: boolean;
  readonly shapes: readonly (readonly number[])[];
  /** true when the product did not run on the engine's GEMM but on tfjs-wasm's own kernel */
  readonly fellBack: boolean;
}

export interface MatMulSpy {
  readonly calls: MatMulCall[];
  /** Calls that fell back to tfjs-wasm's own product kernels. */
  offPath(): MatMulCall[];
  /** Puts the kernels back as they were. */
  restore(): void;
}

/** Wraps the wasm BatchMatMul and _FusedMatMul kernels (the wasm backend must be registered). */
export function spyMatMuls(): MatMulSpy {
  useFastWasmKernels();
  const calls: MatMulCall[] = [];
  const wrapped: tf.KernelConfig[] = [];
  for (const name of ['BatchMatMul', '_FusedMatMul']) {
    const k = tf.getKernel(name, 'wasm');
    assert.ok(k, `wasm has no ${name} kernel`);
    wrapped.push(k);
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({
      ...k,
      kernelFunc: (args) => {
        const attrs = args.attrs as { transposeA?: boolean; transposeB?: boolean };
        const inputs = args.inputs as Record<string, tf.TensorInfo>;
        const before = matMulStats.fallback;
        const out = k.kernelFunc(args);
        calls.push({
          kernel: name,
          transposeA: attrs.transposeA ?? false,
          transposeB: attrs.transposeB ?? false,
          shapes: [inputs['a']?.shape ?? [], inputs['b']?.shape ?? []],
          fellBack: matMulStats.fallback > before,
        });
        return out;
      },
    });
  }
  return {
    calls,
    offPath: () => calls.filter((c) => c.fellBack),
    restore: () => {
      for (const k of wrapped) {
        tf.unregisterKernel(k.kernelName, 'wasm');
        tf.registerKernel(k);
      }
    },
  };
}
