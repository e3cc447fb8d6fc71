// Builds the model of any pretraining objective (D-iGPT and its ablations, feature distillation, MAE with teacher targets).
// The interface they share lives in pretrain-model.ts, which the objectives import; only this module imports them.
import type { DigptConfig } from '../config.js';
import { DigptModel } from './digpt.js';
import { KdModel } from './kd.js';
import { MaeModel } from './mae.js';
import { PRETRAIN_OBJECTIVES, type PretrainModel, type PretrainObjective } from './pretrain-model.js';

export {
  isPretrainObjective,
  PRETRAIN_OBJECTIVES,
  type PretrainModel,
  type PretrainObjective,
} from './pretrain-model.js';

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
