// Takes a run's newest good checkpoint out of the workbench: timm names (PyTorch/timm), official D-iGPT names, TF.js.
import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import type { DigptConfig } from '../../engine/config.js';
import { SafetensorsFile } from '../../engine/io/safetensors.js';
import type { DigptModel } from '../../engine/models/digpt.js';
import { createPretrainModel, isPretrainObjective, type PretrainModel } from '../../engine/models/factory.js';
import {
  exportDigptOfficial,
  fileSource,
  loadDigptCanonical,
  saveWeights,
} from '../../engine/models/naming.js';
import { sincos2d } from '../../engine/models/geometry.js';
import { goodCheckpoint } from './checkpoints.js';
import { putExportFile, resolveExportTarget, writeNewFile, type ExportOptions } from '../runs/paths.js';
import { readRunConfig } from '../runs/config.js';
import type { CheckpointFormat } from '../api/contract.js';

export { defaultExportPath, resolveExportTarget, type ExportOptions } from '../runs/paths.js';
export const EXPORT_FORMATS: readonly CheckpointFormat[] = ['timm', 'digpt', 'tfjs'];

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/** The pretrained model (any objective) of a run's newest good checkpoint. */
export function loadRunModel(runDir: string): { model: PretrainModel; step: number; folder: string } {
  const ck = goodCheckpoint(nodePath.join(runDir, 'checkpoints'), true);
  if (!ck) throw new Error(`${runDir}: no usable checkpoint in ${nodePath.join(runDir, 'checkpoints')}`);
  const path = nodePath.join(ck.folder, 'model.safetensors');
  const f = SafetensorsFile.open(path);
  try {
    const raw = f.metadata['config'];
    if (!raw) throw new Error(`${path}: __metadata__ has no config`);
    const objective = f.metadata['objective'] ?? 'digpt';
    if (!isPretrainObjective(objective))
      throw new Error(`${path}: unknown objective '${objective}' in its metadata`);
    const model = createPretrainModel(JSON.parse(raw) as DigptConfig, { objective });
    try {
      loadDigptCanonical(model, fileSource(f));
    } catch (e) {
      model.dispose();
      throw e;
    }
    return { model, step: ck.manifest.step, folder: ck.folder };
  } finally {
    f.close();
  }
}

/**
 * The encoder in timm's VisionTransformer names: patch_embed, cls_token, pos_embed (the fixed sin-cos table with its
 * cls slot first, as timm orders tokens), blocks, and fc_norm at its fresh init (ones, zeros: D-iGPT trains no final
 * norm). It loads strictly into timm's VisionTransformer(global_pool='avg', num_classes=0) of the same size.
 */
export async function timmEncoder(model: PretrainModel): Promise<Tensors> {
  const out: Tensors = new Map();
  for (const [k, v] of await model.params.exportTorch()) {
    if (k === 'cls_token' || k.startsWith('patch_embed.') || k.startsWith('blocks.')) out.set(k, v);
  }
  const c = model.config;
  const grid = c.img_size / c.patch_size;
  out.set('pos_embed', { shape: [1, 1 + grid * grid, c.embed_dim], data: sincos2d(c.embed_dim, grid, true) });
  out.set('fc_norm.weight', { shape: [c.embed_dim], data: new Float32Array(c.embed_dim).fill(1) });
  out.set('fc_norm.bias', { shape: [c.embed_dim], data: new Float32Array(c.embed_dim) });
  return out;
}

/** Official names exist for the D-iGPT objectives only (kd and mae runs export timm or tfjs). */
function official(model: PretrainModel): Promise<Tensors> {
  if (model.objective === 'kd' || model.objective === 'mae') {
    throw new Error(`a ${model.objective} run has no official D-iGPT names; export it as timm or tfjs`);
  }
  return exportDigptOfficial(model as unknown as DigptModel);
}

/** How an export puts its files in place: replacing what is there (asked, or the run's default path) or not. */
interface Placement {
  readonly replace: boolean;
}

/**
 * A TF.js weights folder: model.json (config + weightsManifest) and one binary shard, readable by tf.io.loadWeights.
 * weights.bin is put in place first, so a model.json is never there without the shard it lists.
 */
