// The ablation report: report.md (the teacher, the recipe chosen on val, the paper's Tables 5, 7, 8, 9 plus a scratch
// row, the orderings with their noise), results.json and PNG plots.
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { getPreset } from '../../engine/config.js';
import { formatDuration } from '../cli/progress.js';
import {
  candidate,
  chooseRecipe,
  decoderRows,
  OBJECTIVE_ROWS,
  RECIPE,
  rowsOf,
  stepsFor,
  type Budget,
  type JobResult,
  type RowDef,
} from './design.js';
import { barChartSvg, lineChartSvg, writePng, type Series } from './plots.js';

/** One sitting of an experiment: a run of the command until it ended (or was killed, then up to its last update). */
export interface Sitting {
  readonly started: string;
  seconds: number;
  readonly command: string;
}

export interface ReportInput {
  readonly out: string;
  readonly budget: Budget;
  readonly seeds: number;
  readonly source: string;
  readonly data: {
    train: number;
    trainOf: number;
    val: number;
    test: number;
    testOf: number;
    classes: string[];
  };
  readonly sittings: readonly Sitting[];
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
  readonly group: RowDef['group'];
  readonly objective: string | null;
  readonly target: RowDef['target'];
  readonly decDepth: number | null;
  readonly probe: number[];
  readonly finetune: number[];
  readonly knn: number[];
  readonly pretrainSeconds: number[];
  readonly probeSeconds: number[];
  readonly finetuneSeconds: number[];
  readonly pretrainImgPerS: number[];
  readonly finalLoss: number[];
}

