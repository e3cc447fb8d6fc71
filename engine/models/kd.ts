// Feature distillation (the paper's KD baseline): the D-iGPT student encoder sees every patch and regresses the teacher's tokens.
import * as tf from '@tensorflow/tfjs-core';
import type { DigptConfig } from '../config.js';
import { constLeft } from '../ops/nn.js';
import { dense, norm, patchify, vitBlock } from './blocks.js';
import { digptSpecs, type DecoderOutput, type DigptBatch, type DigptOutput } from './digpt.js';
import type { PretrainModel } from './factory.js';
import { bilinearMatrix, sincos2d } from './geometry.js';
import { linearSpecs, normSpecs, ParamSet, type ParamSpec } from './params.js';

type T2 = tf.Tensor2D;

// --- pieces shared with mae.ts: the student encoder, the grid resize, the cosine error ---

/** Parameters of the student encoder (patch embedding, cls token, blocks), whatever the objective. */
export function isEncoderParam(name: string): boolean {
  return name === 'cls_token' || name.startsWith('patch_embed.') || name.startsWith('blocks.');
}

/**
 * The student encoder's specs, taken from digptSpecs so names, shapes, layouts and the order of initialisation are
 * DigptModel's: with the same seed an encoder starts from the same values under every objective.
 */
export function encoderSpecs(c: DigptConfig): ParamSpec[] {
  return digptSpecs(c, 'dis-only').filter((s) => isEncoderParam(s.name));
}

/** Patch embedding plus the fixed sin-cos position (`pos` [G*G, C]), raster order: [B, H, W, 3] -> [B*G*G, C]. */
export function embedPatches(ps: ParamSet, c: DigptConfig, pos: T2, images: tf.Tensor4D): T2 {
  const b = images.shape[0];
  const gg = (c.img_size / c.patch_size) ** 2;
  const x = dense(ps, 'patch_embed.proj', patchify(images, c.patch_size)); // [B*G*G, C]
  return tf.reshape(tf.add(tf.reshape(x, [b, gg, c.embed_dim]), pos), [b * gg, c.embed_dim]) as T2;
}

/**
 * The encoder over tokens [B, L, C] with the cls token appended LAST (its position slot is zeros), no mask, no final
 * norm, as D-iGPT's encoder: -> [B*(L+1), C].
 */
export function encodeWithCls(ps: ParamSet, c: DigptConfig, tokens: tf.Tensor3D): T2 {
  const [b, l, C] = tokens.shape;
  const cls = tf.add(tf.zeros([b, 1, C]), ps.get('cls_token'));
  let h = tf.reshape(tf.concat([tokens, cls], 1), [b * (l + 1), C]) as T2;
  for (let i = 0; i < c.depth; i++) h = vitBlock(ps, `blocks.${i}`, h, b, c.num_heads, null, c.block_ln_eps);
  return h;
}

/** Checks the images and teacher tokens of a batch against the config. */
export function checkBatch(c: DigptConfig, batch: DigptBatch): void {
  const im = batch.images.shape;
  if (im[1] !== c.img_size || im[2] !== c.img_size || im[3] !== 3)
    throw new Error(
      `images have shape [${im.join(', ')}], the model expects [B, ${c.img_size}, ${c.img_size}, 3]`,
    );
  const per = 1 + c.teacher_grid * c.teacher_grid;
  const t = batch.teacher.shape;
  if (t[0] !== im[0] || t[1] !== per || t[2] !== c.teacher_dim)
    throw new Error(
      `teacher tokens have shape [${t.join(', ')}], the model expects [${im[0]}, ${per}, ${c.teacher_dim}] ` +
        `(teacher_grid ${c.teacher_grid}, teacher_dim ${c.teacher_dim})`,
    );
}

/**
 * Bilinear resize (PyTorch align_corners=False) of a G x G token map to the teacher's tg x tg, as ONE plain product
 * with the constant kron(Wy, Wx) [tg*tg, G*G] (digpt.ts does the same per cluster); identity when G == tg.
 */
export class GridResize {
  readonly from: number;
  readonly to: number;
  private readonly m: Float32Array | null;
  private readonly r: T2 | null;
  private readonly rT: T2 | null;

  constructor(from: number, to: number) {
    this.from = from;
    this.to = to;
    if (from === to) {
      this.m = null;
      this.r = null;
      this.rT = null;
    } else {
      this.m = bilinearMatrix(from, to);
      this.r = tf.tensor2d(this.m, [to * to, from * from]);
      this.rT = tf.transpose(this.r);
    }
  }

  /** Maps [B, G*G, D] -> [B, tg*tg, D]. */
  apply(x: tf.Tensor3D): tf.Tensor3D {
    if (!this.r || !this.rT) return x;
    const [b, gg, d] = x.shape;
    const tt = this.to * this.to;
    // [B, G*G, D] -> [G*G, B*D]; r @ cols -> [tg*tg, B*D] -> [B, tg*tg, D]
    const cols = tf.reshape(tf.transpose(x, [1, 0, 2]), [gg, b * d]) as T2;
    const out = constLeft(this.r, this.rT, cols);
    return tf.transpose(tf.reshape(out, [tt, b, d]), [1, 0, 2]);
  }

  /** The same map on per-sample scalar maps (plain JS): values [B*G*G] -> [B*tg*tg]. */
  applyValues(v: Float32Array, b: number): Float32Array {
    if (!this.m) return v;
    const gg = this.from * this.from;
    const tt = this.to * this.to;
    const out = new Float32Array(b * tt);
    for (let s = 0; s < b; s++)
      for (let o = 0; o < tt; o++) {
        let acc = 0;
        for (let i = 0; i < gg; i++) acc += (this.m[o * gg + i] as number) * (v[s * gg + i] as number);
        out[s * tt + o] = acc;
      }
    return out;
  }

