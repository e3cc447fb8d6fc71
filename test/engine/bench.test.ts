// The bench CLI prints one valid JSON line with the fields BENCHMARKS.md relies on (no timing assertions).
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';

const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');

describe('bench CLI', () => {
  it('--json prints one engine line with timing, memory, backend and the full model config', () => {
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        nodePath.join(ROOT, 'engine', 'bench', 'cli.ts'),
        '--preset',
        'digpt-micro-32',
        '--batch',
        '2',
        '--steps',
        '1',
        '--warmup',
        '0',
        '--json',
      ],
      { cwd: ROOT, encoding: 'utf8', timeout: 120_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, r.stdout);
    const j = JSON.parse(lines[0] as string) as Record<string, unknown>;
    assert.equal(j['kind'], 'engine');
    assert.equal(j['preset'], 'digpt-micro-32');
    for (const k of ['img_per_s', 'step_ms_median', 'peak_rss_mb']) {
      assert.equal(typeof j[k], 'number', k);
      assert.ok((j[k] as number) > 0, k);
    }
    assert.equal(j['batch_size'], 2);
    assert.equal(j['accum_steps'], 1);
    assert.deepEqual(j['step_ms'] && (j['step_ms'] as number[]).length, 1);
    assert.equal(typeof j['backend'], 'string');
    const config = j['config'] as Record<string, unknown>;
    for (const k of [
      'img_size',
      'patch_size',
      'embed_dim',
      'depth',
      'num_heads',
      'mlp_ratio',
      'dec_dim',
      'dec_depth',
      'dec_heads',
      'clusters_per_side',
      'teacher_grid',
      'teacher_dim',
      'taps',
      'block_ln_eps',
      'tap_ln_eps',
    ])
      assert.ok(k in config, `config lacks ${k}`);
    assert.equal(config['embed_dim'], 64);
  });
});
