// A D-iGPT pretraining run on disk: config.json, metrics.jsonl and checkpoints, resumable to the exact same losses.
import * as tf from '@tensorflow/tfjs-core';
import * as nodePath from 'node:path';
import { resolveDigptConfig, type DigptConfig } from '../../engine/config.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../engine/io/safetensors.js';
import { createPretrainModel, type PretrainModel } from '../../engine/models/factory.js';
import { fileSource, loadDigptCanonical } from '../../engine/models/naming.js';
import { lrAt, scaledLr, type AdamW } from '../../engine/optim/adamw.js';
import { DataParallel } from '../../engine/parallel/data-parallel.js';
import { Rng } from '../../engine/rng.js';
import {
  digptOptimizer,
  drawOrders,
  pretrainStep,
  type PretrainStepMetrics,
} from '../../engine/train/pretrain.js';
import {
  allFinite,
  checkStepMemory,
  currentBackend,
  pretrainFloatsPerSample,
} from '../../engine/train/memory.js';
import { cropResizeNormalize, drawCrop } from './augment.js';
import { writeCheckpoint } from '../runs/checkpoint.js';
import { goodCheckpoint } from './checkpoints.js';
import { checkWorkersBackend, parseRunConfig, readRunConfig, type PretrainConfig } from '../runs/config.js';
import { writing } from '../runs/disk.js';
import { appendMetrics, truncateMetrics, type StepRecord } from '../runs/metrics.js';
import {
  checkFiniteState,
  createRunFolder,
  holdRunLock,
  loadOptimizer,
  loadStreamState,
  refuseExistingRun,
  releaseHeld,
  resumePoint,
  saveOptimizer,
  saveStreamState,
  type HeldLock,
  type RunOpenOptions,
} from './run-files.js';
import { NonFiniteTeacherError, openTeacher, withTeacher, type Teacher } from './teacher.js';

/** Decoded training images, all of one side, RGB uint8 HWC, one after another. */
export interface ImageSet {
  readonly count: number;
  readonly side: number;
  readonly pixels: Uint8Array;
}

/** Where the data stream stands: what a checkpoint must hold besides weights to continue exactly. */
interface StreamState {
  step: number;
  epoch: number;
  cursor: number;
  order: number[];
  rng: number[];
}

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

/** A few of the images a step trained on, as the student saw them. */
export interface StudentSamples {
  readonly count: number;
  readonly size: number;
  /** [count, size, size, 3] RGB. */
  readonly pixels: Uint8Array;
}

/** Trainable parameters of a model (weights, gradients and both AdamW moments are this many floats each). */
export function trainableCount(model: { params: { trainable(): { variable: { size: number } }[] } }): number {
  return model.params.trainable().reduce((n, p) => n + p.variable.size, 0);
}

export class NonFiniteLossError extends Error {
  constructor(step: number, loss: number, lastGood: string | undefined) {
    super(
      `loss became ${loss} at step ${step}; the run stopped and kept ${lastGood ? `its last good checkpoint ${lastGood}` : 'no checkpoint (none was written yet)'}`,
    );
    this.name = 'NonFiniteLossError';
  }
}

export class PretrainRun {
  readonly dir: string;
  readonly config: PretrainConfig;
  readonly model: PretrainModel;
  private readonly opt: AdamW;
  private readonly teacher: Teacher;
  private readonly data: ImageSet;
  private state: StreamState;
  private rng: Rng;
  private parallel: DataParallel | undefined;
  /** The run folder's lock while this object writes it. */
  private held: HeldLock | undefined;
  /** The first images of the last micro-batch built (the one whose cluster order a step reports). */
  samples: StudentSamples | undefined;

