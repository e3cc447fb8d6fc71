// Faster replacements for some tfjs-backend-wasm 4.22 kernels (same results, same attributes).
//
// - Slice, SplitV, Unpack: tfjs's slice reads its input with `readSync`, which copies the WHOLE input out of the wasm
//   heap into a fresh JS buffer on every call, so splitting or unstacking a tensor into n pieces cost n full copies
//   (unstacking the attention scores took seconds per D-iGPT step). These copy only the selected elements, straight
//   from a view of the heap.
// - Identity, and Cast to the same dtype: tfjs copies the data; tensors are immutable, so these share it by reference
//   count, as the wasm Reshape already does. tf.customGrad clones every tensor its forward saves for the backward,
//   so this halves the memory of saved activations and removes hundreds of copies per step.
// - BatchMatMul and _FusedMatMul (bias, no activation): the engine's GEMM (wasm_gemm.ts), for every transpose flag
//   and batch shape that tfjs-wasm's own kernel takes with equal batch dimensions or one side unbatched; other cases
//   (activations, general broadcasting) fall back to tfjs's kernel and are counted in `matMulStats`.
// - Sum and Mean over the leading or the trailing axes (bias and LayerNorm gradients, LayerNorm statistics): one
//   pass in the engine's wasm module; tfjs-wasm transposes for the leading axes and reduces with a scalar loop.
// - GatherV2 of whole rows (slices of at least 16 elements): one typed-array copy per row instead of tfjs's
//   per-element gather.
import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { gemmAdamW, gemmGelu, gemmGeluGrad, gemmMatMul, gemmReduce, type AdamWScalars } from './wasm_gemm.js';

type Heap = Float32Array | Int32Array | Uint8Array;

const originals = new Map<string, tf.KernelConfig>();

/** Copies the box `begin`/`size` of x (row-major `shape`) into out: one contiguous run per index of the outer axes. */
function copyBox(
  x: Heap,
  shape: readonly number[],
  begin: readonly number[],
  size: readonly number[],
  out: Heap,
): void {
  const rank = shape.length;
  // trailing axes taken whole merge into one run with the last partial axis
  let d = rank - 1;
  let inner = 1;
  while (d >= 0 && begin[d] === 0 && size[d] === shape[d]) {
    inner *= shape[d] as number;
    d--;
  }
  if (d < 0) {
    out.set(x.subarray(0, inner));
    return;
  }
  const run = (size[d] as number) * inner;
  const strides = new Array<number>(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) strides[i] = (strides[i + 1] as number) * (shape[i + 1] as number);
  const base = begin.reduce((s, b, i) => s + b * (strides[i] as number), 0);
  // odometer over axes 0..d-1
  const idx = new Array<number>(d).fill(0);
  let outOff = 0;
  for (;;) {
    let off = base;
    for (let i = 0; i < d; i++) off += (idx[i] as number) * (strides[i] as number);
    out.set(x.subarray(off, off + run), outOff);
    outOff += run;
    let i = d - 1;
    while (i >= 0) {
      idx[i] = (idx[i] as number) + 1;
      if ((idx[i] as number) < (size[i] as number)) break;
      idx[i] = 0;
      i--;
    }
    if (i < 0) return;
  }
}

function sliceInfo(backend: BackendWasm, x: tf.TensorInfo, begin: number[], size: number[]): tf.TensorInfo {
  // the output is allocated first: a heap growth would detach a view taken earlier
  const out = backend.makeOutput(size, x.dtype);
  if (tf.util.sizeFromShape(size) === 0) return out;
  copyBox(backend.typedArrayFromHeap(x), x.shape, begin, size, backend.typedArrayFromHeap(out));
  return out;
}

function slice(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const x = args.inputs['x'] as tf.TensorInfo;
  if (x.dtype === 'string')
    return (originals.get('Slice') as tf.KernelConfig).kernelFunc(args as never) as tf.TensorInfo;
  const { begin, size } = args.attrs as unknown as { begin: number | number[]; size: number | number[] };
  const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size) as [number[], number[]];
  return sliceInfo(args.backend as BackendWasm, x, b, s);
}

