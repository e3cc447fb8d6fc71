// Tests of the renderer's pure helpers: patch-order cells, config diff, drop paths, launch form, transport.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configDiff, flattenConfig } from '../../renderer/src/features/compare/config-diff.js';
import { pathFromDrop, pathFromText } from '../../renderer/src/features/datasets/drop-path.js';
import { classTable, nextThumbPage } from '../../renderer/src/features/datasets/thumbnails.js';
import {
  FINETUNE,
  FINETUNE_DEFAULTS,
  KNN_DEFAULTS,
  PRETRAIN_DEFAULTS,
  PROBE,
} from '../../app/api/run-kinds.js';
import { buildLaunch, defaultForm, settingHelp } from '../../renderer/src/features/launch/launch-form.js';
import {
  clusterCells,
  errorRange,
  heatColor,
  maxCursor,
} from '../../renderer/src/features/patch-order/layout.js';
import { actionsFor } from '../../renderer/src/features/runs/controls.js';
import { formatEta } from '../../renderer/src/lib/format.js';
import { backoffDelay, closeMessage, wsUrl } from '../../renderer/src/lib/transport.js';

test('clusterCells: positions from the order, errors shifted by one, next = order[cursor + 1]', () => {
  // 2x2 clusters, order 2,0,3,1: cluster 2 first (no error), errors belong to clusters 0, 3, 1
  const frame = { clustersPerSide: 2, k: 4, order: [[2, 0, 3, 1]], clusterError: [[0.1, 0.3, 0.2]] };
  const cells = clusterCells(frame, 0, 0);
  assert.deepEqual(
    cells.map((c) => [c.cluster, c.row, c.col, c.position, c.error, c.state]),
    [
      [0, 0, 0, 1, 0.1, 'next'],
      [1, 0, 1, 3, 0.2, 'future'],
      [2, 1, 0, 0, null, 'seen'],
      [3, 1, 1, 2, 0.3, 'future'],
    ],
  );
  const later = clusterCells(frame, 0, 2);
  assert.deepEqual(
    later.map((c) => c.state),
    ['seen', 'next', 'seen', 'seen'],
  );
  assert.equal(maxCursor(4), 2);
  assert.deepEqual(errorRange(frame), { min: 0.1, max: 0.3 });
  assert.equal(heatColor(null, { min: 0, max: 1 }), 'transparent');
  assert.equal(heatColor(1, { min: 0, max: 1 }), 'rgba(230, 55, 40, 0.700)');
  assert.equal(heatColor(0, { min: 0, max: 1 }), 'rgba(230, 55, 40, 0.080)');
});

test('configDiff flattens nested configs and marks differing and missing keys', () => {
  assert.deepEqual(flattenConfig({ a: { b: 1, c: 'x' }, d: [1, 2] }), { 'a.b': '1', 'a.c': 'x', d: '[1,2]' });
  const rows = configDiff([
    { model: { depth: 2 }, seed: 0, lr: 1 },
    { model: { depth: 4 }, seed: 0 },
  ]);
  assert.deepEqual(rows, [
    { key: 'lr', values: ['1', null], differs: true },
    { key: 'model.depth', values: ['2', '4'], differs: true },
    { key: 'seed', values: ['0', '0'], differs: false },
  ]);
});

test('drop paths: uri-list file URLs, plain absolute paths, nothing else', () => {
  assert.equal(pathFromText('file:///data/my%20set\r\n'), '/data/my set');
  assert.equal(pathFromText('# comment\nfile:///C:/data/x'), 'C:/data/x');
  assert.equal(pathFromText('/abs/path'), '/abs/path');
  assert.equal(pathFromText('C:\\data'), 'C:\\data');
  assert.equal(pathFromText('relative/path'), null);
  assert.equal(pathFromText('https://example.com/x'), null);
  assert.equal(pathFromDrop('', '/from/plain'), '/from/plain');
  assert.equal(pathFromDrop(null, null), null);
});

test('thumbnail pages and the class table', () => {
  assert.deepEqual(nextThumbPage(0, null), { offset: 0, limit: 48 });
  assert.deepEqual(nextThumbPage(48, 60), { offset: 48, limit: 12 });
  assert.equal(nextThumbPage(60, 60), null);
  assert.deepEqual(
    classTable(
      ['a', 'b'],
      [
        { name: 'train', perClass: { a: 3, b: 1 } },
        { name: 'val', perClass: { a: 1 } },
      ],
    ),
    [
      { name: 'a', counts: [3, 1] },
      { name: 'b', counts: [1, 0] },
    ],
  );
});

