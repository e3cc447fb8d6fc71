// The ablation report: report.md (the paper's Tables 5, 7, 9 plus a scratch row), results.json and PNG plots.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { formatDuration } from '../cli/progress.js';
import { RECIPE, ROWS, type Budget, type JobResult, type RowDef } from './design.js';
import { barChartSvg, lineChartSvg, writePng, type Series } from './plots.js';

export interface ReportInput {
  readonly out: string;
  readonly budget: Budget;
  readonly seeds: number;
  readonly source: string;
  readonly data: { train: number; trainOf: number; test: number; testOf: number; classes: string[] };
  readonly started: Date;
  readonly seconds: number;
  readonly command: string;
  readonly jobs: readonly JobResult[];
  readonly machine: string;
}

/** Mean and spread (sample standard deviation; 0 for one value) of the finite values. */
export function meanSpread(values: readonly number[]): { mean: number; spread: number; n: number } {
  const v = values.filter((x) => Number.isFinite(x));
  const n = v.length;
  if (n === 0) return { mean: NaN, spread: NaN, n };
  const mean = v.reduce((a, x) => a + x, 0) / n;
  const spread = n > 1 ? Math.sqrt(v.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, spread, n };
}

function acc(values: readonly number[]): string {
  const s = meanSpread(values);
  if (s.n === 0) return 'n/a';
  return s.n > 1 ? `${s.mean.toFixed(4)} ± ${s.spread.toFixed(4)}` : s.mean.toFixed(4);
}

function secs(values: readonly number[]): string {
  const s = meanSpread(values);
  return s.n === 0 ? 'n/a' : formatDuration(s.mean);
}

/** Moving average over `w` points (the first points average what there is). */
export function smooth(points: readonly (readonly [number, number])[], w: number): [number, number][] {
  const out: [number, number][] = [];
  let sum = 0;
  for (let i = 0; i < points.length; i++) {
    sum += (points[i] as readonly [number, number])[1];
    if (i >= w) sum -= (points[i - w] as readonly [number, number])[1];
    out.push([(points[i] as readonly [number, number])[0], sum / Math.min(i + 1, w)]);
  }
  return out;
}

/** Per-row numbers over seeds. */
export interface RowSummary {
  readonly row: RowDef['name'];
  readonly label: string;
  readonly objective: string | null;
  readonly target: RowDef['target'];
  readonly probe: number[];
  readonly finetune: number[];
  readonly knn: number[];
  readonly pretrainSeconds: number[];
  readonly probeSeconds: number[];
  readonly finetuneSeconds: number[];
  readonly pretrainImgPerS: number[];
  readonly finalLoss: number[];
}

export function summarise(jobs: readonly JobResult[]): RowSummary[] {
  return ROWS.map((r) => {
    const of = (kind: JobResult['kind']): JobResult[] =>
      jobs.filter((j) => j.row === r.name && j.kind === kind);
    const num = (xs: (number | undefined)[]): number[] => xs.filter((x): x is number => x !== undefined);
    return {
      row: r.name,
      label: r.label,
      objective: r.objective ?? null,
      target: r.target,
      probe: num(of('probe').map((j) => j.top1)),
      finetune: num(of('finetune').map((j) => j.top1)),
      knn: num(of('pretrain').map((j) => j.knnTop1)),
      pretrainSeconds: of('pretrain').map((j) => j.seconds),
      probeSeconds: of('probe').map((j) => j.seconds),
      finetuneSeconds: of('finetune').map((j) => j.seconds),
      pretrainImgPerS: num(of('pretrain').map((j) => j.imgPerS)),
      finalLoss: num(of('pretrain').map((j) => j.losses?.at(-1)?.[1])),
    };
  });
}

/** One of the paper's ablation claims: row `a` scores higher than row `b`. */
export interface Claim {
  readonly what: string;
  readonly a: RowDef['name'];
  readonly b: RowDef['name'];
  /** Where the paper shows it (ImageNet-1K, ViT-B, CLIP teacher). */
  readonly paper: string;
}