  private constructor(dir: string, config: PretrainConfig, teacher: Teacher, data: ImageSet) {
    this.dir = dir;
    this.config = config;
    this.teacher = teacher;
    this.data = data;
    this.model = createPretrainModel(config.model, { seed: config.seed, objective: config.objective });
    this.opt = digptOptimizer(this.model, {
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      weightDecay: config.weight_decay,
    });
    this.rng = new Rng(config.seed + 1);
    this.state = { step: 0, epoch: 0, cursor: 0, order: [], rng: this.rng.state };
    this.newEpoch(0);
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
    const backend = currentBackend();
    checkWorkersBackend(raw.workers ?? 1, backend, '--workers');
    const teacher = openTeacher(raw.teacher, raw.model);
    let run: PretrainRun;
    try {
      const model = resolveDigptConfig({ ...withTeacher(raw.model, teacher) });
      const config: PretrainConfig = { ...raw, kind: 'pretrain', model };
      // what is written must read back on resume: the same check, naming the field
      parseRunConfig(JSON.parse(JSON.stringify(config)), nodePath.join(dir, 'config.json'));
      run = new PretrainRun(dir, config, teacher, data);
    } catch (e) {
      teacher.dispose();
      throw e;
    }
    try {
      run.checkMemory(backend, '--batch');
      run.held = createRunFolder(dir, run.config, o);
      return run;
    } catch (e) {
      run.dispose();
      throw e;
    }
  }

  /**
   * Reopens a run at its newest good checkpoint, dropping metrics logged after it. The lock is taken first, then
   * config.json is checked; every checkpoint rejected is named through `onWarn`; with none usable while the run has
   * history, it refuses and leaves metrics.jsonl alone (see resumePoint). A run with no step logged starts again.
   */
  static resume(dir: string, data: ImageSet, o: RunOpenOptions = {}): PretrainRun {
    const held = holdRunLock(dir, o);
    let run: PretrainRun | undefined;
    try {
      const config = readRunConfig(dir);
      const file = nodePath.join(dir, 'config.json');
      if (config.kind !== 'pretrain') throw new Error(`${dir}: a ${config.kind} run, not a pretraining run`);
      const backend = currentBackend();
      checkWorkersBackend(config.workers ?? 1, backend, `${file}: workers`);
      const teacher = openTeacher(config.teacher, config.model);
      try {
        run = new PretrainRun(dir, config, teacher, data);
      } catch (e) {
        teacher.dispose();
        throw e;
      }
      run.checkMemory(backend, `${file}: batch`);
      const ck = resumePoint(dir, o.onWarn ?? (() => undefined));
      if (ck) run.load(ck.folder);
      truncateMetrics(run.dir, run.state.step);
    } catch (e) {
      run?.dispose();
      releaseHeld(held);
      throw e;
    }
    run.held = held;
    return run;
  }

  /** Refuses a micro-batch too large for this backend's memory, before a step allocates it. */
  private checkMemory(backend: string, setting: string): void {
    checkStepMemory(
      {
        batch: this.config.batch,
        studentFloats: pretrainFloatsPerSample(this.config.model, this.config.objective),
        teacherFloats: this.teacher.floatsPerSample,
        params: trainableCount(this.model),
        workers: this.config.workers ?? 1,
      },
      backend,
      setting,
    );
  }

  get checkpointDir(): string {
    return nodePath.join(this.dir, 'checkpoints');
  }

  get step(): number {
    return this.state.step;
  }

  private newEpoch(epoch: number): void {
    this.state.epoch = epoch;
    this.state.cursor = 0;
    this.state.order = Array.from(this.rng.permutation(this.data.count));
  }

  private nextIndex(): number {
    if (this.state.cursor >= this.state.order.length) this.newEpoch(this.state.epoch + 1);
    return this.state.order[this.state.cursor++] as number;
  }