test('buildLaunch: a valid pretrain request, and the schema names bad fields', () => {
  const f = { ...defaultForm('pretrain'), dataset: 'd1', preset: 'digpt-micro-32', teacher: 'pixels' };
  const r = buildLaunch(f);
  assert.ok(r.ok);
  assert.deepEqual(r.request, {
    kind: 'pretrain',
    dataset: 'd1',
    preset: 'digpt-micro-32',
    teacher: 'pixels',
    objective: 'digpt',
    steps: 200,
    batch: 32,
    accum: 1,
    blr: 5e-3,
    seed: 0,
    workers: 'auto',
  });
  const one = buildLaunch({ ...f, workers: '1' });
  assert.ok(one.ok && one.request.kind === 'pretrain' && one.request.workers === 1);
  const bad = buildLaunch({ ...f, batch: 'x', steps: '-1', teacher: 'file', teacherFile: ' ' });
  assert.ok(!bad.ok);
  assert.deepEqual(Object.keys(bad.errors).sort(), ['batch', 'steps', 'teacher']);
  const file = buildLaunch({ ...f, teacher: 'file', teacherFile: '/t/clip.safetensors', lengthBy: 'epochs' });
  assert.ok(file.ok && file.request.kind === 'pretrain' && file.request.teacher === '/t/clip.safetensors');
  assert.ok(
    file.ok && file.request.kind === 'pretrain' && file.request.epochs === 10 && !('steps' in file.request),
  );
  const knn = buildLaunch({ ...defaultForm('knn'), dataset: 'd1', from: 'run-1' });
  assert.deepEqual(knn, { ok: true, request: { kind: 'knn', dataset: 'd1', from: 'run-1', seed: 0 } });
  const ft = buildLaunch({ ...defaultForm('finetune'), dataset: 'd1', from: 'scratch' });
  assert.ok(!ft.ok && ft.errors.preset);
});

test("launch form: each kind's defaults and hints come from its settings table (the CLI's too)", () => {
  const ft = defaultForm('finetune');
  assert.equal(Number(ft.batch), FINETUNE_DEFAULTS.batch);
  assert.equal(Number(ft.blr), FINETUNE_DEFAULTS.blr);
  const pre = defaultForm('pretrain');
  assert.equal(Number(pre.blr), PRETRAIN_DEFAULTS.blr);
  assert.equal(pre.workers, PRETRAIN_DEFAULTS.workers);
  assert.equal(pre.objective, PRETRAIN_DEFAULTS.objective);
  assert.equal(Number(defaultForm('knn').seed), KNN_DEFAULTS.seed);
  assert.equal(settingHelp('finetune', 'batch'), FINETUNE.batch.help);
  assert.equal(settingHelp('probe', 'seed'), PROBE.seed.help);
  assert.equal(settingHelp('knn', 'batch'), undefined);
  // a fine-tune launched with the form's defaults asks for the recipe's settings, in config.json's names
  const r = buildLaunch({ ...ft, dataset: 'd1', from: 'run-1' });
  assert.ok(r.ok && r.request.kind === 'finetune');
  assert.equal(r.request.batch, FINETUNE_DEFAULTS.batch);
  assert.equal(r.request.blr, FINETUNE_DEFAULTS.blr);
});

test('run actions: continue for paused, resume for stopped/failed', () => {
  assert.deepEqual(actionsFor('running'), ['pause', 'stop']);
  assert.deepEqual(actionsFor('paused'), ['continue', 'stop']);
  assert.deepEqual(actionsFor('failed'), ['resume']);
  assert.deepEqual(actionsFor('done'), []);
});

test('transport: ws URL with the page token, backoff, close messages; ETA format', () => {
  assert.equal(wsUrl({ protocol: 'http:', host: 'h:1', search: '?token=a b' }), 'ws://h:1/api?token=a%20b');
  assert.equal(wsUrl({ protocol: 'https:', host: 'h', search: '' }), 'wss://h/api');
  assert.equal(backoffDelay(0), 500);
  assert.equal(backoffDelay(10), 10_000);
  assert.match(closeMessage(4401, ''), /token is missing or wrong/);
  assert.equal(formatEta(3725), '1h 02m');
  assert.equal(formatEta(75), '1m 15s');
  assert.equal(formatEta(null), '—');
});
