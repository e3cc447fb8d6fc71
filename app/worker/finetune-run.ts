// A fine-tuning run on disk (MAE/D-iGPT recipe): config.json, metrics.jsonl, checkpoints, exact resume, timm export.
import * as tf from '@tensorflow/tfjs-core';
import * as nodePath from 'node:path';
import { FINETUNE, FINETUNE_DEFAULTS, FINETUNE_RECIPE, type Settings } from '../api/run-kinds.js';
import {
  getPreset,
  resolveDigptConfig,
  resolveVitConfig,
  type DigptConfig,
  type VitConfig,
} from '../../engine/config.js';
import { SafetensorsFile } from '../../engine/io/safetensors.js';
import { sincos2d } from '../../engine/models/geometry.js';
import { fileSource, saveWeights, type WeightSource } from '../../engine/models/naming.js';
import { WeightsError } from '../../engine/models/params.js';
import { VitClassifier } from '../../engine/models/vit.js';
import { Rng } from '../../engine/rng.js';
import {
  classifierOptimizer,
  classifierStep,
  crossEntropy,
  mixBatch,
  predictClasses,
  randomErase,
  top1,
  type ClassifierBatch,
  type ClassifierStepMetrics,
} from '../../engine/train/classify.js';
import {
  classifierFloatsPerSample,
  classifierLargestPerSample,
  type StepMemory,
} from '../../engine/train/memory.js';
import { cropResizeNormalize, drawCrop, fullCrop, IMAGENET_MEAN, IMAGENET_STD } from './augment.js';
import { sourceFile } from './checkpoints.js';
import type { FinetuneConfig } from '../runs/config.js';
import type { FinetuneEvalRecord, FinetuneStepRecord } from '../runs/metrics.js';
import { refuseExistingRun, type RunOpenOptions } from './run-files.js';
import { checkConfigReadsBack, trainableCount, TrainingRun, type ImageSet } from './training-run.js';

/** Decoded labelled images: RGB uint8 HWC of one side, a class index per image, the class names. */
export interface LabelledImageSet extends ImageSet {
  readonly labels: Int32Array;
  readonly classes: readonly string[];
}

/**
 * What `FinetuneRun.create` takes: where it starts, and the FINETUNE table's settings (app/api/run-kinds.ts, config.json's
 * names), each defaulting to the table's value (the recipe); `steps` overrides `epochs`; `checkpoint_every` defaults
 * to one epoch.
 */
export interface FinetuneOptions
  extends Settings<typeof FINETUNE>, Partial<Record<keyof typeof FINETUNE_RECIPE, number>> {
  /** A pretraining run folder, a fine-tuning run folder, a safetensors file (vit_classifier or D-iGPT), or 'scratch'. */
  readonly from: string;
  /** The dataset folder, recorded so that `digpt resume` can reload it. */
  readonly data?: string;
  /** Architecture for 'scratch' (or a file without a config in its metadata); num_classes comes from the data. */
  readonly model?: Partial<VitConfig>;
  /** A D-iGPT preset name whose encoder gives the architecture (instead of `model`). */
  readonly preset?: string;
  /** Mean of patch tokens + fc_norm (true, default) or the cls token + norm. */
  readonly global_pool?: boolean;
}

// --- encoders and classifiers on disk ---

/** A ViT config for a D-iGPT encoder. */
export function vitConfigOfDigpt(d: DigptConfig, numClasses: number, globalPool = true): VitConfig {
  return resolveVitConfig({
    img_size: d.img_size,
    patch_size: d.patch_size,
    embed_dim: d.embed_dim,
    depth: d.depth,
    num_heads: d.num_heads,
    mlp_ratio: d.mlp_ratio,
    num_classes: numClasses,
    global_pool: globalPool,
    ln_eps: d.block_ln_eps,
  });
}

/**
 * Copies what `src` holds of a classifier into `vit`: cls_token, patch_embed and blocks are required (a D-iGPT
 * encoder in canonical or official names has them); pos_embed, the final norm and the head are taken when present
 * with the right shape (a D-iGPT file without pos_embed keeps the sin-cos table). Returns what was loaded.
 */