async function writeTfjs(dir: string, tensors: Tensors, modelConfig: unknown, how: Placement): Promise<void> {
  const named = [...tensors].map(([name, v]) => ({ name, tensor: tf.tensor(v.data, v.shape) }));
  const { data, specs } = await tf.io.encodeWeights(named);
  tf.dispose(named.map((n) => n.tensor));
  putExportFile(nodePath.join(dir, 'weights.bin'), how, (tmp) => writeNewFile(tmp, new Uint8Array(data)));
  const manifest = {
    format: 'digpt-workbench',
    generatedBy: 'digpt export --format tfjs',
    convertedBy: null,
    modelTopology: null,
    userDefinedMetadata: {
      config: modelConfig,
      layouts: 'PyTorch layouts: Linear [out, in], conv [out, in, kh, kw]',
    },
    weightsManifest: [{ paths: ['weights.bin'], weights: specs }],
  };
  const json = Buffer.from(JSON.stringify(manifest, null, 1), 'utf8');
  putExportFile(nodePath.join(dir, 'model.json'), how, (tmp) => writeNewFile(tmp, json));
}

/** A fine-tuning run's classifier: timm names with head (as checkpointed), or TF.js. */
async function exportClassifierRun(
  runDir: string,
  format: CheckpointFormat,
  path: string,
  how: Placement,
): Promise<{ path: string; tensors: number; step: number }> {
  const ck = goodCheckpoint(nodePath.join(runDir, 'checkpoints'), true);
  if (!ck) throw new Error(`${runDir}: no usable checkpoint in ${nodePath.join(runDir, 'checkpoints')}`);
  if (format === 'digpt')
    throw new Error(`${runDir} is a fine-tuning run: it has no D-iGPT decoders; export it as timm or tfjs`);
  const src = nodePath.join(ck.folder, 'model.safetensors');
  const f = SafetensorsFile.open(src);
  try {
    const tensors: Tensors = new Map(
      f.keys().map((k) => [k, { shape: [...f.entry(k).shape], data: f.readFloat32(k) }]),
    );
    if (format === 'timm')
      putExportFile(path, how, (tmp) =>
        saveWeights(tmp, tensors, { ...f.metadata, step: String(ck.manifest.step) }),
      );
    else await writeTfjs(path, tensors, JSON.parse(f.metadata['config'] ?? 'null'), how);
    return { path, tensors: tensors.size, step: ck.manifest.step };
  } finally {
    f.close();
  }
}

/**
 * Writes the export and returns what was written. `out` defaults to RUN_DIR/export/<format>[.safetensors], which a
 * re-export replaces; any other existing file is replaced only with `overwrite`.
 */
export async function exportRun(
  runDir: string,
  format: CheckpointFormat,
  out?: string,
  opts: ExportOptions = {},
): Promise<{ path: string; tensors: number; step: number }> {
  if (!EXPORT_FORMATS.includes(format))
    throw new Error(`unknown export format '${format}'; use one of ${EXPORT_FORMATS.join(', ')}`);
  const cpath = nodePath.join(runDir, 'config.json');
  if (!fs.existsSync(cpath)) throw new Error(`${runDir}: no config.json; not a run folder`);
  const kind = readRunConfig(runDir).kind;
  const { target, replace } = resolveExportTarget(runDir, format, out, opts);
  fs.mkdirSync(format === 'tfjs' ? target : nodePath.dirname(target), { recursive: true });
  // checked again now that its folders exist: a link made meanwhile along the path is seen
  if (resolveExportTarget(runDir, format, out, opts).target !== target) {
    throw new Error(
      `export path ${nodePath.resolve(out ?? target)} changed while the export was prepared; export again`,
    );
  }
  const how: Placement = { replace };
  if (kind === 'finetune') {
    return exportClassifierRun(runDir, format, target, how);
  }
  const { model, step } = loadRunModel(runDir);
  try {
    const meta = {
      config: JSON.stringify(model.config),
      step: String(step),
      source: nodePath.resolve(runDir),
    };
    const path = target;
    let tensors: Tensors;
    if (format === 'timm') {
      const timm = await timmEncoder(model);
      tensors = timm;
      putExportFile(path, how, (tmp) =>
        saveWeights(tmp, timm, {
          ...meta,
          kind: 'timm_vit_encoder',
          note: "timm VisionTransformer(global_pool='avg', num_classes=0); fc_norm is at its init",
        }),
      );
    } else if (format === 'digpt') {
      const names = await official(model);
      tensors = names;
      putExportFile(path, how, (tmp) => saveWeights(tmp, names, { ...meta, kind: 'digpt' }));
    } else {
      tensors =
        model.objective === 'kd' || model.objective === 'mae'
          ? await model.params.exportTorch()
          : await official(model);
      await writeTfjs(path, tensors, model.config, how);
    }
    return { path, tensors: tensors.size, step };
  } finally {
    model.dispose();
  }
}