function splitV(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo[] {
  const x = args.inputs['x'] as tf.TensorInfo;
  if (x.dtype === 'string')
    return (originals.get('SplitV') as tf.KernelConfig).kernelFunc(args as never) as tf.TensorInfo[];
  const { numOrSizeSplits, axis } = args.attrs as unknown as {
    numOrSizeSplits: number | number[];
    axis: number;
  };
  const ax = tf.util.parseAxisParam(axis, x.shape)[0] as number;
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
  const begin = new Array<number>(x.shape.length).fill(0);
  return sizes.map((n) => {
    const size = [...x.shape];
    size[ax] = n;
    const out = sliceInfo(args.backend as BackendWasm, x, [...begin], size);
    begin[ax] = (begin[ax] as number) + n;
    return out;
  });
}

function unpack(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo[] {
  const x = args.inputs['value'] as tf.TensorInfo;
  if (x.dtype === 'string')
    return (originals.get('Unpack') as tf.KernelConfig).kernelFunc(args as never) as tf.TensorInfo[];
  let axis = (args.attrs as unknown as { axis: number }).axis;
  if (axis < 0) axis += x.shape.length;
  const outShape = x.shape.filter((_, i) => i !== axis);
  const size = [...x.shape];
  size[axis] = 1;
  return Array.from({ length: x.shape[axis] as number }, (_, i) => {
    const begin = new Array<number>(x.shape.length).fill(0);
    begin[axis] = i;
    const out = sliceInfo(args.backend as BackendWasm, x, begin, size);
    return { ...out, shape: outShape };
  });
}

type Args = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

/** The input itself, one more reference to its data (tfjs-backend-cpu's identity does the same). */
function share(backend: BackendWasm, x: tf.TensorInfo): tf.TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

function identity(args: Args): tf.TensorInfo {
  const x = args.inputs['x'] as tf.TensorInfo;
  if (x.dtype === 'string')
    return (originals.get('Identity') as tf.KernelConfig).kernelFunc(args as never) as tf.TensorInfo;
  return share(args.backend as BackendWasm, x);
}

function cast(args: Args): tf.TensorInfo {
  const x = args.inputs['x'] as tf.TensorInfo;
  const dtype = (args.attrs as unknown as { dtype: tf.DataType }).dtype;
  if (x.dtype === dtype && dtype !== 'string') return share(args.backend as BackendWasm, x);
  return (originals.get('Cast') as tf.KernelConfig).kernelFunc(args as never) as tf.TensorInfo;
}

function gatherV2(args: Args): tf.TensorInfo {
  const x = args.inputs['x'] as tf.TensorInfo;
  const indices = args.inputs['indices'] as tf.TensorInfo;
  const { axis, batchDims } = args.attrs as unknown as { axis: number; batchDims: number };
  const ax = tf.util.parseAxisParam(axis, x.shape)[0] as number;
  const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(
    x as tf.Tensor,
    indices as tf.Tensor,
    ax,
    batchDims,
  );
  if (info.sliceSize < 16 || x.dtype === 'string' || indices.dtype !== 'int32')
    return (originals.get('GatherV2') as tf.KernelConfig).kernelFunc(args as never) as tf.TensorInfo;
  const backend = args.backend as BackendWasm;
  const out = backend.makeOutput(info.outputShape, x.dtype);
  const n = tf.util.sizeFromShape(indices.shape) / info.batchSize;
  if (tf.util.sizeFromShape(info.outputShape) === 0) return out;
  const xv = backend.typedArrayFromHeap(x);
  const iv = backend.typedArrayFromHeap(indices) as Int32Array;
  const ov = backend.typedArrayFromHeap(out);
  const { batchSize, outerSize, dimSize, sliceSize } = info;
  let o = 0;
  for (let b = 0; b < batchSize; b++)
    for (let r = 0; r < outerSize; r++) {
      const base = (b * outerSize + r) * dimSize;
      for (let i = 0; i < n; i++) {
        const idx = iv[b * n + i] as number;
        if (!(idx >= 0 && idx < dimSize)) {
          backend.disposeData(out.dataId);
          throw new Error(`GatherV2: the index value ${idx} is not in [0, ${dimSize - 1}]`);
        }
        const from = (base + idx) * sliceSize;
        ov.set(xv.subarray(from, from + sliceSize), o);
        o += sliceSize;
      }
    }
  return out;
}

/** How many products ran on the engine's GEMM, and how many fell back to tfjs-wasm's own kernels (uncovered cases). */
export const matMulStats = { gemm: 0, fallback: 0 };

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function batchMatMul(args: KernelArgs): tf.TensorInfo {
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
  const out = gemmMatMul(args.backend as never, a, b, transposeA, transposeB, null) as tf.TensorInfo | null;
  if (out) {
    matMulStats.gemm++;
    return out;
  }
  matMulStats.fallback++;
  return (originals.get('BatchMatMul') as tf.KernelConfig).kernelFunc(args as never) as tf.TensorInfo;
}

function fusedMatMul(args: KernelArgs): tf.TensorInfo {
  const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
  const { transposeA, transposeB, activation } = args.attrs as {
    transposeA: boolean;
    transposeB: boolean;
    activation?: string;
  };
  const plain = (activation === undefined || activation === 'linear') && !preluActivationWeights;
  const out = plain
    ? (gemmMatMul(
        args.backend as never,
        a as tf.TensorInfo,
        b as tf.TensorInfo,
        transposeA,
        transposeB,
        bias ?? null,
      ) as tf.TensorInfo | null)
    : null;
  if (out) {
    matMulStats.gemm++;
    return out;
  }
  matMulStats.fallback++;
  return (originals.get('_FusedMatMul') as tf.KernelConfig).kernelFunc(args as never) as tf.TensorInfo;
}

const REPLACEMENTS: Record<string, tf.KernelFunc> = {
  Identity: identity as tf.KernelFunc,
  Cast: cast as tf.KernelFunc,
  GatherV2: gatherV2 as tf.KernelFunc,
  Slice: slice as tf.KernelFunc,
  SplitV: splitV as tf.KernelFunc,
  Unpack: unpack as tf.KernelFunc,
  BatchMatMul: batchMatMul as tf.KernelFunc,
  Sum: reduction('Sum') as tf.KernelFunc,
  Mean: reduction('Mean') as tf.KernelFunc,
  _FusedMatMul: fusedMatMul as tf.KernelFunc,
};

function reduction(name: 'Sum' | 'Mean'): (args: KernelArgs) => tf.TensorInfo {
  return (args) => {
    const x = args.inputs['x'] as tf.TensorInfo;
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    const axes = tf.util.parseAxisParam(axis, x.shape);
    const out = gemmReduce(args.backend as never, x, axes, keepDims, name === 'Mean') as tf.TensorInfo | null;
    return out ?? ((originals.get(name) as tf.KernelConfig).kernelFunc(args as never) as tf.TensorInfo);
  };
}

/** Name of the engine's fused AdamW kernel (wasm only): inputs p, g, m, v; attributes AdamWScalars; outputs p, m, v. */
export const ADAMW_KERNEL = 'DigptAdamW';

function adamW(args: KernelArgs): tf.TensorInfo[] {
  const { p, g, m, v } = args.inputs as Record<string, tf.TensorInfo>;
  const out = gemmAdamW(
    args.backend as never,
    p as tf.TensorInfo,
    g as tf.TensorInfo,
    m as tf.TensorInfo,
    v as tf.TensorInfo,
    args.attrs as unknown as AdamWScalars,
  );
  if (!out) throw new Error(`${ADAMW_KERNEL}: p, g, m and v must be float32 tensors of one size`);
  return out as tf.TensorInfo[];
}

/** The engine's GELU kernels (wasm only): GELU_KERNEL x -> [y, cdf]; GELU_GRAD_KERNEL (dy, x, cdf) -> dx. */
export const GELU_KERNEL = 'DigptGelu';
export const GELU_GRAD_KERNEL = 'DigptGeluGrad';

function floats(...ts: (tf.TensorInfo | undefined)[]): tf.TensorInfo[] {
  for (const t of ts) if (!t || t.dtype !== 'float32') throw new Error('GELU kernels take float32 tensors');
  return ts as tf.TensorInfo[];
}

const ENGINE_KERNELS: Record<string, tf.KernelFunc> = {
  [ADAMW_KERNEL]: adamW as tf.KernelFunc,
  [GELU_KERNEL]: ((args: KernelArgs) =>
    gemmGelu(args.backend as never, ...(floats(args.inputs['x']) as [tf.TensorInfo]))) as tf.KernelFunc,
  [GELU_GRAD_KERNEL]: ((args: KernelArgs) => {
    const [dy, x, cdf] = floats(args.inputs['dy'], args.inputs['x'], args.inputs['cdf']) as [
      tf.TensorInfo,
      tf.TensorInfo,
      tf.TensorInfo,
    ];
    return gemmGeluGrad(args.backend as never, dy, x, cdf);
  }) as tf.KernelFunc,
};

/** Registers the replacements on the wasm backend (once; a no-op when they are in place or wasm is not loaded). */
export function useFastWasmKernels(): void {
  if (originals.size > 0) return;
  for (const [name, kernelFunc] of Object.entries(REPLACEMENTS)) {
    const k = tf.getKernel(name, 'wasm');
    if (!k) continue;
    originals.set(name, k);
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ ...k, kernelFunc });
  }
  if (!tf.findBackend('wasm')) return;
  for (const [kernelName, kernelFunc] of Object.entries(ENGINE_KERNELS))
    if (!tf.getKernel(kernelName, 'wasm')) tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
}

/** Puts tfjs's own kernels back (for comparisons). */
export function restoreWasmKernels(): void {
  for (const [name, k] of originals) {
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel(k);
  }
  originals.clear();
}
