// `digpt export RUN --format csv` (the real command, on a real run with a k-NN evaluation) and runs.export csv:
// one row per step, train and eval columns merged, the export path rules of every export.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BUILTIN_SAMPLE_DIR } from '../../app/datasets/index.js';
import { metricsCsv, metricsTable } from '../../app/runs/csv.js';
import { readMetrics } from '../../app/runs/metrics.js';
import { Workbench } from '../../app/workbench/index.js';

const BIN = nodePath.resolve(import.meta.dirname, '..', '..', 'bin', 'digpt.js');
const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-export-csv-'));
const ws = nodePath.join(tmp, 'ws');
const run = nodePath.join(ws, 'runs', 'a');
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function digpt(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], {
    cwd: tmp,
    encoding: 'utf8',
    env: { ...process.env, DIGPT_CACHE: nodePath.join(tmp, 'cache'), DIGPT_WORKSPACE: ws },
  });
}

/** The cells of a CSV text (RFC 4180 quoting), as pandas' read_csv splits them. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (quoted) {
      if (ch !== '"') cell += ch;
      else if (text[i + 1] === '"') cell += text[i++];
      else quoted = false;
      continue;
    }
    if (ch === '"') quoted = true;
    else if (ch !== ',' && ch !== '\n') cell += ch;
    else {
      row.push(cell);
      cell = '';
      if (ch === '\n') {
        rows.push(row);
        row = [];
      }
    }
  }
  assert.equal(cell + row.join(''), '', 'the text ends with a line end');
  return rows;
}

before(() => {
  // the built-in sample has a val split, so the run ends with a k-NN evaluation at its last step
  const r = digpt(
    'pretrain',
    ...['--data', BUILTIN_SAMPLE_DIR, '--preset', 'digpt-micro-32', '--teacher', 'pixels'],
    ...['--batch', '8', '--accum', '1', '--seed', '3', '--workers', '1', '--steps', '3', '--out', run],
  );
  assert.equal(r.status, 0, r.stderr);
});

describe('metricsTable', () => {
  it('merges the train and eval lines of a step; eval keys a train line has are eval_<key>', () => {
    const lines = [
      { step: 1, loss: 2.5, lr: 0.01, epoch: 0, time: 'T1' },
      { step: 2, loss: 2.25, lr: 0.02, epoch: 0, time: 'T2' },
      { step: 2, epoch: 0, val_top1: 0.5, val_loss: 1.5, time: 'T2e' },
      { step: 4, loss: 2, lr: 0.03, epoch: 1, time: 'T4' },
      { step: 3, loss: 1.75, lr: null, epoch: 1, time: 'a "quoted", time' },
      { step: 4, epoch: 1, val_top1: 0.75, val_loss: 1.25, time: 'T4e' },
      { step: 4, epoch: 1, val_top1: 0.8, val_loss: 1.2, time: 'T4f' }, // a later eval of a step wins
      { loss: 9 }, // no step: not a row
    ];
    const { columns, rows } = metricsTable(lines);
    assert.deepEqual(columns, [
      'step',
      'loss',
      'lr',
      'epoch',
      'time',
      'eval_epoch',
      'val_top1',
      'val_loss',
      'eval_time',
    ]);
    assert.deepEqual(rows, [
      ['1', '2.5', '0.01', '0', 'T1', '', '', '', ''],
      ['2', '2.25', '0.02', '0', 'T2', '0', '0.5', '1.5', 'T2e'],
      ['3', '1.75', '', '1', '"a ""quoted"", time"', '', '', '', ''],
      ['4', '2', '0.03', '1', 'T4', '1', '0.8', '1.2', 'T4f'],
    ]);
    assert.deepEqual(parseCsv(metricsCsv(lines))[3], [
      '3',
      '1.75',
      '',
      '1',
      'a "quoted", time',
      '',
      '',
      '',
      '',
    ]);
    assert.equal(metricsCsv([]), 'step\n');
  });
});

describe('digpt export --format csv', () => {
  it('writes RUN/export/metrics.csv: one row per step and step 0, the k-NN at steps 0 and 3, numbers exact', () => {
    const r = digpt('export', run, '--format', 'csv');
    assert.equal(r.status, 0, r.stderr);
    const path = nodePath.join(fs.realpathSync(run), 'export', 'metrics.csv');
    assert.equal(r.stdout, `wrote ${path} (4 rows, steps up to 3)\n`);
    const [header, ...rows] = parseCsv(fs.readFileSync(path, 'utf8'));
    assert.deepEqual(header, [
      'step',
      'loss',
      'loss_gen',
      'loss_dis',
      'lr',
      'agreement',
      'img_per_s',
      'epoch',
      'time',
      'eval_epoch',
      'knn_top1',
    ]);
    assert.deepEqual(
      rows.map((c) => c[0]),
      ['0', '1', '2', '3'],
    );
    const lines = readMetrics(run);
    assert.equal(lines.length, 5); // the step-0 evaluation, three steps and the last evaluation
    const col = (name: string) => (header as string[]).indexOf(name);
    for (const line of lines) {
      const row = rows[line.step as number] as string[];
      for (const [k, v] of Object.entries(line)) {
        const c = 'loss' in line || k === 'step' || k === 'knn_top1' ? col(k) : col(`eval_${k}`);
        assert.equal(typeof v === 'number' ? Number(row[c]) : row[c], v, `${k} at step ${line.step}`);
      }
    }
    assert.deepEqual([rows[1]?.[col('knn_top1')], rows[2]?.[col('eval_epoch')]], ['', '']);
    assert.deepEqual([rows[0]?.[col('loss')], rows[0]?.[col('eval_epoch')]], ['', '0']);
  });

  it('--out and --json; an existing file only with --overwrite; never a run file; the default is replaced', () => {
    const out = nodePath.join(tmp, 'a.csv');
    const j = digpt('export', run, '--format', 'csv', '--out', out, '--json');
    assert.equal(j.status, 0, j.stderr);
    assert.deepEqual(JSON.parse(j.stdout), { path: out, rows: 4, step: 3 });
    const again = digpt('export', run, '--format', 'csv', '--out', out);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /a\.csv already exists; export with overwrite/);
    assert.equal(digpt('export', run, '--format', 'csv', '--out', out, '--overwrite').status, 0);

    const metrics = fs.readFileSync(nodePath.join(run, 'metrics.jsonl'));
    const own = digpt(
      'export',
      run,
      '--format',
      'csv',
      '--out',
      nodePath.join(run, 'metrics.jsonl'),
      '--overwrite',
    );
    assert.equal(own.status, 1);
    assert.match(own.stderr, /^digpt: export path .*is inside the run folder/m);
    assert.ok(fs.readFileSync(nodePath.join(run, 'metrics.jsonl')).equals(metrics));

    for (let i = 0; i < 2; i++) assert.equal(digpt('export', run, '--format', 'csv').status, 0);
    const leftovers = fs.readdirSync(nodePath.join(run, 'export')).filter((f) => f !== 'metrics.csv');
    assert.deepEqual(leftovers, []);
    const notRun = digpt('export', tmp, '--format', 'csv');
    assert.equal(notRun.status, 1);
    assert.match(notRun.stderr, /not a run folder/);
  });
});

describe('runs.export csv (the workbench, as digpt serve runs it)', () => {
  it('writes in the host into the run’s export/ or the workspace’s exports/, nowhere else', async () => {
    const wb = new Workbench({ workspace: ws, restrictPaths: true, watch: false });
    try {
      const dflt = await wb.handle('runs.export', { id: 'a', format: 'csv' });
      assert.ok(dflt.ok, JSON.stringify(dflt));
      assert.deepEqual(dflt.value, {
        path: nodePath.join(fs.realpathSync(run), 'export', 'metrics.csv'),
        tensors: 0,
        step: 3,
        rows: 4,
      });
      const inExports = await wb.handle('runs.export', {
        id: 'a',
        format: 'csv',
        out: nodePath.join(ws, 'exports', 'a.csv'),
      });
      assert.ok(inExports.ok, JSON.stringify(inExports));
      const outside = await wb.handle('runs.export', {
        id: 'a',
        format: 'csv',
        out: nodePath.join(tmp, 'b.csv'),
      });
      assert.equal(outside.ok, false);
      assert.match((outside as { error: string }).error, /is outside the export folders/);
      assert.ok(!fs.existsSync(nodePath.join(tmp, 'b.csv')));
    } finally {
      await wb.close();
    }
  });
});
