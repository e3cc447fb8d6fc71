// Runs the engine against reference test vectors (safetensors files made by the PyTorch reference) and reports each check.
import * as tf from '@tensorflow/tfjs-core';
import * as nodePath from 'node:path';
import { resolveClipConfig, resolveDigptConfig, resolveVitConfig } from '../config.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { DigptModel } from '../models/digpt.js';
import {
  clipMetadata,
  fileSource,
  loadClip,
  loadDigptOfficial,
  loadVitTimm,
  officialDigptName,
} from '../models/naming.js';
import { VitClassifier } from '../models/vit.js';
import { AdamW } from '../optim/adamw.js';
import { accumulateGrads, disposeGrads } from '../train/grads.js';

/** One comparison: a tensor of the engine against the reference. */
export interface ParityCheck {
  readonly file: string;
  readonly check: string;
  readonly pass: boolean;
  readonly maxError: number;
  readonly tolerance: number;
  /** Set when the check could not run at all (e.g. a load error). */
  readonly error?: string;
}

/** Relative tolerance of the spec: max abs error <= 1e-4 x the tensor's largest magnitude. */
const REL_TOL = 1e-4;
/** Losses: 1e-5 absolute. */
const LOSS_TOL = 1e-5;

/** Max abs difference; equal infinities count as equal, NaN anywhere as infinitely wrong. */
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    if (x === y) continue;
    const d = Math.abs(x - y);
    if (Number.isNaN(d)) return Infinity;
    m = Math.max(m, d);
  }
  return m;
}

function finiteMaxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const v = Math.abs(a[i] as number);
    if (Number.isFinite(v)) m = Math.max(m, v);
  }
  return m;
}

class Checker {
  readonly results: ParityCheck[] = [];
  constructor(private readonly file: string) {}

  tensor(check: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
    const tol = REL_TOL * Math.max(finiteMaxAbs(want), 1e-30);
    const err = maxDiff(got, want);
    this.results.push({ file: this.file, check, pass: err <= tol, maxError: err, tolerance: tol });
  }

  loss(check: string, got: number, want: number): void {
    const err = Number.isNaN(got) ? Infinity : Math.abs(got - want);
    this.results.push({ file: this.file, check, pass: err <= LOSS_TOL, maxError: err, tolerance: LOSS_TOL });
  }

  shape(check: string, got: readonly number[], want: readonly number[]): boolean {
    const ok = got.length === want.length && got.every((d, i) => d === want[i]);
    if (!ok) {
      this.results.push({
        file: this.file,
        check,
        pass: false,
        maxError: Infinity,
        tolerance: 0,
        error: `shape [${got.join(', ')}] != reference [${want.join(', ')}]`,
      });
    }
    return ok;
  }

  fail(check: string, e: unknown): void {
    const error = e instanceof Error ? e.message : String(e);
    this.results.push({ file: this.file, check, pass: false, maxError: Infinity, tolerance: 0, error });
  }
}

/** NCHW float data -> NHWC tensor. */
function nhwc(f: SafetensorsFile, key: string): tf.Tensor4D {
  const [b, c, h, w] = f.entry(key).shape as [number, number, number, number];
  return tf.tidy(() => tf.transpose(tf.tensor4d(f.readFloat32(key), [b, c, h, w]), [0, 2, 3, 1]));
}

function metaJson(f: SafetensorsFile, key: string): Record<string, unknown> {
  const raw = f.metadata[key];
  if (raw === undefined) throw new Error(`${f.path}: __metadata__ has no '${key}'`);
  return JSON.parse(raw) as Record<string, unknown>;
}

