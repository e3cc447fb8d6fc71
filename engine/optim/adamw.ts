// AdamW as PyTorch computes it (decoupled decay, bias-corrected moments), the warm-up + cosine schedule, layer-wise lr decay.
import * as tf from '@tensorflow/tfjs-core';
import { ADAMW_KERNEL } from '../ops/wasm_kernels.js';
import { ADAMW_PACKED_KERNEL, onWebGpu } from '../ops/webgpu_kernels.js';

export interface AdamWOptions {
  /** (0.9, 0.95) in the official recipe. */
  readonly beta1: number;
  readonly beta2: number;
  /** 1e-8. */
  readonly eps: number;
  /** 0.05; applied only to parameters whose `decay` is true. */
  readonly weightDecay: number;
}

export const OFFICIAL_ADAMW: AdamWOptions = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.05 };

/** A parameter the optimizer updates. */
export interface OptimParam {
  readonly name: string;
  readonly variable: tf.Variable;
  readonly decay: boolean;
  /** Multiplies the learning rate (layer-wise decay); 1 by default. */
  readonly lrScale?: number;
}

/** Serialisable optimizer state: step count and the two moments per parameter (engine layout). */
export interface AdamWState {
  readonly step: number;
  readonly m: ReadonlyMap<string, Float32Array>;
  readonly v: ReadonlyMap<string, Float32Array>;
}

export class AdamW {
  readonly options: AdamWOptions;
  private readonly params: readonly OptimParam[];
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();
  /**
   * On webgpu, instead of m and v: one tensor [m | v] per parameter (flat, 2n), so that the fused update is two
   * dispatches (ops/webgpu_kernels.ts); the state read and written is the same.
   */
  private readonly mv = new Map<string, tf.Variable>();
  private t = 0;

  constructor(params: readonly OptimParam[], options: AdamWOptions = OFFICIAL_ADAMW) {
    this.params = params;
    this.options = options;
    const packed = onWebGpu();
    for (const p of params) {
      if (packed) {
        this.mv.set(
          p.name,
          tf.tidy(() => tf.variable(tf.zeros([2 * p.variable.size]), false)),
        );
        continue;
      }
      // tidy frees the zeros the variables were made from
      this.m.set(
        p.name,
        tf.tidy(() => tf.variable(tf.zerosLike(p.variable), false)),
      );
      this.v.set(
        p.name,
        tf.tidy(() => tf.variable(tf.zerosLike(p.variable), false)),
      );
    }
  }

  /** Steps taken so far. */
  get step(): number {
    return this.t;
  }

  /**
   * One update with learning rate `lr` (before per-parameter scales). PyTorch's order: p *= 1 - lr*wd (decayed
   * parameters only); m, v updated; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps). A parameter without a gradient
   * is left untouched, as PyTorch skips parameters whose .grad is None.
   */
  apply(grads: ReadonlyMap<string, tf.Tensor> | Readonly<Record<string, tf.Tensor>>, lr: number): void {
    const get = (n: string): tf.Tensor | undefined =>
      grads instanceof Map ? grads.get(n) : (grads as Record<string, tf.Tensor>)[n];
    this.t += 1;
    const { beta1, beta2, eps, weightDecay } = this.options;
    const bc1 = 1 - beta1 ** this.t;
    const bc2Sqrt = Math.sqrt(1 - beta2 ** this.t);
    for (const p of this.params) {
      const g = get(p.name);
      if (!g) continue;
      const plr = lr * (p.lrScale ?? 1);
      // the scalars of the engine's fused kernels (wasm, webgpu): the same float32 operations as below
      const attrs = {
        beta1,
        beta2,
        bc2Sqrt,
        eps,
        decay: p.decay && weightDecay > 0 ? 1 - plr * weightDecay : 1,
        stepSize: plr / bc1,
      };
      const mv = this.mv.get(p.name);
      if (mv) {
        const [w2, mv2] = tf
          .engine()
          .runKernel(
            ADAMW_PACKED_KERNEL,
            { p: p.variable, g, mv },
            attrs as unknown as tf.NamedAttrMap,
          ) as tf.Tensor[];
        mv.assign(mv2 as tf.Tensor);
        p.variable.assign(w2 as tf.Tensor);
        tf.dispose([w2, mv2] as tf.Tensor[]);
        continue;
      }
      const m = this.m.get(p.name) as tf.Variable;
      const v = this.v.get(p.name) as tf.Variable;
      if (tf.getKernel(ADAMW_KERNEL, tf.getBackend())) {
        // the engine's fused kernel (wasm): the same float32 operations in one pass
        const [w2, m2, v2] = tf
          .engine()
          .runKernel(
            ADAMW_KERNEL,
            { p: p.variable, g, m, v },
            attrs as unknown as tf.NamedAttrMap,
          ) as tf.Tensor[];
        m.assign(m2 as tf.Tensor);
        v.assign(v2 as tf.Tensor);
        p.variable.assign(w2 as tf.Tensor);
        tf.dispose([w2, m2, v2] as tf.Tensor[]);
        continue;
      }
      tf.tidy(() => {
        const m2 = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
        const v2 = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
        const denom = tf.add(tf.div(tf.sqrt(v2), bc2Sqrt), eps);
        let w: tf.Tensor = p.variable;
        if (p.decay && weightDecay > 0) w = tf.mul(w, 1 - plr * weightDecay);
        w = tf.sub(w, tf.mul(tf.div(m2, denom), plr / bc1));
        m.assign(m2);
        v.assign(v2);
        p.variable.assign(w);
      });
    }
  }

