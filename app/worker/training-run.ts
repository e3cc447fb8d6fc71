// The skeleton every training run shares: the data stream, the step loop with its NaN stop, checkpoints, resume.
import * as nodePath from 'node:path';
import { SafetensorsFile } from '../../engine/io/safetensors.js';
import { fileSource, type WeightSource } from '../../engine/models/naming.js';
import type { ParamSet } from '../../engine/models/params.js';
import { lrAt, scaledLr, type AdamW } from '../../engine/optim/adamw.js';
import { Rng } from '../../engine/rng.js';
import {
  checkStepMemory,
  currentBackend,
  releaseGpuPool,
  type StepMemory,
} from '../../engine/train/memory.js';
import { writeCheckpoint, type GoodCheckpoint } from '../runs/checkpoint.js';
import { parseRunConfig, readRunConfig, type RunConfig } from '../runs/config.js';
import { writing } from '../runs/disk.js';
import { appendMetrics, markEngine, truncateMetrics } from '../runs/metrics.js';
import { goodCheckpoint } from './checkpoints.js';
import {
  checkFiniteState,
  createRunFolder,
  holdRunLock,
  loadOptimizer,
  loadStreamState,
  releaseHeld,
  resumePoint,
  saveOptimizer,
  saveStreamState,
  type HeldLock,
  type RunOpenOptions,
} from './run-files.js';

/** Decoded training images, all of one side, RGB uint8 HWC, one after another. */
export interface ImageSet {
  readonly count: number;
  readonly side: number;
  readonly pixels: Uint8Array;
}

export class NonFiniteLossError extends Error {
  constructor(step: number, loss: number, lastGood: string | undefined) {
    super(
      `loss became ${loss} at step ${step}; the run stopped and kept ${lastGood ? `its last good checkpoint ${lastGood}` : 'no checkpoint (none was written yet)'}`,
    );
    this.name = 'NonFiniteLossError';
  }
}

/** Trainable parameters of a model (weights, gradients and both AdamW moments are this many floats each). */
export function trainableCount(model: { params: { trainable(): { variable: { size: number } }[] } }): number {
  return model.params.trainable().reduce((n, p) => n + p.variable.size, 0);
}

/** Checks a new run's config as a resume will read it back from config.json, naming the field that fails. */
export function checkConfigReadsBack(dir: string, config: RunConfig): void {
  parseRunConfig(JSON.parse(JSON.stringify(config)), nodePath.join(dir, 'config.json'));
}

// --- the data stream ---

/** Where the data stream stands (`state.json`): what a checkpoint must hold besides weights to continue exactly. */
export interface StreamState {
  step: number;
  epoch: number;
  cursor: number;
  order: number[];
  rng: number[];
}

/**
 * The images a run visits, in a random order per epoch, and the run's Rng (crops, mixup, cluster orders and drop
 * path draw from it too, so it is saved with the cursor). Without `stepsPerEpoch` an epoch is one pass over the
 * images (pretraining); with it an epoch is that many steps, its order drawn at its first step, and a pass that
 * ends within it continues on a fresh order (fine-tuning, whose last partial batch of an epoch is dropped).
 */
export class DataStream {
  private state: StreamState;
  private rngNow: Rng;

  constructor(
    private readonly count: number,
    seed: number,
    private readonly stepsPerEpoch?: number,
  ) {
    this.rngNow = new Rng(seed);
    this.state = { step: 0, epoch: 0, cursor: 0, order: [], rng: this.rngNow.state };
    if (stepsPerEpoch === undefined) this.startEpoch(0);
  }

  get rng(): Rng {
    return this.rngNow;
  }

  get step(): number {
    return this.state.step;
  }

  get epoch(): number {
    return this.state.epoch;
  }

  /** Called as a step begins: a steps-counted epoch draws its order at its first step. */
  beginStep(): void {
    const spe = this.stepsPerEpoch;
    if (spe !== undefined && this.state.step % spe === 0) this.startEpoch(this.state.step / spe);
  }

  endStep(): void {
    this.state.step += 1;
  }

  /** The next image's index. */
  next(): number {
    if (this.state.cursor >= this.state.order.length) {
      if (this.stepsPerEpoch === undefined) this.startEpoch(this.state.epoch + 1);
      else this.shuffle();
    }
    return this.state.order[this.state.cursor++] as number;
  }

  /** The state to save, the Rng's included. */
  snapshot(): StreamState {
    this.state.rng = this.rngNow.state;
    return this.state;
  }

  restore(state: StreamState): void {
    this.state = state;
    this.rngNow = new Rng(state.rng);
  }

  private startEpoch(epoch: number): void {
    this.state.epoch = epoch;
    this.shuffle();
  }

