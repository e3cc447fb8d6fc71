// MAE with teacher targets (the paper's masked-modelling baseline): encode the visible 25% of patches, predict the teacher's features of the rest.
import * as tf from '@tensorflow/tfjs-core';
import type { DigptConfig } from '../config.js';
import { permuteRows } from '../ops/nn.js';
import { blockSpecs, dense, norm, vitBlock } from './blocks.js';
import { sincos2d } from './geometry.js';
import { linearSpecs, normSpecs, ParamSet, plainSpec, type ParamSpec } from './params.js';
import type { DecoderOutput, DigptBatch, DigptOutput, PretrainModel } from './pretrain-model.js';
import { encoderSpecs, StudentEncoder, type Selection } from './student.js';
import { cosineError, GridResize } from './teacher-loss.js';

type T2 = tf.Tensor2D;

/** MAE's parameters in MAE's names: the student encoder, then decoder_embed, mask_token, decoder_blocks, decoder_norm, decoder_pred. */
export function maeSpecs(c: DigptConfig): ParamSpec[] {
  const D = c.dec_dim;
  const specs = [
    ...encoderSpecs(c),
    ...linearSpecs('decoder_embed', c.embed_dim, D),
    plainSpec('mask_token', [1, 1, D], { kind: 'normal', std: 0.02 }),
  ];
  for (let l = 0; l < c.dec_depth; l++) specs.push(...blockSpecs(`decoder_blocks.${l}`, D, c.mlp_ratio));
  specs.push(...normSpecs('decoder_norm', D), ...linearSpecs('decoder_pred', D, c.teacher_dim));
  return specs;
}

/**
 * Masked prediction of teacher features. Per sample, `DigptBatch.order` holds a permutation of the G*G patches (raster
 * indices) whose first `visible` entries are kept, MAE's ids_shuffle drawn by the trainer's generator.
 * - Encoder: the visible patches (patch embedding + fixed sin-cos position) in that shuffled order, then cls appended
 *   last; no mask, no final norm (D-iGPT's encoder, so it exports and fine-tunes the same way).
 * - Decoder: `decoder_embed` to dec_dim; the visible tokens followed by `mask_token` for every masked patch are put
 *   back in raster order (a row permutation by the inverse permutation, MAE's ids_restore), plus the fixed sin-cos
 *   decoder position; cls (position slot zeros) appended last; `dec_depth` plain ViT blocks (`decoder_blocks.{l}`,
 *   dec_heads heads); `decoder_norm` + `decoder_pred` to teacher_dim per token.
 * - Loss: the G x G patch predictions are bilinearly resized to the teacher grid (identity when teacher_grid == G),
 *   the 0/1 patch mask is resized by the same map to a weight per teacher token, and the loss is the weighted mean of
 *   2 - 2 cos over the teacher's patch tokens: exactly the mean over the masked patches when teacher_grid == G. The
 *   cls prediction is not in the loss.
 */
export class MaeModel implements PretrainModel {
  readonly config: DigptConfig;
  readonly objective = 'mae' as const;
  readonly params: ParamSet;
  readonly encoder: StudentEncoder;
  /** Patches per side. */
  readonly grid: number;
  /** Patches the encoder sees per sample: floor(G*G * (1 - maskRatio)). */
  readonly visible: number;
  /** One mean error (over the masked patches) per sample. */
  readonly errorLength = 1;
  private readonly decPos: T2;
  private readonly resize: GridResize;

  constructor(config: DigptConfig, opts: { seed?: number; maskRatio?: number } = {}) {
    this.config = config;
    this.grid = config.img_size / config.patch_size;
    const gg = this.grid ** 2;
    const ratio = opts.maskRatio ?? 0.75;
    this.visible = Math.floor(gg * (1 - ratio) + 1e-9);
    if (!(ratio > 0 && ratio < 1) || this.visible < 1 || this.visible >= gg)
      throw new Error(
        `mask ratio ${ratio} leaves ${this.visible} of ${gg} patches visible; it must leave 1..${gg - 1}`,
      );
    // --- parameters ---
    this.params = new ParamSet(maeSpecs(config), opts.seed ?? 0);
    // --- encoder ---
    this.encoder = new StudentEncoder(config, this.params);
    // --- constants ---
    this.decPos = tf.tensor2d(sincos2d(config.dec_dim, this.grid, false), [gg, config.dec_dim]);
    this.resize = new GridResize(this.grid, config.teacher_grid);
  }

  /** G*G: each sample's order is a permutation of the patches. */
  get orderLength(): number {
    return this.grid ** 2;
  }

  /** Patches masked per sample. */
  get masked(): number {
    return this.grid ** 2 - this.visible;
  }

  /** The encoder's selection: shuffled row s*GG + i holds raster row s*GG + order[s*GG + i]; the first `visible` kept. */
  private selection(order: Int32Array, b: number): Selection {
    const gg = this.grid ** 2;
    const p = new Int32Array(b * gg);
    for (let s = 0; s < b; s++)
      for (let i = 0; i < gg; i++) p[s * gg + i] = s * gg + (order[s * gg + i] as number);
    return this.encoder.select(p, this.visible);
  }

