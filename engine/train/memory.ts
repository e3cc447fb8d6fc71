// How much memory a training step's activations need, estimated from the model's shape, so that a batch too large
// for the backend is refused before anything is allocated (tfjs-wasm aborts the whole thread when its heap runs out).
import * as tf from '@tensorflow/tfjs-core';
import * as os from 'node:os';
import { backendReport } from '../backend.js';
import { digptGeometry, type DigptConfig, type VitConfig } from '../config.js';

/**
 * Floats one sample keeps for the backward pass in one transformer block of `tokens` tokens: per token the block's
 * input, LayerNorm outputs, q/k/v, attention and projection outputs and residual sums, and the MLP hidden before and
 * after GELU, about (9 + 2 * mlp_ratio) * width; plus the attention scores and probabilities, 2 * heads * tokens.
 * A decoder block's cross-attention to `memory` tokens adds its q, output and LayerNorm (3 * width per token), the
 * memory's keys and values (3 * width per memory token) and its scores and probabilities.
 */
export function blockFloats(
  tokens: number,
  width: number,
  heads: number,
  mlpRatio: number,
  memory = 0,
): number {
  const self = tokens * ((9 + 2 * mlpRatio) * width + 2 * heads * tokens);
  const cross = memory > 0 ? tokens * (3 * width + 2 * heads * memory) + memory * 3 * width : 0;
  return self + cross;
}

/**
 * What the heap really takes per counted float: gradients of the activations, temporaries of the backward pass
 * and the allocator's slack. Measured on wasm (heap growth per sample of a pretraining step): 2.9x the count for
 * digpt-micro-32, 2.75x for digpt-tiny-32; 3 is an upper bound of both.
 */
export const ACTIVATION_OVERHEAD = 3;

/** Activation floats per sample of one pretraining step of `objective` (before ACTIVATION_OVERHEAD). */
export function pretrainFloatsPerSample(c: DigptConfig, objective: string): number {
  const g = digptGeometry(c);
  const patches = g.grid * g.grid;
  const input = c.img_size * c.img_size * 3;
  const targets = (c.teacher_grid * c.teacher_grid + 1) * c.teacher_dim * 2;
  const enc = (tokens: number): number =>
    c.depth * blockFloats(tokens, c.embed_dim, c.num_heads, c.mlp_ratio);
  const dec = (tokens: number, memory: number): number =>
    c.dec_depth * blockFloats(tokens, c.dec_dim, c.dec_heads, c.mlp_ratio, memory);
  switch (objective) {
    case 'kd':
      // the encoder on every patch, a LayerNorm + Linear head per token
      return input + targets + enc(patches + 1) + (patches + 1) * (c.embed_dim + c.teacher_dim);
    case 'mae': {
      const visible = Math.floor(patches / 4) + 1;
      return (
        input +
        targets +
        enc(visible) +
        c.dec_depth * blockFloats(patches + 1, c.dec_dim, c.dec_heads, c.mlp_ratio)
      );
    }
    default: {
      // the encoder on the K-1 visible clusters and cls; each decoder reads the taps as its memory
      const tokens = g.n + 1;
      const decoders = objective === 'digpt' ? 2 : 1;
      const taps = tokens * (c.taps.length * c.embed_dim + c.dec_depth * c.dec_dim);
      return input + targets + enc(tokens) + decoders * (taps + dec(tokens, tokens));
    }
  }
}

/** Activation floats per sample of one classifier (fine-tuning) step, before ACTIVATION_OVERHEAD. */
export function classifierFloatsPerSample(c: VitConfig): number {
  const tokens = (c.img_size / c.patch_size) ** 2 + 1;
  return c.img_size * c.img_size * 3 + c.depth * blockFloats(tokens, c.embed_dim, c.num_heads, c.mlp_ratio);
}

/**
 * The largest single tensor one sample adds to a transformer block's step, in floats: the MLP hidden layer
 * (tokens x mlp_ratio x width), the packed q/k/v (tokens x 3 x width) or the attention scores (heads x tokens x the
 * tokens attended to: itself, or `memory` for a cross-attention). A step's tensors hold batch x this.
 */
export function blockLargest(
  tokens: number,
  width: number,
  heads: number,
  mlpRatio: number,
  memory = 0,
): number {
  return Math.max(tokens * mlpRatio * width, tokens * 3 * width, heads * tokens * Math.max(tokens, memory));
}

