// Faster replacements for tfjs-backend-wasm's Slice, SplitV and Unpack kernels (same results, same attributes).
//
// Why: tfjs-backend-wasm 4.22's slice reads its input with `readSync`, which copies the WHOLE input out of the wasm
// heap into a fresh JS buffer on every call. Splitting or unstacking a tensor into n pieces therefore costs n full
// copies plus n garbage buffers (unstacking the attention scores of one D-iGPT step took seconds and pushed the RSS
// past 2.5 GB). These versions copy only the selected elements, straight from a view of the heap.
import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

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

const REPLACEMENTS: Record<string, tf.KernelFunc> = {
  Slice: slice as tf.KernelFunc,
  SplitV: splitV as tf.KernelFunc,
  Unpack: unpack as tf.KernelFunc,
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
}

/** Puts tfjs's own kernels back (for comparisons). */
export function restoreWasmKernels(): void {
  for (const [name, k] of originals) {
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel(k);
  }
  originals.clear();
}