export function loadClassifierParts(vit: VitClassifier, src: WeightSource): { head: boolean; norm: boolean } {
  const have = new Set(src.keys());
  const ps = vit.params;
  const fits = (n: string): boolean => {
    if (!have.has(n)) return false;
    const a = src.shape(n);
    const b = ps.specs.get(n)?.shape ?? [];
    return a.length === b.length && a.every((d, i) => d === b[i]);
  };
  const required = ps
    .names()
    .filter((n) => n === 'cls_token' || n.startsWith('patch_embed.') || n.startsWith('blocks.'));
  const missing = required.filter((n) => !have.has(n));
  if (missing.length)
    throw new WeightsError(
      `${src.label}: not a ViT encoder of this shape; missing ${missing.slice(0, 6).join(', ')}${missing.length > 6 ? ` and ${missing.length - 6} more` : ''}`,
      missing,
    );
  for (const n of required) ps.assign(n, src.read(n), src.shape(n), src.label);
  if (fits('pos_embed')) ps.assign('pos_embed', src.read('pos_embed'), src.shape('pos_embed'), src.label);
  const normName = vit.config.global_pool ? 'fc_norm' : 'norm';
  const norm = fits(`${normName}.weight`) && fits(`${normName}.bias`);
  if (norm)
    for (const n of [`${normName}.weight`, `${normName}.bias`])
      ps.assign(n, src.read(n), src.shape(n), src.label);
  const head = fits('head.weight') && fits('head.bias');
  if (head) for (const n of ['head.weight', 'head.bias']) ps.assign(n, src.read(n), src.shape(n), src.label);
  return { head, norm };
}

/** What a weights file says about its architecture: a classifier's VitConfig, a D-iGPT config, or nothing. */
function fileArchitecture(
  f: SafetensorsFile,
): { kind: 'vit'; config: VitConfig } | { kind: 'digpt'; config: DigptConfig } | undefined {
  const raw = f.metadata['config'];
  if (!raw) return undefined;
  const parsed = JSON.parse(raw) as Record<string, unknown>;
  if (f.metadata['kind'] === 'vit_classifier') return { kind: 'vit', config: resolveVitConfig(parsed) };
  if ('dec_dim' in parsed) return { kind: 'digpt', config: resolveDigptConfig(parsed) };
  if ('num_classes' in parsed) return { kind: 'vit', config: resolveVitConfig(parsed) };
  return undefined;
}

export interface OpenedClassifier {
  readonly vit: VitClassifier;
  /** The file the weights came from ('' for scratch). */
  readonly file: string;
  /** The head (and final norm) came from the file, rather than being fresh. */
  readonly loadedHead: boolean;
}

/**
 * Builds a classifier of `numClasses` classes from a source (see FinetuneOptions.from). The architecture comes from
 * the file's metadata (vit_classifier config or D-iGPT config), else from `fallback`; a fresh head starts at
 * N(0, 2e-5) with zero bias, as MAE's fine-tuning does.
 */
export function openClassifier(
  from: string,
  numClasses: number,
  o: { seed?: number; globalPool?: boolean; fallback?: Partial<VitConfig> } = {},
): OpenedClassifier {
  const seed = o.seed ?? 0;
  let vit: VitClassifier;
  let file = '';
  let loadedHead = false;
  if (from === 'scratch') {
    if (!o.fallback) throw new Error(`from scratch needs an architecture (model or preset)`);
    vit = new VitClassifier(
      resolveVitConfig({
        ...o.fallback,
        num_classes: numClasses,
        ...(o.globalPool !== undefined ? { global_pool: o.globalPool } : {}),
      }),
      seed,
    );
  } else {
    file = sourceFile(from);
    const f = SafetensorsFile.open(file);
    try {
      const arch = fileArchitecture(f);
      let cfg: VitConfig;
      if (arch?.kind === 'vit')
        cfg = resolveVitConfig({
          ...arch.config,
          num_classes: numClasses,
          ...(o.globalPool !== undefined ? { global_pool: o.globalPool } : {}),
        });
      else if (arch?.kind === 'digpt') cfg = vitConfigOfDigpt(arch.config, numClasses, o.globalPool ?? true);
      else if (o.fallback)
        cfg = resolveVitConfig({
          ...o.fallback,
          num_classes: numClasses,
          ...(o.globalPool !== undefined ? { global_pool: o.globalPool } : {}),
        });
      else throw new Error(`${file}: no config in its metadata; give the architecture (model or preset)`);
      vit = new VitClassifier(cfg, seed);
      try {
        const g = cfg.img_size / cfg.patch_size;
        vit.params.assign('pos_embed', sincos2d(cfg.embed_dim, g, true), [1, 1 + g * g, cfg.embed_dim]);
        loadedHead = loadClassifierParts(vit, fileSource(f)).head;
      } catch (e) {
        vit.dispose();
        throw e;
      }
    } finally {
      f.close();
    }
  }
  if (!loadedHead) {
    const rng = new Rng(seed + 2);
    const k = vit.config.num_classes;
    const C = vit.config.embed_dim;
    vit.params.assign(
      'head.weight',
      new Float32Array(k * C).map(() => rng.normal() * 2e-5),
      [k, C],
    );
    vit.params.assign('head.bias', new Float32Array(k), [k]);
  }
  return { vit, file, loadedHead };
}

