// What `digpt experiment ablations` runs: the budgets, the rows of the tables, the recipes, and what one job measures.
// Shared by the runner (ablations.ts) and the report (report.ts), so neither imports the other.

export const BUDGET_NAMES = ['smoke', 'small', 'full'] as const;
export type BudgetName = (typeof BUDGET_NAMES)[number];

export function isBudgetName(s: string): s is BudgetName {
  return (BUDGET_NAMES as readonly string[]).includes(s);
}

/** How much each job of the experiment runs. Lengths are in epochs of the train images (rounded to steps). */
export interface Budget {
  readonly name: BudgetName;
  readonly preset: string;
  /** Train images drawn (seeded) from the train split, after the validation images are carved out; Infinity = all. */
  readonly trainImages: number;
  /** Validation images carved (seeded) from the train split, disjoint from the train images: the recipe is chosen on them. */
  readonly valImages: number;
  /** Test images drawn (seeded) from the test split; Infinity = all. Every reported number is on them. */
  readonly testImages: number;
  readonly seeds: number;
  readonly batch: number;
  readonly teacherEpochs: number;
  readonly pretrainEpochs: number;
  readonly finetuneEpochs: number;
  readonly probeEpochs: number;
  /** The fine-tune recipes tried on the validation split (names of FINETUNE_CANDIDATES). */
  readonly candidates: readonly string[];
  /** Decoder depths of the decoder group (Table 8) besides the preset's own, which is the digpt row. */
  readonly decoderDepths: readonly number[];
  /** Steps between checkpoints of every training run: what a kill -9 can lose. */
  readonly checkpointEvery: number;
  /** Jobs run at once (each is one worker thread on one core: tfjs-wasm is single-threaded under Node). */
  readonly concurrency: number;
}

/**
 * The budgets. `full` is sized from speeds measured on this 2-core machine (digpt-micro-32, batch 32, one training
 * thread per job, two jobs side by side, the 55,000 train images; 2026-12-01 21:37-21:48 UTC, the machine otherwise
 * quiet, load average 1.8-3.4), in images/s of each of the two jobs:
 *
 *   pretrain digpt 133 (132-133), gen-only 177, kd 195, mae 248, pixels 161; decoder depth 2: 94, depth 4: 61
 *   fine-tune (and the teacher, the same job) 262-264; batch 128 instead of 32: 135-137 for digpt (no gain)
 *   a k-NN evaluation (55,000 + 10,000 images) ~25 s; a fine-tune's evaluation (10,000) ~14 s; a linear probe of
 *   90 epochs 1 min 46 s alone; starting a job ~3 s
 *
 * The same jobs ran 1.5-2x slower while other sessions' test suites shared the cores (load average 4-9: `small` at
 * 21:18-21:31 measured digpt 64, pixels 78, gen-only 82, decoder depths 50 / 33, fine-tunes 130-270 img/s).
 * PLANNING_SPEEDS holds the quiet numbers; `full` (78 jobs: 3 seeds, 2 pretraining epochs, 1 fine-tuning epoch, a
 * 10-epoch teacher) comes to ~4 h 27 min with them and ~5 h 32 min at 0.8x of them (the runner's schedule on paper,
 * plannedWallSeconds in ablations.ts: 3-4 min of it one core waiting), under the 6 hours asked for; slower than that,
 * the same command run again goes on from where a sitting stopped. Its run folders take ~2 GB (every checkpoint kept).
 */
