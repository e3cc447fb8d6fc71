// Teachers that give D-iGPT its targets: a CLIP vision tower, a classifier the workbench trained, or normalised pixels.
import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import { resolveVitConfig, type DigptConfig } from '../../engine/config.js';
import { SafetensorsFile } from '../../engine/io/safetensors.js';
import { CLIP_MEAN, CLIP_STD, type ClipVision } from '../../engine/models/clip.js';
import { clipMetadata, fileSource, loadClip, loadVitTimm } from '../../engine/models/naming.js';
import { VitClassifier } from '../../engine/models/vit.js';
import { forwardFloatsPerSample } from '../../engine/train/memory.js';
import { IMAGENET_MEAN, IMAGENET_STD } from './augment.js';
import { sourceFile } from './checkpoints.js';

/** A frozen teacher: what input it takes and the tokens it returns, cls first. */
export interface Teacher {
  /** What the user named ('pixels' or a file path). */
  readonly spec: string;
  readonly kind: 'clip' | 'vit' | 'pixels';
  /** Input side in pixels. */
  readonly resolution: number;
  /** Tokens per side of its output (without cls). */
  readonly grid: number;
  /** Feature width of its tokens. */
  readonly dim: number;
  readonly mean: readonly number[];
  readonly std: readonly number[];
  /** Floats its forward pass holds per image until tokens() returns (for the step's memory estimate). */
  readonly floatsPerSample: number;
  /** images NHWC [B, R, R, 3], normalised with mean/std -> tokens [B, 1 + grid^2, dim]. */
  tokens(images: tf.Tensor4D): tf.Tensor3D;
  dispose(): void;
}

/** A teacher's output held Inf or NaN: the run stops naming the teacher, before the loss turns NaN. */
export class NonFiniteTeacherError extends Error {
  constructor(spec: string, step: number, lastGood: string | undefined) {
    super(
      `teacher ${spec} gave non-finite outputs (Inf or NaN) at step ${step}; check that file (its weights may ` +
        `hold Inf or NaN); the run stopped and kept ${lastGood ? `its last good checkpoint ${lastGood}` : 'no checkpoint (none was written yet)'}`,
    );
    this.name = 'NonFiniteTeacherError';
  }
}

/** Per-patch normalised pixels (MAE's norm_pix targets); the cls target is the mean of the patch vectors. */
function pixelTeacher(student: DigptConfig): Teacher {
  const p = student.patch_size;
  const grid = student.img_size / p;
  return {
    spec: 'pixels',
    kind: 'pixels',
    resolution: student.img_size,
    grid,
    dim: p * p * 3,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    // the images, their patch rows and the normalised rows
    floatsPerSample: 3 * student.img_size * student.img_size * 3,
    tokens: (images) =>
      tf.tidy(() => {
        const b = images.shape[0];
        // [B, H, W, 3] -> [B, G, G, p*p*3]
        const x = tf.reshape(tf.transpose(tf.reshape(images, [b, grid, p, grid, p, 3]), [0, 1, 3, 2, 4, 5]), [
          b,
          grid * grid,
          p * p * 3,
        ]);
        const { mean, variance } = tf.moments(x, -1, true);
        const norm = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-6)));
        return tf.concat([tf.mean(norm, 1, true), norm], 1) as tf.Tensor3D;
      }),
    dispose: () => undefined,
  };
}

function clipTeacher(spec: string, model: ClipVision): Teacher {
  return {
    spec,
    kind: 'clip',
    resolution: model.config.resolution,
    grid: model.grid,
    dim: model.config.output_dim,
    mean: CLIP_MEAN,
    std: CLIP_STD,
    floatsPerSample: forwardFloatsPerSample({
      resolution: model.config.resolution,
      tokens: model.grid * model.grid + 1,
      width: model.config.width,
      depth: model.config.layers,
      heads: model.config.heads,
      mlpRatio: 4,
    }),
    tokens: (images) => tf.tidy(() => model.forward(images)),
    dispose: () => model.dispose(),
  };
}

/** A classifier trained by the workbench: every token after the blocks, through its final norm, cls first. */
function vitTeacher(spec: string, model: VitClassifier): Teacher {
  const c = model.config;
  return {
    spec,
    kind: 'vit',
    resolution: c.img_size,
    grid: c.img_size / c.patch_size,
    dim: c.embed_dim,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    floatsPerSample: forwardFloatsPerSample({
      resolution: c.img_size,
      tokens: (c.img_size / c.patch_size) ** 2 + 1,
      width: c.embed_dim,
      depth: c.depth,
      heads: c.num_heads,
      mlpRatio: c.mlp_ratio,
    }),
    tokens: (images) => tf.tidy(() => model.tokens(images)),
    dispose: () => model.dispose(),
  };
}

/**
 * Opens a teacher: `pixels`, a CLIP vision checkpoint (OpenAI, OpenCLIP or Hugging Face names), or a classifier
 * checkpoint the workbench exported (metadata kind `vit_classifier` with its config). Errors name the file.
 */
export function openTeacher(spec: string, student: DigptConfig): Teacher {
  if (spec === 'pixels') return pixelTeacher(student);
  let f: SafetensorsFile;
  try {
    // a fine-tuning run folder stands for its newest good checkpoint
    const file = fs.existsSync(spec) && fs.statSync(spec).isDirectory() ? sourceFile(spec) : spec;
    f = SafetensorsFile.open(file);
  } catch (e) {
    throw new Error(`teacher ${spec}: ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    if (f.metadata['kind'] === 'vit_classifier') {
      const raw = f.metadata['config'];
      if (!raw)
        throw new Error(`${spec}: a vit_classifier checkpoint needs its config in __metadata__.config`);
      const model = new VitClassifier(resolveVitConfig(JSON.parse(raw) as Record<string, unknown>));
      try {
        loadVitTimm(model, fileSource(f));
      } catch (e) {
        model.dispose();
        throw e;
      }
      return vitTeacher(spec, model);
    }
    const { model } = loadClip(fileSource(f), clipMetadata(spec, f.metadata));
    return clipTeacher(spec, model);
  } finally {
    f.close();
  }
}

/** The student config with teacher_grid and teacher_dim taken from the teacher. */
export function withTeacher(student: DigptConfig, t: Teacher): DigptConfig {
  return { ...student, teacher_grid: t.grid, teacher_dim: t.dim };
}