  dispose(): void {
    this.r?.dispose();
    this.rT?.dispose();
  }
}

/** Row-wise cosine of p and t [R, D] -> [R] (no eps, as D-iGPT's loss). */
export function rowCosine(p: T2, t: T2): tf.Tensor1D {
  const pn = tf.div(p, tf.sqrt(tf.sum(tf.square(p), -1, true)));
  const tn = tf.div(t, tf.sqrt(tf.sum(tf.square(t), -1, true)));
  return tf.sum(tf.mul(pn, tn), -1) as tf.Tensor1D;
}

// --- the KD model ---

/** KD's parameters: the student encoder, then the head `kd_norm` (LayerNorm) and `kd_pred` (Linear to teacher_dim). */
export function kdSpecs(c: DigptConfig): ParamSpec[] {
  return [
    ...encoderSpecs(c),
    ...normSpecs('kd_norm', c.embed_dim),
    ...linearSpecs('kd_pred', c.embed_dim, c.teacher_dim),
  ];
}

/**
 * Feature distillation. The encoder sees all G*G patches in raster order plus cls (appended last), with no mask; the
 * head maps every output token to teacher_dim; the patch predictions are bilinearly resized from G x G to the teacher
 * grid, the cls prediction targets the teacher's cls, and the loss is the mean over all 1 + tg*tg tokens of
 * 2 - 2 cos(pred, target). `DigptBatch.order` is unused (orderLength 0).
 */
export class KdModel implements PretrainModel {
  readonly config: DigptConfig;
  readonly objective = 'kd' as const;
  readonly params: ParamSet;
  readonly orderLength = 0;
  /** Patches per side. */
  readonly grid: number;
  private readonly pos: T2;
  private readonly resize: GridResize;

  constructor(config: DigptConfig, opts: { seed?: number } = {}) {
    this.config = config;
    this.grid = config.img_size / config.patch_size;
    // --- parameters ---
    this.params = new ParamSet(kdSpecs(config), opts.seed ?? 0);
    // --- constants ---
    this.pos = tf.tensor2d(sincos2d(config.embed_dim, this.grid, false), [this.grid ** 2, config.embed_dim]);
    this.resize = new GridResize(this.grid, config.teacher_grid);
  }

  /** The fixed student position table with its cls row, [1 + G*G, C] (what a fine-tuned ViT starts from). */
  posEmbedWithCls(): Float32Array {
    return sincos2d(this.config.embed_dim, this.grid, true);
  }

  // --- encoder ---

  /** Every patch in raster order, then cls: [B*(G*G+1), C]. */
  forwardEncoder(images: tf.Tensor4D): T2 {
    const c = this.config;
    const b = images.shape[0];
    const x = embedPatches(this.params, c, this.pos, images);
    return encodeWithCls(this.params, c, tf.reshape(x, [b, this.grid ** 2, c.embed_dim]));
  }

  // --- head ---

  /** kd_norm + kd_pred per token: [B*(G*G+1), C] -> [B*(G*G+1), Dt]. */
  forwardHead(h: T2): T2 {
    return dense(this.params, 'kd_pred', norm(this.params, 'kd_norm', h, this.config.block_ln_eps));
  }

  // --- loss ---

  /** Predictions [B, G*G+1, Dt] (cls last) against teacher tokens [B, 1+tg*tg, Dt] (cls first). */
  forwardLoss(pred: tf.Tensor3D, teacher: tf.Tensor3D): Omit<DecoderOutput, 'pred'> {
    const c = this.config;
    const b = pred.shape[0];
    const gg = this.grid ** 2;
    const dt = c.teacher_dim;
    const rows = 1 + c.teacher_grid ** 2;
    const body = this.resize.apply(tf.slice(pred, [0, 0, 0], [b, gg, dt])); // [B, tg*tg, Dt]
    const cls = tf.slice(pred, [0, gg, 0], [b, 1, dt]);
    // the teacher's layout, cls first: [B*(1+tg*tg), Dt]
    const p = tf.reshape(tf.concat([cls, body], 1), [b * rows, dt]) as T2;
    const cos = rowCosine(p, tf.reshape(teacher, [b * rows, dt]) as T2);
    const err = tf.sub(2, tf.mul(2, cos));
    return {
      loss: tf.mean(err) as tf.Scalar,
      clusterError: tf.mean(tf.reshape(err, [b, rows]), -1, true) as tf.Tensor2D,
      agreement: tf.mean(cos) as tf.Scalar,
    };
  }

  /** Encoder, head and loss; the head is reported as `dis`. Call inside tf.tidy / variableGrads. */
  forward(batch: DigptBatch): DigptOutput {
    const c = this.config;
    checkBatch(c, batch);
    const b = batch.images.shape[0];
    const h = this.forwardEncoder(batch.images);
    const pred = tf.reshape(this.forwardHead(h), [b, this.grid ** 2 + 1, c.teacher_dim]) as tf.Tensor3D;
    const l = this.forwardLoss(pred, batch.teacher);
    return {
      loss: l.loss,
      encoderOut: tf.reshape(h, [b, this.grid ** 2 + 1, c.embed_dim]) as tf.Tensor3D,
      dis: { ...l, pred },
    };
  }

  dispose(): void {
    this.params.dispose();
    this.pos.dispose();
    this.resize.dispose();
  }
}
