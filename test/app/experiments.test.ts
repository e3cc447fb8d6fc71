// `digpt experiment ablations`: helpers (subsets, statistics, plots, the experiment's data folder) and a smoke run.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { BUILTIN_SAMPLE_DIR, scanDataset } from '../../app/datasets/index.js';
import {
  defaultDataDir,
  pickSubset,
  prepareData,
  remainingSeconds,
} from '../../app/experiments/ablations.js';
import { ROWS } from '../../app/experiments/design.js';
import { barChartSvg, lineChartSvg, niceTicks, writePng } from '../../app/experiments/plots.js';
import { checkClaim, meanSpread, smooth } from '../../app/experiments/report.js';

const ROOT = nodePath.resolve(import.meta.dirname, '..', '..');
const BIN = nodePath.join(ROOT, 'bin', 'digpt.js');
const tmp = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'digpt-experiments-'));
const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47]);

function isPng(path: string): boolean {
  return fs.existsSync(path) && fs.readFileSync(path).subarray(0, 4).equals(PNG_MAGIC);
}

describe('experiment helpers', () => {
  it('picks a seeded, sorted subset without repeats', () => {
    const a = pickSubset(100, 10, 0);
    assert.deepEqual(a, pickSubset(100, 10, 0));
    assert.equal(new Set(a).size, 10);
    assert.deepEqual(
      a,
      [...a].sort((x, y) => x - y),
    );
    assert.ok(a.every((i) => i >= 0 && i < 100));
    assert.deepEqual(pickSubset(5, 10, 0), [0, 1, 2, 3, 4]);
  });

  it('estimates the time left from the finished jobs of each kind', () => {
    const done = [
      { kind: 'pretrain' as const, seconds: 100 },
      { kind: 'probe' as const, seconds: 20 },
    ];
    // two pretrainings (100 s each) and a fine-tune (no finished one: the mean of all, 60 s), two at a time
    assert.equal(
      remainingSeconds(done, [{ kind: 'pretrain' }, { kind: 'pretrain' }, { kind: 'finetune' }], 2),
      130,
    );
    assert.equal(remainingSeconds(done, [], 2), 0);
  });

  it('computes mean and sample standard deviation, and a moving average', () => {
    assert.deepEqual(meanSpread([0.5]), { mean: 0.5, spread: 0, n: 1 });
    const s = meanSpread([0.2, 0.4, NaN]);
    assert.equal(s.n, 2);
    assert.ok(Math.abs(s.mean - 0.3) < 1e-12);
    assert.ok(Math.abs(s.spread - Math.SQRT2 * 0.1) < 1e-12);
    assert.ok(Number.isNaN(meanSpread([]).mean));
    assert.deepEqual(
      smooth(
        [
          [1, 2],
          [2, 4],
          [3, 6],
        ],
        2,
      ),
      [
        [1, 2],
        [2, 3],
        [3, 5],
      ],
    );
  });

  it("checks the paper's orderings against the noise of seeds and test images", () => {
    // one seed each, 10,000 test images: two standard errors of a difference near 0.8 are ~0.0113
    const clear = checkClaim([0.82], [0.8], 10_000);
    assert.equal(clear.verdict, 'holds');
    assert.ok(Math.abs(clear.diff - 0.02) < 1e-12);
    assert.ok(Math.abs(clear.noise - 2 * Math.sqrt((0.82 * 0.18 + 0.8 * 0.2) / 10_000)) < 1e-12);
    assert.equal(checkClaim([0.8], [0.82], 10_000).verdict, 'reversed');
    assert.equal(checkClaim([0.805], [0.8], 10_000).verdict, 'tie');
    // the same means with a large seed-to-seed spread are a tie
    assert.equal(checkClaim([0.72, 0.92], [0.8, 0.8], 10_000).verdict, 'tie');
    assert.equal(checkClaim([0.821, 0.819], [0.8, 0.8], 10_000).verdict, 'holds');
    assert.equal(checkClaim([], [0.8], 10_000).verdict, 'n/a');
  });

  it('draws charts as SVG and rasterises them to PNG', async () => {
    assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    const line = lineChartSvg({
      title: 'loss <a & b>',
      xLabel: 'step',
      yLabel: 'loss',
      series: [
        {
          name: 'digpt',
          points: [
            [1, 3],
            [2, 2.5],
            [3, NaN],
          ],
        },
        { name: 'kd', points: [] },
      ],
    });
    assert.match(line, /^<svg/);
    assert.match(line, /loss &lt;a &amp; b&gt;/);
    const bars = barChartSvg({
      title: 'top-1',
      yLabel: 'top-1',
      measures: ['probe', 'fine-tune'],
      groups: [{ name: 'digpt', values: [{ value: 0.5, spread: 0.1 }, { value: NaN }] }],
    });
    await writePng(line, nodePath.join(tmp, 'line.png'));
    await writePng(bars, nodePath.join(tmp, 'bars.png'));
    assert.ok(isPng(nodePath.join(tmp, 'line.png')));
    assert.ok(isPng(nodePath.join(tmp, 'bars.png')));
  });

  it('writes the experiment data: train subset as train-*, test subset as val-*', async () => {
    const dir = nodePath.join(tmp, 'data');
    const d = await prepareData(BUILTIN_SAMPLE_DIR, dir, { trainImages: 100, testImages: 40 });
    assert.deepEqual([d.train, d.test, d.classes.length], [100, 40, 10]);
    const scan = await scanDataset(dir);
    assert.deepEqual(
      scan.splits.map((s) => [s.name, s.origin, s.count]),
      [
        ['train', 'idx', 100],
        ['val', 'idx', 40],
      ],
    );
    assert.deepEqual(scan.classes, d.classes);
  });
});