export const CLAIMS: readonly Claim[] = [
  { what: 'D-iGPT (gen + dis) vs gen-only', a: 'digpt', b: 'gen-only', paper: 'Table 7: gen + dis higher' },
  {
    what: 'teacher targets vs pixel targets',
    a: 'digpt',
    b: 'pixels',
    paper: 'Table 5: semantic targets higher',
  },
  { what: 'D-iGPT vs KD', a: 'digpt', b: 'kd', paper: 'Table 9: D-iGPT higher' },
  { what: 'D-iGPT vs MAE (teacher targets)', a: 'digpt', b: 'mae', paper: 'Table 9: D-iGPT higher' },
  { what: 'D-iGPT vs random init', a: 'digpt', b: 'scratch', paper: 'pretraining higher (all tables)' },
  { what: 'gen-only vs random init', a: 'gen-only', b: 'scratch', paper: 'pretraining higher' },
  { what: 'KD vs random init', a: 'kd', b: 'scratch', paper: 'pretraining higher' },
  { what: 'MAE vs random init', a: 'mae', b: 'scratch', paper: 'pretraining higher' },
  { what: 'pixel targets vs random init', a: 'pixels', b: 'scratch', paper: 'pretraining higher' },
];

export type Verdict = 'holds' | 'reversed' | 'tie' | 'n/a';

/** What one measure says about a claim: the difference of the means and whether it is beyond the noise. */
export interface ClaimCheck {
  readonly diff: number;
  /** Two standard errors of the difference: seed-to-seed spread plus the test set's binomial noise. */
  readonly noise: number;
  readonly verdict: Verdict;
}

/**
 * a - b with its noise: the variance of each mean is spread^2 / seeds (when there are 2+ seeds) plus
 * p(1-p) / (test images x seeds); a difference beyond two standard errors either way is a verdict, else a tie.
 */
export function checkClaim(a: readonly number[], b: readonly number[], testImages: number): ClaimCheck {
  const sa = meanSpread(a);
  const sb = meanSpread(b);
  if (sa.n === 0 || sb.n === 0) return { diff: NaN, noise: NaN, verdict: 'n/a' };
  const variance = (s: { mean: number; spread: number; n: number }): number =>
    (s.n > 1 ? s.spread ** 2 / s.n : 0) + (s.mean * (1 - s.mean)) / (Math.max(1, testImages) * s.n);
  const diff = sa.mean - sb.mean;
  const noise = 2 * Math.sqrt(variance(sa) + variance(sb));
  const verdict: Verdict = Math.abs(diff) <= noise ? 'tie' : diff > 0 ? 'holds' : 'reversed';
  return { diff, noise, verdict };
}

function claimCell(c: ClaimCheck): string {
  if (c.verdict === 'n/a') return 'n/a';
  const sign = c.diff >= 0 ? '+' : '−';
  return `${sign}${Math.abs(c.diff).toFixed(4)} ± ${c.noise.toFixed(4)}: **${c.verdict}**`;
}

