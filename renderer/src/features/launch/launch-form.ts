// Pure: the launch form's values -> a LaunchRequest checked with the contract's own schema (field -> message).
import { LaunchRequest } from '../../../../app/api/contract.js';
import {
  FINETUNE_DEFAULTS,
  KNN_DEFAULTS,
  PRETRAIN_DEFAULTS,
  PROBE_DEFAULTS,
  RUN_KINDS,
  type SettingTable,
} from '../../../../app/api/run-kinds.js';

export type LaunchKind = 'pretrain' | 'finetune' | 'probe' | 'knn';
export type Objective = 'digpt' | 'gen-only' | 'dis-only' | 'kd' | 'mae';

/** What the form holds: text fields stay strings until submitted (so a half-typed number is not lost). */
export interface LaunchForm {
  kind: LaunchKind;
  dataset: string;
  // pretrain
  objective: Objective;
  /** 'pixels' | 'builtin' | a run id | 'file' (then teacherFile). */
  teacher: string;
  teacherFile: string;
  preset: string;
  // finetune / probe / knn
  from: string;
  // training length
  lengthBy: 'steps' | 'epochs';
  steps: string;
  epochs: string;
  batch: string;
  accum: string;
  blr: string;
  seed: string;
  /** Pretraining threads: 'auto' (both cores on wasm), '1' or '2'. */
  workers: 'auto' | '1' | '2';
}

export const OBJECTIVES: readonly { value: Objective; label: string }[] = [
  { value: 'digpt', label: 'D-iGPT (generative + discriminative)' },
  { value: 'gen-only', label: 'Generative decoder only' },
  { value: 'dis-only', label: 'Discriminative decoder only' },
  { value: 'kd', label: 'Feature distillation (kd)' },
  { value: 'mae', label: 'MAE with teacher targets' },
];

/** The table's default of a setting as the form's text (run-kinds.ts: the CLI and the job use the same). */
const text = (v: number | string): string => String(v);

/**
 * A new form: the run kind's defaults from its settings table, except the training length, where the form suggests
 * a short run (200 steps or 10 epochs) instead of the recipes' 1 and 100 epochs.
 */
export function defaultForm(kind: LaunchKind = 'pretrain'): LaunchForm {
  const training = kind === 'finetune' ? FINETUNE_DEFAULTS : PRETRAIN_DEFAULTS;
  const seed = kind === 'probe' ? PROBE_DEFAULTS.seed : kind === 'knn' ? KNN_DEFAULTS.seed : training.seed;
  return {
    kind,
    dataset: '',
    objective: PRETRAIN_DEFAULTS.objective,
    teacher: 'builtin',
    teacherFile: '',
    preset: '',
    from: '',
    lengthBy: 'steps',
    steps: '200',
    epochs: '10',
    batch: text(training.batch),
    accum: text(training.accum),
    blr: text(training.blr),
    seed: text(seed),
    workers: text(PRETRAIN_DEFAULTS.workers) as LaunchForm['workers'],
  };
}

/** A setting's one-line help from its run kind's table (the CLI's --help says the same), for the form's hints. */
export function settingHelp(kind: LaunchKind, name: string): string | undefined {
  const table: SettingTable = RUN_KINDS[kind];
  return table[name]?.help;
}

/** A number from a text field; '' -> undefined, garbage -> NaN (the schema then names the field). */
function num(text: string): number | undefined {
  const t = text.trim();
  if (t === '') return undefined;
  return Number(t);
}

export type BuildResult =
  { ok: true; request: LaunchRequest } | { ok: false; errors: Record<string, string> };

/** The request for the form, or the schema's messages per field. */
export function buildLaunch(f: LaunchForm): BuildResult {
  const errors: Record<string, string> = {};
  if (!f.dataset) errors.dataset = 'choose a dataset';
  const length = f.lengthBy === 'steps' ? { steps: num(f.steps) } : { epochs: num(f.epochs) };
  let raw: Record<string, unknown>;
  if (f.kind === 'pretrain') {
    const teacher = f.teacher === 'file' ? f.teacherFile.trim() : f.teacher;
    if (!teacher) errors.teacher = 'type the path of a teacher file';
    if (!f.preset) errors.preset = 'choose a preset';
    raw = {
      kind: 'pretrain',
      dataset: f.dataset,
      preset: f.preset,
      teacher,
      objective: f.objective,
      ...length,
      batch: num(f.batch),
      accum: num(f.accum),
      blr: num(f.blr),
      seed: num(f.seed),
      workers: f.workers === 'auto' ? 'auto' : Number(f.workers),
    };
  } else if (f.kind === 'finetune') {
    if (!f.from) errors.from = 'choose a run or scratch';
    if (f.from === 'scratch' && !f.preset) errors.preset = 'a run from scratch needs a preset';
    raw = {
      kind: 'finetune',
      dataset: f.dataset,
      from: f.from,
      ...(f.preset ? { preset: f.preset } : {}),
      ...length,
      batch: num(f.batch),
      accum: num(f.accum),
      ...(f.blr.trim() ? { blr: num(f.blr) } : {}),
      seed: num(f.seed),
    };
  } else {
    if (!f.from) errors.from = 'choose a run';
    raw = { kind: f.kind, dataset: f.dataset, from: f.from, seed: num(f.seed) };
  }
  const parsed = LaunchRequest.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const field = String(issue.path[0] ?? 'form');
      errors[field] ??= issue.message;
    }
  }
  if (Object.keys(errors).length > 0 || !parsed.success) return { ok: false, errors };
  return { ok: true, request: parsed.data };
}
