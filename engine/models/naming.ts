// Checkpoint names at the boundary: the official D-iGPT names (with their ar_/kd_ quirk), OpenAI/OpenCLIP/HF CLIP, timm.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { resolveClipConfig, type ClipConfig } from '../config.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { ClipVision } from './clip.js';
import type { DigptModel } from './digpt.js';
import { WeightsError, type ParamSet } from './params.js';
import { isEncoderParam } from './student.js';
import type { VitClassifier } from './vit.js';

/** Tensors by name, read on demand (a safetensors file, optionally under a key prefix, or a Map). */
export interface WeightSource {
  /** Used in error messages: the file, and the prefix if any. */
  readonly label: string;
  keys(): string[];
  shape(key: string): readonly number[];
  read(key: string): Float32Array;
}

/** A safetensors file as a WeightSource; `prefix` ('weights.', 'openai.', ...) is stripped from its keys. */
export function fileSource(file: SafetensorsFile, prefix = ''): WeightSource {
  const keys = file.keys().filter((k) => k.startsWith(prefix));
  return {
    label: prefix ? `${file.path} [${prefix}*]` : file.path,
    keys: () => keys.map((k) => k.slice(prefix.length)),
    shape: (k) => file.entry(prefix + k).shape,
    read: (k) => file.readFloat32(prefix + k),
  };
}

/** An in-memory WeightSource. */
export function mapSource(
  label: string,
  m: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>,
): WeightSource {
  return {
    label,
    keys: () => [...m.keys()],
    shape: (k) => {
      const v = m.get(k);
      if (!v) throw new WeightsError(`${label}: missing key ${k}`, [k]);
      return v.shape;
    },
    read: (k) => {
      const v = m.get(k);
      if (!v) throw new WeightsError(`${label}: missing key ${k}`, [k]);
      return v.data;
    },
  };
}

function listNames(names: readonly string[], max = 12): string {
  return names.length <= max
    ? names.join(', ')
    : `${names.slice(0, max).join(', ')} and ${names.length - max} more`;
}

/**
 * Assigns every parameter of `ps` from `src`, where `nameOf(canonical)` gives the source key. Missing and unexpected
 * keys are collected and reported together, by name. `ignore(key)` marks source keys that are known but not loaded.
 */
function loadInto(
  ps: ParamSet,
  src: WeightSource,
  nameOf: (canonical: string) => string,
  ignore: (key: string) => boolean,
): void {
  const have = new Set(src.keys());
  const used = new Set<string>();
  const missing: string[] = [];
  const pending: [string, string][] = [];
  for (const name of ps.names()) {
    const key = nameOf(name);
    if (!have.has(key)) missing.push(key);
    else pending.push([name, key]);
    used.add(key);
  }
  const unexpected = [...have].filter((k) => !used.has(k) && !ignore(k));
  if (missing.length || unexpected.length) {
    const parts: string[] = [];
    if (missing.length) parts.push(`missing keys: ${listNames(missing)}`);
    if (unexpected.length) parts.push(`unexpected keys: ${listNames(unexpected)}`);
    throw new WeightsError(`${src.label}: ${parts.join('; ')}`, missing, unexpected);
  }
  for (const [name, key] of pending) ps.assign(name, src.read(key), src.shape(key), `${src.label}`);
}

// --- D-iGPT: official names ---

const TAP_NORM_COPIES = 4;

/**
 * Official name of a canonical D-iGPT parameter. The official code wires the generative (ar_) decoder to the memory
 * of kd_enc_norm/kd_enc2dec and the discriminative (kd_) decoder to ar_enc_norm/ar_enc2dec: kept here, so our
 * `gen_tap_norm` is their `kd_enc_norm.0` and `gen_enc2dec` their `kd_enc2dec`.
 */
export function officialDigptName(canonical: string): string {
  const rules: [RegExp, string][] = [
    [/^gen_tap_norm\./, 'kd_enc_norm.0.'],
    [/^dis_tap_norm\./, 'ar_enc_norm.0.'],
    [/^gen_enc2dec\./, 'kd_enc2dec.'],
    [/^dis_enc2dec\./, 'ar_enc2dec.'],
    [/^gen_/, 'ar_'],
    [/^dis_/, 'kd_'],
  ];
  for (const [re, to] of rules) if (re.test(canonical)) return canonical.replace(re, to);
  return canonical;
}

/** Fixed buffers that official checkpoints hold; computed by the engine, so not loaded. */
const DIGPT_BUFFERS = new Set(['pos_embed', 'decoder_pos_embed', 'mask']);

