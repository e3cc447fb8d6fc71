// The ViT classifier in timm's names: fine-tuning, linear probing and k-NN start from a pretrained D-iGPT encoder.
import * as tf from '@tensorflow/tfjs-core';
import type { VitConfig } from '../config.js';
import type { Rng } from '../rng.js';
import { blockSpecs, dense, norm, patchify, vitBlock } from './blocks.js';
import { sincos2d } from './geometry.js';
import { linearSpecs, normSpecs, ParamSet, plainSpec, spec, type ParamSpec } from './params.js';

type T2 = tf.Tensor2D;

export function vitSpecs(c: VitConfig): ParamSpec[] {
  const C = c.embed_dim;
  const g = c.img_size / c.patch_size;
  const s: ParamSpec[] = [
    spec('patch_embed.proj.weight', [C, 3, c.patch_size, c.patch_size], { kind: 'conv' }, { kind: 'xavier' }),
    plainSpec('patch_embed.proj.bias', [C], { kind: 'zeros' }),
    plainSpec('cls_token', [1, 1, C], { kind: 'normal', std: 0.02 }),
    plainSpec('pos_embed', [1, 1 + g * g, C], { kind: 'zeros' }),
  ];
  for (let i = 0; i < c.depth; i++) s.push(...blockSpecs(`blocks.${i}`, C, c.mlp_ratio));
  s.push(...normSpecs(c.global_pool ? 'fc_norm' : 'norm', C));
  s.push(...linearSpecs('head', C, c.num_classes));
  return s;
}

/** Options of a training forward pass. */
export interface VitForwardOptions {
  /** Stochastic depth rate at the last block (linearly increasing from 0), as timm's drop_path_rate. */
  readonly dropPath?: number;
  /** Generator for drop path; required when dropPath > 0. */
  readonly rng?: Rng;
}

export class VitClassifier {
  readonly config: VitConfig;
  readonly params: ParamSet;

  constructor(config: VitConfig, seed = 0) {
    this.config = config;
    this.params = new ParamSet(vitSpecs(config), seed);
    // a fresh classifier starts from the fixed sin-cos table, as MAE/D-iGPT fine-tuning does
    const g = config.img_size / config.patch_size;
    this.params.assign('pos_embed', sincos2d(config.embed_dim, g, true), [1, 1 + g * g, config.embed_dim]);
  }

  /** Tokens after the blocks, [B*(1+G*G), C], cls first. */
  private encode(images: tf.Tensor4D, opts: VitForwardOptions): T2 {
    const c = this.config;
    const ps = this.params;
    const b = images.shape[0];
    const g2 = (c.img_size / c.patch_size) ** 2;
    const C = c.embed_dim;
    const x = tf.reshape(dense(ps, 'patch_embed.proj', patchify(images, c.patch_size)), [b, g2, C]);
    const cls = tf.add(tf.zeros([b, 1, C]), ps.get('cls_token'));
    let h = tf.reshape(tf.add(tf.concat([cls, x], 1), ps.get('pos_embed')), [b * (1 + g2), C]) as T2;
    const rate = opts.dropPath ?? 0;
    for (let i = 0; i < c.depth; i++) {
      const keep =
        rate > 0 ? this.keepMask(b, 1 + g2, (rate * i) / Math.max(1, c.depth - 1), opts.rng) : null;
      h = vitBlock(ps, `blocks.${i}`, h, b, c.num_heads, null, c.ln_eps, keep);
    }
    return h;
  }

  /** Per-sample residual scale for drop path: 0 or 1/(1-p), repeated over the sample's rows. */
  private keepMask(b: number, rows: number, p: number, rng: Rng | undefined): T2 | null {
    if (p <= 0) return null;
    if (!rng) throw new Error('drop path needs a random generator');
    const v = new Float32Array(b * rows);
    for (let s = 0; s < b; s++) {
      const k = rng.uniform() >= p ? 1 / (1 - p) : 0;
      v.fill(k, s * rows, (s + 1) * rows);
    }
    return tf.tensor2d(v, [b * rows, 1]);
  }

  /** Pooled, normalised features [B, C]: mean of patch tokens + fc_norm, or norm of the cls token. */
  features(images: tf.Tensor4D, opts: VitForwardOptions = {}): T2 {
    const c = this.config;
    const b = images.shape[0];
    const g2 = (c.img_size / c.patch_size) ** 2;
    const h = tf.reshape(this.encode(images, opts), [b, 1 + g2, c.embed_dim]);
    if (c.global_pool) {
      const pooled = tf.mean(tf.slice(h, [0, 1, 0], [b, g2, c.embed_dim]), 1) as T2;
      return norm(this.params, 'fc_norm', pooled, c.ln_eps);
    }
    const cls = tf.reshape(tf.slice(h, [0, 0, 0], [b, 1, c.embed_dim]), [b, c.embed_dim]) as T2;
    return norm(this.params, 'norm', cls, c.ln_eps);
  }

  /**
   * Every token after the blocks, normalised by the final norm (fc_norm or norm), cls first: [B, 1+G*G, C]. This is
   * what a classifier gives as a teacher.
   */
  tokens(images: tf.Tensor4D): tf.Tensor3D {
    const c = this.config;
    const b = images.shape[0];
    const g2 = (c.img_size / c.patch_size) ** 2;
    const h = norm(this.params, c.global_pool ? 'fc_norm' : 'norm', this.encode(images, {}), c.ln_eps);
    return tf.reshape(h, [b, 1 + g2, c.embed_dim]);
  }

  /** Logits [B, num_classes]. */
  forward(images: tf.Tensor4D, opts: VitForwardOptions = {}): T2 {
    return dense(this.params, 'head', this.features(images, opts));
  }

  dispose(): void {
    this.params.dispose();
  }
}
