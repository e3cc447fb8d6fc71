// Messages between the job host and the engine's worker thread (Signal-style: readonly unions with a sequence number).
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

/** A D-iGPT pretraining job as the CLI, the desktop app and `serve` describe it. */
export interface PretrainJob {
  readonly kind: 'pretrain';
  /** Dataset folder (ImageFolder, flat, splits, or IDX files). */
  readonly data: string;
  readonly preset: string;
  /** Input side in pixels instead of the preset's (must divide by patch_size x clusters_per_side). */
  readonly imgSize?: number;
  /** 'pixels', a CLIP checkpoint, or a classifier checkpoint the workbench exported. */
  readonly teacher: string;
  readonly objective: string;
  /** Either steps or epochs; steps wins when both are given. */
  readonly steps?: number;
  readonly epochs?: number;
  readonly batch: number;
  readonly accum: number;
  readonly seed: number;
  readonly blr: number;
  /** Run folder to create. */
  readonly out: string;
  readonly checkpointEvery: number;
  /** Optional official D-iGPT checkpoint to start from (`digpt import`). */
  readonly init?: string;
  /**
   * 2: split each micro-batch with a replica thread (both cores on the wasm backend); 'auto': 2 on wasm with 2+
   * cores, else 1 (decided in the job, where the backend is known; the run's config records the number).
   */
  readonly workers?: number | 'auto';
}

/** Continue a pretraining or fine-tuning run from its newest good checkpoint. */
export interface ResumeJob {
  readonly kind: 'resume';
  readonly run: string;
}

/** Fine-tune a classifier on a labelled dataset (the spec's recipe; see app/train/finetune-run.ts for defaults). */
export interface FinetuneJob {
  readonly kind: 'finetune';
  readonly data: string;
  /** A pretraining run, a fine-tuning run, a weights file, or 'scratch'. */
  readonly from: string;
  /** Architecture for 'scratch': a D-iGPT preset whose encoder is used. */
  readonly preset?: string;
  readonly steps?: number;
  readonly epochs?: number;
  readonly batch: number;
  readonly accum: number;
  readonly seed: number;
  readonly blr?: number;
  readonly warmupEpochs?: number;
  readonly out: string;
  readonly checkpointEvery?: number;
  /** Recipe overrides (defaults: the spec's recipe). */
  readonly layerDecay?: number;
  readonly dropPath?: number;
  readonly smoothing?: number;
  readonly mixup?: number;
  readonly cutmix?: number;
  readonly erase?: number;
}

/** Evaluate a frozen encoder on a labelled dataset: a linear probe or weighted k-NN, top-1 on the validation split. */
export interface EvalJob {
  readonly kind: 'probe' | 'knn';
  readonly data: string;
  /** A pretraining run, a fine-tuning run or a weights file. */
  readonly source: string;
  readonly seed: number;
  /** k of k-NN (20). */
  readonly k?: number;
  /** Epochs of the probe (90). */
  readonly epochs?: number;
}

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

export type JobSpec = PretrainJob | ResumeJob | FinetuneJob | EvalJob | ExportJob | InitJob;

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
