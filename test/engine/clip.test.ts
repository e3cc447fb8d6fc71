// The CLIP teacher: OpenAI and Hugging Face names give identical outputs; activation never guessed; layouts detected.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { before, describe, it } from 'node:test';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../engine/io/safetensors.js';
import { clipMetadata, fileSource, loadClip } from '../../engine/models/naming.js';
import { PARITY_DIR, setup } from './helpers.js';

before(setup);

const VECTOR = nodePath.join(PARITY_DIR, 'clip-quickgelu-tiny.safetensors');

/** Copies the `prefix` tensors of the vector file into a new file (without the prefix) with the given metadata. */
function extract(
  prefix: string,
  metadata: Record<string, string>,
  drop: (k: string) => boolean = () => false,
): string {
  const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-clip-'));
  const f = SafetensorsFile.open(VECTOR);
  const out = new Map<string, TensorToWrite>();
  for (const k of f.keys()) {
    if (!k.startsWith(prefix) || drop(k.slice(prefix.length))) continue;
    out.set(k.slice(prefix.length), { dtype: 'F32', shape: f.entry(k).shape, data: f.readFloat32(k) });
  }
  f.close();
  const path = nodePath.join(dir, 'clip.safetensors');
  writeSafetensors(path, out, metadata);
  return path;
}

function load(path: string) {
  const f = SafetensorsFile.open(path);
  try {
    return loadClip(fileSource(f), clipMetadata(path, f.metadata));
  } finally {
    f.close();
  }
}

describe('CLIP teacher loading', () => {
  it('OpenAI and Hugging Face names give identical outputs', () => {
    const a = load(extract('openai.', { activation: 'quick_gelu', heads: '4' }));
    const b = load(extract('hf.', { activation: 'quick_gelu', heads: '4' }));
    assert.equal(a.naming, 'openai');
    assert.equal(b.naming, 'hf');
    const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
    const [ya, yb] = [a, b].map((m) => tf.tidy(() => m.model.forward(x).dataSync()));
    assert.deepEqual(ya, yb);
    a.model.dispose();
    b.model.dispose();
    x.dispose();
  });

  it('refuses to guess a missing activation, naming the fix', () => {
    const path = extract('openai.', { heads: '4' });
    assert.throws(() => load(path), /activation is missing.*quick_gelu.*gelu/);
  });

  it('takes the activation from a sidecar config (OpenCLIP quick_gelu flag, HF hidden_act)', () => {
    const path = extract('openai.', { heads: '4' });
    fs.writeFileSync(`${path}.json`, JSON.stringify({ quick_gelu: true, vision_cfg: { heads: 4 } }));
    const a = load(path);
    assert.equal(a.model.config.activation, 'quick_gelu');
    a.model.dispose();
    const hf = extract('hf.', {});
    fs.writeFileSync(
      nodePath.join(nodePath.dirname(hf), 'config.json'),
      JSON.stringify({ vision_config: { hidden_act: 'gelu', num_attention_heads: 4 } }),
    );
    const b = load(hf);
    assert.equal(b.model.config.activation, 'gelu');
    b.model.dispose();
  });

  it('refuses a sidecar config that is a FIFO instead of blocking on it', () => {
    const path = extract('openai.', { heads: '4' });
    spawnSync('mkfifo', [`${path}.json`]);
    assert.ok(fs.statSync(`${path}.json`).isFIFO());
    assert.throws(() => load(path), /\.json: not a regular file/);
  });

  it('reports an unknown key layout and missing keys by name', () => {
    const path = extract('openai.', { activation: 'gelu', heads: '4' }, (k) => k.startsWith('visual.conv1'));
    assert.throws(() => load(path), /unknown key layout for a CLIP vision tower/);
    const hf = extract(
      'hf.',
      { activation: 'gelu', heads: '4' },
      (k) => k === 'vision_model.encoder.layers.1.self_attn.k_proj.weight',
    );
    assert.throws(
      () => load(hf),
      /missing keys: vision_model\.encoder\.layers\.1\.self_attn\.k_proj\.weight/,
    );
  });

  it('ignores the text tower of a full CLIP checkpoint but reports stray vision keys', () => {
    const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-clip-'));
    const src = SafetensorsFile.open(extract('openai.', {}));
    const out = new Map<string, TensorToWrite>();
    for (const k of src.keys())
      out.set(k, { dtype: 'F32', shape: src.entry(k).shape, data: src.readFloat32(k) });
    src.close();
    out.set('token_embedding.weight', { dtype: 'F32', shape: [2, 2], data: new Float32Array(4) });
    const okPath = nodePath.join(dir, 'full.safetensors');
    writeSafetensors(okPath, out, { activation: 'quick_gelu', heads: '4' });
    load(okPath).model.dispose();
    out.set('visual.stray', { dtype: 'F32', shape: [1], data: new Float32Array(1) });
    writeSafetensors(okPath, out, { activation: 'quick_gelu', heads: '4' });
    assert.throws(() => load(okPath), /unexpected keys: visual\.stray/);
  });

  it('reports a truncated file by name', () => {
    const path = extract('openai.', { activation: 'gelu', heads: '4' });
    const size = fs.statSync(path).size;
    fs.truncateSync(path, size - 100);
    assert.throws(
      () => load(path),
      (e: unknown) => e instanceof Error && e.message.includes(path) && /truncated/.test(e.message),
    );
  });
});
