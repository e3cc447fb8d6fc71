// Tests of the renderer's metric helpers: series extraction, alignment, EMA, min/max downsampling, chart tables.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chartData, compareData, RUN_CHARTS } from '../../renderer/src/features/metrics/charts.js';
import { downsampleMinMax } from '../../renderer/src/features/metrics/downsample.js';
import { alignSeries, MetricColumns } from '../../renderer/src/features/metrics/series.js';
import { ema } from '../../renderer/src/features/metrics/smooth.js';

test('MetricColumns keeps numeric keys per step; eval lines only add their own key', () => {
  const c = new MetricColumns();
  c.append([
    { step: 1, loss: 2, loss_gen: 1.2, lr: 0.1, time: 't', epoch: 0 },
    { step: 2, loss: 1.5, loss_gen: 1, lr: 0.2, time: 't', epoch: 0 },
    { step: 2, epoch: 1, knn_top1: 0.3 },
  ]);
  assert.deepEqual(c.get('loss'), { x: [1, 2], y: [2, 1.5] });
  assert.deepEqual(c.get('knn_top1'), { x: [2], y: [0.3] });
  assert.equal(c.byKey.has('time'), false);
  assert.equal(c.byKey.has('epoch'), false);
  assert.equal(c.last('lr'), 0.2);
});

test('MetricColumns: a step not past the last one drops the later points (resume from a checkpoint)', () => {
  const c = new MetricColumns();
  c.append([1, 2, 3, 4].map((step) => ({ step, loss: step * 10 })));
  c.append([{ step: 3, loss: 99 }]);
  assert.deepEqual(c.get('loss'), { x: [1, 2, 3], y: [10, 20, 99] });
});

test('alignSeries merges steps and leaves null where a series has no point', () => {
  const a = alignSeries([
    { x: [1, 2, 4], y: [1, 2, 4] },
    { x: [2, 3], y: [20, 30] },
  ]);
  assert.deepEqual(a.x, [1, 2, 3, 4]);
  assert.deepEqual(a.ys, [
    [1, 2, null, 4],
    [null, 20, 30, null],
  ]);
});

test('ema: debiased (first value unchanged), skips missing values, alpha 0 is identity', () => {
  assert.deepEqual(ema([3, null, 3], 0.9), [3, null, 3]);
  const s = ema([0, 10], 0.5);
  // acc = 0, then 5; weights 0.5, 0.75 -> 0, 6.666...
  assert.equal(s[0], 0);
  assert.ok(Math.abs(s[1]! - 20 / 3) < 1e-12);
  assert.deepEqual(ema([1, 2, 3], 0), [1, 2, 3]);
});

test('downsampleMinMax: 100,000 points -> at most 2 * buckets, spikes kept, order of min/max kept', () => {
  const n = 100_000;
  const x = Array.from({ length: n }, (_, i) => i);
  const y: (number | null)[] = x.map((i) => Math.sin(i / 1000));
  y[54_321] = 50;
  y[70_000] = -50;
  const t0 = performance.now();
  const d = downsampleMinMax({ x, ys: [y] }, 500);
  const ms = performance.now() - t0;
  assert.ok(d.x.length <= 1000, `${d.x.length}`);
  assert.equal(d.x.length, d.ys[0]!.length);
  assert.ok(d.ys[0]!.includes(50));
  assert.ok(d.ys[0]!.includes(-50));
  assert.equal(d.x[0], 0);
  assert.equal(d.x[d.x.length - 1], n - 1);
  for (let i = 1; i < d.x.length; i++) assert.ok(d.x[i]! >= d.x[i - 1]!);
  assert.ok(ms < 200, `took ${ms} ms`);
  // a falling bucket gives max then min
  const f = downsampleMinMax({ x: [0, 1, 2, 3], ys: [[4, 3, 2, 1]] }, 1);
  assert.deepEqual(f, { x: [0, 3], ys: [[4, 1]] });
});

test('downsampleMinMax: small tables pass through; all-null buckets stay null', () => {
  const t = { x: [1, 2], ys: [[1, 2]] };
  assert.equal(downsampleMinMax(t, 10), t);
  const d = downsampleMinMax({ x: [0, 1, 2, 3], ys: [[null, null, 1, 2]] }, 1.5);
  assert.deepEqual(d.ys[0], [1, 2]);
  const e = downsampleMinMax({ x: [0, 1, 2, 3, 4, 5], ys: [[null, null, null, 1, 2, 3]] }, 2);
  assert.deepEqual(e.ys[0], [null, null, 1, 3]);
});

test('chartData: loss chart has raw + EMA per present key; eval chart plots knn_top1 without loss', () => {
  const c = new MetricColumns();
  c.append([
    { step: 1, loss: 2, loss_gen: 1, loss_dis: 1 },
    { step: 2, loss: 1, loss_gen: 0.5, loss_dis: 0.5 },
    { step: 2, knn_top1: 0.4 },
  ]);
  const loss = chartData(
    RUN_CHARTS.find((s) => s.id === 'loss')!,
    c,
    0.6,
    100,
  );
  assert.equal(loss.lines.length, 6);
  assert.deepEqual(loss.table.x, [1, 2]);
  assert.deepEqual(loss.table.ys[0], [2, 1]);
  assert.equal(loss.lines[0]!.faint, true);
  const ev = chartData(
    RUN_CHARTS.find((s) => s.id === 'eval')!,
    c,
    0.6,
    100,
  );
  assert.deepEqual(
    ev.lines.map((l) => l.label),
    ['knn_top1'],
  );
  assert.deepEqual(ev.table, { x: [2], ys: [[0.4]] });
});

test('compareData keeps each run its colour when another run lacks the metric', () => {
  const d = compareData(
    [
      { x: [], y: [] },
      { x: [1, 2], y: [3, 4] },
    ],
    ['a', 'b'],
    0,
    100,
  );
  assert.deepEqual(
    d.lines.map((l) => [l.label, l.color]),
    [['b', 1]],
  );
});
