// `digpt experiment ablations`: helpers (split, statistics, plots, result files, the plan's time) and the smoke budget
// end to end with the real engine: every row group, the recipe chosen on val, a kill -9 resumed, a damaged result redone.
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { describe, it } from 'node:test';
import { BUILTIN_SAMPLE_DIR, scanDataset } from '../../app/datasets/index.js';
import { readIdx } from '../../app/datasets/idx.js';
import {
  canonicalJson,
  defaultDataDir,
  pickSubset,
  plannedWallSeconds,
  prepareData,
  readTrustedResult,
  remainingSeconds,
  resultFile,
  splitIndices,
} from '../../app/experiments/ablations.js';
import {
  BUDGETS,
  chooseRecipe,
  FINETUNE_CANDIDATES,
  plannedSeconds,
  RECIPE,
  rowsOf,
  stepsFor,
} from '../../app/experiments/design.js';
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

  it('carves the validation images out of the train split: seeded, disjoint from the train images', () => {
    const s = splitIndices(1000, 300, { trainImages: Infinity, valImages: 100, testImages: 50 });
    assert.deepEqual(s, splitIndices(1000, 300, { trainImages: Infinity, valImages: 100, testImages: 50 }));
    assert.deepEqual([s.train.length, s.val.length, s.test.length], [900, 100, 50]);
    const train = new Set(s.train);
    assert.ok(s.val.every((i) => !train.has(i)));
    assert.deepEqual(
      [...train, ...s.val].sort((a, b) => a - b),
      Array.from({ length: 1000 }, (_, i) => i),
    );
    // fewer train images: a subset of the same rest, the same validation images
    const small = splitIndices(1000, 300, { trainImages: 200, valImages: 100, testImages: 50 });
    assert.deepEqual(small.val, s.val);
    assert.equal(small.train.length, 200);
    assert.ok(small.train.every((i) => train.has(i)));
  });

  it('estimates the time left from the finished jobs of each kind and row', () => {
    const done = [
      { kind: 'pretrain' as const, row: 'pixels' as const, seconds: 60 },
      { kind: 'pretrain' as const, row: 'dec-4' as const, seconds: 140 },
      { kind: 'probe' as const, row: 'pixels' as const, seconds: 20 },
    ];
    // a pretraining of each of those rows (60 s, 140 s), one of a row not seen yet (the mean of the kind, 100 s) and
    // a fine-tune (no finished one: the mean of all, 220 / 3 s), two at a time
    const left = [
      { kind: 'pretrain' as const, row: 'pixels' as const },
      { kind: 'pretrain' as const, row: 'dec-4' as const },
      { kind: 'pretrain' as const, row: 'kd' as const },
      { kind: 'finetune' as const, row: 'kd' as const },
    ];
    assert.ok(Math.abs(remainingSeconds(done, left, 2) - (60 + 140 + 100 + 220 / 3) / 2) < 1e-9);
    assert.equal(remainingSeconds(done, [], 2), 0);
  });

  it('plans the full budget within 6 hours on two cores, with 3 seeds and every row group', () => {
    const full = BUDGETS.full;
    assert.equal(full.seeds, 3);
    assert.ok(full.pretrainEpochs >= 2, 'several epochs of pretraining');
    const p = plannedSeconds(full);
    // the runner's own schedule (dependencies, two at a time) at the measured speeds, and 20% slower
    const wall = plannedWallSeconds(full);
    assert.ok(wall.seconds < 5 * 3600, `planned ${(wall.seconds / 3600).toFixed(2)} h`);
    assert.ok(wall.seconds >= p.seconds && wall.idle < 0.05 * wall.seconds, `idle ${wall.idle} s`);
    const slower = plannedWallSeconds(full, { slowdown: 0.8 });
    assert.ok(slower.seconds < 6 * 3600, `planned at 0.8x ${(slower.seconds / 3600).toFixed(2)} h`);
    assert.equal(wall.jobs, p.jobs);
    // 7 pretrainings, 8 probes, 8 fine-tunes and an encoder per seed; the teacher; the candidates and their probe
    assert.equal(p.jobs, 3 * (7 + 8 + 8 + 1) + 1 + full.candidates.length + 1);
    assert.deepEqual(
      rowsOf(full).map((r) => r.name),
      ['digpt', 'gen-only', 'kd', 'mae', 'pixels', 'scratch', 'dec-2', 'dec-4'],
    );
    assert.equal(stepsFor(2, 55_000, 32), 3436);
    for (const name of full.candidates) assert.ok(FINETUNE_CANDIDATES.some((c) => c.name === name));
    assert.equal(
      chooseRecipe([
        { name: 'a', valTop1: 0.5 },
        { name: 'b', valTop1: 0.7 },
        { name: 'c', valTop1: 0.7 },
      ]),
      'b',
    );
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

  it('writes the data folders: train as train-*, test as val-*, and the carved validation images apart', async () => {
    const out = nodePath.join(tmp, 'prep');
    const d = await prepareData(BUILTIN_SAMPLE_DIR, out, { trainImages: 100, valImages: 30, testImages: 40 });
    assert.deepEqual([d.train, d.val, d.test, d.classes.length], [100, 30, 40, 10]);
    const scan = await scanDataset(d.dir);
    assert.deepEqual(
      scan.splits.map((s) => [s.name, s.origin, s.count]),
      [
        ['train', 'idx', 100],
        ['val', 'idx', 40],
      ],
    );
    const sel = await scanDataset(d.selectDir);
    assert.deepEqual(
      sel.splits.map((s) => [s.name, s.count]),
      [
        ['train', 100],
        ['val', 30],
      ],
    );
    assert.deepEqual(scan.classes, d.classes);
    // a second call finds the same bytes and rewrites nothing
    const mtime = fs.statSync(nodePath.join(d.dir, 'train-images-idx3-ubyte')).mtimeMs;
    await prepareData(BUILTIN_SAMPLE_DIR, out, { trainImages: 100, valImages: 30, testImages: 40 });
    assert.equal(fs.statSync(nodePath.join(d.dir, 'train-images-idx3-ubyte')).mtimeMs, mtime);
  });

  it('trusts a result file only when it is whole, unedited and made with the same settings', () => {
    const out = nodePath.join(tmp, 'trust');
    const settings = { job: { kind: 'probe', data: '/d', source: '/s', seed: 0, epochs: 5 } } as const;
    const result = { id: 'probe x/s0', kind: 'probe', seed: 0, seconds: 3, top1: 0.5 } as const;
    const file = resultFile(out, result.id);
    assert.deepEqual(readTrustedResult(out, result.id, settings), { why: 'no result file' });
    // written as the runner writes it
    const body = { settings, result };
    const digest = createHash('sha256').update(canonicalJson(body)).digest('hex');
    fs.mkdirSync(nodePath.dirname(file), { recursive: true });
    const whole = JSON.stringify({ format: 'digpt-ablations-job', version: 2, ...body, digest });
    fs.writeFileSync(file, whole);
    assert.deepEqual(readTrustedResult(out, result.id, settings), { result });
    // other settings, a cut file, an edited number
    const other = { job: { ...settings.job, epochs: 6 } };
    assert.match((readTrustedResult(out, result.id, other) as { why: string }).why, /other settings/);
    fs.writeFileSync(file, whole.slice(0, whole.length / 2));
    assert.match((readTrustedResult(out, result.id, settings) as { why: string }).why, /not JSON/);
    fs.writeFileSync(file, whole.replace('"top1":0.5', '"top1":0.9'));
    assert.match((readTrustedResult(out, result.id, settings) as { why: string }).why, /digest/);
  });
});

