// A run's config.json, checked when read back (resume, fine-tune or probe from a run, export) with the same bounds as
// the CLI and the launch form (app/api/run-settings.ts); job specs are checked with them at job start too.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { z } from 'zod';
import { FINETUNE, PRETRAIN, storedShape } from '../api/run-kinds.js';
import { RunSetting as S, checkSetting } from '../api/run-settings.js';
import {
  ConfigError,
  resolveDigptConfig,
  resolveVitConfig,
  type DigptConfig,
  type VitConfig,
} from '../../engine/config.js';
import { RunJobSchemas, type JobSpec } from '../jobs/protocol.js';

/**
 * Everything that defines a pretraining run; config.json holds exactly this: the PRETRAIN table's settings resolved
 * (app/api/run-kinds.ts, where each is documented), the recipe, and the model with teacher_grid/teacher_dim set.
 */
export type PretrainConfig = Readonly<z.infer<typeof PretrainConfigSchema>>;

/** Everything that defines a fine-tuning run; config.json holds exactly this (the FINETUNE table, every default resolved). */
export type FinetuneConfig = Readonly<z.infer<typeof FinetuneConfigSchema>>;

/** A model block: an object whose numbers the engine's resolver checks (it names the field). */
function modelBlock<T>(resolve: (raw: Record<string, unknown>) => T) {
  return z.record(z.string(), z.unknown()).transform((raw, ctx): T => {
    try {
      return resolve(raw);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      ctx.addIssue({ code: 'custom', message: e.message, path: e.field ? [e.field] : [] });
      return z.NEVER;
    }
  });
}

const path = z.string().min(1);

/** config.json of a pretraining run (PretrainConfig). */
export const PretrainConfigSchema = z.strictObject({
  kind: z.literal('pretrain'),
  /** Dataset folder (absolute). */
  data: path,
  preset: z.string(),
  /** The model, teacher_grid/teacher_dim already set from the teacher. */
  model: modelBlock<DigptConfig>((raw) => resolveDigptConfig(raw)),
  /** 'pixels' or a teacher file. */
  teacher: path,
  ...storedShape(PRETRAIN, ['objective', 'steps', 'batch', 'accum', 'seed', 'blr', 'checkpoint_every']),
  min_lr: S.min_lr,
  warmup_steps: S.warmup_steps,
  weight_decay: S.weight_decay,
  /**
   * Threads sharing each micro-batch, written when 2 ('auto' resolved in the job). Part of the run: the numerics
   * differ by float rounding, so a resumed run keeps the same number.
   */
  workers: PRETRAIN.workers.schema.optional(),
  /** How a scale-out bundle launches the run (app/worker/scaleout.ts); kept when the run comes back. */
  scaleout: z
    .strictObject({
      nodes: z.number().int().min(1),
      gpus_per_node: z.number().int().min(1),
      world_size: z.number().int().min(1),
      per_rank_batch: z.number().int().min(1),
      precision: z.enum(['fp32', 'bf16', 'fp16']),
      tf32: z.boolean(),
      teacher_file: z.string().min(1).nullable(),
      dataset: z.string().min(1),
    })
    .optional(),
});

/** config.json of a fine-tuning run (FinetuneConfig). */
export const FinetuneConfigSchema = z
  .strictObject({
    kind: z.literal('finetune'),
    from: path,
    /** The dataset folder (absolute), when the run was started from one. */
    data: path.optional(),
    model: modelBlock<VitConfig>((raw) => resolveVitConfig(raw)),
    classes: z.array(z.string()).min(2).readonly(),
    /** Train images per epoch / (batch * accum), rounded down (the last partial batch is dropped, as MAE). */
    steps_per_epoch: z.number().int().positive(),
    /** The table's settings resolved; `epochs` is steps / steps_per_epoch (fractional when steps was given). */
    ...storedShape(FINETUNE),
    min_lr: S.min_lr,
    weight_decay: S.weight_decay,
    eval_batch: S.eval_batch,
  })
  .superRefine((c, ctx) => {
    if (c.model.num_classes !== c.classes.length)
      ctx.addIssue({
        code: 'custom',
        path: ['model', 'num_classes'],
        message: `${c.model.num_classes} classes, but classes lists ${c.classes.length}`,
      });
  });

export type RunConfig = PretrainConfig | FinetuneConfig;

function issuesText(issues: readonly z.core.$ZodIssue[], value: unknown): string {
  return issues
    .map((i) => {
      const field = i.path.map(String).join('.');
      let got: unknown = value;
      for (const k of i.path)
        got = got && typeof got === 'object' ? (got as Record<string, unknown>)[String(k)] : undefined;
      const shown =
        i.code === 'unrecognized_keys' || got === undefined ? '' : ` (got ${JSON.stringify(got)})`;
      return `${field ? `${field}: ` : ''}${i.message}${shown}`;
    })
    .join('; ');
}

