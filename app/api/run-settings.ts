// The bounds of every run setting, in config.json's field names: one definition for the CLI flags, the launch form
// (contract.ts) and the check of a config.json read back on resume. Pure zod: no Node, no engine.
import { z } from 'zod';

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
/** A finite number >= 0 (0 switches a recipe piece off). */
const nonNeg = z.number().finite().nonnegative();

export const RunSetting = {
  /** Optimisation steps in all. */
  steps: posInt,
  /** Passes over the train set (fractional allowed). */
  epochs: z.number().finite().positive(),
  /** Images per micro-batch. */
  batch: posInt,
  /** Micro-batches per optimisation step (gradient accumulation). */
  accum: posInt,
  seed: nonNegInt,
  /** Base learning rate per 256 images. */
  blr: z.number().finite().positive(),
  min_lr: nonNeg,
  warmup_steps: nonNegInt,
  warmup_epochs: nonNeg,
  weight_decay: nonNeg,
  /** Steps between checkpoints. */
  checkpoint_every: posInt,
  /** Training threads sharing each micro-batch. */
  workers: z.union([z.literal(1), z.literal(2)]),
  /** Input side in pixels. */
  img_size: posInt,
  layer_decay: z.number().finite().positive().max(1),
  drop_path: z.number().finite().nonnegative().max(1),
  smoothing: z.number().finite().nonnegative().lt(1),
  mixup: nonNeg,
  cutmix: nonNeg,
  erase: z.number().finite().nonnegative().max(1),
  /** k of k-NN. */
  k: posInt,
  eval_batch: posInt,
} as const;

export type RunSettingName = keyof typeof RunSetting;

/**
 * Checks one value against its setting's bounds; the error names `label` (a flag such as `--batch`, or a
 * config.json field) and says why.
 */
export function checkSetting<N extends RunSettingName>(
  name: N,
  value: unknown,
  label: string = name,
): z.infer<(typeof RunSetting)[N]> {
  const r = RunSetting[name].safeParse(value);
  if (!r.success) {
    const why = r.error.issues.map((i) => i.message).join('; ');
    throw new Error(`${label}: ${why} (got ${JSON.stringify(value)})`);
  }
  return r.data as z.infer<(typeof RunSetting)[N]>;
}