let data: string | undefined;
try {
  data = defaultDataDir();
} catch {
  data = undefined;
}

describe('digpt experiment ablations --budget smoke', () => {
  it('finds Fashion-MNIST (the shared copy or the Debian package)', () => {
    assert.ok(
      data,
      'no Fashion-MNIST: apt-get install dataset-fashion-mnist, or keep ../shared/datasets/fashion-mnist',
    );
  });
  it('runs every job and writes report.md, results.json and the plots', { timeout: 600_000 }, () => {
    const out = nodePath.join(tmp, 'smoke');
    const r = spawnSync(
      process.execPath,
      [BIN, 'experiment', 'ablations', '--budget', 'smoke', '--out', out],
      {
        cwd: tmp,
        env: { ...process.env, DIGPT_CACHE: nodePath.join(tmp, 'cache') },
        encoding: 'utf8',
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /done teacher in/);
    const md = fs.readFileSync(nodePath.join(out, 'report.md'), 'utf8');
    assert.ok(isPng(nodePath.join(out, 'pretrain-loss.png')));
    assert.ok(isPng(nodePath.join(out, 'accuracy.png')));
    // the "All rows" table: | row | pretraining | linear probe top-1 | fine-tune top-1 | ...
    for (const row of ROWS) {
      const line = md.split('\n').find((l) => l.startsWith(`| ${row.name} |`));
      assert.ok(line, `row ${row.name} missing`);
      const cells = line.split('|').map((c) => c.trim());
      for (const cell of [cells[3], cells[4]]) {
        const v = Number(cell);
        assert.ok(Number.isFinite(v) && v >= 0 && v <= 1, `${row.name}: '${cell}'`);
      }
    }
    for (const table of ['Table 5', 'Table 7', 'Table 9']) assert.match(md, new RegExp(table));
    const results = JSON.parse(fs.readFileSync(nodePath.join(out, 'results.json'), 'utf8')) as {
      rows: { row: string; probe: number[]; finetune: number[] }[];
      jobs: { id: string; seconds: number }[];
    };
    assert.deepEqual(
      results.rows.map((x) => x.row),
      ROWS.map((x) => x.name),
    );
    for (const x of results.rows)
      for (const v of [...x.probe, ...x.finetune]) assert.ok(v >= 0 && v <= 1, `${x.row}: ${v}`);
    assert.equal(results.jobs.length, 19);
    assert.ok(results.jobs.every((j) => j.seconds >= 0));
    assert.match(md, /## The paper's orderings, here/);
    assert.match(
      md,
      /\| D-iGPT \(gen \+ dis\) vs gen-only \| Table 7[^|]*\| [+−]\d\.\d{4} ± \d\.\d{4}: \*\*(holds|reversed|tie)\*\* \|/,
    );

    // `digpt experiment report DIR` writes the same report again from results.json
    fs.rmSync(nodePath.join(out, 'report.md'));
    fs.rmSync(nodePath.join(out, 'accuracy.png'));
    const again = spawnSync(process.execPath, [BIN, 'experiment', 'report', out], { encoding: 'utf8' });
    assert.equal(again.status, 0, again.stderr);
    assert.equal(fs.readFileSync(nodePath.join(out, 'report.md'), 'utf8'), md);
    assert.ok(isPng(nodePath.join(out, 'accuracy.png')));
    const missing = spawnSync(
      process.execPath,
      [BIN, 'experiment', 'report', nodePath.join(tmp, 'nothing')],
      {
        encoding: 'utf8',
      },
    );
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /nothing[/\\]results\.json does not exist/);
  });
});