/** Checks a parsed config.json; the error names the file and the field: "RUN/config.json: blr: Too small ...". */
export function parseRunConfig(value: unknown, file: string): RunConfig {
  const kind = value && typeof value === 'object' ? (value as { kind?: unknown }).kind : undefined;
  if (kind !== 'pretrain' && kind !== 'finetune') {
    const what = kind === undefined ? 'missing' : JSON.stringify(kind);
    throw new ConfigError(
      `${file}: kind: ${what}; a training run's config says "pretrain" or "finetune"` +
        (kind === 'probe' || kind === 'knn' ? ` (a ${kind} is not a training run)` : ''),
      'kind',
    );
  }
  const schema = kind === 'pretrain' ? PretrainConfigSchema : FinetuneConfigSchema;
  const r = schema.safeParse(value);
  if (!r.success)
    throw new ConfigError(
      `${file}: ${issuesText(r.error.issues, value)}`,
      String(r.error.issues[0]?.path[0] ?? ''),
    );
  return r.data as RunConfig;
}

/** config.json of a probe or k-NN run the workbench launched: the job it ran, and the run's title. */
export const EvalRunConfigSchemas = {
  probe: RunJobSchemas.probe.extend({ title: z.string() }),
  knn: RunJobSchemas.knn.extend({ title: z.string() }),
} as const;
export type EvalRunConfig = z.infer<(typeof EvalRunConfigSchemas)['probe' | 'knn']>;

/** The config.json of any run folder: a training run's, or a probe's or k-NN's. */
export type AnyRunConfig = RunConfig | EvalRunConfig;

/** Checks the config.json of any run kind; the error names the file and the field. */
export function parseAnyRunConfig(value: unknown, file: string): AnyRunConfig {
  const kind = value && typeof value === 'object' ? (value as { kind?: unknown }).kind : undefined;
  if (kind !== 'probe' && kind !== 'knn') return parseRunConfig(value, file);
  const r = EvalRunConfigSchemas[kind].safeParse(value);
  if (!r.success)
    throw new ConfigError(
      `${file}: ${issuesText(r.error.issues, value)}`,
      String(r.error.issues[0]?.path[0] ?? ''),
    );
  return r.data;
}

/** RUN_DIR/config.json parsed as JSON (not yet checked); the error names the file. */
function readConfigFile(dir: string): { file: string; value: unknown } {
  const file = nodePath.join(dir, 'config.json');
  if (!fs.existsSync(file)) throw new Error(`${dir}: no config.json; not a run folder`);
  try {
    return { file, value: JSON.parse(fs.readFileSync(file, 'utf8')) };
  } catch (e) {
    throw new ConfigError(`${file}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

/** The checked config.json of the training run folder `dir` (pretrain or finetune). */
export function readRunConfig(dir: string): RunConfig {
  const { file, value } = readConfigFile(dir);
  return parseRunConfig(value, file);
}

/** The checked config.json of any run folder `dir` (what the workbench lists and shows). */
export function readAnyRunConfig(dir: string): AnyRunConfig {
  const { file, value } = readConfigFile(dir);
  return parseAnyRunConfig(value, file);
}

/** Threads sharing a micro-batch: two only where the replica gives a second core its work (wasm runs one thread). */
export function checkWorkersBackend(workers: number, backend: string, label: string): void {
  if (workers > 1 && backend !== 'wasm')
    throw new ConfigError(
      `${label} 2 runs on the wasm backend only; this process uses ${backend}` +
        (backend === 'webgpu'
          ? ' (webgpu trains on one GPU from one thread: use --workers 1)'
          : ' (a tfjs backend other than wasm already uses every core from one thread)'),
      'workers',
    );
}

/**
 * Checks a job spec with its kind's schema (run-kinds.ts's bounds, config.json's names, no unknown field) before
 * anything starts: a UI or CLI bug must not start a run with batch 0, a negative lr or a misspelt setting. Paths are
 * checked where they are used. The error names the job and the field: "pretrain job: batch: Too small ... (got 0)".
 */
export function checkJobSpec(job: JobSpec): void {
  switch (job.kind) {
    case 'pretrain':
    case 'finetune':
    case 'probe':
    case 'knn': {
      const r = RunJobSchemas[job.kind].safeParse(job);
      if (!r.success) throw new Error(`${job.kind} job: ${issuesText(r.error.issues, job)}`);
      return;
    }
    case 'init':
      checkSetting('seed', job.seed, 'init job: seed');
      return;
    case 'resume':
    case 'export':
    case 'scaleout':
      return;
  }
}
