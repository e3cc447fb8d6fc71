// Configs and presets: the spec's defaults, the preset sizes, errors that name the field.
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultTaps, digptGeometry, getPreset, PRESETS, resolveDigptConfig } from '../../engine/config.js';

describe('presets', () => {
  it('digpt-tiny-32 is the benchmark model of the issue', () => {
    const c = getPreset('digpt-tiny-32').model;
    assert.deepEqual(
      [
        c.img_size,
        c.patch_size,
        c.embed_dim,
        c.depth,
        c.num_heads,
        c.dec_dim,
        c.dec_depth,
        c.dec_heads,
        c.clusters_per_side,
      ],
      [32, 4, 192, 6, 3, 192, 2, 3, 2],
    );
    assert.deepEqual(c.taps, [3, 4, 5, 6]);
  });
  it('digpt-vit-b16 is the paper model', () => {
    const c = getPreset('digpt-vit-b16').model;
    assert.deepEqual(
      [c.img_size, c.patch_size, c.embed_dim, c.depth, c.dec_dim, c.dec_depth, c.dec_heads],
      [224, 16, 768, 12, 1024, 2, 32],
    );
    assert.deepEqual(c.taps, [6, 8, 10, 12]);
    assert.equal(digptGeometry(c).n, 3 * 49);
  });
  it('each has a one-sentence summary', () => {
    for (const p of PRESETS) assert.match(p.summary, /^[A-Z].+\.$/);
  });
  it('an unknown preset lists the known ones', () => {
    assert.throws(
      () => getPreset('vit-huge'),
      /unknown preset 'vit-huge'; known presets: digpt-micro-32, digpt-tiny-32, digpt-vit-b16/,
    );
  });
});

describe('resolveDigptConfig', () => {
  const base = getPreset('digpt-micro-32').model;
  it('defaults taps as the spec says', () => {
    assert.deepEqual(defaultTaps(12), [6, 8, 10, 12]);
    assert.deepEqual(defaultTaps(3), [1, 2, 3]);
    assert.deepEqual(defaultTaps(8), [5, 6, 7, 8]);
  });
  it('names the field of a bad value', () => {
    assert.throws(
      () => resolveDigptConfig({ ...base, img_size: 36 }),
      /image size 36 is not divisible by patch_size x clusters_per_side = 4 x 2/,
    );
    assert.throws(
      () => resolveDigptConfig({ ...base, taps: [0, 2] }),
      /taps entry 0 is not a block index in 1\.\.3/,
    );
    assert.throws(
      () => resolveDigptConfig({ ...base, num_heads: 3 }),
      /embed_dim 64 is not divisible by num_heads 3/,
    );
    assert.throws(() => resolveDigptConfig({ ...base, depth: 2.5 }), /config field depth must be an integer/);
    assert.throws(
      () => resolveDigptConfig({ ...base, teacher_grid: 7 }),
      /teacher_grid 7 is not divisible by clusters_per_side 2/,
    );
  });
});