/** Loads official D-iGPT names into a model; the extra copies of the shared tap norms must equal copy 0. */
export function loadDigptOfficial(model: Pick<DigptModel, 'params'>, src: WeightSource): void {
  const copyRe = /^(ar|kd)_enc_norm\.([1-9]\d*)\.(weight|bias)$/;
  loadInto(model.params, src, officialDigptName, (k) => DIGPT_BUFFERS.has(k) || copyRe.test(k));
  for (const k of src.keys()) {
    const m = copyRe.exec(k);
    if (!m) continue;
    const first = `${m[1]}_enc_norm.0.${m[3]}`;
    const a = src.read(k);
    const b = src.read(first);
    if (a.length !== b.length || a.some((v, i) => v !== b[i])) {
      throw new WeightsError(
        `${src.label}: ${k} differs from ${first}; the official model shares one norm across taps`,
      );
    }
  }
}

/** A D-iGPT model's weights under the official names (4 copies of each shared tap norm, fixed buffers included). */
export async function exportDigptOfficial(
  model: DigptModel,
): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, v] of await model.params.exportTorch()) {
    const off = officialDigptName(name);
    const m = /^(ar|kd)_enc_norm\.0\.(weight|bias)$/.exec(off);
    if (m) for (let i = 0; i < TAP_NORM_COPIES; i++) out.set(`${m[1]}_enc_norm.${i}.${m[2]}`, v);
    else out.set(off, v);
  }
  const c = model.config;
  const gg = model.geometry.grid ** 2;
  out.set('pos_embed', { shape: [1, 1 + gg, c.embed_dim], data: model.posEmbedWithCls() });
  out.set('decoder_pos_embed', { shape: [1, 1 + gg, c.dec_dim], data: model.decoderPosEmbed() });
  out.set('mask', { shape: [model.geometry.n + 1, model.geometry.n + 1], data: model.maskValues() });
  return out;
}

/** Loads canonical (workbench) names into a D-iGPT model (or any pretraining model: only its params are used). */
export function loadDigptCanonical(model: Pick<DigptModel, 'params'>, src: WeightSource): void {
  loadInto(
    model.params,
    src,
    (n) => n,
    () => false,
  );
}

// --- ViT classifier (timm) ---

/** Loads timm names into a classifier; `pos_embed` etc. as timm saves them. */
export function loadVitTimm(vit: VitClassifier, src: WeightSource): void {
  loadInto(
    vit.params,
    src,
    (n) => n,
    () => false,
  );
}

/**
 * Initialises a classifier's encoder from a pretrained D-iGPT model (patch_embed, cls_token, blocks; pos_embed from
 * the fixed sin-cos table with its cls slot); decoders are dropped, the head and final norm keep their init.
 */
export async function vitFromDigpt(vit: VitClassifier, digpt: DigptModel): Promise<void> {
  const a = vit.config;
  const b = digpt.config;
  if (
    a.embed_dim !== b.embed_dim ||
    a.depth !== b.depth ||
    a.patch_size !== b.patch_size ||
    a.img_size !== b.img_size
  ) {
    throw new WeightsError(
      `classifier (img ${a.img_size}, patch ${a.patch_size}, width ${a.embed_dim}, depth ${a.depth}) does not match the ` +
        `pretrained encoder (img ${b.img_size}, patch ${b.patch_size}, width ${b.embed_dim}, depth ${b.depth})`,
    );
  }
  for (const name of digpt.params.names()) {
    if (isEncoderParam(name)) {
      vit.params.assign(name, await digpt.params.read(name), digpt.params.specs.get(name)?.shape ?? []);
    }
  }
  const gg = digpt.geometry.grid ** 2;
  vit.params.assign('pos_embed', digpt.posEmbedWithCls(), [1, 1 + gg, b.embed_dim]);
}

// --- CLIP vision tower ---

export type ClipNaming = 'openai' | 'hf';

/** Key layout of a CLIP checkpoint: OpenAI/OpenCLIP (`visual.*`) or Hugging Face (`vision_model.*`). */
export function detectClipNaming(keys: readonly string[], label: string): ClipNaming {
  if (keys.includes('visual.conv1.weight')) return 'openai';
  if (keys.includes('vision_model.embeddings.patch_embedding.weight')) return 'hf';
  const sample = listNames(keys.slice(0, 6), 6);
  throw new WeightsError(
    `${label}: unknown key layout for a CLIP vision tower: expected OpenAI/OpenCLIP 'visual.conv1.weight' or ` +
      `Hugging Face 'vision_model.embeddings.patch_embedding.weight' (found ${sample})`,
  );
}