export const BUDGETS: Readonly<Record<BudgetName, Budget>> = {
  smoke: {
    name: 'smoke',
    preset: 'digpt-micro-32',
    trainImages: 256,
    valImages: 64,
    testImages: 128,
    seeds: 1,
    batch: 16,
    teacherEpochs: 0.25,
    pretrainEpochs: 0.25,
    finetuneEpochs: 0.25,
    probeEpochs: 5,
    candidates: ['round-1', 'crop-1'],
    decoderDepths: [2, 4],
    checkpointEvery: 2,
    concurrency: 2,
  },
  small: {
    name: 'small',
    preset: 'digpt-micro-32',
    trainImages: 5000,
    valImages: 1000,
    testImages: 2000,
    seeds: 1,
    batch: 32,
    teacherEpochs: 4,
    pretrainEpochs: 1,
    finetuneEpochs: 1,
    probeEpochs: 50,
    candidates: ['round-1', 'crop-0.35', 'crop-1', 'crop-1-ld-0.9'],
    decoderDepths: [2, 4],
    checkpointEvery: 50,
    concurrency: 2,
  },
  full: {
    name: 'full',
    preset: 'digpt-micro-32',
    trainImages: Infinity,
    valImages: 5000,
    testImages: Infinity,
    seeds: 3,
    batch: 32,
    teacherEpochs: 10,
    pretrainEpochs: 2,
    finetuneEpochs: 1,
    probeEpochs: 90,
    candidates: ['round-1', 'crop-0.35', 'crop-1', 'crop-1-ld-0.9'],
    decoderDepths: [2, 4],
    checkpointEvery: 250,
    concurrency: 2,
  },
};

/** Optimisation steps of `epochs` passes over `images` train images (the last partial batch dropped, as the runs do). */
export function stepsFor(epochs: number, images: number, batch: number): number {
  return Math.max(1, Math.round(epochs * Math.max(1, Math.floor(images / batch))));
}

/** The speeds the budgets are planned with: the quiet-machine measurements in BUDGETS' comment. */
export const PLANNING_SPEEDS = {
  /** Images/s of one pretraining job while another runs beside it, by row. */
  pretrain: { digpt: 133, 'gen-only': 177, kd: 195, mae: 248, pixels: 161 } as Readonly<
    Record<string, number>
  >,
  /** D-iGPT with deeper decoders, by depth. */
  decoder: { 2: 94, 4: 61 } as Readonly<Record<number, number>>,
  /** Images/s of a fine-tuning job (the teacher's too). */
  finetune: 263,
  /** A k-NN evaluation of a pretraining run of 55,000 train and 10,000 test images (at step 0 and each epoch's end). */
  knnSeconds: 25,
  /** A fine-tune's evaluation of 10,000 test images at each epoch's end. */
  evalSeconds: 14,
  /** A linear probe of 90 epochs on 55,000 train and 10,000 test images, beside another job. */
  probeSeconds: 120,
  /** Starting a job: a worker, tfjs, the decoded images. */
  startSeconds: 5,
} as const;

/** What planning a budget's time takes: seeds, the source's train images, and a slowdown of every speed. */
export interface PlanOptions {
  readonly seeds?: number;
  readonly sourceTrainImages?: number;
  /** Scales every speed (0.8: each job 20% slower, as on a busier machine). */
  readonly slowdown?: number;
}

/** The planned seconds of one job of a budget, from PLANNING_SPEEDS. */
export function plannedJobSeconds(
  b: Budget,
  job: { readonly kind: JobResult['kind']; readonly row?: RowDef },
  o: PlanOptions = {},
): number {
  const speeds = PLANNING_SPEEDS;
  const k = o.slowdown ?? 1;
  const train = Math.min(b.trainImages, (o.sourceTrainImages ?? 60_000) - b.valImages);
  const test = Math.min(b.testImages, 10_000);
  const images = (epochs: number): number => stepsFor(epochs, train, b.batch) * b.batch;
  const epochEnds = (epochs: number): number => Math.floor(epochs + 1e-9);
  // evaluations scale with the images they read (the probe's with its epochs too)
  const knn = (speeds.knnSeconds * (train + test)) / 65_000;
  const evaluation = (speeds.evalSeconds * test) / 10_000;
  const finetune = (epochs: number): number =>
    images(epochs) / (speeds.finetune * k) +
    (evaluation / k) * Math.max(1, epochEnds(epochs)) +
    speeds.startSeconds;
  switch (job.kind) {
    case 'teacher':
      return finetune(b.teacherEpochs);
    case 'finetune':
    case 'select':
      return finetune(b.finetuneEpochs);
    case 'probe':
    case 'select-probe':
      return (speeds.probeSeconds * (train + test) * b.probeEpochs) / (65_000 * 90) / k + speeds.startSeconds;
    case 'encoder':
      return speeds.startSeconds;
    case 'pretrain': {
      const r = job.row;
      const ips = r?.decDepth ? (speeds.decoder[r.decDepth] ?? 50) : (speeds.pretrain[r?.name ?? ''] ?? 100);
      return (
        images(b.pretrainEpochs) / (ips * k) +
        (knn / k) * (1 + epochEnds(b.pretrainEpochs)) +
        speeds.startSeconds
      );
    }
  }
}