/**
 * Writes a classifier as timm-named safetensors with metadata kind 'vit_classifier', its config and class names
 * (`tensors`: its weights when the caller has already read them out).
 */
export async function exportClassifier(
  path: string,
  vit: VitClassifier,
  classes?: readonly string[],
  weights?: Map<string, { shape: number[]; data: Float32Array }>,
): Promise<void> {
  const tensors = weights ?? (await vit.params.exportTorch());
  saveWeights(path, tensors, {
    kind: 'vit_classifier',
    config: JSON.stringify(vit.config),
    ...(classes ? { classes: JSON.stringify(classes) } : {}),
  });
}

// --- images ---

/** Evaluation view of images [start, start+n): the whole image resized to `size`, ImageNet-normalised, NHWC. */
export function evalImages(set: ImageSet, size: number): (start: number, n: number) => Float32Array {
  const side = set.side;
  const per = side * side * 3;
  return (start, n) => {
    const out = new Float32Array(n * size * size * 3);
    for (let i = 0; i < n; i++) {
      const img = set.pixels.subarray((start + i) * per, (start + i + 1) * per);
      cropResizeNormalize(
        img,
        side,
        fullCrop(side),
        size,
        IMAGENET_MEAN,
        IMAGENET_STD,
        out,
        i * size * size * 3,
      );
    }
    return out;
  };
}

function checkLabels(set: LabelledImageSet, k: number, what: string): void {
  if (set.labels.length !== set.count)
    throw new Error(`${what}: ${set.labels.length} labels for ${set.count} images`);
  if (set.pixels.length !== set.count * set.side * set.side * 3)
    throw new Error(`${what}: ${set.pixels.length} bytes for ${set.count} images of side ${set.side}`);
  for (let i = 0; i < set.count; i++) {
    const y = set.labels[i] as number;
    if (!(y >= 0 && y < k)) throw new Error(`${what}: image ${i} has label ${y}, outside 0..${k - 1}`);
  }
}

// --- the run ---

/**
 * A fine-tuning run: what is its own is the augmented micro-batch (crop, erase, mixup/cutmix), the classifier step
 * with drop path, epochs counted in steps with an evaluation at each epoch's end, and a timm-named weights file; the
 * stream, loop, checkpoints and resume are TrainingRun's.
 */
export class FinetuneRun extends TrainingRun<
  FinetuneConfig,
  VitClassifier,
  ClassifierBatch,
  ClassifierStepMetrics,
  FinetuneStepRecord,
  FinetuneEvalRecord