/** The Hugging Face key(s) holding a canonical (OpenAI) CLIP parameter; in_proj is q, k, v concatenated. */
function hfKeys(canonical: string): { keys: string[]; transpose?: boolean } {
  const fixed: Record<string, string> = {
    'visual.conv1.weight': 'vision_model.embeddings.patch_embedding.weight',
    'visual.class_embedding': 'vision_model.embeddings.class_embedding',
    'visual.positional_embedding': 'vision_model.embeddings.position_embedding.weight',
    'visual.ln_pre.weight': 'vision_model.pre_layrnorm.weight',
    'visual.ln_pre.bias': 'vision_model.pre_layrnorm.bias',
    'visual.ln_post.weight': 'vision_model.post_layernorm.weight',
    'visual.ln_post.bias': 'vision_model.post_layernorm.bias',
  };
  const f = fixed[canonical];
  if (f) return { keys: [f] };
  if (canonical === 'visual.proj') return { keys: ['visual_projection.weight'], transpose: true };
  const m = /^visual\.transformer\.resblocks\.(\d+)\.(.+)$/.exec(canonical);
  if (!m) throw new Error(`no Hugging Face name for ${canonical}`);
  const p = `vision_model.encoder.layers.${m[1]}`;
  const rest = m[2] as string;
  if (rest === 'attn.in_proj_weight')
    return { keys: ['q', 'k', 'v'].map((x) => `${p}.self_attn.${x}_proj.weight`) };
  if (rest === 'attn.in_proj_bias')
    return { keys: ['q', 'k', 'v'].map((x) => `${p}.self_attn.${x}_proj.bias`) };
  const sub: [string, string][] = [
    ['ln_1.', 'layer_norm1.'],
    ['ln_2.', 'layer_norm2.'],
    ['attn.out_proj.', 'self_attn.out_proj.'],
    ['mlp.c_fc.', 'mlp.fc1.'],
    ['mlp.c_proj.', 'mlp.fc2.'],
  ];
  for (const [a, b] of sub) if (rest.startsWith(a)) return { keys: [`${p}.${b}${rest.slice(a.length)}`] };
  throw new Error(`no Hugging Face name for ${canonical}`);
}

/** Converts a Hugging Face CLIP vision checkpoint to OpenAI names in memory (small: the vision tower only). */
function hfToOpenai(src: WeightSource, canonicalNames: readonly string[]): WeightSource {
  const have = new Set(src.keys());
  const out = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  const used = new Set<string>();
  const missing: string[] = [];
  for (const name of canonicalNames) {
    const { keys, transpose } = hfKeys(name);
    const absent = keys.filter((k) => !have.has(k));
    keys.forEach((k) => used.add(k));
    if (absent.length) {
      missing.push(...absent);
      continue;
    }
    const parts = keys.map((k) => ({ shape: src.shape(k), data: src.read(k) }));
    if (transpose) {
      const p = parts[0] as { shape: readonly number[]; data: Float32Array };
      const [o, i] = p.shape as [number, number];
      const t = new Float32Array(p.data.length);
      for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) t[c * o + r] = p.data[r * i + c] as number;
      out.set(name, { shape: [i, o], data: t });
    } else if (parts.length === 1) {
      out.set(name, parts[0] as { shape: readonly number[]; data: Float32Array });
    } else {
      const rows = parts.reduce((a, p) => a + (p.shape[0] as number), 0);
      const data = new Float32Array(parts.reduce((a, p) => a + p.data.length, 0));
      let o = 0;
      for (const p of parts) {
        data.set(p.data, o);
        o += p.data.length;
      }
      out.set(name, { shape: [rows, ...(parts[0]?.shape.slice(1) ?? [])], data });
    }
  }
  const unexpected = [...have].filter((k) => !used.has(k) && isVisionKey(k, 'hf'));
  if (missing.length || unexpected.length) {
    const parts: string[] = [];
    if (missing.length) parts.push(`missing keys: ${listNames(missing)}`);
    if (unexpected.length) parts.push(`unexpected keys: ${listNames(unexpected)}`);
    throw new WeightsError(`${src.label}: ${parts.join('; ')}`, missing, unexpected);
  }
  return mapSource(src.label, out);
}

/** Whether a key belongs to the vision tower (text-tower keys of a full CLIP checkpoint are ignored, not errors). */
function isVisionKey(k: string, naming: ClipNaming): boolean {
  return naming === 'openai'
    ? k.startsWith('visual.')
    : k.startsWith('vision_model.') || k === 'visual_projection.weight';
}