/**
 * The planned time of a budget: job-seconds summed, and that over `concurrency` jobs at a time (the runner's own
 * schedule, with its waits for dependencies, is `plannedWallSeconds` in ablations.ts).
 */
export function plannedSeconds(
  b: Budget,
  o: PlanOptions = {},
): { jobs: number; jobSeconds: number; seconds: number } {
  const seeds = o.seeds ?? b.seeds;
  let jobs = 0;
  let sum = 0;
  const add = (kind: JobResult['kind'], row?: RowDef, n = 1): void => {
    jobs += n;
    sum += plannedJobSeconds(b, row ? { kind, row } : { kind }, o) * n;
  };
  add('teacher');
  for (let i = 0; i < b.candidates.length; i++) add('select');
  add('select-probe');
  for (const r of rowsOf(b)) {
    add(r.objective ? 'pretrain' : 'encoder', r, seeds);
    add('probe', r, seeds);
    add('finetune', r, seeds);
  }
  return { jobs, jobSeconds: sum, seconds: sum / Math.max(1, b.concurrency) };
}

/** A row of the tables: an encoder and how it was pretrained. */
export interface RowDef {
  readonly name: 'digpt' | 'gen-only' | 'kd' | 'mae' | 'pixels' | 'scratch' | `dec-${number}`;
  readonly label: string;
  /** Pretraining objective; undefined for the randomly initialised encoder. */
  readonly objective?: string;
  readonly target: 'teacher' | 'pixels' | 'none';
  /** The decoders' depth when it is not the preset's (the decoder group). */
  readonly decDepth?: number;
  /** objectives: Tables 5, 7, 9 and the random encoder; decoder: Table 8's extra depths. */
  readonly group: 'objectives' | 'decoder';
}

export const OBJECTIVE_ROWS: readonly RowDef[] = [
  {
    name: 'digpt',
    label: 'D-iGPT (gen + dis), teacher features',
    objective: 'digpt',
    target: 'teacher',
    group: 'objectives',
  },
  {
    name: 'gen-only',
    label: 'generative only, teacher features',
    objective: 'gen-only',
    target: 'teacher',
    group: 'objectives',
  },
  { name: 'kd', label: 'KD (feature distillation)', objective: 'kd', target: 'teacher', group: 'objectives' },
  {
    name: 'mae',
    label: 'MAE with teacher targets',
    objective: 'mae',
    target: 'teacher',
    group: 'objectives',
  },
  {
    name: 'pixels',
    label: 'D-iGPT, pixel targets',
    objective: 'digpt',
    target: 'pixels',
    group: 'objectives',
  },
  { name: 'scratch', label: 'random init (no pretraining)', target: 'none', group: 'objectives' },
];

/** The decoder group's rows besides the digpt row (which has the preset's depth). */
export function decoderRows(depths: readonly number[]): RowDef[] {
  return depths.map((d) => ({
    name: `dec-${d}` as const,
    label: `D-iGPT, teacher features, decoders of depth ${d}`,
    objective: 'digpt',
    target: 'teacher' as const,
    decDepth: d,
    group: 'decoder' as const,
  }));
}

/** Every row of a budget: the objective rows, then the decoder group's. */
export function rowsOf(b: Pick<Budget, 'decoderDepths'>): RowDef[] {
  return [...OBJECTIVE_ROWS, ...decoderRows(b.decoderDepths)];
}

/** A fine-tuning recipe: the FINETUNE settings the runner gives (the length comes from the budget). */
export interface FinetuneRecipe {
  readonly name: string;
  readonly blr: number;
  readonly layer_decay: number;
  /** RandomResizedCrop's smallest area (0.08: timm's and the first round's; 1: the whole image, flipped). */
  readonly crop_min: number;
  readonly drop_path: number;
  readonly smoothing: number;
  readonly mixup: number;
  readonly cutmix: number;
  readonly erase: number;
  /** Linear warm-up as a share of the run's steps. */
  readonly warmup_share: number;
}

