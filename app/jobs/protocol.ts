// Messages between the job host and the engine's worker thread (Signal-style: readonly unions with a sequence number).
import { z } from 'zod';
import { FINETUNE, KNN, PRETRAIN, PROBE, settingsShape } from '../api/run-kinds.js';
import type { BackendInfo } from '../api/contract.js';
import type { StepRecord } from '../runs/metrics.js';

/** A fine-tuning step as the job reports it. */
export interface FinetuneStepLine {
  readonly step: number;
  readonly loss: number;
  readonly lr: number;
  readonly img_per_s: number;
  readonly epoch: number;
  readonly loss_gen?: undefined;
  readonly loss_dis?: undefined;
}

const path = z.string().min(1);

/**
 * A D-iGPT pretraining job as the CLI, the desktop app and `serve` describe it: where, and the settings of
 * run-kinds.ts's PRETRAIN table (config.json's names; absent = the table's default, applied in the job).
 */
export const PretrainJob = z.strictObject({
  kind: z.literal('pretrain'),
  /** Dataset folder (ImageFolder, flat, splits, or IDX files). */
  data: path,
  preset: z.string(),
  /** 'pixels', a CLIP checkpoint, or a classifier checkpoint the workbench exported. */
  teacher: path,
  /** Run folder to create. */
  out: path,
  /** Optional official D-iGPT checkpoint to start from (`digpt import`). */
  init: path.optional(),
  ...settingsShape(PRETRAIN),
});
export type PretrainJob = Readonly<z.infer<typeof PretrainJob>>;

/** Continue a pretraining or fine-tuning run from its newest good checkpoint. */
export interface ResumeJob {
  readonly kind: 'resume';
  readonly run: string;
}

/** Fine-tune a classifier on a labelled dataset: where, and the FINETUNE table's settings (the spec's recipe). */
export const FinetuneJob = z.strictObject({
  kind: z.literal('finetune'),
  data: path,
  /** A pretraining run, a fine-tuning run, a weights file, or 'scratch'. */
  from: path,
  /** Architecture for 'scratch': a D-iGPT preset whose encoder is used. */
  preset: z.string().optional(),
  out: path,
  ...settingsShape(FINETUNE),
});
export type FinetuneJob = Readonly<z.infer<typeof FinetuneJob>>;

/** Evaluate a frozen encoder on a labelled dataset (a linear probe), top-1 on the validation split. */
export const ProbeJob = z.strictObject({
  kind: z.literal('probe'),
  data: path,
  /** A pretraining run, a fine-tuning run or a weights file. */
  source: path,
  ...settingsShape(PROBE),
});
export type ProbeJob = Readonly<z.infer<typeof ProbeJob>>;

/** The same with weighted k-NN. */
export const KnnJob = z.strictObject({
  kind: z.literal('knn'),
  data: path,
  source: path,
  ...settingsShape(KNN),
});
export type KnnJob = Readonly<z.infer<typeof KnnJob>>;

export type EvalJob = ProbeJob | KnnJob;

/** The schemas of the jobs that run a kind of run-kinds.ts (checked at job start, checkJobSpec). */
export const RunJobSchemas = {
  pretrain: PretrainJob,
  finetune: FinetuneJob,
  probe: ProbeJob,
  knn: KnnJob,
} as const;

/** Write a run's export (done in the worker: it needs the engine). */
export interface ExportJob {
  readonly kind: 'export';
  readonly run: string;
  readonly format: 'timm' | 'digpt' | 'tfjs';
  readonly out?: string;
  /** Replace existing export files (the run's default path is replaced without it). */
  readonly overwrite?: boolean;
  /** The target must lie inside one of these folders (digpt serve: the run's export/ and the workspace's exports/). */
  readonly within?: readonly string[];
  /** Folders never written (registered datasets), except inside a run's export/ folder or `within`. */
  readonly notWithin?: readonly string[];
}

/** Write a randomly initialised classifier of a preset's encoder: what a 'scratch' fine-tune of `seed` starts from. */
export interface InitJob {
  readonly kind: 'init';
  readonly preset: string;
  readonly classes: readonly string[];
  readonly seed: number;
  /** The safetensors file to write. */
  readonly out: string;
}

/**
 * Write a scale-out bundle (`digpt scaleout`): of the pretraining run `run`, or of a new run of `pretrain`'s settings
 * made for it (its step-0 checkpoint: the workbench's initial weights), for `nodes` x `gpus_per_node` ranks.
 */
export interface ScaleoutJob {
  readonly kind: 'scaleout';
  readonly run?: string;
  readonly pretrain?: Omit<PretrainJob, 'out'>;
  /** The bundle folder to create (it must not exist). */
  readonly out: string;
  readonly nodes: number;
  readonly gpus_per_node: number;
  /** Where the dataset folder is on the cluster (default: where it is here). */
  readonly data_root?: string;
}

export type JobSpec = PretrainJob | ResumeJob | FinetuneJob | EvalJob | ExportJob | InitJob | ScaleoutJob;

export type HostMessage =
  | { readonly seq: number; readonly type: 'start'; readonly job: JobSpec }
  | { readonly seq: number; readonly type: 'pause' }
  | { readonly seq: number; readonly type: 'continue' }
  | { readonly seq: number; readonly type: 'stop' };

export type WorkerEvent =
  | { readonly seq: number; readonly type: 'backend'; readonly backend: BackendInfo }
  | { readonly seq: number; readonly type: 'log'; readonly level: 'info' | 'warn'; readonly text: string }
  | {
      readonly seq: number;
      readonly type: 'progress';
      readonly phase: string;
      readonly done: number;
      readonly total: number;
    }
  | {
      readonly seq: number;
      readonly type: 'run';
      readonly dir: string;
      readonly startStep: number;
      readonly totalSteps: number;
      readonly clustersPerSide: number;
    }
  | {
      readonly seq: number;
      readonly type: 'step';
      /** Pretraining steps carry StepRecord; fine-tuning steps its own record (step, loss, lr, epoch, img_per_s). */
      readonly record: StepRecord | FinetuneStepLine;
      /** Cluster order of the last micro-batch, [B*K] (pretraining only). */
      readonly order?: Int32Array;
      /** Per-cluster error of the last micro-batch, [B*(K-1)], in sequence order (pretraining only). */
      readonly clusterError?: Float32Array;
      /** The first few student views of that micro-batch, RGB [count, size, size, 3] (pretraining only). */
      readonly samples?: { readonly count: number; readonly size: number; readonly pixels: Uint8Array };
    }
  | {
      readonly seq: number;
      readonly type: 'eval';
      readonly record: Readonly<Record<string, number | string>>;
    }
  | {
      readonly seq: number;
      readonly type: 'result';
      readonly result: Readonly<Record<string, number | string>>;
    }
  | { readonly seq: number; readonly type: 'checkpoint'; readonly folder: string; readonly step: number }
  | { readonly seq: number; readonly type: 'paused' | 'continued' }
  | {
      readonly seq: number;
      readonly type: 'done';
      readonly dir: string;
      readonly step: number;
      readonly stopped: boolean;
    }
  | { readonly seq: number; readonly type: 'error'; readonly name: string; readonly message: string };
