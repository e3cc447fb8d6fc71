// Counts what a training step costs the host beyond its arithmetic: kernels launched and reads back from the backend.
// On webgpu a kernel is one GPU dispatch (runWebGPUProgram) and a read one GPU-to-host copy that waits (getBufferData);
// elsewhere a kernel is one tfjs kernel run (the engine's runKernelFunc) and a read one Tensor.data or dataSync.
import * as tf from '@tensorflow/tfjs-core';

export interface StepCounters {
  /** Kernels (webgpu: dispatches) since the counters started or were reset. */
  readonly kernels: number;
  /** Reads from the device (webgpu: buffer map-and-copy; elsewhere backend reads, sync or not). */
  readonly reads: number;
  reset(): void;
  /** Puts the wrapped methods back. */
  stop(): void;
}

type Method = (...args: unknown[]) => unknown;

/** Wraps `obj[name]` (an own property shadowing its prototype's) to call `count` first; returns the undo. */
function wrap(obj: object, name: string, count: () => void): () => void {
  const o = obj as Record<string, unknown>;
  const orig = o[name];
  if (typeof orig !== 'function') return () => undefined;
  const had = Object.prototype.hasOwnProperty.call(o, name);
  o[name] = function (this: unknown, ...args: unknown[]) {
    count();
    return (orig as Method).apply(this, args);
  };
  return () => {
    if (had) o[name] = orig;
    else delete o[name];
  };
}

/** Starts counting on the active backend. */
export function countSteps(): StepCounters {
  let kernels = 0;
  let reads = 0;
  const backend = tf.backend() as object;
  const undo: (() => void)[] = [];
  if (tf.getBackend() === 'webgpu') {
    undo.push(wrap(backend, 'runWebGPUProgram', () => kernels++));
    undo.push(wrap(backend, 'getBufferData', () => reads++));
  } else {
    undo.push(wrap(tf.engine(), 'runKernelFunc', () => kernels++));
    // the engine's reads (Tensor.data and dataSync), not the backend's (tfjs-wasm's read calls its readSync)
    undo.push(wrap(tf.engine(), 'read', () => reads++));
    undo.push(wrap(tf.engine(), 'readSync', () => reads++));
  }
  return {
    get kernels() {
      return kernels;
    },
    get reads() {
      return reads;
    },
    reset() {
      kernels = 0;
      reads = 0;
    },
    stop() {
      for (const u of undo.reverse()) u();
    },
  };
}