> {
  private readonly train: LabelledImageSet;
  private readonly val: LabelledImageSet;

  private constructor(
    dir: string,
    config: FinetuneConfig,
    model: VitClassifier,
    train: LabelledImageSet,
    val: LabelledImageSet,
  ) {
    const k = config.classes.length;
    if (JSON.stringify([...val.classes]) !== JSON.stringify(config.classes))
      throw new Error(
        `the validation set's classes (${val.classes.join(', ')}) differ from the run's (${config.classes.join(', ')})`,
      );
    checkLabels(train, k, 'train set');
    checkLabels(val, k, 'validation set');
    const opt = classifierOptimizer(model, {
      beta1: 0.9,
      beta2: 0.999, // PyTorch's AdamW default, as MAE's fine-tuning
      eps: 1e-8,
      weightDecay: config.weight_decay,
      layerDecay: config.layer_decay,
    });
    super(dir, config, model, opt, train.count, config.steps_per_epoch);
    this.train = train;
    this.val = val;
  }

  /** Starts a new run in `dir` (which must not hold one already); a batch too large is refused before the folder is made. */
  static create(
    dir: string,
    o: FinetuneOptions,
    train: LabelledImageSet,
    val: LabelledImageSet,
    ro: RunOpenOptions = {},
  ): FinetuneRun {
    refuseExistingRun(dir);
    const classes = [...train.classes];
    const seed = o.seed ?? FINETUNE_DEFAULTS.seed;
    const fallback =
      o.model ?? (o.preset ? vitConfigOfDigpt(getPreset(o.preset).model, classes.length) : undefined);
    const opened = openClassifier(o.from, classes.length, {
      seed,
      ...(o.global_pool !== undefined ? { globalPool: o.global_pool } : {}),
      ...(fallback ? { fallback } : {}),
    });
    let run: FinetuneRun;
    try {
      const D = { ...FINETUNE_DEFAULTS, ...FINETUNE_RECIPE };
      const batch = o.batch ?? D.batch;
      const accum = o.accum ?? D.accum;
      const spe = Math.max(1, Math.floor(train.count / (batch * accum)));
      const steps = o.steps ?? (o.epochs ?? D.epochs) * spe;
      const config: FinetuneConfig = {
        kind: 'finetune',
        from: o.from,
        ...(o.data !== undefined ? { data: nodePath.resolve(o.data) } : {}),
        model: opened.vit.config,
        classes,
        steps,
        steps_per_epoch: spe,
        epochs: steps / spe,
        batch,
        accum,
        blr: o.blr ?? D.blr,
        min_lr: o.min_lr ?? D.min_lr,
        layer_decay: o.layer_decay ?? D.layer_decay,
        weight_decay: o.weight_decay ?? D.weight_decay,
        drop_path: o.drop_path ?? D.drop_path,
        smoothing: o.smoothing ?? D.smoothing,
        mixup: o.mixup ?? D.mixup,
        cutmix: o.cutmix ?? D.cutmix,
        erase: o.erase ?? D.erase,
        crop_min: o.crop_min ?? FINETUNE.crop_min.default,
        warmup_epochs: o.warmup_epochs ?? D.warmup_epochs,
        seed,
        checkpoint_every: o.checkpoint_every ?? spe,
        eval_batch: o.eval_batch ?? D.eval_batch,
      };
      checkConfigReadsBack(dir, config);
      run = new FinetuneRun(dir, config, opened.vit, train, val);
    } catch (e) {
      opened.vit.dispose();
      throw e;
    }
    return TrainingRun.startNew(run, ro);
  }

  /**
   * Reopens a run at its newest good checkpoint, or at its source if it never logged a step (TrainingRun.reopen
   * says what is refused and what is dropped).
   */
  static resume(
    dir: string,
    train: LabelledImageSet,
    val: LabelledImageSet,
    o: RunOpenOptions = {},
  ): FinetuneRun {
    return TrainingRun.reopen(dir, o, (config, point) => {
      if (config.kind !== 'finetune') throw new Error(`${dir}: a ${config.kind} run, not a fine-tuning run`);
      if (JSON.stringify([...train.classes]) !== JSON.stringify(config.classes))
        throw new Error(
          `${dir}: the train set's classes differ from the run's (${config.classes.join(', ')})`,
        );
      const model = point()
        ? new VitClassifier(config.model, config.seed)
        : openClassifier(config.from, config.classes.length, {
            seed: config.seed,
            globalPool: config.model.global_pool,
            fallback: config.model,
          }).vit;
      try {
        return new FinetuneRun(dir, config, model, train, val);
      } catch (e) {
        model.dispose();
        throw e;
      }
    });
  }

  protected memoryNeeds(): StepMemory {
    return {
      batch: this.config.batch,
      studentFloats: classifierFloatsPerSample(this.config.model),
      params: trainableCount(this.model),
      largestFloats: classifierLargestPerSample(this.config.model),
    };
  }

  /** warmup_epochs in steps. */
  protected get warmupSteps(): number {
    return Math.round(this.config.warmup_epochs * this.config.steps_per_epoch);
  }

  /** One augmented micro-batch drawn now (crop, flip, normalise, erase, mixup/cutmix); the tensors are made lazily. */
  protected microBatch(): () => ClassifierBatch {
    const c = this.config;
    const s = c.model.img_size;
    const b = c.batch;
    const side = this.train.side;
    const per = side * side * 3;
    const x = new Float32Array(b * s * s * 3);
    const labels = new Int32Array(b);
    for (let i = 0; i < b; i++) {
      const idx = this.stream.next();
      labels[i] = this.train.labels[idx] as number;
      const img = this.train.pixels.subarray(idx * per, (idx + 1) * per);
      cropResizeNormalize(
        img,
        side,
        drawCrop(this.rng, side, [c.crop_min ?? FINETUNE.crop_min.default, 1]),
        s,
        IMAGENET_MEAN,
        IMAGENET_STD,
        x,
        i * s * s * 3,
      );
      if (c.erase > 0) randomErase(this.rng, x, i * s * s * 3, s, { prob: c.erase });
    }
    const k = c.classes.length;
    const { targets } = mixBatch(this.rng, x, labels, s, {
      mixupAlpha: c.mixup,
      cutmixAlpha: c.cutmix,
      smoothing: c.smoothing,
      numClasses: k,
    });
    return () => ({ images: tf.tensor4d(x, [b, s, s, 3]), targets: tf.tensor2d(targets, [b, k]) });
  }

  protected trainStep(micro: (() => ClassifierBatch)[], lr: number): Promise<ClassifierStepMetrics> {
    return classifierStep(this.model, this.opt, micro, lr, {
      dropPath: this.config.drop_path,
      rng: this.rng,
    });
  }

  protected record(m: ClassifierStepMetrics, lr: number, imgPerS: number): FinetuneStepRecord {
    return {
      step: this.step,
      loss: m.loss,
      lr,
      epoch: this.epoch,
      img_per_s: imgPerS,
      time: new Date().toISOString(),
    };
  }

  /** At each epoch's end and the run's: the validation split's top-1 and loss. */
  protected override async evaluateAfterStep(last: boolean): Promise<FinetuneEvalRecord | undefined> {
    return this.step % this.config.steps_per_epoch === 0 || last ? this.evaluate() : undefined;
  }

  /** Top-1 and loss on the validation split (whole images, no augmentation), logged as one line of metrics.jsonl. */
  async evaluate(): Promise<FinetuneEvalRecord> {
    const { val_top1, val_loss } = await this.score(this.val);
    const rec: FinetuneEvalRecord = {
      step: this.step,
      epoch: this.epoch,
      val_top1,
      val_loss,
      time: new Date().toISOString(),
    };
    this.appendMetrics(rec);
    return rec;
  }

  /** Top-1 and cross-entropy of the current model on a labelled set (nothing logged). */
  async score(set: LabelledImageSet): Promise<{ val_top1: number; val_loss: number }> {
    const { pred, logits } = await predictClasses(
      this.model,
      set.count,
      this.config.eval_batch,
      evalImages(set, this.config.model.img_size),
    );
    return {
      val_top1: top1(pred, set.labels),
      val_loss: crossEntropy(logits, set.labels, this.config.classes.length),
    };
  }

  /** Writes the classifier as timm-named safetensors (kind vit_classifier), loadable as a teacher. */
  exportClassifier(path: string): Promise<void> {
    return exportClassifier(path, this.model, this.config.classes);
  }

  protected writeWeights(path: string, weights: Map<string, { shape: number[]; data: Float32Array }>): void {
    saveWeights(path, weights, {
      kind: 'vit_classifier',
      config: JSON.stringify(this.model.config),
      classes: JSON.stringify(this.config.classes),
    });
  }

  protected loadWeights(src: WeightSource): void {
    for (const n of this.model.params.names())
      this.model.params.assign(n, src.read(n), src.shape(n), src.label);
  }
}
