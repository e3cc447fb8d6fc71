// AdamW as PyTorch computes it (decoupled decay, bias-corrected moments), the warm-up + cosine schedule, layer-wise lr decay.
import * as tf from '@tensorflow/tfjs-core';
import { ADAMW_KERNEL } from '../ops/wasm_kernels.js';

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
  private t = 0;

  constructor(params: readonly OptimParam[], options: AdamWOptions = OFFICIAL_ADAMW) {
    this.params = params;
    this.options = options;
    for (const p of params) {
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
      const m = this.m.get(p.name) as tf.Variable;
      const v = this.v.get(p.name) as tf.Variable;
      if (tf.getKernel(ADAMW_KERNEL, tf.getBackend())) {
        // the engine's fused kernel (wasm): the same float32 operations in one pass
        const attrs = {
          beta1,
          beta2,
          bc2Sqrt,
          eps,
          decay: p.decay && weightDecay > 0 ? 1 - plr * weightDecay : 1,
          stepSize: plr / bc1,
        };
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
    const [m, v] = await Promise.all([read(this.m), read(this.v)]);
    return { step, m, v };
  }

  /** Restores a saved state; every parameter's moments must be present with the right size. */
  importState(s: AdamWState): void {
    for (const p of this.params) {
      for (const [label, src, dst] of [
        ['m', s.m, this.m],
        ['v', s.v, this.v],
      ] as const) {
        const data = src.get(p.name);
        const target = dst.get(p.name) as tf.Variable;
        if (!data) throw new Error(`optimizer state has no ${label} for ${p.name}`);
        if (data.length !== target.size)
          throw new Error(
            `optimizer state ${label} of ${p.name} has ${data.length} values, expected ${target.size}`,
          );
        tf.tidy(() => target.assign(tf.tensor(data, target.shape)));
      }
    }
    this.t = s.step;
  }

  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values()]) x.dispose();
    this.m.clear();
    this.v.clear();
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
