// Each run kind's settings, declared once in config.json's names (bounds, default, one-line help): the launch request,
// the job spec, the CLI flags and the config.json check all derive from these tables. Pure zod: no Node, no engine.
import { z } from 'zod';
import { RunSetting as S } from './run-settings.js';

export const Objective = z.enum(['digpt', 'gen-only', 'dis-only', 'kd', 'mae']);
export type Objective = z.infer<typeof Objective>;

/** One run setting as every surface sees it (MAE's argparse help, nanoGPT's GPTConfig defaults). */
export interface Setting {
  /** The value's type and bounds (run-settings.ts for the numbers). */
  readonly schema: z.ZodType;
  /** How the CLI reads it: a whole number, a decimal, or a word. */
  readonly type: 'int' | 'real' | 'text';
  /** The value's placeholder in usage lines (N, X, PX, NAME). */
  readonly value: string;
  /** One line: what it does (the CLI's --help, the launch form's hint). */
  readonly help: string;
  /** The value when a launch, a command line or a job leaves it out; the job applies it. */
  readonly default?: number | string;
  /** A default that depends on the run (its data, its preset): said in the help, resolved where the run is made. */
  readonly shown?: string;
  /** Also takes the word 'auto', decided in the job (config.json records the number). */
  readonly auto?: true;
}

export type SettingTable = Readonly<Record<string, Setting>>;

const probeEpochs = z.number().int().positive();

/** The length, batch and seed of both training kinds; `epochs` is the default length each shows. */
const training = (epochs: number) =>
  ({
    epochs: {
      schema: S.epochs,
      type: 'real',
      value: 'X',
      help: 'passes over the train set',
      default: epochs,
    },
    steps: {
      schema: S.steps,
      type: 'int',
      value: 'N',
      help: 'optimisation steps in all (instead of --epochs)',
    },
    batch: { schema: S.batch, type: 'int', value: 'N', help: 'images per micro-batch', default: 32 },
    accum: { schema: S.accum, type: 'int', value: 'N', help: 'micro-batches per step', default: 1 },
    seed: { schema: S.seed, type: 'int', value: 'N', help: 'seed of every random draw', default: 0 },
  }) as const;

/** A recipe piece that 0 switches off. */
const recipe = <T extends z.ZodType>(schema: T, help: string, dflt: number) =>
  ({ schema, type: 'real', value: 'X', help: `${help} (0 switches it off)`, default: dflt }) as const;

/** Pretraining (config.json kind 'pretrain'); the run folder's fixed recipe is PRETRAIN_RECIPE. */
export const PRETRAIN = {
  objective: {
    schema: Objective,
    type: 'text',
    value: 'NAME',
    help: `training objective: ${Objective.options.join(', ')}`,
    default: 'digpt',
  },
  ...training(1),
  blr: {
    schema: S.blr,
    type: 'real',
    value: 'X',
    help:
      'base learning rate per 256 images; 5e-3 learns in a few hundred steps on a small dataset ' +
      "(the paper's 1.5e-4 is for batch 4096 over 300 epochs)",
    default: 5e-3,
  },
  checkpoint_every: {
    schema: S.checkpoint_every,
    type: 'int',
    value: 'N',
    help: 'steps between checkpoints',
    default: 100,
  },
  img_size: {
    schema: S.img_size,
    type: 'int',
    value: 'PX',
    help: "input side instead of the preset's",
    shown: "the preset's",
  },
  workers: {
    schema: S.workers,
    type: 'int',
    value: '1|2|auto',
    help: 'training threads sharing each micro-batch; auto: 2 on wasm with 2+ cores',
    default: 'auto',
    auto: true,
  },
} as const satisfies SettingTable;

/** What every pretraining run records without a flag for it (the paper's recipe). */
export const PRETRAIN_RECIPE = {
  min_lr: 0,
  weight_decay: 0.05,
  /** Warm-up as a share of the steps (at least one step). */
  warmup_share: 0.1,
} as const;

