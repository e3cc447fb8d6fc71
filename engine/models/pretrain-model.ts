// What every pretraining objective is to the trainer: the objective names, the batch, the outputs, the PretrainModel interface.
// The objectives (digpt.ts, kd.ts, mae.ts) import this module and factory.ts imports them, so nothing imports back.
import type * as tf from '@tensorflow/tfjs-core';
import type { DigptConfig } from '../config.js';
import type { ParamSet } from './params.js';
import type { StudentEncoder } from './student.js';

/**
 * What a pretraining run optimises (the paper's comparisons, Tables 5, 7 and 9):
 * - `digpt`, `gen-only`, `dis-only`: D-iGPT with both decoders or one of them (DigptModel);
 * - `kd`: feature distillation, the encoder sees every patch and a LayerNorm + Linear head predicts the teacher's
 *   token features (KdModel);
 * - `mae`: MAE with teacher targets, 75% of the patches are masked and an MAE decoder predicts the teacher's
 *   features of the masked patches (MaeModel).
 */
export const PRETRAIN_OBJECTIVES = ['digpt', 'gen-only', 'dis-only', 'kd', 'mae'] as const;

export type PretrainObjective = (typeof PRETRAIN_OBJECTIVES)[number];

export function isPretrainObjective(v: unknown): v is PretrainObjective {
  return typeof v === 'string' && (PRETRAIN_OBJECTIVES as readonly string[]).includes(v);
}

/** One training batch, whatever the objective. Images are NHWC and already normalised for the student. */
export interface DigptBatch {
  /** [B, H, W, 3]. */
  readonly images: tf.Tensor4D;
  /** Teacher tokens [B, 1 + tg*tg, Dt], cls first (the teacher's layout). */
  readonly teacher: tf.Tensor3D;
  /**
   * Per sample, `PretrainModel.orderLength` entries, row-major: D-iGPT's cluster order (position i of sample b holds
   * cluster order[b*K + i]), mae's patch permutation, nothing for kd.
   */
  readonly order: Int32Array;
}

/** What one head (a D-iGPT decoder, kd's head, mae's decoder) reports from a forward pass. */
export interface DecoderOutput {
  /** Mean of 2 - 2 cos over the head's target tokens. */
  readonly loss: tf.Scalar;
  /** Predictions [B, tokens, Dt] before the bilinear resize (cls last). */
  readonly pred: tf.Tensor3D;
  /**
   * Mean 2 - 2 cos per predicted cluster, [B, K-1] in sequence order (the cls token is left out), for a D-iGPT
   * decoder; one mean per sample, [B, 1], for kd and mae.
   */
  readonly clusterError: tf.Tensor2D;
  /** Mean cosine between prediction and target over the head's target tokens (teacher agreement). */
  readonly agreement: tf.Scalar;
}

export interface DigptOutput {
  /** Sum of the heads' losses. */
  readonly loss: tf.Scalar;
  /** Last encoder block's output [B, tokens, C], cls last. */
  readonly encoderOut: tf.Tensor3D;
  readonly gen?: DecoderOutput;
  /** D-iGPT's discriminative decoder; kd's and mae's single head. */
  readonly dis?: DecoderOutput;
}

/**
 * A model the pretraining step can train. Every objective puts its head(s) on one StudentEncoder (`patch_embed.*`,
 * `cls_token`, `blocks.{i}.*`, fixed sin-cos positions, cls appended last), so a pretrained encoder fine-tunes and
 * exports the same way whatever the objective. kd and mae report their single head under `dis` of DigptOutput.
 */
export interface PretrainModel {
  readonly config: DigptConfig;
  readonly objective: PretrainObjective;
  /** Every parameter: the encoder's first, then the head's (one ParamSet, one seed). */
  readonly params: ParamSet;
  /** The trunk all objectives share. */
  readonly encoder: StudentEncoder;
  /**
   * Entries per sample of `DigptBatch.order`, drawn by the trainer's `drawOrders(rng, batch, orderLength)`:
   * K for the D-iGPT objectives (a cluster order), G*G for mae (a patch permutation whose first
   * `visible` entries are the patches the encoder sees), 0 for kd (the order is unused).
   */
  readonly orderLength: number;
  /** Entries per sample of the lead head's `clusterError`: K-1 for the D-iGPT objectives, 1 for kd and mae. */
  readonly errorLength: number;
  /** Encoder, head(s) and losses; call inside tf.tidy / variableGrads. */
  forward(batch: DigptBatch): DigptOutput;
  dispose(): void;
}