  private shuffle(): void {
    this.state.cursor = 0;
    this.state.order = Array.from(this.rngNow.permutation(this.count));
  }
}

// --- the run ---

/** The settings the skeleton reads; each kind's config.json holds them under these names. */
export interface TrainingSettings {
  readonly steps: number;
  readonly batch: number;
  readonly accum: number;
  readonly seed: number;
  readonly blr: number;
  readonly min_lr: number;
  readonly checkpoint_every: number;
}

/** A model the skeleton trains: its parameters (saved in PyTorch layout) and what frees them. */
export interface TrainedModel {
  readonly params: ParamSet;
  dispose(): void;
}

/**
 * One training run on disk. The skeleton owns the stream, the step loop (the NaN stop, metrics.jsonl, checkpoints
 * on schedule), save and load, the lock, and the create/resume scaffolding; a kind supplies its micro-batch `B`,
 * its step (metrics `S`), its record `R`, its weights file, its warm-up and its evaluations `E`.
 */
export abstract class TrainingRun<
  C extends RunConfig & TrainingSettings,
  M extends TrainedModel,
  B,
  S extends { readonly loss: number },
  R extends object,
  E = never,
> {
  readonly dir: string;
  readonly config: C;
  readonly model: M;
  protected readonly opt: AdamW;
  protected readonly stream: DataStream;
  /** The run folder's lock while this object writes it. */
  private held: HeldLock | undefined;

  protected constructor(
    dir: string,
    config: C,
    model: M,
    opt: AdamW,
    images: number,
    stepsPerEpoch?: number,
  ) {
    this.dir = dir;
    this.config = config;
    this.model = model;
    this.opt = opt;
    // config.seed initialised the weights; the stream's draws start one further on
    this.stream = new DataStream(images, config.seed + 1, stepsPerEpoch);
  }

  // --- what each kind supplies ---

  /** One micro-batch drawn now from the stream and the Rng; its tensors are made when the step calls it. */
  protected abstract microBatch(): () => B;
  /** One optimisation step over the micro-batches at learning rate `lr` (its numbers read once, at its end). */
  protected abstract trainStep(micro: (() => B)[], lr: number): Promise<S>;
  /** The metrics.jsonl line of the step just taken. */
  protected abstract record(m: S, lr: number, imgPerS: number): R;
  /** Writes the weights (read out and checked already) as `path`, the checkpoint's model.safetensors. */
  protected abstract writeWeights(
    path: string,
    weights: Map<string, { shape: number[]; data: Float32Array }>,
  ): void;
  /** Loads what writeWeights wrote. */
  protected abstract loadWeights(src: WeightSource): void;
  /** What a step holds in memory, for the check before anything is allocated. */
  protected abstract memoryNeeds(): StepMemory;
  /** Linear warm-up length of the lr schedule, in steps. */
  protected abstract get warmupSteps(): number;

  /** An evaluation to log after the step just taken (`last`: the run's final step); none by default. */
  protected evaluateAfterStep(_last: boolean): Promise<E | undefined> {
    return Promise.resolve(undefined);
  }

  // --- the skeleton ---

  get checkpointDir(): string {
    return nodePath.join(this.dir, 'checkpoints');
  }

  get step(): number {
    return this.stream.step;
  }

  protected get epoch(): number {
    return this.stream.epoch;
  }

  /** The Rng now (a resume replaces it: never keep it across a load). */
  protected get rng(): Rng {
    return this.stream.rng;
  }

  /** lr of a step: blr * batch * accum / 256, linear warm-up, half-cycle cosine to min_lr. */
  lrAt(step: number): number {
    const c = this.config;
    return lrAt(
      {
        baseLr: scaledLr(c.blr, c.batch * c.accum),
        minLr: c.min_lr,
        warmupSteps: this.warmupSteps,
        totalSteps: c.steps,
      },
      step,
    );
  }

  /**
   * Runs up to `count` more steps (never past config.steps), logging each to metrics.jsonl, then the kind's
   * evaluation when one is due, then a checkpoint on schedule (every checkpoint_every steps and at the end). A
   * NaN/inf loss stops the run, keeping the last good checkpoint (the step's numbers are read after its update is
   * queued, so the update happened; nothing of it is saved). Returns the checkpoints written.
   */
  async runSteps(count: number, onStep?: (r: R, m: S) => void, onEval?: (e: E) => void): Promise<string[]> {
    const c = this.config;
    const end = Math.min(c.steps, this.step + count);
    const written: string[] = [];
    while (this.step < end) {
      const t0 = performance.now();
      this.stream.beginStep();
      const micro = Array.from({ length: c.accum }, () => this.microBatch());
      const lr = this.lrAt(this.step);
      const m = await this.trainStep(micro, lr);
      if (!Number.isFinite(m.loss)) {
        throw new NonFiniteLossError(this.step + 1, m.loss, goodCheckpoint(this.checkpointDir)?.folder);
      }
      this.stream.endStep();
      const rec = this.record(m, lr, (c.batch * c.accum * 1000) / (performance.now() - t0));
      this.appendMetrics(rec);
      onStep?.(rec, m);
      const last = this.step === c.steps;
      const ev = await this.evaluateAfterStep(last);
      if (ev !== undefined) {
        // on webgpu the evaluation's free buffers (other shapes than a step's) are given back (a no-op elsewhere)
        releaseGpuPool();
        onEval?.(ev);
      }
      if (this.step % c.checkpoint_every === 0 || last) written.push(await this.save());
    }
    return written;
  }

  /** Appends one JSON line to metrics.jsonl (steps, and evaluations such as the per-epoch k-NN). */
  appendMetrics(rec: object): void {
    appendMetrics(this.dir, rec);
  }

  /**
   * Writes a checkpoint of the current step: weights, optimizer moments and the data stream's state. Weights and
   * both moments are checked first: a checkpoint is never written holding Inf or NaN (NonFiniteStateError).
   */
  async save(): Promise<string> {
    const state = this.stream.snapshot();
    const [weights, opt] = await Promise.all([this.model.params.exportTorch(), this.opt.exportState()]);
    checkFiniteState(this.step, weights, opt, () => goodCheckpoint(this.checkpointDir)?.folder);
    return writeCheckpoint(this.checkpointDir, this.step, (folder) => {
      const path = nodePath.join(folder, 'model.safetensors');
      writing(path, () => this.writeWeights(path, weights));
      saveOptimizer(folder, opt, this.model.params.specs);
      saveStreamState(folder, state);
    });
  }

  private load(folder: string): void {
    const f = SafetensorsFile.open(nodePath.join(folder, 'model.safetensors'));
    try {
      this.loadWeights(fileSource(f));
    } finally {
      f.close();
    }
    loadOptimizer(folder, this.opt, this.model.params.specs);
    this.stream.restore(loadStreamState<StreamState>(folder));
  }

  /** Refuses a micro-batch too large for this backend's memory, before a step allocates it. */
  private checkMemory(setting: string): void {
    checkStepMemory(this.memoryNeeds(), currentBackend(), setting);
  }

  /** Frees the model and the optimizer, and lets go of the run's lock if this run took it. */
  dispose(): void {
    this.opt.dispose();
    this.model.dispose();
    releaseHeld(this.held);
    this.held = undefined;
  }

  // --- opening ---

  /**
   * Finishes creating a new run (its config checked, its model built): refuses a batch too large, then makes the
   * folder (lock, config.json, an empty metrics.jsonl). On failure the run is freed and nothing is left on disk.
   */
  protected static startNew<T extends AnyTrainingRun>(run: T, o: RunOpenOptions): T {
    try {
      if (!o.trainsElsewhere) run.checkMemory('--batch');
      run.held = createRunFolder(run.dir, run.config, o);
      return run;
    } catch (e) {
      run.dispose();
      throw e;
    }
  }

  /**
   * Reopens a run at its newest good checkpoint, dropping metrics logged after it. The lock is taken first, then
   * config.json is read and `open` builds the run from it (refusing another kind); `point` is where the resume starts
   * (see resumePoint: every checkpoint rejected is named through `onWarn`, and a run with history but no usable
   * checkpoint is refused with metrics.jsonl left alone), looked up once, when `open` asks or after it. A run with
   * no step logged starts again.
   */
  protected static reopen<T extends AnyTrainingRun>(
    dir: string,
    o: RunOpenOptions,
    open: (config: RunConfig, point: () => GoodCheckpoint | undefined) => T,
  ): T {
    const held = holdRunLock(dir, o);
    let run: T | undefined;
    try {
      let found: { ck: GoodCheckpoint | undefined } | undefined;
      const point = (): GoodCheckpoint | undefined =>
        (found ??= { ck: resumePoint(dir, o.onWarn ?? (() => undefined)) }).ck;
      run = open(readRunConfig(dir), point);
      run.checkMemory(`${nodePath.join(dir, 'config.json')}: batch`);
      const ck = point();
      if (ck) run.load(ck.folder);
      truncateMetrics(run.dir, run.step);
      // a run that trained elsewhere (digpt_torch) goes on here: said in metrics.jsonl
      markEngine(run.dir, run.step, { backend: currentBackend() });
    } catch (e) {
      run?.dispose();
      releaseHeld(held);
      throw e;
    }
    run.held = held;
    return run;
  }
}

/** A training run of any kind. */
export type AnyTrainingRun = TrainingRun<
  RunConfig & TrainingSettings,
  TrainedModel,
  unknown,
  { readonly loss: number },
  object,
  unknown
>;