/** Fine-tuning (config.json kind 'finetune'): the recipe of the spec's section 3. */
export const FINETUNE = {
  ...training(100),
  blr: { schema: S.blr, type: 'real', value: 'X', help: 'base learning rate per 256 images', default: 1e-3 },
  warmup_epochs: {
    schema: S.warmup_epochs,
    type: 'real',
    value: 'X',
    help: 'linear warm-up of the learning rate',
    default: 5,
  },
  checkpoint_every: {
    schema: S.checkpoint_every,
    type: 'int',
    value: 'N',
    help: 'steps between checkpoints',
    shown: 'one epoch',
  },
  layer_decay: {
    schema: S.layer_decay,
    type: 'real',
    value: 'X',
    help: 'layer-wise learning-rate decay (1: none)',
    default: 0.65,
  },
  drop_path: recipe(S.drop_path, 'stochastic depth rate', 0.1),
  smoothing: recipe(S.smoothing, 'label smoothing', 0.1),
  mixup: recipe(S.mixup, 'mixup alpha', 0.8),
  cutmix: recipe(S.cutmix, 'cutmix alpha', 1.0),
  erase: recipe(S.erase, 'random erasing probability', 0.25),
  crop_min: {
    // optional in config.json too: a run written before this setting existed reads as the 0.08 it trained with
    schema: z.number().finite().gt(0).max(1).optional(),
    type: 'real',
    value: 'X',
    help: "RandomResizedCrop's smallest area, a share of the image (1: the whole image, flipped only)",
    default: 0.08,
  },
} as const satisfies SettingTable;

/** What every fine-tuning run records without a flag for it. */
export const FINETUNE_RECIPE = { min_lr: 1e-6, weight_decay: 0.05, eval_batch: 64 } as const;

/** Linear probe of a frozen encoder. */
export const PROBE = {
  epochs: { schema: probeEpochs, type: 'int', value: 'N', help: "the probe's epochs", default: 90 },
  seed: { schema: S.seed, type: 'int', value: 'N', help: 'seed of the probe', default: 0 },
} as const satisfies SettingTable;

/** Weighted k-NN of a frozen encoder. */
export const KNN = {
  k: { schema: S.k, type: 'int', value: 'N', help: 'neighbours', default: 20 },
  seed: { schema: S.seed, type: 'int', value: 'N', help: 'seed', default: 0 },
} as const satisfies SettingTable;

/** Every kind's table, by config.json's `kind`. */
export const RUN_KINDS = { pretrain: PRETRAIN, finetune: FINETUNE, probe: PROBE, knn: KNN } as const;
export type RunKind = keyof typeof RUN_KINDS;

/** A setting's value in a launch or a job: its schema's, or 'auto' where it takes the word. */
type Given<E extends Setting> = E extends { auto: true }
  ? z.output<E['schema']> | 'auto'
  : z.output<E['schema']>;

/** The settings of a table as a launch or a job gives them: each optional (absent = its default). */
export type Settings<T extends SettingTable> = { [K in keyof T]?: Given<T[K]> };

type Shape<T extends SettingTable> = {
  [K in keyof T]: z.ZodOptional<
    T[K] extends { auto: true } ? z.ZodUnion<[T[K]['schema'], z.ZodLiteral<'auto'>]> : T[K]['schema']
  >;
};

/** The zod shape of a table's settings, each optional: spread into the launch request and the job spec. */
export function settingsShape<T extends SettingTable>(table: T): Shape<T> {
  return Object.fromEntries(
    Object.entries(table).map(([name, s]) => [
      name,
      (s.auto ? z.union([s.schema, z.literal('auto')]) : s.schema).optional(),
    ]),
  ) as Shape<T>;
}

type Defaulted<T extends SettingTable> = {
  readonly [K in keyof T as T[K] extends { default: unknown } ? K : never]: Given<T[K]>;
};

/** A table's defaults by name: the one place each is written. */
export function defaultsOf<T extends SettingTable>(table: T): Defaulted<T> {
  return Object.fromEntries(
    Object.entries(table)
      .filter(([, s]) => s.default !== undefined)
      .map(([name, s]) => [name, s.default]),
  ) as Defaulted<T>;
}

export const PRETRAIN_DEFAULTS = defaultsOf(PRETRAIN);
export const FINETUNE_DEFAULTS = defaultsOf(FINETUNE);
export const PROBE_DEFAULTS = defaultsOf(PROBE);
export const KNN_DEFAULTS = defaultsOf(KNN);

/** A setting's CLI flag: config.json's name with dashes (`checkpoint_every` -> `--checkpoint-every`). */
export function flagName(setting: string): string {
  return setting.replace(/_/g, '-');
}

/** A default as the help shows it: small numbers as 1.5e-4, not 0.00015. */
export function shownDefault(s: Setting): string | undefined {
  if (s.default === undefined) return s.shown;
  const v = s.default;
  return typeof v === 'number' && v !== 0 && Math.abs(v) < 0.01 ? v.toExponential() : String(v);
}

type Stored<T extends SettingTable, N extends keyof T> = { [K in N]: T[K]['schema'] };

/** The zod shape of settings as config.json holds them: resolved, so each required and never 'auto'. */
export function storedShape<T extends SettingTable, const N extends keyof T & string = keyof T & string>(
  table: T,
  names: readonly N[] = Object.keys(table) as N[],
): Stored<T, N> {
  return Object.fromEntries(names.map((n) => [n, table[n]?.schema])) as Stored<T, N>;
}
