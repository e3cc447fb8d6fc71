// The CLIP vision tower used as the frozen teacher: ln_post(all tokens) @ proj, cls first (OpenAI/OpenCLIP semantics).
import * as tf from '@tensorflow/tfjs-core';
import type { ClipConfig } from '../config.js';
import { gelu, layerNorm, linear, quickGelu, selfAttentionCore } from '../ops/nn.js';
import { patchify, w1, w2 } from './blocks.js';
import { linearSpecs, normSpecs, ParamSet, plainSpec, spec, type ParamSpec } from './params.js';

type T2 = tf.Tensor2D;

/** Canonical names are OpenAI's (`visual.*`); see naming.ts for Hugging Face's. */
export function clipSpecs(c: ClipConfig): ParamSpec[] {
  const w = c.width;
  const g = c.resolution / c.patch_size;
  const s: ParamSpec[] = [
    spec('visual.conv1.weight', [w, 3, c.patch_size, c.patch_size], { kind: 'conv' }, { kind: 'xavier' }),
    plainSpec('visual.class_embedding', [w], { kind: 'normal', std: w ** -0.5 }),
    plainSpec('visual.positional_embedding', [1 + g * g, w], { kind: 'normal', std: w ** -0.5 }),
    ...normSpecs('visual.ln_pre', w),
  ];
  for (let i = 0; i < c.layers; i++) {
    const p = `visual.transformer.resblocks.${i}`;
    s.push(
      ...normSpecs(`${p}.ln_1`, w),
      spec(`${p}.attn.in_proj_weight`, [3 * w, w], { kind: 'linear' }, { kind: 'xavier' }),
      plainSpec(`${p}.attn.in_proj_bias`, [3 * w], { kind: 'zeros' }),
      ...linearSpecs(`${p}.attn.out_proj`, w, w),
      ...normSpecs(`${p}.ln_2`, w),
      ...linearSpecs(`${p}.mlp.c_fc`, w, 4 * w),
      ...linearSpecs(`${p}.mlp.c_proj`, 4 * w, w),
    );
  }
  s.push(
    ...normSpecs('visual.ln_post', w),
    plainSpec('visual.proj', [w, c.output_dim], { kind: 'normal', std: w ** -0.5 }),
  );
  return s;
}

/** CLIP image normalisation (mean, std per RGB channel). */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

export class ClipVision {
  readonly config: ClipConfig;
  readonly params: ParamSet;

  constructor(config: ClipConfig, seed = 0) {
    this.config = config;
    this.params = new ParamSet(clipSpecs(config), seed);
  }

  /** Grid of output tokens per side. */
  get grid(): number {
    return this.config.resolution / this.config.patch_size;
  }

  /**
   * images NHWC [B, R, R, 3], normalised with CLIP's mean/std -> tokens [B, 1 + g*g, output_dim], cls first.
   * Inference only (the teacher is frozen): blocks free their activations as they go, so no gradient flows through.
   */
  forward(images: tf.Tensor4D): tf.Tensor3D {
    const c = this.config;
    const ps = this.params;
    const b = images.shape[0];
    if (images.shape[1] !== c.resolution || images.shape[2] !== c.resolution) {
      throw new Error(
        `teacher input is ${images.shape[1]}x${images.shape[2]} px, the CLIP tower takes ${c.resolution}x${c.resolution}`,
      );
    }
    const g2 = this.grid * this.grid;
    const w = c.width;
    const act = c.activation === 'quick_gelu' ? quickGelu : gelu;
    const patches = linear(patchify(images, c.patch_size), w2(ps, 'visual.conv1.weight')); // [B*g*g, w], no bias
    const cls = tf.add(tf.zeros([b, 1, w]), tf.reshape(ps.get('visual.class_embedding'), [1, 1, w]));
    let x = tf.concat([cls, tf.reshape(patches, [b, g2, w])], 1); // cls FIRST
    x = tf.add(x, ps.get('visual.positional_embedding'));
    let h = layerNorm(
      tf.reshape(x, [b * (1 + g2), w]) as T2,
      w1(ps, 'visual.ln_pre.weight'),
      w1(ps, 'visual.ln_pre.bias'),
      c.ln_eps,
    );
    for (let i = 0; i < c.layers; i++) {
      const p = `visual.transformer.resblocks.${i}`;
      const prev = h;
      // the teacher is never differentiated: each block frees its activations as soon as it is done
      h = tf.tidy(() => {
        const y = layerNorm(prev, w1(ps, `${p}.ln_1.weight`), w1(ps, `${p}.ln_1.bias`), c.ln_eps);
        const qkv = linear(y, w2(ps, `${p}.attn.in_proj_weight`), w1(ps, `${p}.attn.in_proj_bias`));
        const a = selfAttentionCore(qkv, b, c.heads, null);
        const r = tf.add(
          prev,
          linear(a, w2(ps, `${p}.attn.out_proj.weight`), w1(ps, `${p}.attn.out_proj.bias`)),
        ) as T2;
        const z = layerNorm(r, w1(ps, `${p}.ln_2.weight`), w1(ps, `${p}.ln_2.bias`), c.ln_eps);
        const m = act(linear(z, w2(ps, `${p}.mlp.c_fc.weight`), w1(ps, `${p}.mlp.c_fc.bias`))) as T2;
        return tf.add(r, linear(m, w2(ps, `${p}.mlp.c_proj.weight`), w1(ps, `${p}.mlp.c_proj.bias`))) as T2;
      });
      if (i > 0) prev.dispose();
    }
    // D-iGPT needs ln_post and the projection on EVERY token (HF's own forward does it on the pooled token only)
    const post = layerNorm(h, w1(ps, 'visual.ln_post.weight'), w1(ps, 'visual.ln_post.bias'), c.ln_eps);
    const out = linear(post, w2(ps, 'visual.proj'));
    return tf.reshape(out, [b, 1 + g2, c.output_dim]);
  }

  dispose(): void {
    this.params.dispose();
  }
}
