// Messages between the job host and the engine's worker thread (Signal-style: readonly unions with a sequence number).
import type { StepRecord } from '../train/pretrain-run.js';

/** A D-iGPT pretraining job as the CLI, the desktop app and `serve` describe it. */
export interface PretrainJob {
  readonly kind: 'pretrain';
  /** Dataset folder (ImageFolder, flat, splits, or IDX files). */
  readonly data: string;
  readonly preset: string;
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
}

export interface ResumeJob {
  readonly kind: 'resume';
  readonly run: string;
}

export type JobSpec = PretrainJob | ResumeJob;

export type HostMessage =
  | { readonly seq: number; readonly type: 'start'; readonly job: JobSpec }
  | { readonly seq: number; readonly type: 'pause' }
  | { readonly seq: number; readonly type: 'continue' }
  | { readonly seq: number; readonly type: 'stop' };

export type WorkerEvent =
  | { readonly seq: number; readonly type: 'backend'; readonly name: string; readonly text: string }
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
      readonly record: StepRecord;
      /** Cluster order of the last micro-batch, [B*K]. */
      readonly order: Int32Array;
      /** Per-cluster error of the last micro-batch, [B*(K-1)], in sequence order. */
      readonly clusterError: Float32Array;
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
