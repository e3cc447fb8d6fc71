// The bench CLI prints one valid JSON line with the fields BENCHMARKS.md relies on (no timing assertions), and the
// faster wasm kernels behind the benchmarked step agree with tfjs's own.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { initBackend } from '../../engine/backend.js';
import { restoreWasmKernels, useFastWasmKernels } from '../../engine/ops/wasm_kernels.js';

const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');

describe('bench CLI', () => {
  it('--workers 2 on a backend other than wasm is refused with the reason (a replica thread would load it twice)', () => {
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', nodePath.join(ROOT, 'engine', 'bench', 'cli.ts'), '--workers', '2', '--steps', '1'],
      { cwd: ROOT, encoding: 'utf8', timeout: 120_000, env: { ...process.env, DIGPT_BACKEND: 'cpu' } },
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /two training threads run on the wasm backend only; this process uses cpu/);
  });

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
    // --workers auto (the default): 2 threads on wasm with 2+ cores, with each phase's time
    const two = j['backend'] === 'wasm' && os.availableParallelism() >= 2;
    assert.equal(j['workers'], two ? 2 : 1);
    assert.match(String(j['workers_why']), /^auto: /);
    assert.equal(j['gemm'], j['backend'] === 'wasm' ? 'fma' : null);
    if (two) {
      const phases = j['phases_ms'] as Record<string, number>;
      for (const k of [
        'handoff',
        'local',
        'wait',
        'mix',
        'adam',
        'replicaLoad',
        'replicaCompute',
        'replicaWrite',
      ])
        assert.ok(Number.isFinite(phases[k]) && (phases[k] as number) >= 0, `phases_ms.${k}`);
      assert.ok((phases['local'] as number) > 0 && (phases['replicaCompute'] as number) > 0);
    }
  });
});

describe('the faster wasm kernels the benchmarked step relies on', () => {
  // each case runs with tfjs's own kernels and with the replacements; the results must be identical
  const cases: [string, () => tf.Tensor | tf.Tensor[]][] = [
    ['slice, contiguous', () => tf.slice(x4(), [1, 0, 0, 0], [2, 3, 4, 5])],
    ['slice, strided rank 4', () => tf.slice(x4(), [0, 1, 2, 1], [3, 2, 1, 3])],
    ['slice, columns of a matrix', () => tf.slice(tf.reshape(x4(), [12, 30]), [2, 7], [9, 11])],
    ['slice, int32', () => tf.slice(tf.range(0, 60, 1, 'int32').reshape([6, 10]), [1, 2], [3, 5])],
    ['split, uneven columns', () => tf.split(tf.reshape(x4(), [12, 30]), [7, 20, 3], 1)],
    ['split, axis 0', () => tf.split(x4(), 3, 0)],
    ['unstack, axis 0', () => tf.unstack(x4())],
    ['unstack, axis -1', () => tf.unstack(x4(), -1)],
    ['gather, rows', () => tf.gather(tf.reshape(x4(), [6, 60]), tf.tensor1d([5, 0, 0, 3], 'int32'))],
    ['gather, inner axis', () => tf.gather(tf.reshape(x4(), [3, 4, 30]), tf.tensor1d([3, 1], 'int32'), 1)],
    ['gather, short slices', () => tf.gather(x4(), tf.tensor1d([4, 0, 2], 'int32'), 3)],
    ['identity and cast', () => [tf.clone(x4()), tf.cast(x4(), 'float32'), tf.cast(x4(), 'int32')]],
  ];
  let seed = 0;
  function x4(): tf.Tensor4D {
    return tf.randomNormal([3, 4, 5, 6], 0, 1, 'float32', ++seed) as tf.Tensor4D;
  }
  function run(f: () => tf.Tensor | tf.Tensor[]): { shape: number[]; values: number[] }[] {
    return tf.tidy(() => {
      const out = f();
      return (Array.isArray(out) ? out : [out]).map((t) => ({
        shape: t.shape,
        values: Array.from(t.dataSync()),
      }));
    });
  }

  it('give the same values and shapes as tfjs-backend-wasm kernels', async () => {
    await initBackend('wasm');
    restoreWasmKernels();
    const stock = tf.getKernel('Slice', 'wasm')?.kernelFunc;
    useFastWasmKernels();
    assert.notEqual(tf.getKernel('Slice', 'wasm')?.kernelFunc, stock, 'the replacements are not in place');
    for (const [name, f] of cases) {
      restoreWasmKernels();
      seed = 0;
      const want = run(f);
      useFastWasmKernels();
      seed = 0;
      const got = run(f);
      assert.deepEqual(got, want, name);
    }
  });

  it('shared data outlives the tensor it was shared from', async () => {
    await initBackend('wasm');
    useFastWasmKernels();
    const a = tf.tensor1d([1, 2, 3]);
    const b = tf.clone(a);
    a.dispose();
    assert.deepEqual(Array.from(b.dataSync()), [1, 2, 3]);
    b.dispose();
  });
});