  /** The state for a checkpoint (engine layout; the caller converts names/layouts if it exports). */
  async exportState(): Promise<AdamWState> {
    const read = async (mm: Map<string, tf.Variable>): Promise<Map<string, Float32Array>> => {
      const data = await Promise.all([...mm.values()].map((x) => x.data()));
      return new Map([...mm.keys()].map((k, i) => [k, data[i] as Float32Array]));
    };
    const step = this.t;
    if (this.mv.size > 0) {
      // every read issued at once, then each [m | v] split in two
      const packed = await read(this.mv);
      const m = new Map<string, Float32Array>();
      const v = new Map<string, Float32Array>();
      for (const [k, data] of packed) {
        m.set(k, data.slice(0, data.length / 2));
        v.set(k, data.slice(data.length / 2));
      }
      return { step, m, v };
    }
    const [m, v] = await Promise.all([read(this.m), read(this.v)]);
    return { step, m, v };
  }

  /** Restores a saved state; every parameter's moments must be present with the right size. */
  importState(s: AdamWState): void {
    for (const p of this.params) {
      const [m, v] = (['m', 'v'] as const).map((label) => {
        const data = s[label].get(p.name);
        if (!data) throw new Error(`optimizer state has no ${label} for ${p.name}`);
        if (data.length !== p.variable.size)
          throw new Error(
            `optimizer state ${label} of ${p.name} has ${data.length} values, expected ${p.variable.size}`,
          );
        return data;
      }) as [Float32Array, Float32Array];
      const mv = this.mv.get(p.name);
      if (mv) {
        const both = new Float32Array(2 * m.length);
        both.set(m);
        both.set(v, m.length);
        tf.tidy(() => mv.assign(tf.tensor(both, mv.shape)));
        continue;
      }
      for (const [data, target] of [
        [m, this.m.get(p.name)],
        [v, this.v.get(p.name)],
      ] as const)
        tf.tidy(() => (target as tf.Variable).assign(tf.tensor(data, (target as tf.Variable).shape)));
    }
    this.t = s.step;
  }

  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values(), ...this.mv.values()]) x.dispose();
    this.m.clear();
    this.v.clear();
    this.mv.clear();
  }
}

/** Linear warm-up then half-cycle cosine to minLr, evaluated per iteration (MAE's adjust_learning_rate, in steps). */
export interface Schedule {
  readonly baseLr: number;
  readonly minLr: number;
  readonly warmupSteps: number;
  readonly totalSteps: number;
}

export function lrAt(s: Schedule, step: number): number {
  if (step < s.warmupSteps) return (s.baseLr * step) / s.warmupSteps;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = Math.min(1, (step - s.warmupSteps) / span);
  return s.minLr + (s.baseLr - s.minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/** The recipe's lr from a base lr per 256 images: blr * effective_batch / 256. */
export function scaledLr(blr: number, effectiveBatch: number): number {
  return (blr * effectiveBatch) / 256;
}

/**
 * Layer id of a ViT parameter for layer-wise lr decay (BEiT/MAE's rule): embeddings 0, blocks.i -> i+1, the rest
 * (final norm, head) depth+1.
 */
export function vitLayerId(name: string, depth: number): number {
  if (name === 'cls_token' || name === 'pos_embed' || name.startsWith('patch_embed.')) return 0;
  const m = /^blocks\.(\d+)\./.exec(name);
  if (m) return Number(m[1]) + 1;
  return depth + 1;
}

/** lr scale decay^(depth + 1 - layer_id). */
export function layerDecayScale(name: string, depth: number, decay: number): number {
  return decay ** (depth + 1 - vitLayerId(name, depth));
}