/** The largest tensor per sample of a pretraining step of `objective` (blockLargest of its blocks; the inputs). */
export function pretrainLargestPerSample(c: DigptConfig, objective: string): number {
  const g = digptGeometry(c);
  const patches = g.grid * g.grid;
  const inputs = Math.max(c.img_size * c.img_size * 3, (c.teacher_grid * c.teacher_grid + 1) * c.teacher_dim);
  const enc = (t: number): number => blockLargest(t, c.embed_dim, c.num_heads, c.mlp_ratio);
  const dec = (t: number, memory: number): number =>
    blockLargest(t, c.dec_dim, c.dec_heads, c.mlp_ratio, memory);
  switch (objective) {
    case 'kd':
      return Math.max(inputs, enc(patches + 1));
    case 'mae':
      return Math.max(inputs, enc(Math.floor(patches / 4) + 1), dec(patches + 1, 0));
    default:
      return Math.max(inputs, enc(g.n + 1), dec(g.n + 1, g.n + 1));
  }
}

/** The largest tensor per sample of a classifier (fine-tuning) step. */
export function classifierLargestPerSample(c: VitConfig): number {
  const tokens = (c.img_size / c.patch_size) ** 2 + 1;
  return Math.max(c.img_size * c.img_size * 3, blockLargest(tokens, c.embed_dim, c.num_heads, c.mlp_ratio));
}

/** Floats per sample of a frozen transformer's forward pass kept until its tf.tidy ends (a teacher). */
export function forwardFloatsPerSample(o: {
  resolution: number;
  tokens: number;
  width: number;
  depth: number;
  heads: number;
  mlpRatio: number;
}): number {
  return o.resolution * o.resolution * 3 + o.depth * blockFloats(o.tokens, o.width, o.heads, o.mlpRatio);
}

const GiB = 2 ** 30;

/**
 * The memory a step may take on a backend. On wasm 2.5 GiB of tfjs-wasm's heap (one heap per training thread): the
 * heap may grow to 4 GiB, but here a digpt-tiny-32 step aborted once it needed about 2.8 GiB (batch 128; batch 120,
 * 2.7 GiB, ran), so what a step may take stays under that. On cpu and tensorflow (CPU) three quarters of the
 * machine's memory. Unknown on a GPU (undefined: no check).
 */
export function activationLimit(backend: string): number | undefined {
  if (backend === 'wasm') return 2.5 * GiB;
  if (backend === 'cpu' || backend === 'tensorflow') return 0.75 * os.totalmem();
  return undefined;
}

/** The backend this thread runs ('tensorflow-gpu' told apart from tensorflow on the CPU). */
export function currentBackend(): string {
  try {
    return backendReport().name;
  } catch {
    return tf.getBackend();
  }
}

/** A step of this batch would not fit: refused before anything is allocated. */
export class BatchTooLargeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BatchTooLargeError';
  }
}

export interface StepMemory {
  /** Samples per micro-batch. */
  readonly batch: number;
  /** Trained model's activation floats per sample (pretrainFloatsPerSample or classifierFloatsPerSample). */
  readonly studentFloats: number;
  /** Frozen teacher's forward floats per sample (0 when there is none). */
  readonly teacherFloats?: number;
  /** Trainable parameters: weights, gradients and two AdamW moments live beside the activations. */
  readonly params: number;
  /** 2: a replica thread with its own heap takes half of every micro-batch (the teacher stays here). */
  readonly workers?: number;
  /** Floats of the step's largest single tensor per sample (pretrainLargestPerSample...): checked on a GPU. */
  readonly largestFloats?: number;
}

/** What a GPU can hold in one tensor: the adapter's maxStorageBufferBindingSize, and the adapter in words. */
export interface BindingLimit {
  readonly bytes: number;
  readonly adapter: string;
}

/** On webgpu, the adapter's binding limit (a tensor is one storage buffer bound to a kernel); else undefined. */
export function currentBindingLimit(): BindingLimit | undefined {
  try {
    const a = backendReport().adapter;
    if (!a) return undefined;
    const name = [a.vendor, a.architecture].filter((s) => s !== '').join(' ') || 'the GPU';
    return { bytes: a.maxStorageBufferBindingSize, adapter: name };
  } catch {
    return undefined;
  }
}

/** Bytes the busiest heap needs for one micro-batch. */
export function stepBytes(m: StepMemory): number {
  const here = (m.workers ?? 1) > 1 ? Math.ceil(m.batch / 2) : m.batch;
  const floats =
    ACTIVATION_OVERHEAD * here * m.studentFloats + m.batch * (m.teacherFloats ?? 0) + 4 * m.params;
  return 4 * floats;
}

