// The student encoder every pretraining objective trains: patch embedding, fixed sin-cos positions, ViT blocks, cls last.
//
// D-iGPT, kd and mae differ only in what they put on this trunk (timm's forward_features / forward_head): which
// patches it sees and in what order (a row selection), whether its attention is masked, which blocks are tapped.
import * as tf from '@tensorflow/tfjs-core';
import type { DigptConfig } from '../config.js';
import { permuteRows } from '../ops/nn.js';
import { blockSpecs, dense, patchify, vitBlock } from './blocks.js';
import { invertPermutation, sincos2d } from './geometry.js';
import { plainSpec, spec, type ParamSet, type ParamSpec } from './params.js';

type T2 = tf.Tensor2D;

/** Parameters of the student encoder (patch embedding, cls token, blocks), whatever the objective. */
export function isEncoderParam(name: string): boolean {
  return name === 'cls_token' || name.startsWith('patch_embed.') || name.startsWith('blocks.');
}

/**
 * The encoder's parameters in initialisation order. Every objective lists them first in its ParamSet, so with the same
 * seed an encoder starts from the same values under every objective (the ablations compare one encoder).
 */
export function encoderSpecs(c: DigptConfig): ParamSpec[] {
  const C = c.embed_dim;
  const specs: ParamSpec[] = [
    spec('patch_embed.proj.weight', [C, 3, c.patch_size, c.patch_size], { kind: 'conv' }, { kind: 'xavier' }),
    plainSpec('patch_embed.proj.bias', [C], { kind: 'zeros' }),
    plainSpec('cls_token', [1, 1, C], { kind: 'normal', std: 0.02 }),
  ];
  for (let i = 0; i < c.depth; i++) specs.push(...blockSpecs(`blocks.${i}`, C, c.mlp_ratio));
  return specs;
}

/** Which patches the encoder sees: the batch's raster patch rows permuted, then each sample's first `keep` rows. */
export interface Selection {
  /** Row r of the permuted batch is raster row perm[r], [B*G*G] (rows stay within their sample). */
  readonly perm: tf.Tensor1D;
  /** The inverse permutation (the gradient's gather, and MAE's ids_restore). */
  readonly inv: tf.Tensor1D;
  /** Rows kept per sample. */
  readonly keep: number;
}

/** The encoder's outputs: the last block's [B*(L+1), C] (cls last) and the tapped blocks' outputs. */
export interface Encoded {
  readonly out: T2;
  readonly taps: T2[];
}

/**
 * The trunk. It reads its parameters from the model's ParamSet (one set, one seed, one checkpoint layout) and owns its
 * constant: the student position table.
 */
export class StudentEncoder {
  readonly config: DigptConfig;
  /** Patches per side, G. */
  readonly grid: number;
  private readonly params: ParamSet;
  /** Sin-cos table [G*G, C] (the cls slot, zeros, is not needed). */
  private readonly pos: T2;

  constructor(config: DigptConfig, params: ParamSet) {
    this.config = config;
    this.params = params;
    this.grid = config.img_size / config.patch_size;
    this.pos = tf.tensor2d(sincos2d(config.embed_dim, this.grid, false), [this.patches, config.embed_dim]);
  }

  /** Patches per image, G*G. */
  get patches(): number {
    return this.grid * this.grid;
  }

  /** The fixed position table with its cls row, [1 + G*G, C], as the official `pos_embed` and a fine-tuned ViT hold it. */
  posEmbedWithCls(): Float32Array {
    return sincos2d(this.config.embed_dim, this.grid, true);
  }

  // --- checks ---

