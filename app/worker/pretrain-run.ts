// A D-iGPT pretraining run on disk: config.json, metrics.jsonl and checkpoints, resumable to the exact same losses.
import * as tf from '@tensorflow/tfjs-core';
import * as nodePath from 'node:path';
import { resolveDigptConfig, type DigptConfig } from '../../engine/config.js';
import { writeSafetensors, type TensorToWrite } from '../../engine/io/safetensors.js';
import { createPretrainModel } from '../../engine/models/factory.js';
import type { DigptBatch, PretrainModel } from '../../engine/models/pretrain-model.js';
import { loadDigptCanonical, mapSource, type WeightSource } from '../../engine/models/naming.js';
import { VitClassifier } from '../../engine/models/vit.js';
import { DataParallel } from '../../engine/parallel/data-parallel.js';
import {
  digptOptimizer,
  drawOrders,
  pretrainStep,
  type PretrainStepMetrics,
} from '../../engine/train/pretrain.js';
import {
  currentBackend,
  finiteGuard,
  pretrainLargestPerSample,
  releaseGpuPool,
  pretrainFloatsPerSample,
  type StepMemory,
} from '../../engine/train/memory.js';
import { cropResizeNormalize, drawCrop } from './augment.js';
import { goodCheckpoint } from './checkpoints.js';
import { featuresOf, knn } from './evaluate.js';
import { loadClassifierParts, vitConfigOfDigpt, type LabelledImageSet } from './finetune-run.js';
import { checkWorkersBackend, type PretrainConfig } from '../runs/config.js';
import { readMetrics, type StepRecord } from '../runs/metrics.js';
import { refuseExistingRun, type RunOpenOptions } from './run-files.js';
import { NonFiniteTeacherError, openTeacher, withTeacher, type Teacher } from './teacher.js';
import { checkConfigReadsBack, trainableCount, TrainingRun, type ImageSet } from './training-run.js';

export { NonFiniteLossError, trainableCount, type ImageSet } from './training-run.js';

/** Student views kept per step for the patch-order view. */
const SAMPLES = 4;

/** The first `n` student crops back in 0-255 RGB (undoing the ImageNet normalisation), [n, size, size, 3]. */
function studentSamples(view: Float32Array, n: number, size: number): StudentSamples {
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const out = new Uint8Array(n * size * size * 3);
  for (let i = 0; i < out.length; i++) {
    const c = i % 3;
    out[i] = Math.max(
      0,
      Math.min(255, Math.round(((view[i] as number) * (std[c] as number) + (mean[c] as number)) * 255)),
    );
  }
  return { count: n, size, pixels: out };
}

/** The per-epoch k-NN uses at most this many training images, so an epoch's evaluation stays cheap. */
const KNN_TRAIN_CAP = 10_000;

/** The labelled sets a pretraining run's per-epoch k-NN evaluates on. */
export interface KnnSets {
  readonly train: LabelledImageSet;
  readonly val: LabelledImageSet;
}

/** A pretraining run's evaluation line of metrics.jsonl: k-NN top-1 of its encoder at an epoch's end. */
export interface KnnRecord {
  readonly step: number;
  /** Epochs of the k-NN's train set done (steps / its steps per epoch). */
  readonly epoch: number;
  readonly knn_top1: number;
}

/** A few of the images a step trained on, as the student saw them. */
export interface StudentSamples {
  readonly count: number;
  readonly size: number;
  /** [count, size, size, 3] RGB. */
  readonly pixels: Uint8Array;
}

/**
 * A pretraining run: what is its own is the micro-batch (one crop for the student and the teacher), the step (one
 * thread or two), its record and its weights file; the stream, loop, checkpoints and resume are TrainingRun's.
 */
export class PretrainRun extends TrainingRun<
  PretrainConfig,
  PretrainModel,
  DigptBatch,
  PretrainStepMetrics,
  StepRecord,
  KnnRecord