let data: string | undefined;
try {
  data = defaultDataDir();
} catch {
  data = undefined;
}

interface Results {
  round: number;
  seconds: number;
  sittings: { seconds: number }[];
  teacher: { top1: number; steps: number; recipe: { crop_min: number } } | null;
  selection: {
    candidates: { name: string; valTop1: number | null }[];
    probeValTop1: number | null;
    winner: string | null;
  };
  groups: { objectives: string[]; decoder: string[] };
  rows: { row: string; group: string; probe: number[]; finetune: number[]; knn: number[] }[];
  jobs: Record<string, unknown>[];
}

const readResults = (out: string): Results =>
  JSON.parse(fs.readFileSync(nodePath.join(out, 'results.json'), 'utf8')) as Results;

/** A job's numbers, without what depends on timing (wall-clock, images/s). */
function comparable(j: Record<string, unknown>): Record<string, unknown> {
  const { seconds: _s, imgPerS: _i, ...rest } = j;
  return rest;
}

const env = { ...process.env, DIGPT_CACHE: nodePath.join(tmp, 'cache') };
const ablations = (out: string): string[] => [
  BIN,
  'experiment',
  'ablations',
  '--budget',
  'smoke',
  '--data',
  data ?? '',
  '--out',
  out,
];
const lines = (text: string, re: RegExp): RegExpMatchArray[] =>
  text.split('\n').flatMap((l) => {
    const m = l.match(re);
    return m ? [m] : [];
  });
