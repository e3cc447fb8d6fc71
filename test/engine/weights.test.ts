// Weights on disk: official D-iGPT names through a real file, timm classifier names, a classifier from a D-iGPT encoder.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { before, describe, it } from 'node:test';
import { getPreset, resolveVitConfig } from '../../engine/config.js';
import { SafetensorsFile } from '../../engine/io/safetensors.js';
import { DigptModel } from '../../engine/models/digpt.js';
import {
  exportDigptOfficial,
  fileSource,
  loadDigptOfficial,
  loadVitTimm,
  saveWeights,
  vitFromDigpt,
} from '../../engine/models/naming.js';
import { VitClassifier } from '../../engine/models/vit.js';
import { randomBatch, setup } from './helpers.js';

before(setup);
const tmp = (): string => fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-weights-'));

describe('weights files', () => {
  it('an official-named D-iGPT file written by the engine loads back to the same model', async () => {
    const cfg = getPreset('digpt-micro-32').model;
    const a = new DigptModel(cfg, { seed: 1 });
    const path = nodePath.join(tmp(), 'digpt.safetensors');
    saveWeights(path, await exportDigptOfficial(a), { kind: 'digpt', config: JSON.stringify(cfg) });
    const f = SafetensorsFile.open(path);
    assert.equal(f.metadata['kind'], 'digpt');
    assert.deepEqual(f.entry('blocks.0.attn.qkv.weight').shape, [192, 64]);
    assert.deepEqual(f.entry('patch_embed.proj.weight').shape, [64, 3, 4, 4]);
    const b = new DigptModel(cfg, { seed: 2 });
    loadDigptOfficial(b, fileSource(f));
    f.close();
    for (const n of a.params.names()) assert.deepEqual(await b.params.read(n), await a.params.read(n), n);
    a.dispose();
    b.dispose();
  });

  it('a classifier starts from a D-iGPT encoder: same blocks, sin-cos pos_embed, and saves under timm names', async () => {
    const cfg = getPreset('digpt-micro-32').model;
    const d = new DigptModel(cfg, { seed: 3 });
    const vcfg = resolveVitConfig({
      img_size: 32,
      patch_size: 4,
      embed_dim: 64,
      depth: 3,
      num_heads: 2,
      num_classes: 10,
    });
    const v = new VitClassifier(vcfg, 4);
    await vitFromDigpt(v, d);
    for (const n of ['cls_token', 'patch_embed.proj.weight', 'blocks.2.mlp.fc2.weight'])
      assert.deepEqual(await v.params.read(n), await d.params.read(n));
    assert.deepEqual(await v.params.read('pos_embed'), d.posEmbedWithCls());
    const path = nodePath.join(tmp(), 'vit.safetensors');
    saveWeights(path, await v.params.exportTorch());
    const f = SafetensorsFile.open(path);
    assert.ok(f.has('fc_norm.weight') && f.has('head.weight') && f.has('pos_embed'));
    const w = new VitClassifier(vcfg, 5);
    loadVitTimm(w, fileSource(f));
    f.close();
    const x = randomBatch(d, 2, 1);
    const [ya, yb] = [v, w].map((m) => tf.tidy(() => m.forward(x.images).dataSync()));
    assert.deepEqual(ya, yb);
    tf.dispose([x.images, x.teacher]);
    for (const m of [d, v, w]) m.dispose();
  });

  it('a mismatched classifier is refused with both shapes named', async () => {
    const d = new DigptModel(getPreset('digpt-micro-32').model);
    const v = new VitClassifier(
      resolveVitConfig({
        img_size: 32,
        patch_size: 4,
        embed_dim: 64,
        depth: 2,
        num_heads: 2,
        num_classes: 10,
      }),
    );
    await assert.rejects(
      () => vitFromDigpt(v, d),
      /depth 2\) does not match the pretrained encoder \(img 32, patch 4, width 64, depth 3\)/,
    );
    d.dispose();
    v.dispose();
  });
});

describe('parameter sets', () => {
  it('creating, assigning and disposing a model leaves no tensors behind', async () => {
    const before = tf.memory().numTensors;
    const m = new DigptModel(getPreset('digpt-micro-32').model, { seed: 1 });
    m.params.assign('cls_token', new Float32Array(64).fill(1), [1, 1, 64]);
    m.dispose();
    assert.equal(tf.memory().numTensors, before);
  });
});