/**
 * Refuses a micro-batch whose step would not fit in `backend`'s memory, naming the setting and the limit:
 * "--batch 4096 needs about 18.6 GiB of activations on wasm; the limit is 2.5 GiB; use --batch <= 550 (with
 * --accum for the same effective batch)". `setting` is how the user names the batch (a flag, or a config field).
 */
export function checkStepMemory(
  m: StepMemory,
  backend: string,
  setting = '--batch',
  binding: BindingLimit | undefined = backend === 'webgpu' ? currentBindingLimit() : undefined,
): void {
  if (binding && m.largestFloats !== undefined) checkBinding(m.batch, m.largestFloats, binding, setting);
  const limit = activationLimit(backend);
  if (limit === undefined || stepBytes(m) <= limit) return;
  let lo = 0;
  let hi = m.batch;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (stepBytes({ ...m, batch: mid }) <= limit) lo = mid;
    else hi = mid - 1;
  }
  const gib = (b: number): string => `${(b / GiB).toFixed(1)} GiB`;
  const per = (m.workers ?? 1) > 1 ? ' per training thread' : '';
  const advice =
    lo >= 1
      ? `use ${setting} <= ${lo} (with --accum for the same effective batch)`
      : 'even one sample does not fit: use a smaller model or image size';
  throw new BatchTooLargeError(
    `${setting} ${m.batch} needs about ${gib(stepBytes(m))} of activations${per} on ${backend}; the limit is ` +
      `${gib(limit)}; ${advice}`,
  );
}

/**
 * Refuses a micro-batch whose largest tensor would not fit in one storage buffer binding of the GPU (WebGPU fails
 * inside a kernel otherwise): "--batch 4096: its largest tensor needs 3.0 GiB; google swiftshader binds at most
 * 1.0 GiB per buffer (maxStorageBufferBindingSize); use --batch <= 1365 (with --accum for the same effective batch)".
 */
export function checkBinding(
  batch: number,
  perSample: number,
  limit: BindingLimit,
  setting = '--batch',
): void {
  const bytes = 4 * batch * perSample;
  if (bytes <= limit.bytes) return;
  const most = Math.floor(limit.bytes / (4 * perSample));
  const gib = (b: number): string => `${(b / GiB).toFixed(1)} GiB`;
  throw new BatchTooLargeError(
    `${setting} ${batch}: its largest tensor needs ${gib(bytes)}; ${limit.adapter} binds at most ` +
      `${gib(limit.bytes)} per buffer (maxStorageBufferBindingSize); ` +
      (most >= 1
        ? `use ${setting} <= ${most} (with --accum for the same effective batch)`
        : 'even one sample does not fit: use a smaller model or image size'),
  );
}

/**
 * tfjs-webgpu keeps every GPU buffer it frees for reuse, by size, and never gives one back: between phases whose
 * shapes differ (training steps, an evaluation) the pool would hold both. This destroys the free buffers (those in
 * use stay); nothing on other backends. Returns the bytes released.
 */
export function releaseGpuPool(): number {
  if (tf.getBackend() !== 'webgpu') return 0;
  const bm = (
    tf.backend() as unknown as {
      bufferManager?: {
        freeBuffers?: Map<string, { size: number; destroy(): void }[]>;
        numFreeBuffers?: number;
        numBytesAllocated?: number;
      };
    }
  ).bufferManager;
  if (!bm?.freeBuffers) return 0;
  let bytes = 0;
  // the keys stay: tfjs-webgpu's releaseBuffer treats an empty map as a disposed manager
  for (const list of bm.freeBuffers.values()) {
    for (const b of list) {
      bytes += b.size;
      b.destroy();
    }
    if (bm.numFreeBuffers !== undefined) bm.numFreeBuffers -= list.length;
    list.length = 0;
  }
  if (bm.numBytesAllocated !== undefined) bm.numBytesAllocated -= bytes;
  return bytes;
}

/**
 * A scalar that is 0 when every value of `x` is finite: x * 0 sums to 0 unless some entry is Inf or NaN (one cheap
 * reduction); kept, for the caller to read with other numbers (a step's guards) or through allFinite.
 */
export function finiteGuard(x: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.sum(tf.mul(x, 0)));
}

/** True when every value of `x` is finite (finiteGuard, read now). */
export async function allFinite(x: tf.Tensor): Promise<boolean> {
  const s = finiteGuard(x);
  const v = (await s.data())[0] as number;
  s.dispose();
  return v === 0;
}
