// Records every matMul the wasm backend runs, so tests can assert that all stay on XNNPACK's fast path.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';

export interface MatMulCall {
  readonly kernel: string;
  readonly transposeA: boolean;
  readonly transposeB: boolean;
  readonly shapes: readonly (readonly number[])[];
}

export interface MatMulSpy {
  readonly calls: MatMulCall[];
  /** Calls with a transpose flag or a batch dimension (the scalar-loop path of tfjs-backend-wasm). */
  offPath(): MatMulCall[];
  /** Puts the original kernels back. */
  restore(): void;
}

/** Wraps the wasm BatchMatMul and _FusedMatMul kernels (the wasm backend must be registered). */
export function spyMatMuls(): MatMulSpy {
  const calls: MatMulCall[] = [];
  const originals: tf.KernelConfig[] = [];
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
  return {
    calls,
    offPath: () =>
      calls.filter(
        (c) =>
          c.transposeA ||
          c.transposeB ||
          c.shapes.some((s) => s.length > 3 || (s.length === 3 && s[0] !== 1)),
      ),
    restore: () => {
      for (const k of originals) {
        tf.unregisterKernel(k.kernelName, 'wasm');
        tf.registerKernel(k);
      }
    },
  };
}