/** Writes report.md, results.json, pretrain-loss.png and accuracy.png into `out`. */
export async function writeReport(i: ReportInput): Promise<{ report: string; results: string }> {
  const b = i.budget;
  const rows = summarise(i.jobs);
  const by = new Map(rows.map((r) => [r.row, r]));
  const teacher = i.jobs.find((j) => j.kind === 'teacher');

  // --- plots ---
  const series: Series[] = [];
  for (const r of ROWS.filter((x) => x.objective)) {
    const runs = i.jobs.filter((j) => j.row === r.name && j.kind === 'pretrain' && j.losses?.length);
    if (!runs.length) continue;
    // mean over seeds at each step
    const steps = new Map<number, number[]>();
    for (const j of runs) for (const [s, l] of j.losses ?? []) steps.set(s, [...(steps.get(s) ?? []), l]);
    const pts = [...steps.entries()]
      .sort((a, c) => a[0] - c[0])
      .map(([s, ls]) => [s, meanSpread(ls).mean] as [number, number]);
    series.push({ name: r.name, points: smooth(pts, Math.max(1, Math.round(pts.length / 50))) });
  }
  const window = Math.max(1, Math.round(b.pretrainSteps / 50));
  await writePng(
    lineChartSvg({
      title: `Pretraining loss (${b.name}; mean of ${i.seeds} seed${i.seeds > 1 ? 's' : ''}, moving average of ${window})`,
      xLabel: 'step',
      yLabel: 'loss (each objective its own scale)',
      series,
    }),
    nodePath.join(i.out, 'pretrain-loss.png'),
  );
  await writePng(
    barChartSvg({
      title: `Top-1 on ${i.data.test} test images (${b.name})`,
      yLabel: 'top-1',
      measures: ['linear probe', 'fine-tune'],
      groups: rows.map((r) => ({
        name: r.row,
        values: [r.probe, r.finetune].map((v) => {
          const s = meanSpread(v);
          return { value: s.mean, spread: s.spread };
        }),
      })),
    }),
    nodePath.join(i.out, 'accuracy.png'),
  );

  // --- results.json ---
  const results = {
    experiment: 'ablations',
    command: i.command,
    started: i.started.toISOString(),
    seconds: i.seconds,
    machine: i.machine,
    budget: b,
    seeds: i.seeds,
    data: { source: i.source, ...i.data },
    recipe: RECIPE,
    teacher: teacher ? { top1: teacher.top1, seconds: teacher.seconds, steps: teacher.steps } : null,
    rows,
    jobs: i.jobs,
  };
  const resultsPath = nodePath.join(i.out, 'results.json');
  fs.writeFileSync(
    resultsPath,
    `${JSON.stringify(results, (_k, v: unknown) => (v === Infinity ? 'all' : v), 2)}\n`,
  );

  // --- report.md ---
  const line = (r: RowSummary | undefined, name: string): string =>
    r ? `| ${name} | ${acc(r.probe)} | ${acc(r.finetune)} |` : `| ${name} | n/a | n/a |`;
  const spread = i.seeds > 1 ? ` (mean ± standard deviation over ${i.seeds} seeds)` : '';
  const md = [
    `# Ablations on Fashion-MNIST (budget \`${b.name}\`)`,
    '',
    `\`${i.command}\` — started ${i.started.toISOString()}, ${formatDuration(i.seconds)} in all (${i.machine}).`,
    '',
    `Data: ${i.source}; ${i.data.train} of ${i.data.trainOf} train images for every job, top-1 on ${i.data.test} of`,
    `${i.data.testOf} test images (seeded subsets; nothing is selected on the test images: every number is that of`,
    'the last step). Model: `' + b.preset + '` at 32 px. Seeds: ' + `${i.seeds}` + '.',
    '',
    '| job | steps | batch | images seen |',
    '| --- | --- | --- | --- |',
    `| teacher (supervised, from scratch, blr ${RECIPE.teacherBlr}, no mixup/cutmix/erasing/drop path/layer decay) | ${b.teacherSteps} | ${b.batch} | ${b.teacherSteps * b.batch} |`,
    `| pretraining (each of 5, blr ${RECIPE.pretrainBlr}, 10% warm-up) | ${b.pretrainSteps} | ${b.batch} | ${b.pretrainSteps * b.batch} |`,
    `| fine-tune (each of 6, blr ${RECIPE.finetune.blr}, layer decay ${RECIPE.finetune.layer_decay}, smoothing ${RECIPE.finetune.smoothing}, no mixup/cutmix/erasing) | ${b.finetuneSteps} | ${b.batch} | ${b.finetuneSteps * b.batch} |`,
    `| linear probe (frozen features, AdamW) | ${b.probeEpochs} epochs | | |`,
    '',
    teacher?.top1 !== undefined
      ? `Teacher: top-1 ${teacher.top1.toFixed(4)} on the test images (${formatDuration(teacher.seconds)}).`
      : 'Teacher: no number.',
    '',
    `## All rows${spread}`,
    '',
    "Top-1 is the fraction of test images classified correctly. k-NN: the pretraining job's own weighted k-NN (k=20)",
    'at its last step. Times are wall-clock per job (two jobs ran side by side, one core each).',
    '',
    '| row | pretraining | linear probe top-1 | fine-tune top-1 | k-NN top-1 | final loss | pretrain | probe | fine-tune |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.row} | ${r.label} | ${acc(r.probe)} | ${acc(r.finetune)} | ${r.knn.length ? acc(r.knn) : 'n/a'} | ${r.finalLoss.length ? meanSpread(r.finalLoss).mean.toFixed(4) : 'n/a'} | ${r.pretrainSeconds.length ? secs(r.pretrainSeconds) : '-'} | ${secs(r.probeSeconds)} | ${secs(r.finetuneSeconds)} |`,
    ),
    '',
    '## Table 5 — target (pixels vs teacher features), D-iGPT',
    '',
    '| target | linear probe top-1 | fine-tune top-1 |',
    '| --- | --- | --- |',
    line(by.get('pixels'), 'pixels'),
    line(by.get('digpt'), 'teacher features'),
    '',
    '## Table 7 — generative only vs generative + discriminative (teacher features)',
    '',
    '| objective | linear probe top-1 | fine-tune top-1 |',
    '| --- | --- | --- |',
    line(by.get('gen-only'), 'generative only'),
    line(by.get('digpt'), 'generative + discriminative (D-iGPT)'),
    '',
    '## Table 9 — the same teacher, three ways to use it',
    '',
    '| method | linear probe top-1 | fine-tune top-1 |',
    '| --- | --- | --- |',
    line(by.get('kd'), 'KD'),
    line(by.get('mae'), 'MAE (teacher targets)'),
    line(by.get('digpt'), 'D-iGPT'),
    line(by.get('scratch'), 'random init (no pretraining)'),
    '',
    "## The paper's orderings, here",
    '',
    'Each cell: the difference of the mean top-1 (first row minus second) ± two standard errors (seed-to-seed',
    `spread${i.seeds > 1 ? '' : ' — none with one seed —'} plus the binomial noise of ${i.data.test} test images, taken as independent for the two rows, which overstates it: both see the same images).`,
    "**holds**: the paper's ordering, beyond the noise; **reversed**: the opposite ordering, beyond the noise;",
    "**tie**: within the noise. The paper's results are ImageNet-1K with ViT-B and a CLIP teacher; only the",
    'direction is compared.',
    '',
    '| comparison | the paper | linear probe | fine-tune |',
    '| --- | --- | --- | --- |',
    ...CLAIMS.map((c) => {
      const ra = by.get(c.a);
      const rb = by.get(c.b);
      const probe = checkClaim(ra?.probe ?? [], rb?.probe ?? [], i.data.test);
      const ft = checkClaim(ra?.finetune ?? [], rb?.finetune ?? [], i.data.test);
      return `| ${c.what} | ${c.paper} | ${claimCell(probe)} | ${claimCell(ft)} |`;
    }),
    '',
    '## Plots',
    '',
    '![pretraining loss](pretrain-loss.png)',
    '',
    '![top-1](accuracy.png)',
    '',
    '## Jobs',
    '',
    '| job | wall-clock | steps | img/s (mean) | top-1 |',
    '| --- | --- | --- | --- | --- |',
    ...i.jobs.map(
      (j) =>
        `| ${j.id} | ${formatDuration(j.seconds)} | ${j.steps ?? '-'} | ${j.imgPerS !== undefined ? j.imgPerS.toFixed(1) : '-'} | ${j.top1 !== undefined ? j.top1.toFixed(4) : '-'} |`,
    ),
    '',
    "Every number is in `results.json`; the run folders are under `runs/`, the experiment's data under `data/`",
    "(train images as `train-*`, the test images as `val-*`, so the jobs' evaluations are on test images).",
    '',
  ].join('\n');
  const reportPath = nodePath.join(i.out, 'report.md');
  fs.writeFileSync(reportPath, md);
  return { report: reportPath, results: resultsPath };
}