  /** One micro-batch: the same random crop for the student and the teacher, each with its own normalisation. */
  private microBatch(): () => { images: tf.Tensor4D; teacher: tf.Tensor3D; order: Int32Array } {
    const c = this.config.model;
    const b = this.config.batch;
    const side = this.data.side;
    const t = this.teacher;
    const s = new Float32Array(b * c.img_size * c.img_size * 3);
    const tv = new Float32Array(b * t.resolution * t.resolution * 3);
    for (let i = 0; i < b; i++) {
      const idx = this.nextIndex();
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
    const step = this.state.step + 1;
    return () => {
      const timgs = tf.tensor4d(tv, [b, t.resolution, t.resolution, 3]);
      const teacher = t.tokens(timgs);
      timgs.dispose();
      // a broken teacher file would otherwise show up as a NaN loss that names nothing
      if (!allFinite(teacher)) {
        teacher.dispose();
        throw new NonFiniteTeacherError(t.spec, step, goodCheckpoint(this.checkpointDir)?.folder);
      }
      return { images: tf.tensor4d(s, [b, c.img_size, c.img_size, 3]), teacher, order };
    };
  }

  lrAt(step: number): number {
    const c = this.config;
    return lrAt(
      {
        baseLr: scaledLr(c.blr, c.batch * c.accum),
        minLr: c.min_lr,
        warmupSteps: c.warmup_steps,
        totalSteps: c.steps,
      },
      step,
    );
  }

  /**
   * Runs up to `count` more steps (never past config.steps), logging each to metrics.jsonl and checkpointing on
   * schedule. A NaN/inf loss stops the run before the update, keeping the last good checkpoint.
   */
  runSteps(count: number, onStep?: (r: StepRecord, m: PretrainStepMetrics) => void): void {
    const end = Math.min(this.config.steps, this.state.step + count);
    while (this.state.step < end) {
      const t0 = performance.now();
      const micro = Array.from({ length: this.config.accum }, () => this.microBatch());
      const lr = this.lrAt(this.state.step);
      const m = this.parallel
        ? this.parallel.step(this.model, this.opt, micro, lr)
        : pretrainStep(this.model, this.opt, micro, lr);
      if (!Number.isFinite(m.loss)) {
        const last = goodCheckpoint(this.checkpointDir);
        throw new NonFiniteLossError(this.state.step + 1, m.loss, last?.folder);
      }
      this.state.step += 1;
      const rec: StepRecord = {
        step: this.state.step,
        loss: m.loss,
        ...(m.lossGen !== undefined ? { loss_gen: m.lossGen } : {}),
        ...(m.lossDis !== undefined ? { loss_dis: m.lossDis } : {}),
        lr,
        agreement: m.agreement,
        img_per_s: (this.config.batch * this.config.accum * 1000) / (performance.now() - t0),
        epoch: this.state.epoch,
        time: new Date().toISOString(),
      };
      this.appendMetrics(rec);
      onStep?.(rec, m);
      if (this.state.step % this.config.checkpoint_every === 0 || this.state.step === this.config.steps)
        this.save();
    }
  }

  /** Appends one JSON line to metrics.jsonl (steps, and evaluations such as the per-epoch k-NN). */
  appendMetrics(rec: object): void {
    appendMetrics(this.dir, rec);
  }

  /**
   * Writes a checkpoint of the current step: weights, optimizer moments and the data stream's state. Weights and
   * both moments are checked first: a checkpoint is never written holding Inf or NaN (NonFiniteStateError).
   */
  save(): string {
    this.state.rng = this.rng.state;
    const weights = this.model.params.exportTorch();
    const opt = this.opt.exportState();
    checkFiniteState(this.state.step, weights, opt, () => goodCheckpoint(this.checkpointDir)?.folder);
    return writeCheckpoint(this.checkpointDir, this.state.step, (folder) => {
      const tensors = new Map<string, TensorToWrite>();
      for (const [k, v] of weights) tensors.set(k, { dtype: 'F32', shape: v.shape, data: v.data });
      const path = nodePath.join(folder, 'model.safetensors');
      writing(path, () =>
        writeSafetensors(path, tensors, {
          kind: 'digpt_workbench',
          config: JSON.stringify(this.config.model),
          objective: this.config.objective,
        }),
      );
      saveOptimizer(folder, opt);
      saveStreamState(folder, this.state);
    });
  }

  private load(folder: string): void {
    const f = SafetensorsFile.open(nodePath.join(folder, 'model.safetensors'));
    try {
      loadDigptCanonical(this.model, fileSource(f));
    } finally {
      f.close();
    }
    loadOptimizer(folder, this.opt);
    this.state = loadStreamState<StreamState>(folder);
    this.rng = new Rng(this.state.rng);
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
  dispose(): void {
    this.opt.dispose();
    this.model.dispose();
    this.teacher.dispose();
    releaseHeld(this.held);
    this.held = undefined;
  }
}
