// What `digpt experiment ablations` runs: the budgets, the rows of the tables, the recipe, and what one job measures.
// Shared by the runner (ablations.ts) and the report (report.ts), so neither imports the other.

export const BUDGET_NAMES = ['smoke', 'small', 'full'] as const;
export type BudgetName = (typeof BUDGET_NAMES)[number];

export function isBudgetName(s: string): s is BudgetName {
  return (BUDGET_NAMES as readonly string[]).includes(s);
}

/** How much each job of the experiment runs. */
export interface Budget {
  readonly name: BudgetName;
  readonly preset: string;
  /** Train images drawn (seeded) from the train split; Infinity = all. */
  readonly trainImages: number;
  /** Test images drawn (seeded) from the test split; Infinity = all. */
  readonly testImages: number;
  readonly seeds: number;
  readonly batch: number;
  readonly teacherSteps: number;
  readonly pretrainSteps: number;
  readonly finetuneSteps: number;
  readonly probeEpochs: number;
  /** Jobs run at once (each is one worker thread on one core: tfjs-wasm is single-threaded under Node). */
  readonly concurrency: number;
}

/**
 * The budgets. Step counts come from measured speeds on 2 cores (micro-32, batch 32): pretraining 60-100 img/s,
 * fine-tuning 100-150 img/s per job, two jobs side by side (one core each). `full` is sized for under 3 hours
 * with 2 seeds on a quiet machine: about 1 epoch of pretraining and 0.6 of fine-tuning per job, 2 teacher epochs
 * (see docs/ablations-small.md for the times measured with `small`). It keeps digpt-micro-32: digpt-tiny-32 is
 * ~18x the compute per image (~11 img/s, BENCHMARKS.md), which would leave each of its 23 jobs under 1/6 epoch.
 */
export const BUDGETS: Readonly<Record<BudgetName, Budget>> = {
  smoke: {
    name: 'smoke',
    preset: 'digpt-micro-32',
    trainImages: 512,
    testImages: 256,
    seeds: 1,
    batch: 32,
    teacherSteps: 16,
    pretrainSteps: 6,
    finetuneSteps: 6,
    probeEpochs: 10,
    concurrency: 2,
  },
  small: {
    name: 'small',
    preset: 'digpt-micro-32',
    trainImages: 5000,
    testImages: 2000,
    seeds: 1,
    batch: 32,
    teacherSteps: 400,
    pretrainSteps: 250,
    finetuneSteps: 200,
    probeEpochs: 50,
    concurrency: 2,
  },
  full: {
    name: 'full',
    preset: 'digpt-micro-32',
    trainImages: Infinity,
    testImages: Infinity,
    seeds: 2,
    batch: 32,
    teacherSteps: 3750,
    pretrainSteps: 1800,
    finetuneSteps: 1200,
    probeEpochs: 90,
    concurrency: 2,
  },
};

/** A row of the tables: an encoder and how it was pretrained. */
export interface RowDef {
  readonly name: 'digpt' | 'gen-only' | 'kd' | 'mae' | 'pixels' | 'scratch';
  readonly label: string;
  /** Pretraining objective; undefined for the randomly initialised encoder. */
  readonly objective?: string;
  readonly target: 'teacher' | 'pixels' | 'none';
}

export const ROWS: readonly RowDef[] = [
  { name: 'digpt', label: 'D-iGPT (gen + dis), teacher features', objective: 'digpt', target: 'teacher' },
  { name: 'gen-only', label: 'generative only, teacher features', objective: 'gen-only', target: 'teacher' },
  { name: 'kd', label: 'KD (feature distillation)', objective: 'kd', target: 'teacher' },
  { name: 'mae', label: 'MAE with teacher targets', objective: 'mae', target: 'teacher' },
  { name: 'pixels', label: 'D-iGPT, pixel targets', objective: 'digpt', target: 'pixels' },
  { name: 'scratch', label: 'random init (no pretraining)', target: 'none' },
];

/** Base lrs (per 256 images): the demo's for pretraining, the teacher README's for the teacher. */
export const RECIPE = {
  pretrainBlr: 5e-3,
  teacherBlr: 4e-3,
  /**
   * The short fine-tunes: the same light recipe for every row (mixup/cutmix/erasing off: they need long runs).
   * blr 1e-2: with `small`, 2e-3 left every fine-tune under its linear probe (digpt 0.35, scratch 0.23 after 200
   * steps); 1e-2 gave 0.49 / 0.41 and 3e-2 0.49 / 0.45.
   */
  finetune: { blr: 1e-2, layer_decay: 0.75, drop_path: 0, smoothing: 0.1, mixup: 0, cutmix: 0, erase: 0 },
} as const;

/** What one finished job measured. */
export interface JobResult {
  readonly id: string;
  readonly kind: 'teacher' | 'pretrain' | 'probe' | 'finetune' | 'encoder';
  readonly row?: RowDef['name'];
  readonly seed: number;
  readonly seconds: number;
  readonly dir?: string;
  readonly steps?: number;
  /** Mean images/s over the job's training steps. */
  readonly imgPerS?: number;
  /** Top-1 on the test images (probe: the linear probe; finetune/teacher: the classifier at its last step). */
  readonly top1?: number;
  /** Pretraining: k-NN top-1 on the test images at the last step. */
  readonly knnTop1?: number;
  /** Pretraining: [step, loss] per step. */
  readonly losses?: [number, number][];
}