> {
  private readonly teacher: Teacher;
  private readonly data: ImageSet;
  private parallel: DataParallel | undefined;
  /** The first images of the last micro-batch built (the one whose cluster order a step reports). */
  samples: StudentSamples | undefined;
  /** Where the per-epoch k-NN runs (none: no k-NN), and its steps per epoch. */
  private knnOn: { sets: KnnSets; stepsPerEpoch: number } | undefined;
  /** The teacher's finiteness of each micro-batch of the step running (finiteGuard), read with the step's numbers. */
  private teacherGuards: tf.Tensor[] = [];

  private constructor(dir: string, config: PretrainConfig, teacher: Teacher, data: ImageSet) {
    const model = createPretrainModel(config.model, { seed: config.seed, objective: config.objective });
    const opt = digptOptimizer(model, {
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      weightDecay: config.weight_decay,
    });
    super(dir, config, model, opt, data.count);
    this.teacher = teacher;
    this.data = data;
  }

  /**
   * Starts a new run in `dir` (which must not hold one already). Everything that can be checked is checked before
   * the folder is made: the teacher opens, two workers only on wasm, the batch fits in memory.
   */
  static create(
    dir: string,
    raw: Omit<PretrainConfig, 'model' | 'kind'> & { model: DigptConfig },
    data: ImageSet,
    o: RunOpenOptions = {},
  ): PretrainRun {
    refuseExistingRun(dir);
    checkWorkersBackend(raw.workers ?? 1, currentBackend(), '--workers');
    const teacher = openTeacher(raw.teacher, raw.model);
    let run: PretrainRun;
    try {
      const model = resolveDigptConfig({ ...withTeacher(raw.model, teacher) });
      const config: PretrainConfig = { ...raw, kind: 'pretrain', model };
      checkConfigReadsBack(dir, config);
      run = new PretrainRun(dir, config, teacher, data);
    } catch (e) {
      teacher.dispose();
      throw e;
    }
    return TrainingRun.startNew(run, o);
  }

  /** Reopens a run at its newest good checkpoint (TrainingRun.reopen says what is refused and what is dropped). */
  static resume(dir: string, data: ImageSet, o: RunOpenOptions = {}): PretrainRun {
    return TrainingRun.reopen(dir, o, (config) => {
      if (config.kind !== 'pretrain') throw new Error(`${dir}: a ${config.kind} run, not a pretraining run`);
      checkWorkersBackend(
        config.workers ?? 1,
        currentBackend(),
        `${nodePath.join(dir, 'config.json')}: workers`,
      );
      const teacher = openTeacher(config.teacher, config.model);
      try {
        return new PretrainRun(dir, config, teacher, data);
      } catch (e) {
        teacher.dispose();
        throw e;
      }
    });
  }

  protected memoryNeeds(): StepMemory {
    return {
      batch: this.config.batch,
      studentFloats: pretrainFloatsPerSample(this.config.model, this.config.objective),
      teacherFloats: this.teacher.floatsPerSample,
      params: trainableCount(this.model),
      workers: this.config.workers ?? 1,
      largestFloats: pretrainLargestPerSample(this.config.model, this.config.objective),
    };
  }

  protected get warmupSteps(): number {
    return this.config.warmup_steps;
  }

  /** One micro-batch: the same random crop for the student and the teacher, each with its own normalisation. */
  protected microBatch(): () => DigptBatch {
    const c = this.config.model;
    const b = this.config.batch;
    const side = this.data.side;
    const t = this.teacher;
    const s = new Float32Array(b * c.img_size * c.img_size * 3);
    const tv = new Float32Array(b * t.resolution * t.resolution * 3);
    for (let i = 0; i < b; i++) {
      const idx = this.stream.next();
      const img = this.data.pixels.subarray(idx * side * side * 3, (idx + 1) * side * side * 3);
      const box = drawCrop(this.rng, side);
      cropResizeNormalize(
        img,
        side,
        box,
        c.img_size,
        [0.485, 0.456, 0.406],
        [0.229, 0.224, 0.225],
        s,
        i * c.img_size ** 2 * 3,
      );
      cropResizeNormalize(img, side, box, t.resolution, t.mean, t.std, tv, i * t.resolution ** 2 * 3);
    }
    // cluster order (D-iGPT), patch permutation (mae) or nothing (kd): the model says how many entries
    const order = drawOrders(this.rng, b, this.model.orderLength);
    this.samples = studentSamples(s, Math.min(b, SAMPLES), c.img_size);
    return () => {
      const timgs = tf.tensor4d(tv, [b, t.resolution, t.resolution, 3]);
      const teacher = t.tokens(timgs);
      timgs.dispose();
      // a broken teacher file would otherwise show up as a NaN loss that names nothing: checked with the step's read
      this.teacherGuards.push(finiteGuard(teacher));
      return { images: tf.tensor4d(s, [b, c.img_size, c.img_size, 3]), teacher, order };
    };
  }

  protected async trainStep(micro: (() => DigptBatch)[], lr: number): Promise<PretrainStepMetrics> {
    const guards: tf.Tensor[] = [];
    this.teacherGuards = guards;
    const m = this.parallel
      ? await this.parallel.step(this.model, this.opt, micro, lr, { guards })
      : await pretrainStep(this.model, this.opt, micro, lr, { guards });
    if (m.guards.some((g) => g !== 0))
      throw new NonFiniteTeacherError(
        this.teacher.spec,
        this.step + 1,
        goodCheckpoint(this.checkpointDir)?.folder,
      );
    return m;
  }

  protected record(m: PretrainStepMetrics, lr: number, imgPerS: number): StepRecord {
    return {
      step: this.step,
      loss: m.loss,
      ...(m.lossGen !== undefined ? { loss_gen: m.lossGen } : {}),
      ...(m.lossDis !== undefined ? { loss_dis: m.lossDis } : {}),
      lr,
      agreement: m.agreement,
      img_per_s: imgPerS,
      epoch: this.epoch,
      time: new Date().toISOString(),
    };
  }

  protected writeWeights(path: string, weights: Map<string, { shape: number[]; data: Float32Array }>): void {
    const tensors = new Map<string, TensorToWrite>();
    for (const [k, v] of weights) tensors.set(k, { dtype: 'F32', shape: v.shape, data: v.data });
    writeSafetensors(path, tensors, {
      kind: 'digpt_workbench',
      config: JSON.stringify(this.config.model),
      objective: this.config.objective,
    });
  }

  protected loadWeights(src: WeightSource): void {
    loadDigptCanonical(this.model, src);
  }

  /**
   * Evaluates the encoder by k-NN on `sets` at the end of each of their epochs (train images / (batch * accum)
   * steps) and of the run, logging each to metrics.jsonl before that step's checkpoint. A run at step 0 is
   * evaluated at once (its random encoder: where the curve starts), unless a restarted run logged that already;
   * that record is returned.
   */
  async evaluateOn(sets: KnnSets): Promise<KnnRecord | undefined> {
    const c = this.config;
    this.knnOn = { sets, stepsPerEpoch: Math.max(1, Math.floor(sets.train.count / (c.batch * c.accum))) };
    if (this.step !== 0 || readMetrics(this.dir).some((r) => r.step === 0 && 'knn_top1' in r))
      return undefined;
    const rec: KnnRecord = { step: 0, epoch: 0, knn_top1: await this.knnTop1(sets) };
    this.appendMetrics(rec);
    return rec;
  }

  protected override async evaluateAfterStep(last: boolean): Promise<KnnRecord | undefined> {
    const on = this.knnOn;
    if (!on || !(this.step % on.stepsPerEpoch === 0 || last)) return undefined;
    const rec: KnnRecord = {
      step: this.step,
      epoch: this.step / on.stepsPerEpoch,
      knn_top1: await this.knnTop1(on.sets),
    };
    this.appendMetrics(rec);
    return rec;
  }

  /** k-NN top-1 of the current encoder on the validation split (LayerNorm of the mean patch token). */
  private async knnTop1({ train, val }: KnnSets): Promise<number> {
    // the training steps' free GPU buffers go before the evaluation's shapes come (TrainingRun frees those after)
    releaseGpuPool();
    const vit = new VitClassifier(vitConfigOfDigpt(this.config.model, train.classes.length));
    try {
      loadClassifierParts(vit, mapSource('encoder', await this.model.params.exportTorch()));
      const n = Math.min(train.count, KNN_TRAIN_CAP);
      const per = train.side * train.side * 3;
      const sub: LabelledImageSet = {
        ...train,
        count: n,
        pixels: train.pixels.subarray(0, n * per),
        labels: train.labels.subarray(0, n),
      };
      return (await knn(await featuresOf(vit, sub, val), sub, val)).top1;
    } finally {
      vit.dispose();
    }
  }

  /** Starts the replica thread when the run asks for two workers (call once after create/resume). */
  async startWorkers(): Promise<void> {
    if ((this.config.workers ?? 1) > 1 && !this.parallel) {
      this.parallel = await DataParallel.create(this.model, Math.floor(this.config.batch / 2));
    }
  }

  async stopWorkers(): Promise<void> {
    await this.parallel?.close();
    this.parallel = undefined;
  }

  /** Frees the model, the optimizer and the teacher, and lets go of the run's lock if this run took it. */
  override dispose(): void {
    super.dispose();
    this.teacher.dispose();
  }
}