async function runDigpt(f: SafetensorsFile, ck: Checker): Promise<void> {
  const config = resolveDigptConfig(metaJson(f, 'config'));
  const hp = metaJson(f, 'adamw') as {
    lr: number;
    beta1: number;
    beta2: number;
    eps: number;
    weight_decay: number;
  };
  const model = new DigptModel(config);
  try {
    const src = fileSource(f, 'weights.');
    loadDigptOfficial(model, src);
    // fixed buffers: the engine computes them; they must equal the reference's
    ck.tensor('pos_embed (computed)', model.posEmbedWithCls(), f.readFloat32('weights.pos_embed'));
    ck.tensor(
      'decoder_pos_embed (computed)',
      model.decoderPosEmbed(),
      f.readFloat32('weights.decoder_pos_embed'),
    );
    ck.tensor('mask', model.maskValues(), f.readFloat32('output.mask'));
    const images = nhwc(f, 'input.images_nchw');
    const teacher = tf.tensor3d(
      f.readFloat32('input.teacher_tokens'),
      f.entry('input.teacher_tokens').shape as [number, number, number],
    );
    const order = f.readInt32('input.order');
    const batch = { images, teacher, order };
    const outs = tf.tidy(() => {
      const out = model.forward(batch);
      return {
        encoder_out: out.encoderOut,
        pred_gen: out.gen?.pred,
        pred_dis: out.dis?.pred,
        loss_gen: out.gen?.loss,
        loss_dis: out.dis?.loss,
      };
    });
    try {
      for (const name of ['encoder_out', 'pred_gen', 'pred_dis'] as const) {
        const t = outs[name];
        if (!t) continue;
        if (ck.shape(name, t.shape, f.entry(`output.${name}`).shape))
          ck.tensor(name, await t.data(), f.readFloat32(`output.${name}`));
      }
      for (const name of ['loss_gen', 'loss_dis'] as const)
        ck.loss(name, (await outs[name]?.data())?.[0] ?? NaN, f.readFloat32(`output.${name}`)[0] as number);
    } finally {
      for (const t of Object.values(outs)) t?.dispose();
    }
    const trainable = model.params.trainable();
    const { grads, losses } = accumulateGrads(trainable, () => model.forward(batch).loss, 1);
    losses.dispose();
    for (const p of trainable) {
      const off = officialDigptName(p.name);
      const g = grads.get(p.name);
      if (!g) {
        ck.fail(`grad ${off}`, new Error('no gradient reached this parameter'));
        continue;
      }
      ck.tensor(
        `grad ${off}`,
        model.params.toTorch(p.name, (await g.data()) as Float32Array),
        f.readFloat32(`grad.${off}`),
      );
    }
    const opt = new AdamW(
      trainable.map((p) => ({ name: p.name, variable: p.variable, decay: p.spec.decay })),
      { beta1: hp.beta1, beta2: hp.beta2, eps: hp.eps, weightDecay: hp.weight_decay },
    );
    opt.apply(grads, hp.lr);
    disposeGrads(grads);
    opt.dispose();
    for (const p of trainable) {
      const off = officialDigptName(p.name);
      ck.tensor(`adamw ${off}`, await model.params.read(p.name), f.readFloat32(`adamw.${off}`));
    }
    images.dispose();
    teacher.dispose();
  } finally {
    model.dispose();
  }
}

async function runClip(f: SafetensorsFile, ck: Checker): Promise<void> {
  const declared = resolveClipConfig(metaJson(f, 'config'), f.path);
  const meta = clipMetadata(f.path, f.metadata);
  const images = nhwc(f, 'input.images_nchw');
  const want = f.readFloat32('output.tokens');
  for (const prefix of ['openai.', 'hf.']) {
    const check = `tokens (${prefix.slice(0, -1)} names)`;
    if (!f.keys().some((k) => k.startsWith(prefix))) continue;
    try {
      const { model } = loadClip(fileSource(f, prefix), meta);
      try {
        const got = model.config;
        for (const k of Object.keys(declared) as (keyof typeof declared)[]) {
          if (got[k] !== declared[k])
            throw new Error(`config ${k}: read ${String(got[k])}, metadata says ${String(declared[k])}`);
        }
        const out = tf.tidy(() => model.forward(images));
        try {
          if (ck.shape(check, out.shape, f.entry('output.tokens').shape))
            ck.tensor(check, await out.data(), want);
        } finally {
          out.dispose();
        }
      } finally {
        model.dispose();
      }
    } catch (e) {
      ck.fail(check, e);
    }
  }
  images.dispose();
}

async function runVit(f: SafetensorsFile, ck: Checker): Promise<void> {
  const config = resolveVitConfig(metaJson(f, 'config'));
  const model = new VitClassifier(config);
  try {
    loadVitTimm(model, fileSource(f, 'weights.'));
    const images = nhwc(f, 'input.images_nchw');
    const out = tf.tidy(() => model.forward(images));
    try {
      if (ck.shape('logits', out.shape, f.entry('output.logits').shape))
        ck.tensor('logits', await out.data(), f.readFloat32('output.logits'));
    } finally {
      out.dispose();
    }
    images.dispose();
  } finally {
    model.dispose();
  }
}

/** Runs every check of one vector file; a file that cannot be run at all yields one failed check saying why. */
export async function runParityFile(path: string): Promise<ParityCheck[]> {
  const name = nodePath.basename(path);
  const ck = new Checker(name);
  let f: SafetensorsFile | undefined;
  try {
    f = SafetensorsFile.open(path);
    const kind = f.metadata['kind'];
    if (kind === 'digpt') await runDigpt(f, ck);
    else if (kind === 'clip_vision') await runClip(f, ck);
    else if (kind === 'vit_classifier') await runVit(f, ck);
    else
      throw new Error(
        `unknown vector kind '${String(kind)}' (expected digpt, clip_vision or vit_classifier)`,
      );
  } catch (e) {
    ck.fail('load', e);
  } finally {
    f?.close();
  }
  if (ck.results.length === 0) ck.fail('load', new Error('no checks ran'));
  return ck.results;
}

/** One line per check: PASS/FAIL, file, check, max error, tolerance. */
export function formatCheck(c: ParityCheck): string {
  const fmt = (x: number): string => (Number.isFinite(x) ? x.toExponential(2) : String(x));
  const base = `${c.pass ? 'PASS' : 'FAIL'}  ${c.file}  ${c.check}  max_err=${fmt(c.maxError)}  tol=${fmt(c.tolerance)}`;
  return c.error ? `${base}  (${c.error})` : base;
}