export function summarise(
  jobs: readonly JobResult[],
  rows: readonly RowDef[] = OBJECTIVE_ROWS,
): RowSummary[] {
  return rows.map((r) => {
    const of = (kind: JobResult['kind']): JobResult[] =>
      jobs.filter((j) => j.row === r.name && j.kind === kind);
    const num = (xs: (number | undefined)[]): number[] => xs.filter((x): x is number => x !== undefined);
    return {
      row: r.name,
      label: r.label,
      group: r.group,
      objective: r.objective ?? null,
      target: r.target,
      decDepth: r.decDepth ?? null,
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

function claimCell(c: ClaimCheck, words: Record<'holds' | 'reversed' | 'tie', string> = WORDS): string {
  if (c.verdict === 'n/a') return 'n/a';
  const sign = c.diff >= 0 ? '+' : '−';
  return `${sign}${Math.abs(c.diff).toFixed(4)} ± ${c.noise.toFixed(4)}: **${words[c.verdict]}**`;
}

const WORDS = { holds: 'holds', reversed: 'reversed', tie: 'tie' } as const;
/** For comparisons where no direction is claimed (the decoder depths). */
const NEUTRAL = { holds: 'higher', reversed: 'lower', tie: 'tie' } as const;

/** A RandomResizedCrop's range in words (1: no crop). */
function cropText(min: number): string {
  return min >= 1 ? 'the whole image (flipped)' : `crop ${min}-1`;
}

/** The recipe choice as results.json records it. */
export interface Selection {
  readonly encoder: string;
  readonly valImages: number;
  readonly rule: string;
  readonly candidates: {
    name: string;
    blr: number;
    layer_decay: number;
    crop_min: number;
    valTop1: number | null;
  }[];
  readonly probeValTop1: number | null;
  readonly winner: string | null;
}

export function selectionOf(jobs: readonly JobResult[], valImages: number): Selection {
  const sel = jobs.filter((j) => j.kind === 'select');
  const scored = sel.filter((j) => j.top1 !== undefined && j.candidate !== undefined);
  return {
    encoder: 'pretrain digpt/s0 (the seed-0 D-iGPT encoder, pretrained on the train images only)',
    valImages,
    rule: 'the highest top-1 on the validation images (carved from the train split; the test images are not read)',
    candidates: sel.map((j) => {
      const c = candidate(j.candidate as string);
      return {
        name: c.name,
        blr: c.blr,
        layer_decay: c.layer_decay,
        crop_min: c.crop_min,
        valTop1: j.top1 ?? null,
      };
    }),
    probeValTop1: jobs.find((j) => j.kind === 'select-probe')?.top1 ?? null,
    winner: scored.length
      ? chooseRecipe(scored.map((j) => ({ name: j.candidate as string, valTop1: j.top1 as number })))
      : null,
  };
}

/** Writes report.md, results.json, pretrain-loss.png and accuracy.png into `out`. */
export async function writeReport(i: ReportInput): Promise<{ report: string; results: string }> {
  const b = i.budget;
  const allRows = rowsOf(b);
  const rows = summarise(i.jobs, allRows);
  const by = new Map(rows.map((r) => [r.row, r]));
  const teacher = i.jobs.find((j) => j.kind === 'teacher');
  const selection = selectionOf(i.jobs, i.data.val);
  const winner = selection.winner ? candidate(selection.winner) : undefined;
  const total = i.sittings.reduce((a, s) => a + s.seconds, 0);
  const started = i.sittings[0]?.started ?? new Date().toISOString();
  const trainSteps = (epochs: number): number => stepsFor(epochs, i.data.train, b.batch);
  const bestOf = (key: 'probe' | 'finetune'): { row: string; value: number } | undefined =>
    rows
      .map((r) => ({ row: r.row, value: meanSpread(r[key]).mean }))
      .filter((x) => Number.isFinite(x.value))
      .sort((x, y) => y.value - x.value)[0];
  const bestProbe = bestOf('probe');
  const bestFinetune = bestOf('finetune');
  const bestSingle = Math.max(
    ...rows.flatMap((r) => [...r.probe, ...r.finetune]).filter((v) => Number.isFinite(v)),
    -Infinity,
  );
  const teacherAbove = teacher?.top1 !== undefined && teacher.top1 > bestSingle;

  // --- plots ---
  const series: Series[] = [];
  for (const r of allRows.filter((x) => x.objective)) {
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
  const pretrainSteps = trainSteps(b.pretrainEpochs);
  const window = Math.max(1, Math.round(pretrainSteps / 50));
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
      groups: [
        ...rows.map((r) => ({
          name: r.row,
          values: [r.probe, r.finetune].map((v) => {
            const s = meanSpread(v);
            return { value: s.mean, spread: s.spread };
          }),
        })),
        ...(teacher?.top1 !== undefined
          ? [{ name: 'teacher', values: [{ value: NaN }, { value: teacher.top1 }] }]
          : []),
      ],
    }),
    nodePath.join(i.out, 'accuracy.png'),
  );

  // --- results.json ---
  const results = {
    experiment: 'ablations',
    round: 2,
    command: i.command,
    started,
    seconds: total,
    sittings: i.sittings,
    machine: i.machine,
    budget: b,
    seeds: i.seeds,
    data: { source: i.source, ...i.data, split: 'split.json' },
    steps: {
      teacher: trainSteps(b.teacherEpochs),
      pretrain: pretrainSteps,
      finetune: trainSteps(b.finetuneEpochs),
    },
    recipe: { pretrainBlr: RECIPE.pretrainBlr, teacher: RECIPE.teacher, finetune: winner ?? null },
    teacher: teacher
      ? {
          top1: teacher.top1,
          seconds: teacher.seconds,
          steps: teacher.steps,
          epochs: b.teacherEpochs,
          recipe: RECIPE.teacher,
          aboveEveryStudent: teacherAbove,
        }
      : null,
    selection,
    groups: {
      objectives: rows.filter((r) => r.group === 'objectives').map((r) => r.row),
      decoder: ['digpt', ...rows.filter((r) => r.group === 'decoder').map((r) => r.row)],
    },
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
  const t = RECIPE.teacher;
  const presetModel = getPreset(b.preset).model;
  const presetDepth = presetModel.dec_depth;
  const ep = (n: number): string => `${n} epoch${n === 1 ? '' : 's'}`;
  const decoder = [by.get('digpt'), ...decoderRows(b.decoderDepths).map((r) => by.get(r.name))];
  const depthOf = (r: RowSummary): number => r.decDepth ?? presetDepth;
  const claimRow = (c: Claim, words?: typeof NEUTRAL): string => {
    const ra = by.get(c.a);
    const rb = by.get(c.b);
    const probe = checkClaim(ra?.probe ?? [], rb?.probe ?? [], i.data.test);
    const ft = checkClaim(ra?.finetune ?? [], rb?.finetune ?? [], i.data.test);
    return `| ${c.what} | ${c.paper} | ${claimCell(probe, words)} | ${claimCell(ft, words)} |`;
  };
  const md = [
    `# Ablations on Fashion-MNIST (budget \`${b.name}\`), second round`,
    '',
    `\`${i.command}\` — started ${started}, ${formatDuration(total)} in all over ${i.sittings.length} sitting${i.sittings.length === 1 ? '' : 's'} (${i.machine}).`,
    '',
    '## Data: train, validation, test',
    '',
    `- train: ${i.data.train} of the ${i.data.trainOf} train images, for every job (pretraining, teacher, fine-tunes, probes);`,
    `- validation: ${i.data.val} other train images, carved out (seeded) before anything trains: the fine-tune recipe is chosen on them;`,
    `- test: ${i.data.test} of the ${i.data.testOf} test images: every number in the tables. Nothing is chosen on them: each number is`,
    "  that of a job's last step. `split.json` lists the source indices of the three parts.",
    '',
    `Model: \`${b.preset}\` at 32 px. Seeds: ${i.seeds}; every row has the same budget.`,
    '',
    '| job | length | steps | batch | recipe |',
    '| --- | --- | --- | --- | --- |',
    `| teacher | ${ep(b.teacherEpochs)} | ${trainSteps(b.teacherEpochs)} | ${b.batch} | supervised from scratch, blr ${t.blr}, ${cropText(t.crop_min)}, no layer decay, smoothing ${t.smoothing}, no mixup/cutmix/erasing/drop path |`,
    `| pretraining (each row, each seed) | ${ep(b.pretrainEpochs)} | ${pretrainSteps} | ${b.batch} | blr ${RECIPE.pretrainBlr}, 10% warm-up, cosine; k-NN at every epoch's end |`,
    `| fine-tune (each row, each seed) | ${ep(b.finetuneEpochs)} | ${trainSteps(b.finetuneEpochs)} | ${b.batch} | ${winner ? `\`${winner.name}\` (chosen on val): blr ${winner.blr}, layer decay ${winner.layer_decay}, ${cropText(winner.crop_min)}, smoothing ${winner.smoothing}, no mixup/cutmix/erasing/drop path` : 'n/a'} |`,
    `| linear probe | ${b.probeEpochs} epochs | | | frozen features, AdamW |`,
    '',
    '## The teacher',
    '',
    teacher?.top1 !== undefined
      ? `Top-1 **${teacher.top1.toFixed(4)}** on the ${i.data.test} test images after ${ep(b.teacherEpochs)} (${teacher.steps} steps, ${formatDuration(teacher.seconds)}, ${teacher.imgPerS?.toFixed(0) ?? '?'} img/s): the preset's encoder as a classifier, made by \`digpt finetune --from scratch\` as above. ` +
        `The best student: linear probe ${bestProbe ? `${bestProbe.value.toFixed(4)} (${bestProbe.row})` : 'n/a'}, fine-tune ${bestFinetune ? `${bestFinetune.value.toFixed(4)} (${bestFinetune.row})` : 'n/a'}; ` +
        `the best single student job: ${Number.isFinite(bestSingle) ? bestSingle.toFixed(4) : 'n/a'}. ` +
        (teacherAbove
          ? '**The teacher is above every student.**'
          : '**The teacher is not above every student.**')
      : 'Teacher: no number.',
    '',
    '## The fine-tune recipe, chosen on the validation images',
    '',
    `Each candidate fine-tunes ${selection.encoder} for ${ep(b.finetuneEpochs)} on the train images and is scored on the`,
    `${selection.valImages} validation images; the test images are not read. Rule: ${selection.rule}. The linear probe of the same`,
    `encoder on the same validation images: ${selection.probeValTop1 !== null ? selection.probeValTop1.toFixed(4) : 'n/a'}.`,
    '',
    '| recipe | blr | layer decay | crop | val top-1 | minus the val probe |',
    '| --- | --- | --- | --- | --- | --- |',
    ...selection.candidates.map((c) => {
      const v = c.valTop1;
      const mark = c.name === selection.winner ? '**' : '';
      const vsProbe =
        v !== null && selection.probeValTop1 !== null
          ? `${v - selection.probeValTop1 >= 0 ? '+' : '−'}${Math.abs(v - selection.probeValTop1).toFixed(4)}`
          : 'n/a';
      return `| ${mark}${c.name}${mark} | ${c.blr} | ${c.layer_decay} | ${cropText(c.crop_min)} | ${v !== null ? v.toFixed(4) : 'n/a'} | ${vsProbe} |`;
    }),
    '',
    selection.winner
      ? `Chosen: \`${selection.winner}\`. Every fine-tune below (all rows, all seeds) uses it.`
      : 'No recipe was chosen.',
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
    `## Table 8 — decoder depth (D-iGPT, teacher features, decoder width ${presetModel.dec_dim})`,
    '',
    `Both decoders get the depth; depth ${presetDepth} is the preset's, i.e. the digpt row (the same runs). The other depths are the`,
    "digpt row's config.json with `dec_depth` changed, trained from step 0 by the workbench (`digpt resume` of that folder).",
    '',
    '| decoder depth | linear probe top-1 | fine-tune top-1 | k-NN top-1 | pretrain time |',
    '| --- | --- | --- | --- | --- |',
    ...decoder.map((r) =>
      r
        ? `| ${depthOf(r)} | ${acc(r.probe)} | ${acc(r.finetune)} | ${r.knn.length ? acc(r.knn) : 'n/a'} | ${r.pretrainSeconds.length ? secs(r.pretrainSeconds) : '-'} |`
        : '| ? | n/a | n/a | n/a | - |',
    ),
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
    ...CLAIMS.map((c) => claimRow(c)),
    '',
    '### Decoder depth',
    '',
    'The same margins; no direction is claimed for the paper (its Table 8 is not restated here): **higher** / **lower**',
    'means beyond the noise, **tie** within it.',
    '',
    '| comparison | | linear probe | fine-tune |',
    '| --- | --- | --- | --- |',
    ...decoderRows(b.decoderDepths).map((r) =>
      claimRow(
        { what: `decoder depth ${r.decDepth} vs ${presetDepth}`, a: r.name, b: 'digpt', paper: 'Table 8' },
        NEUTRAL,
      ),
    ),
    '',
    '### Fine-tune vs linear probe (what the recipe is for)',
    '',
    "Per row: the fine-tune's mean top-1 minus the linear probe's, with the same margins; **holds**: the fine-tune is",
    'higher beyond the noise, as in the paper and in MAE.',
    '',
    '| row | linear probe | fine-tune | fine-tune minus probe |',
    '| --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.row} | ${acc(r.probe)} | ${acc(r.finetune)} | ${claimCell(checkClaim(r.finetune, r.probe, i.data.test))} |`,
    ),
    '',
    '### The teacher vs the students',
    '',
    '| comparison | linear probe | fine-tune |',
    '| --- | --- | --- |',
    ...(teacher?.top1 !== undefined
      ? rows.map(
          (r) =>
            `| teacher vs ${r.row} | ${claimCell(checkClaim([teacher.top1 as number], r.probe, i.data.test))} | ${claimCell(checkClaim([teacher.top1 as number], r.finetune, i.data.test))} |`,
        )
      : ['| n/a | n/a | n/a |']),
    '',
    '## Plots',
    '',
    '![pretraining loss](pretrain-loss.png)',
    '',
    '![top-1](accuracy.png)',
    '',
    '## Jobs',
    '',
    '| job | wall-clock | steps | img/s (mean) | top-1 | split scored |',
    '| --- | --- | --- | --- | --- | --- |',
    ...i.jobs.map(
      (j) =>
        `| ${j.id} | ${formatDuration(j.seconds)} | ${j.steps ?? '-'} | ${j.imgPerS !== undefined ? j.imgPerS.toFixed(1) : '-'} | ${j.top1 !== undefined ? j.top1.toFixed(4) : j.knnTop1 !== undefined ? `k-NN ${j.knnTop1.toFixed(4)}` : '-'} | ${j.kind === 'select' || j.kind === 'select-probe' ? 'validation' : j.kind === 'encoder' ? '-' : 'test'} |`,
    ),
    '',
    '## Sittings',
    '',
    '| started | wall-clock | command |',
    '| --- | --- | --- |',
    ...i.sittings.map((s) => `| ${s.started} | ${formatDuration(s.seconds)} | \`${s.command}\` |`),
    '',
    "Every number is in `results.json`; each job's result is in `jobs/` (with the settings it ran with), the run",
    "folders are under `runs/`, the experiment's data under `data/` (train images as `train-*`, the test images as",
    "`val-*`, so the jobs' own evaluations are on test images) and `data-select/` (the same train images, the",
    'validation images as `val-*`).',
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
    round?: number;
    command?: string;
    sittings?: Sitting[];
    machine?: string;
    budget?: Record<string, unknown>;
    seeds?: number;
    data?: ReportInput['data'] & { source?: string; split?: string };
    jobs?: JobResult[];
  };
  try {
    r = JSON.parse(fs.readFileSync(path, 'utf8'), (_k, v: unknown) =>
      v === 'all' ? Infinity : v,
    ) as typeof r;
  } catch (e) {
    throw new Error(`${path}: not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (r.round !== 2)
    throw new Error(
      `${path}: results of the first round's runner (no 'round': 2); its report stays as it was written`,
    );
  for (const key of ['command', 'sittings', 'machine', 'budget', 'seeds', 'data', 'jobs'] as const)
    if (r[key] === undefined) throw new Error(`${path}: no '${key}'`);
  const {
    source,
    split: _split,
    ...data
  } = r.data as ReportInput['data'] & { source?: string; split?: string };
  return writeReport({
    out,
    budget: r.budget as unknown as Budget,
    seeds: r.seeds as number,
    source: source ?? '',
    data,
    sittings: r.sittings as Sitting[],
    command: r.command as string,
    jobs: r.jobs as JobResult[],
    machine: r.machine as string,
  });
}