  /** Fails, naming the shapes, unless images are [B, img, img, 3] and teacher tokens [B, 1 + tg*tg, Dt]. */
  checkInputs(images: tf.Tensor4D, teacher: tf.Tensor3D): void {
    const c = this.config;
    const im = images.shape;
    if (im[1] !== c.img_size || im[2] !== c.img_size || im[3] !== 3)
      throw new Error(
        `images have shape [${im.join(', ')}], the model expects [B, ${c.img_size}, ${c.img_size}, 3]`,
      );
    const per = 1 + c.teacher_grid * c.teacher_grid;
    const t = teacher.shape;
    if (t[0] !== im[0] || t[1] !== per || t[2] !== c.teacher_dim)
      throw new Error(
        `teacher tokens have shape [${t.join(', ')}], the model expects [${im[0]}, ${per}, ${c.teacher_dim}] ` +
          `(teacher_grid ${c.teacher_grid}, teacher_dim ${c.teacher_dim})`,
      );
  }

  /** Fails unless `order` is `batch` rows of `length` entries, each a permutation of 0..length-1 (`what` names it). */
  checkOrder(order: Int32Array, batch: number, length: number, what: string): void {
    if (order.length !== batch * length)
      throw new Error(`${what} has ${order.length} entries, expected ${batch} x ${length}`);
    for (let b = 0; b < batch; b++) {
      const seen = new Uint8Array(length);
      for (let i = 0; i < length; i++) {
        const v = order[b * length + i] as number;
        if (!(v >= 0 && v < length) || seen[v])
          throw new Error(`${what} of sample ${b} is not a permutation of 0..${length - 1}`);
        seen[v] = 1;
      }
    }
  }

  // --- encoder ---

  /** A Selection from a permutation of the batch's raster rows (`perm[r]`: the raster row that row r takes). */
  select(perm: Int32Array, keep: number): Selection {
    return {
      perm: tf.tensor1d(perm, 'int32'),
      inv: tf.tensor1d(invertPermutation(perm), 'int32'),
      keep,
    };
  }

  /** Patch embedding plus the fixed position, raster order: [B, H, W, 3] -> [B*G*G, C]. */
  embed(images: tf.Tensor4D): T2 {
    const b = images.shape[0];
    const C = this.config.embed_dim;
    const x = dense(this.params, 'patch_embed.proj', patchify(images, this.config.patch_size)); // [B*G*G, C]
    return tf.reshape(tf.add(tf.reshape(x, [b, this.patches, C]), this.pos), [b * this.patches, C]) as T2;
  }

  /**
   * Embeds the images, keeps the selected patches (all of them, in raster order, without `select`), appends the cls
   * token LAST (its position slot is zeros) and runs the blocks under `mask` (null: full attention), with no final
   * norm. `taps` names blocks (1-based) whose outputs are returned too, in the order `taps` names them.
   * Call inside tf.tidy / variableGrads.
   */
  forward(
    images: tf.Tensor4D,
    select: Selection | null,
    mask: T2 | null,
    taps: readonly number[] = [],
  ): Encoded {
    const c = this.config;
    const b = images.shape[0];
    const C = c.embed_dim;
    let x = this.embed(images);
    if (select) x = permuteRows(x, select.perm, select.inv);
    // [B*G*G, C] -> [B, G*G, C] -> each sample's first `keep` rows [B, L, C]
    let tokens = tf.reshape(x, [b, this.patches, C]);
    if (select) tokens = tf.slice(tokens, [0, 0, 0], [b, select.keep, C]);
    const l = tokens.shape[1] as number;
    const cls = tf.add(tf.zeros([b, 1, C]), this.params.get('cls_token'));
    let h = tf.reshape(tf.concat([tokens, cls], 1), [b * (l + 1), C]) as T2;
    const tapped = new Map<number, T2>();
    for (let i = 0; i < c.depth; i++) {
      h = vitBlock(this.params, `blocks.${i}`, h, b, c.num_heads, mask, c.block_ln_eps);
      if (taps.includes(i + 1)) tapped.set(i + 1, h);
    }
    return { out: h, taps: taps.map((t) => tapped.get(t) as T2) };
  }

  /** Frees the position table (the parameters belong to the model's ParamSet). */
  dispose(): void {
    this.pos.dispose();
  }
}