/**
 * Writes report.md and the plots again from a finished experiment's results.json (e.g. after the report's format
 * changed). Returns the paths written.
 */
export async function rewriteReport(out: string): Promise<{ report: string; results: string }> {
  const path = nodePath.join(out, 'results.json');
  if (!fs.existsSync(path)) throw new Error(`${path} does not exist: not a finished experiment folder`);
  let r: {
    command?: string;
    started?: string;
    seconds?: number;
    machine?: string;
    budget?: Record<string, unknown>;
    seeds?: number;
    data?: ReportInput['data'] & { source?: string };
    jobs?: JobResult[];
  };
  try {
    r = JSON.parse(fs.readFileSync(path, 'utf8'), (_k, v: unknown) =>
      v === 'all' ? Infinity : v,
    ) as typeof r;
  } catch (e) {
    throw new Error(`${path}: not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  for (const key of ['command', 'started', 'seconds', 'machine', 'budget', 'seeds', 'data', 'jobs'] as const)
    if (r[key] === undefined) throw new Error(`${path}: no '${key}'`);
  const { source, ...data } = r.data as ReportInput['data'] & { source?: string };
  return writeReport({
    out,
    budget: r.budget as unknown as Budget,
    seeds: r.seeds as number,
    source: source ?? '',
    data,
    started: new Date(r.started as string),
    seconds: r.seconds as number,
    command: r.command as string,
    jobs: r.jobs as JobResult[],
    machine: r.machine as string,
  });
}