  /** 1 at the masked patches, 0 at the visible ones: [B*G*G] in raster order. */
  maskValues(order: Int32Array, b: number): Float32Array {
    const gg = this.grid ** 2;
    const m = new Float32Array(b * gg);
    for (let s = 0; s < b; s++)
      for (let i = this.visible; i < gg; i++) m[s * gg + (order[s * gg + i] as number)] = 1;
    return m;
  }

  // --- encoder ---

  /** The visible patches in shuffled order, then cls, without a mask: [B*(visible+1), C]. */
  forwardEncoder(images: tf.Tensor4D, select: Selection): T2 {
    return this.encoder.forward(images, select, null).out;
  }

  // --- decoder ---

  /** Encoder rows [B*(V+1), C] -> predictions [B*(G*G+1), Dt], patches in raster order, cls last. */
  forwardDecoder(h: T2, b: number, select: Selection): T2 {
    const c = this.config;
    const ps = this.params;
    const D = c.dec_dim;
    const gg = this.grid ** 2;
    const v = this.visible;
    const d = tf.reshape(dense(ps, 'decoder_embed', h), [b, v + 1, D]);
    const kept = tf.slice(d, [0, 0, 0], [b, v, D]);
    const cls = tf.slice(d, [0, v, 0], [b, 1, D]);
    const masks = tf.add(tf.zeros([b, gg - v, D]), ps.get('mask_token')); // [B, GG-V, D]
    // shuffled order -> raster order: raster row r is shuffled row inv[r] (MAE's ids_restore)
    const shuffled = tf.reshape(tf.concat([kept, masks], 1), [b * gg, D]) as T2;
    const raster = tf.reshape(permuteRows(shuffled, select.inv, select.perm), [b, gg, D]);
    let q = tf.reshape(tf.concat([tf.add(raster, this.decPos), cls], 1), [b * (gg + 1), D]) as T2;
    for (let l = 0; l < c.dec_depth; l++)
      q = vitBlock(ps, `decoder_blocks.${l}`, q, b, c.dec_heads, null, c.block_ln_eps);
    return dense(ps, 'decoder_pred', norm(ps, 'decoder_norm', q, c.block_ln_eps));
  }

  // --- loss ---

  /**
   * Predictions [B, G*G+1, Dt] (raster, cls last) against teacher tokens [B, 1+tg*tg, Dt] (cls first), counting only
   * the masked patches (weights resized to the teacher grid). clusterError is the per-sample masked mean, [B, 1].
   */
  forwardLoss(pred: tf.Tensor3D, teacher: tf.Tensor3D, order: Int32Array): Omit<DecoderOutput, 'pred'> {
    const c = this.config;
    const b = pred.shape[0];
    const dt = c.teacher_dim;
    const tt = c.teacher_grid ** 2;
    const body = this.resize.apply(tf.slice(pred, [0, 0, 0], [b, this.grid ** 2, dt])); // [B, tg*tg, Dt]
    const target = tf.slice(teacher, [0, 1, 0], [b, tt, dt]);
    const { cos, err } = cosineError(
      tf.reshape(body, [b * tt, dt]) as T2,
      tf.reshape(target, [b * tt, dt]) as T2,
    );
    const wv = this.resize.applyValues(this.maskValues(order, b), b);
    const perSample = new Float32Array(b);
    for (let s = 0; s < b; s++)
      for (let i = 0; i < tt; i++) perSample[s] = (perSample[s] as number) + (wv[s * tt + i] as number);
    const total = perSample.reduce((a, x) => a + x, 0);
    const w = tf.tensor1d(wv);
    const werr = tf.mul(err, w); // masked tokens only
    return {
      loss: tf.div(tf.sum(werr), total) as tf.Scalar,
      clusterError: tf.div(
        tf.sum(tf.reshape(werr, [b, tt]), -1, true),
        tf.tensor2d(perSample, [b, 1]),
      ) as tf.Tensor2D,
      agreement: tf.div(tf.sum(tf.mul(cos, w)), total) as tf.Scalar,
    };
  }

  /** Encoder, decoder and loss; the decoder is reported as `dis`. Call inside tf.tidy / variableGrads. */
  forward(batch: DigptBatch): DigptOutput {
    const c = this.config;
    const b = batch.images.shape[0];
    this.encoder.checkInputs(batch.images, batch.teacher);
    this.encoder.checkOrder(batch.order, b, this.orderLength, 'mae patch order');
    const select = this.selection(batch.order, b);
    const h = this.forwardEncoder(batch.images, select);
    const pred = tf.reshape(this.forwardDecoder(h, b, select), [
      b,
      this.grid ** 2 + 1,
      c.teacher_dim,
    ]) as tf.Tensor3D;
    const l = this.forwardLoss(pred, batch.teacher, batch.order);
    return {
      loss: l.loss,
      encoderOut: tf.reshape(h, [b, this.visible + 1, c.embed_dim]) as tf.Tensor3D,
      dis: { ...l, pred },
    };
  }

  dispose(): void {
    this.params.dispose();
    this.encoder.dispose();
    this.decPos.dispose();
    this.resize.dispose();
  }
}