/** Architecture of a CLIP tower read off its tensors; heads and activation come from metadata. */
function inferClipConfig(src: WeightSource, naming: ClipNaming, meta: Record<string, unknown>): ClipConfig {
  const conv = src.shape(
    naming === 'openai' ? 'visual.conv1.weight' : 'vision_model.embeddings.patch_embedding.weight',
  );
  const pos = src.shape(
    naming === 'openai' ? 'visual.positional_embedding' : 'vision_model.embeddings.position_embedding.weight',
  );
  const proj = src.shape(naming === 'openai' ? 'visual.proj' : 'visual_projection.weight');
  const layerRe =
    naming === 'openai'
      ? /^visual\.transformer\.resblocks\.(\d+)\./
      : /^vision_model\.encoder\.layers\.(\d+)\./;
  let layers = 0;
  for (const k of src.keys()) {
    const m = layerRe.exec(k);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  const width = conv[0] as number;
  const patch = conv[2] as number;
  const grid = Math.round(Math.sqrt((pos[0] as number) - 1));
  const outDim = (naming === 'openai' ? proj[1] : proj[0]) as number;
  const heads = meta['heads'] ?? (width % 64 === 0 ? width / 64 : undefined);
  return resolveClipConfig(
    {
      resolution: grid * patch,
      patch_size: patch,
      width,
      layers,
      heads: heads as number,
      output_dim: outDim,
      activation: meta['activation'] as ClipConfig['activation'],
      ln_eps: (meta['ln_eps'] as number | undefined) ?? 1e-5,
    },
    src.label,
  );
}

/**
 * Reads the architecture hints of a CLIP file: `__metadata__.config` (JSON) or keys `activation`/`heads`, then a
 * sidecar `<file>.json` or `config.json` beside it (OpenCLIP's `quick_gelu`, HF's `vision_config.hidden_act`).
 */
export function clipMetadata(
  file: string,
  metadata: Readonly<Record<string, string>>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const take = (o: Record<string, unknown>): void => {
    const vc = (o['vision_config'] ?? o['vision_cfg']) as Record<string, unknown> | undefined;
    if (vc) take(vc);
    if (typeof o['activation'] === 'string') out['activation'] = o['activation'];
    if (o['hidden_act'] === 'quick_gelu' || o['hidden_act'] === 'gelu') out['activation'] = o['hidden_act'];
    if (typeof o['quick_gelu'] === 'boolean') out['activation'] = o['quick_gelu'] ? 'quick_gelu' : 'gelu';
    if (typeof o['heads'] === 'number') out['heads'] = o['heads'];
    if (typeof o['num_attention_heads'] === 'number') out['heads'] = o['num_attention_heads'];
    if (typeof o['ln_eps'] === 'number') out['ln_eps'] = o['ln_eps'];
    if (typeof o['layer_norm_eps'] === 'number') out['ln_eps'] = o['layer_norm_eps'];
  };
  for (const side of [
    `${file}.json`,
    file.replace(/\.safetensors$/, '.json'),
    nodePath.join(nodePath.dirname(file), 'config.json'),
  ]) {
    if (side !== file && fs.existsSync(side)) {
      // a FIFO or device named config.json would block the read (or never end): only regular files are sidecars
      if (!fs.statSync(side).isFile())
        throw new WeightsError(`${side}: not a regular file; a sidecar config must be a JSON file`);
      try {
        take(JSON.parse(fs.readFileSync(side, 'utf8')) as Record<string, unknown>);
      } catch (e) {
        throw new WeightsError(`${side}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
      }
      break;
    }
  }
  // the file's own metadata wins over a sidecar
  if (metadata['config']) {
    try {
      take(JSON.parse(metadata['config']) as Record<string, unknown>);
    } catch {
      throw new WeightsError(`${file}: __metadata__.config is not valid JSON`);
    }
  }
  take(metadata as Record<string, unknown>);
  if (typeof metadata['heads'] === 'string') out['heads'] = Number(metadata['heads']);
  return out;
}

/** Builds a CLIP teacher from a checkpoint in either naming; `meta` gives heads and activation. */
export function loadClip(
  src: WeightSource,
  meta: Record<string, unknown>,
): { model: ClipVision; naming: ClipNaming } {
  const naming = detectClipNaming(src.keys(), src.label);
  const config = inferClipConfig(src, naming, meta);
  const model = new ClipVision(config);
  try {
    const canonical = model.params.names();
    const openai = naming === 'openai' ? src : hfToOpenai(src, canonical);
    loadInto(
      model.params,
      openai,
      (n) => n,
      (k) => !isVisionKey(k, 'openai'),
    );
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, naming };
}

// --- files ---

/** Writes named PyTorch-layout tensors as an F32 safetensors file (atomically), with string metadata. */
export function saveWeights(
  path: string,
  tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>,
  metadata: Readonly<Record<string, string>> = {},
): void {
  const out = new Map<string, TensorToWrite>();
  for (const [k, v] of tensors) out.set(k, { dtype: 'F32', shape: v.shape, data: v.data });
  writeSafetensors(path, out, metadata);
}