const LIGHT = { drop_path: 0, smoothing: 0.1, mixup: 0, cutmix: 0, erase: 0, warmup_share: 0.1 } as const;

/**
 * The fine-tune recipes the runner chooses among on the validation split (budget.candidates names which). The first
 * is the first round's; the others try the milder crops a 32 px image wants (1: the whole image, flipped: what made
 * the teacher learn fastest, see RECIPE.teacher), and less layer decay, which moves the lower blocks more.
 */
export const FINETUNE_CANDIDATES: readonly FinetuneRecipe[] = [
  { name: 'round-1', blr: 1e-2, layer_decay: 0.75, crop_min: 0.08, ...LIGHT },
  { name: 'crop-0.35', blr: 1e-2, layer_decay: 0.75, crop_min: 0.35, ...LIGHT },
  { name: 'crop-1', blr: 1e-2, layer_decay: 0.75, crop_min: 1, ...LIGHT },
  { name: 'crop-1-ld-0.9', blr: 1e-2, layer_decay: 0.9, crop_min: 1, ...LIGHT },
];

export function candidate(name: string): FinetuneRecipe {
  const c = FINETUNE_CANDIDATES.find((x) => x.name === name);
  if (!c)
    throw new Error(
      `unknown fine-tune recipe '${name}'; known: ${FINETUNE_CANDIDATES.map((x) => x.name).join(', ')}`,
    );
  return c;
}

/** Base lrs (per 256 images) and the teacher's recipe. */
export const RECIPE = {
  /** The demo's and the default's (PRETRAIN blr); 10% warm-up, cosine to 0 (PRETRAIN_RECIPE). */
  pretrainBlr: 5e-3,
  /**
   * The teacher: the preset's encoder as a classifier trained from scratch on the train images, flipped but not
   * cropped, no layer decay and no regularisers. Chosen on the validation images (55,000 train / 5,000 val, 8 epochs,
   * one job; 2026-12-01): RandomResizedCrop 0.5-1 gave val top-1 0.703 / 0.772 / 0.806 / 0.815 after epochs 1-4;
   * the whole image flipped gave 0.792 / 0.824 / 0.840 / 0.856 / 0.873 / 0.880 / 0.886 / 0.889 after epochs 1-8
   * (the first round's 0.08-1 crop had left it at 0.74 on the test images after 2 epochs). `full` trains it 10 epochs:
   * the curve still rose at 8, and 0.889 on val left little margin over the 0.88 asked for on the test images.
   */
  teacher: {
    blr: 4e-3,
    layer_decay: 1,
    crop_min: 1,
    drop_path: 0,
    smoothing: 0.1,
    mixup: 0,
    cutmix: 0,
    erase: 0,
    warmup_share: 0.05,
  },
} as const;

/** The rule that picks the fine-tune recipe: the highest top-1 on the validation images (the first on a tie). */
export function chooseRecipe(scores: readonly { name: string; valTop1: number }[]): string {
  let best: { name: string; valTop1: number } | undefined;
  for (const s of scores) if (!best || s.valTop1 > best.valTop1) best = s;
  if (!best) throw new Error('no fine-tune recipe was scored');
  return best.name;
}

/** What one finished job measured. */
export interface JobResult {
  readonly id: string;
  readonly kind: 'teacher' | 'pretrain' | 'probe' | 'finetune' | 'encoder' | 'select' | 'select-probe';
  readonly row?: RowDef['name'];
  /** A 'select' job: the recipe it tried. */
  readonly candidate?: string;
  readonly seed: number;
  /** Wall-clock of the job, summed over the sittings it ran in. */
  readonly seconds: number;
  /** The run folder (or file), relative to the experiment folder. */
  readonly dir?: string;
  readonly steps?: number;
  /** Mean images/s over the job's training steps. */
  readonly imgPerS?: number;
  /**
   * Top-1 of the job's evaluation split at its last step: the test images for teacher / probe / finetune, the
   * validation images for select / select-probe.
   */
  readonly top1?: number;
  /** Pretraining: k-NN top-1 on the test images at the last step. */
  readonly knnTop1?: number;
  /** Pretraining: [step, loss] per step. */
  readonly losses?: [number, number][];
  /** The teacher: sha256 of teacher.safetensors. */
  readonly sha256?: string;
}