const resultFiles = (out: string): string[] =>
  fs.existsSync(nodePath.join(out, 'jobs'))
    ? fs
        .readdirSync(nodePath.join(out, 'jobs'))
        .filter((f) => f.endsWith('.json') && !f.endsWith('.partial.json'))
    : [];

describe('digpt experiment ablations --budget smoke', () => {
  const clean = nodePath.join(tmp, 'smoke');
  const resumed = nodePath.join(tmp, 'resumed');

  it('finds Fashion-MNIST (the shared copy or the Debian package)', () => {
    assert.ok(
      data,
      'no Fashion-MNIST: apt-get install dataset-fashion-mnist, or keep ../shared/datasets/fashion-mnist',
    );
  });

  it('runs every job and writes report.md, results.json and the plots', { timeout: 600_000 }, async () => {
    const r = spawnSync(process.execPath, ablations(clean), { cwd: tmp, env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /done teacher in/);
    const md = fs.readFileSync(nodePath.join(clean, 'report.md'), 'utf8');
    assert.ok(isPng(nodePath.join(clean, 'pretrain-loss.png')));
    assert.ok(isPng(nodePath.join(clean, 'accuracy.png')));
    const rows = rowsOf(BUDGETS.smoke);
    // the "All rows" table: | row | pretraining | linear probe top-1 | fine-tune top-1 | ...
    for (const row of rows) {
      const line = md.split('\n').find((l) => l.startsWith(`| ${row.name} |`));
      assert.ok(line, `row ${row.name} missing`);
      const cells = line.split('|').map((c) => c.trim());
      for (const cell of [cells[3], cells[4]]) {
        const v = Number(cell);
        assert.ok(Number.isFinite(v) && v >= 0 && v <= 1, `${row.name}: '${cell}'`);
      }
    }
    for (const heading of [
      'Table 5',
      'Table 7',
      'Table 8 — decoder depth',
      'Table 9',
      '## The teacher',
      '## The fine-tune recipe, chosen on the validation images',
      "## The paper's orderings, here",
      '### Decoder depth',
      '### Fine-tune vs linear probe',
      '## Sittings',
    ])
      assert.ok(md.includes(heading), heading);
    assert.match(
      md,
      /\| D-iGPT \(gen \+ dis\) vs gen-only \| Table 7[^|]*\| [+−]\d\.\d{4} ± \d\.\d{4}: \*\*(holds|reversed|tie)\*\* \|/,
    );
    assert.match(
      md,
      /\| decoder depth 4 vs 1 \| Table 8 \| [+−]\d\.\d{4} ± \d\.\d{4}: \*\*(higher|lower|tie)\*\* \|/,
    );

    const res = readResults(clean);
    assert.equal(res.round, 2);
    assert.deepEqual(
      res.rows.map((x) => x.row),
      rows.map((x) => x.name),
    );
    assert.deepEqual(res.groups.decoder, ['digpt', 'dec-2', 'dec-4']);
    assert.deepEqual(res.groups.objectives, ['digpt', 'gen-only', 'kd', 'mae', 'pixels', 'scratch']);
    for (const x of res.rows) {
      assert.equal(x.probe.length, 1, x.row);
      assert.equal(x.finetune.length, 1, x.row);
      for (const v of [...x.probe, ...x.finetune]) assert.ok(v >= 0 && v <= 1, `${x.row}: ${v}`);
    }
    assert.ok(res.teacher && res.teacher.top1 >= 0 && res.teacher.top1 <= 1);
    assert.equal(res.teacher.recipe.crop_min, RECIPE.teacher.crop_min);
    // the recipe choice: every candidate scored on the validation images, the best one chosen and used
    assert.deepEqual(
      res.selection.candidates.map((c) => c.name),
      BUDGETS.smoke.candidates,
    );
    const scores = res.selection.candidates.map((c) => ({ name: c.name, valTop1: c.valTop1 as number }));
    assert.ok(scores.every((s) => typeof s.valTop1 === 'number'));
    assert.equal(res.selection.winner, chooseRecipe(scores));
    assert.equal(typeof res.selection.probeValTop1, 'number');
    assert.ok(md.includes(`Chosen: \`${res.selection.winner}\``));
    assert.equal(res.jobs.length, 28);
    assert.ok(res.jobs.every((j) => (j['seconds'] as number) >= 0));
    assert.equal(res.sittings.length, 1);

    // the recipe is chosen without the test images: the selection reads data-select/, whose validation images are
    // train-split images carved out before anything trained, and no fine-tune of the tables reads them
    const split = JSON.parse(fs.readFileSync(nodePath.join(clean, 'split.json'), 'utf8')) as {
      train: number[];
      val: number[];
      test: number[];
    };
    const train = new Set(split.train);
    assert.ok(split.val.length > 0 && split.val.every((i) => !train.has(i)));
    const src = await scanDataset(data as string, { valFraction: 0 });
    const imagesOf = async (name: 'train' | 'test'): Promise<Uint8Array> => {
      const s = src.splits.find((x) => x.name === name)?.source;
      assert.ok(s?.kind === 'idx' && s.indices === null);
      return (await readIdx(nodePath.join(src.root, s.images))).data;
    };
    const per = 28 * 28;
    const srcTrain = await imagesOf('train');
    const srcTest = await imagesOf('test');
    const selVal = (await readIdx(nodePath.join(clean, 'data-select', 'val-images-idx3-ubyte'))).data;
    const testVal = (await readIdx(nodePath.join(clean, 'data', 'val-images-idx3-ubyte'))).data;
    split.val.forEach((k, j) =>
      assert.ok(
        Buffer.from(selVal.subarray(j * per, (j + 1) * per)).equals(
          srcTrain.subarray(k * per, (k + 1) * per),
        ),
      ),
    );
    split.test.forEach((k, j) =>
      assert.ok(
        Buffer.from(testVal.subarray(j * per, (j + 1) * per)).equals(
          srcTest.subarray(k * per, (k + 1) * per),
        ),
      ),
    );
    for (const f of resultFiles(clean)) {
      const body = JSON.parse(fs.readFileSync(nodePath.join(clean, 'jobs', f), 'utf8')) as {
        settings: { job?: { data?: string } };
        result: { kind: string };
      };
      const dataDir = body.settings.job?.data;
      if (body.result.kind === 'select' || body.result.kind === 'select-probe')
        assert.equal(dataDir, nodePath.join(clean, 'data-select'), f);
      else if (dataDir !== undefined) assert.equal(dataDir, nodePath.join(clean, 'data'), f);
    }

    // `digpt experiment report DIR` writes the same report again from results.json
    fs.rmSync(nodePath.join(clean, 'report.md'));
    fs.rmSync(nodePath.join(clean, 'accuracy.png'));
    const again = spawnSync(process.execPath, [BIN, 'experiment', 'report', clean], { encoding: 'utf8' });
    assert.equal(again.status, 0, again.stderr);
    assert.equal(fs.readFileSync(nodePath.join(clean, 'report.md'), 'utf8'), md);
    assert.ok(isPng(nodePath.join(clean, 'accuracy.png')));
    const missing = spawnSync(
      process.execPath,
      [BIN, 'experiment', 'report', nodePath.join(tmp, 'nothing')],
      { encoding: 'utf8' },
    );
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /nothing[/\\]results\.json does not exist/);
  });

  it(
    'killed with SIGKILL mid-way, the same command skips the finished jobs and resumes the unfinished run from its checkpoint',
    { timeout: 600_000 },
    async () => {
      // the first sitting: killed at a pretraining checkpoint before its last step, once a few jobs are done
      const first = spawn(process.execPath, ablations(resumed), {
        cwd: tmp,
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      let seen: { id: string; step: number } | undefined;
      first.stderr.setEncoding('utf8');
      first.stderr.on('data', (chunk: string) => {
        err += chunk;
        if (seen) return;
        const done = new Set(lines(err, /^done (.+?) in /).map((m) => m[1]));
        const ck = lines(err, /^ {2}(pretrain [^:]+): checkpoint at step (\d+)\/(\d+)$/).find(
          (m) => Number(m[2]) < Number(m[3]) && !done.has(m[1]),
        );
        if (done.size >= 8 && ck) {
          seen = { id: ck[1] as string, step: Number(ck[2]) };
          first.kill('SIGKILL');
        }
      });
      const code = await new Promise<number | null>((r) => first.on('exit', (c, sig) => r(sig ? null : c)));
      assert.equal(code, null, `the runner ended before it was killed:\n${err}`);
      assert.ok(seen);
      const finished = resultFiles(resumed).length;
      assert.ok(finished >= 8 && finished < 28, `${finished} jobs finished before the kill`);

      // the second sitting: the same command
      const second = spawnSync(process.execPath, ablations(resumed), { cwd: tmp, env, encoding: 'utf8' });
      assert.equal(second.status, 0, second.stderr);
      const out = second.stderr;
      assert.equal(lines(out, /^skip /).length, finished, out);
      assert.equal(lines(out, /^redo /).length, 0, out);
      // every finished job is recognised before anything starts, so the first count (and its ETA) includes them
      const firstStart = out.search(/^(start|resume|restart) /m);
      assert.ok(firstStart > out.lastIndexOf('\nskip '), out);
      assert.equal(lines(out, /^done .+ \((\d+)\/28 jobs,/)[0]?.[1], String(finished + 1), out);
      const resume = lines(out, /^resume (.+) from step (\d+) \(its newest checkpoint\)$/);
      const mine = resume.find((m) => m[1] === seen?.id);
      assert.ok(mine, `${seen.id} was not resumed:\n${out}`);
      assert.ok(
        Number(mine[2]) >= seen.step,
        `resumed from step ${mine[2]}, checkpoint seen at ${seen.step}`,
      );
      assert.match(out, new RegExp(`^ {2}${seen.id.replace('/', '\\/')}: from step ${mine[2]}/`, 'm'));
      assert.match(out, new RegExp(`; ${finished} jobs from earlier sittings, ${28 - finished} run now\\)`));

      // job for job, the same numbers as the clean run (every job is seeded; a resumed run repeats its steps exactly)
      const a = readResults(clean);
      const b = readResults(resumed);
      assert.equal(b.sittings.length, 2);
      assert.deepEqual(b.jobs.map(comparable), a.jobs.map(comparable));
      assert.deepEqual(
        b.rows.map((r) => [r.probe, r.finetune, r.knn]),
        a.rows.map((r) => [r.probe, r.finetune, r.knn]),
      );
      assert.deepEqual(b.selection, a.selection);
    },
  );

  it('redoes a job whose result file is damaged or edited, and trusts the rest', { timeout: 600_000 }, () => {
    const cut = resultFile(resumed, 'probe digpt/s0');
    fs.writeFileSync(cut, fs.readFileSync(cut, 'utf8').slice(0, 100));
    const edited = resultFile(resumed, 'finetune kd/s0');
    fs.writeFileSync(edited, fs.readFileSync(edited, 'utf8').replace(/"top1": [0-9.]+/, '"top1": 0.99'));
    const r = spawnSync(process.execPath, ablations(resumed), { cwd: tmp, env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^redo probe digpt\/s0: .*not JSON/m);
    assert.match(r.stderr, /^redo finetune kd\/s0: .*digest/m);
    assert.equal(lines(r.stderr, /^skip /).length, 26);
    // the fine-tune's run is whole: it reopens at its last checkpoint and its numbers are read again from it
    assert.match(r.stderr, /^resume finetune kd\/s0 from step \d+/m);
    assert.deepEqual(readResults(resumed).jobs.map(comparable), readResults(clean).jobs.map(comparable));
  });
});
