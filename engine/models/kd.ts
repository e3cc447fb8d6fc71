// Feature distillation (the paper's KD baseline): the student encoder sees every patch and regresses the teacher's tokens.
import * as tf from '@tensorflow/tfjs-core';
import type { DigptConfig } from '../config.js';
import { dense, norm } from './blocks.js';
import { linearSpecs, normSpecs, ParamSet, type ParamSpec } from './params.js';
import type { DecoderOutput, DigptBatch, DigptOutput, PretrainModel } from './pretrain-model.js';
import { encoderSpecs, StudentEncoder } from './student.js';
import { cosineError, GridResize } from './teacher-loss.js';

type T2 = tf.Tensor2D;

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
  readonly encoder: StudentEncoder;
  readonly orderLength = 0;
  /** One mean error per sample. */
  readonly errorLength = 1;
  /** Patches per side. */
  readonly grid: number;
  private readonly resize: GridResize;

  constructor(config: DigptConfig, opts: { seed?: number } = {}) {
    this.config = config;
    this.grid = config.img_size / config.patch_size;
    // --- parameters ---
    this.params = new ParamSet(kdSpecs(config), opts.seed ?? 0);
    // --- encoder ---
    this.encoder = new StudentEncoder(config, this.params);
    // --- constants ---
    this.resize = new GridResize(this.grid, config.teacher_grid);
  }

  // --- encoder ---

  /** Every patch in raster order, then cls, without a mask: [B*(G*G+1), C]. */
  forwardEncoder(images: tf.Tensor4D): T2 {
    return this.encoder.forward(images, null, null).out;
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
    const { cos, err } = cosineError(p, tf.reshape(teacher, [b * rows, dt]) as T2);
    return {
      loss: tf.mean(err) as tf.Scalar,
      clusterError: tf.mean(tf.reshape(err, [b, rows]), -1, true) as tf.Tensor2D,
      agreement: tf.mean(cos) as tf.Scalar,
    };
  }

  /** Encoder, head and loss; the head is reported as `dis`. Call inside tf.tidy / variableGrads. */
  forward(batch: DigptBatch): DigptOutput {
    const c = this.config;
    this.encoder.checkInputs(batch.images, batch.teacher);
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
    this.encoder.dispose();
    this.resize.dispose();
  }
}
