// One interface over every pretraining objective (D-iGPT and its ablations, feature distillation, MAE with teacher targets).
import type { DigptConfig } from '../config.js';
import { DigptModel, type DigptBatch, type DigptObjective, type DigptOutput } from './digpt.js';
import { KdModel } from './kd.js';
import { MaeModel } from './mae.js';
import type { ParamSet } from './params.js';

/**
 * What a pretraining run optimises (the paper's comparisons, Tables 5, 7 and 9):
 * - `digpt`, `gen-only`, `dis-only`: D-iGPT with both decoders or one of them (DigptModel);
 * - `kd`: feature distillation, the encoder sees every patch and a LayerNorm + Linear head predicts the teacher's
 *   token features (KdModel);
 * - `mae`: MAE with teacher targets, 75% of the patches are masked and an MAE decoder predicts the teacher's
 *   features of the masked patches (MaeModel).
 */
export type PretrainObjective = DigptObjective | 'kd' | 'mae';

export const PRETRAIN_OBJECTIVES: readonly PretrainObjective[] = [
  'digpt',
  'gen-only',
  'dis-only',
  'kd',
  'mae',
];

export function isPretrainObjective(v: unknown): v is PretrainObjective {
  return typeof v === 'string' && (PRETRAIN_OBJECTIVES as readonly string[]).includes(v);
}

/**
 * A model the pretraining step can train. Every objective shares the student encoder (`patch_embed.*`, `cls_token`,
 * `blocks.{i}.*`, fixed sin-cos positions, cls appended last), so a pretrained encoder fine-tunes and exports the same
 * way whatever the objective. kd and mae report their single head under `dis` of DigptOutput.
 */
export interface PretrainModel {
  readonly config: DigptConfig;
  readonly objective: PretrainObjective;
  readonly params: ParamSet;
  /**
   * Entries per sample of `DigptBatch.order`, drawn by the trainer's `drawOrders(rng, batch, orderLength)`:
   * K for the D-iGPT objectives (a cluster order), G*G for mae (a patch permutation whose first
   * `visible` entries are the patches the encoder sees), 0 for kd (the order is unused).
   */
  readonly orderLength: number;
  /** Encoder, head(s) and losses; call inside tf.tidy / variableGrads. */
  forward(batch: DigptBatch): DigptOutput;
  dispose(): void;
}

export interface PretrainModelOptions {
  readonly objective: PretrainObjective;
  /** Seed of the parameter initialisation (default 0). */
  readonly seed?: number;
  /** mae only: fraction of the patches masked per sample (default 0.75). */
  readonly maskRatio?: number;
}

/** Builds the model of an objective. */
export function createPretrainModel(config: DigptConfig, opts: PretrainModelOptions): PretrainModel {
  const seed = opts.seed ?? 0;
  switch (opts.objective) {
    case 'digpt':
    case 'gen-only':
    case 'dis-only':
      return new DigptModel(config, { seed, objective: opts.objective });
    case 'kd':
      return new KdModel(config, { seed });
    case 'mae':
      return new MaeModel(config, { seed, maskRatio: opts.maskRatio });
    default: {
      const o: unknown = opts.objective;
      throw new Error(
        `unknown pretraining objective ${JSON.stringify(o)}; use ${PRETRAIN_OBJECTIVES.join(', ')}`,
      );
    }
  }
}
