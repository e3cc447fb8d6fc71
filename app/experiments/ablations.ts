// `digpt experiment ablations`: the paper's ablations (Tables 5, 7, 9) at CPU scale on Fashion-MNIST, every job in a worker.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { initBackend } from '../../engine/backend.js';
import { getPreset } from '../../engine/config.js';
import { VitClassifier } from '../../engine/models/vit.js';
import { Rng } from '../../engine/rng.js';
import { formatDuration } from '../cli/progress.js';
import { scanDataset } from '../datasets/index.js';
import { encodeIdx, readIdx } from '../datasets/idx.js';
import { startJob, type JobHandle } from '../jobs/host.js';
import type { JobSpec } from '../jobs/protocol.js';
import { exportClassifier, sourceFile, vitConfigOfDigpt } from '../train/finetune-run.js';
import { writeReport } from './report.js';

export const BUDGET_NAMES = ['smoke', 'small', 'full'] as const;
export type BudgetName = (typeof BUDGET_NAMES)[number];

export function isBudgetName(s: string): s is BudgetName {
  return (BUDGET_NAMES as readonly string[]).includes(s);
}

/** How much each job of the experiment runs. */
export interface Budget {
  readonly name: BudgetName;
  readonly preset: string;
  /** Train images drawn (seeded) from the train split; Infinity = all. */
  readonly trainImages: number;
  /** Test images drawn (seeded) from the test split; Infinity = all. */
  readonly testImages: number;
  readonly seeds: number;
  readonly batch: number;
  readonly teacherSteps: number;
  readonly pretrainSteps: number;
  readonly finetuneSteps: number;
  readonly probeEpochs: number;
  /** Jobs run at once (each is one worker thread on one core: tfjs-wasm is single-threaded under Node). */
  readonly concurrency: number;
}

/**
 * The budgets. Step counts come from measured speeds on 2 cores (micro-32, batch 32): pretraining 60-100 img/s,
 * fine-tuning 100-150 img/s per job, two jobs side by side (one core each). `full` is sized for under 3 hours
 * with 2 seeds on a quiet machine: about 1 epoch of pretraining and 0.6 of fine-tuning per job, 2 teacher epochs
 * (see docs/ablations-small.md for the times measured with `small`). It keeps digpt-micro-32: digpt-tiny-32 is
 * ~18x the compute per image (~11 img/s, BENCHMARKS.md), which would leave each of its 23 jobs under 1/6 epoch.
 */
export const BUDGETS: Readonly<Record<BudgetName, Budget>> = {
  smoke: {
    name: 'smoke',
    preset: 'digpt-micro-32',
    trainImages: 512,
    testImages: 256,
    seeds: 1,
    batch: 32,
    teacherSteps: 16,
    pretrainSteps: 6,
    finetuneSteps: 6,
    probeEpochs: 10,
    concurrency: 2,
  },
  small: {
    name: 'small',
    preset: 'digpt-micro-32',
    trainImages: 5000,
    testImages: 2000,
    seeds: 1,
    batch: 32,
    teacherSteps: 400,
    pretrainSteps: 250,
    finetuneSteps: 200,
    probeEpochs: 50,
    concurrency: 2,
  },
  full: {
    name: 'full',
    preset: 'digpt-micro-32',
    trainImages: Infinity,
    testImages: Infinity,
    seeds: 2,
    batch: 32,
    teacherSteps: 3750,
    pretrainSteps: 1800,
    finetuneSteps: 1200,
    probeEpochs: 90,
    concurrency: 2,
  },
};

/** A row of the tables: an encoder and how it was pretrained. */
export interface RowDef {
  readonly name: 'digpt' | 'gen-only' | 'kd' | 'mae' | 'pixels' | 'scratch';
  readonly label: string;
  /** Pretraining objective; undefined for the randomly initialised encoder. */
  readonly objective?: string;
  readonly target: 'teacher' | 'pixels' | 'none';
}

export const ROWS: readonly RowDef[] = [
  { name: 'digpt', label: 'D-iGPT (gen + dis), teacher features', objective: 'digpt', target: 'teacher' },
  { name: 'gen-only', label: 'generative only, teacher features', objective: 'gen-only', target: 'teacher' },
  { name: 'kd', label: 'KD (feature distillation)', objective: 'kd', target: 'teacher' },
  { name: 'mae', label: 'MAE with teacher targets', objective: 'mae', target: 'teacher' },
  { name: 'pixels', label: 'D-iGPT, pixel targets', objective: 'digpt', target: 'pixels' },
  { name: 'scratch', label: 'random init (no pretraining)', target: 'none' },
];

/** Base lrs (per 256 images): the demo's for pretraining, the teacher README's for the teacher. */
export const RECIPE = {
  pretrainBlr: 5e-3,
  teacherBlr: 4e-3,
  /**
   * The short fine-tunes: the same light recipe for every row (mixup/cutmix/erasing off: they need long runs).
   * blr 1e-2: with `small`, 2e-3 left every fine-tune under its linear probe (digpt 0.35, scratch 0.23 after 200
   * steps); 1e-2 gave 0.49 / 0.41 and 3e-2 0.49 / 0.45.
   */
  finetune: { blr: 1e-2, layerDecay: 0.75, dropPath: 0, smoothing: 0.1, mixup: 0, cutmix: 0, erase: 0 },
} as const;

export interface AblationOptions {
  readonly budget: BudgetName;
  /** Dataset folder (Fashion-MNIST IDX files); default: see defaultDataDir. */
  readonly data?: string;
  /** Output folder; default runs/ablations-<budget>-<stamp>. */
  readonly out?: string;
  /** Seeds per pretraining/evaluation (the teacher is trained once, seed 0). */
  readonly seeds?: number;
  /** Where progress lines go (stderr). */
  readonly log?: (line: string) => void;
  /** The command line, for the report. */
  readonly command?: string;
}

/** What one finished job measured. */
export interface JobResult {
  readonly id: string;
  readonly kind: 'teacher' | 'pretrain' | 'probe' | 'finetune' | 'encoder';
  readonly row?: RowDef['name'];
  readonly seed: number;
  readonly seconds: number;
  readonly dir?: string;
  readonly steps?: number;
  /** Mean images/s over the job's training steps. */
  readonly imgPerS?: number;
  /** Top-1 on the test images (probe: the linear probe; finetune/teacher: the classifier at its last step). */
  readonly top1?: number;
  /** Pretraining: k-NN top-1 on the test images at the last step. */
  readonly knnTop1?: number;
  /** Pretraining: [step, loss] per step. */
  readonly losses?: [number, number][];
}

export interface AblationResult {
  readonly out: string;
  readonly report: string;
  readonly results: string;
  readonly seconds: number;
}

const REPO = nodePath.resolve(import.meta.dirname, '..', '..');

/** /usr/share/datasets/fashion-mnist (the dataset-fashion-mnist package), else ../shared/datasets/fashion-mnist. */
export function defaultDataDir(): string {
  const candidates = [
    '/usr/share/datasets/fashion-mnist',
    nodePath.resolve(REPO, '..', 'shared', 'datasets', 'fashion-mnist'),
  ];
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found)
    throw new Error(
      `no Fashion-MNIST found at ${candidates.join(' or ')} (apt-get install dataset-fashion-mnist, or give --data DIR)`,
    );
  return found;
}

/** Seeded subset of `n` of `count` indices (all when n >= count), in increasing order. */
export function pickSubset(count: number, n: number, seed: number): number[] {
  if (n >= count) return Array.from({ length: count }, (_, i) => i);
  const perm = new Rng(seed).permutation(count);
  return Array.from(perm.subarray(0, n)).sort((a, b) => a - b);
}

/**
 * Writes the experiment's dataset: the chosen train images as `train-*` and the chosen test images as `val-*` IDX
 * files, so that every job trains on train images and its "validation" evaluations are on held-out test images
 * (nothing is selected on them: the numbers reported are those of the last step).
 */
export async function prepareData(
  src: string,
  dir: string,
  b: Pick<Budget, 'trainImages' | 'testImages'>,
): Promise<{ train: number; test: number; classes: string[]; trainOf: number; testOf: number }> {
  const scan = await scanDataset(src, { valFraction: 0 });
  if (scan.kind !== 'idx')
    throw new Error(
      `${src}: the ablations read IDX files (Fashion-MNIST's own format); this is a ${scan.layout} folder`,
    );
  fs.mkdirSync(dir, { recursive: true });
  const sizes: Record<'train' | 'test', [number, number]> = { train: [0, 0], test: [0, 0] };
  for (const [from, to, want] of [
    ['train', 'train', b.trainImages],
    ['test', 'val', b.testImages],
  ] as const) {
    const split = scan.splits.find((s) => s.name === from);
    if (!split || split.source.kind !== 'idx')
      throw new Error(`${src}: no ${from} split (the ablations need train and test/t10k IDX files)`);
    const s = split.source;
    const images = await readIdx(nodePath.join(scan.root, s.images));
    const labels = await readIdx(nodePath.join(scan.root, s.labels));
    const members = s.indices ?? Array.from({ length: s.count }, (_, i) => i);
    const chosen = pickSubset(members.length, want, 0).map((i) => members[i] as number);
    const per = s.rows * s.cols;
    const img = new Uint8Array(chosen.length * per);
    const lab = new Uint8Array(chosen.length);
    chosen.forEach((k, i) => {
      img.set(images.data.subarray(k * per, (k + 1) * per), i * per);
      lab[i] = labels.data[k] as number;
    });
    fs.writeFileSync(
      nodePath.join(dir, `${to}-images-idx3-ubyte`),
      await encodeIdx([chosen.length, s.rows, s.cols], img, false),
    );
    fs.writeFileSync(
      nodePath.join(dir, `${to}-labels-idx1-ubyte`),
      await encodeIdx([chosen.length], lab, false),
    );
    sizes[from] = [chosen.length, members.length];
  }
  fs.writeFileSync(nodePath.join(dir, 'classes.txt'), `${scan.classes.join('\n')}\n`);
  return {
    train: sizes.train[0],
    trainOf: sizes.train[1],
    test: sizes.test[0],
    testOf: sizes.test[1],
    classes: scan.classes,
  };
}

/** One job of the plan; `spec` is built when its dependencies are done. */
interface Task {
  readonly id: string;
  readonly kind: JobResult['kind'];
  readonly row?: RowDef['name'];
  readonly seed: number;
  readonly deps: readonly string[];
  /** The job for the worker; absent for the random encoder, which is made in-process at `path`. */
  readonly spec?: () => JobSpec;
  readonly path?: string;
}

/** Every job of the experiment in a sensible start order, with its dependencies. */
function plan(
  b: Budget,
  seeds: number,
  data: string,
  trainCount: number,
  out: string,
  teacherFile: string,
): Task[] {
  const runs = nodePath.join(out, 'runs');
  const ft = RECIPE.finetune;
  const finetune = (from: string, dirName: string, seed: number): JobSpec => ({
    kind: 'finetune',
    data,
    from,
    ...(from === 'scratch' ? { preset: b.preset } : {}),
    steps: b.finetuneSteps,
    batch: b.batch,
    accum: 1,
    seed,
    blr: ft.blr,
    // 10% warm-up, in epochs of the train subset
    warmupEpochs: (0.1 * b.finetuneSteps) / Math.max(1, Math.floor(trainCount / b.batch)),
    out: nodePath.join(runs, dirName),
    checkpointEvery: b.finetuneSteps,
    layerDecay: ft.layerDecay,
    dropPath: ft.dropPath,
    smoothing: ft.smoothing,
    mixup: ft.mixup,
    cutmix: ft.cutmix,
    erase: ft.erase,
  });
  const tasks: Task[] = [
    {
      id: 'teacher',
      kind: 'teacher',
      seed: 0,
      deps: [],
      spec: () => ({
        kind: 'finetune',
        data,
        from: 'scratch',
        preset: b.preset,
        steps: b.teacherSteps,
        batch: b.batch,
        accum: 1,
        seed: 0,
        blr: RECIPE.teacherBlr,
        warmupEpochs: (0.05 * b.teacherSteps) / Math.max(1, Math.floor(trainCount / b.batch)),
        out: nodePath.join(runs, 'teacher'),
        checkpointEvery: b.teacherSteps,
        layerDecay: 1,
        dropPath: 0,
        smoothing: 0.1,
        mixup: 0,
        cutmix: 0,
        erase: 0,
      }),
    },
  ];
  // rows that need no teacher first, so they run beside it
  const order = [...ROWS].sort((a, c) => Number(a.target === 'teacher') - Number(c.target === 'teacher'));
  for (let seed = 0; seed < seeds; seed++) {
    for (const row of order) {
      const name = `${row.name}/s${seed}`;
      if (row.objective) {
        tasks.push({
          id: `pretrain ${name}`,
          kind: 'pretrain',
          row: row.name,
          seed,
          deps: row.target === 'teacher' ? ['teacher'] : [],
          spec: () => ({
            kind: 'pretrain',
            data,
            preset: b.preset,
            teacher: row.target === 'teacher' ? teacherFile : 'pixels',
            objective: row.objective as string,
            steps: b.pretrainSteps,
            batch: b.batch,
            accum: 1,
            seed,
            blr: RECIPE.pretrainBlr,
            out: nodePath.join(runs, `pretrain-${row.name}-s${seed}`),
            checkpointEvery: b.pretrainSteps,
          }),
        });
      }
      const encoder = row.objective
        ? nodePath.join(runs, `pretrain-${row.name}-s${seed}`)
        : nodePath.join(runs, `scratch-encoder-s${seed}.safetensors`);
      const dep = row.objective ? [`pretrain ${name}`] : [`encoder ${name}`];
      if (!row.objective)
        tasks.push({
          id: `encoder ${name}`,
          kind: 'encoder',
          row: row.name,
          seed,
          deps: [],
          path: encoder,
        });
      tasks.push({
        id: `probe ${name}`,
        kind: 'probe',
        row: row.name,
        seed,
        deps: dep,
        spec: () => ({ kind: 'probe', data, source: encoder, seed, epochs: b.probeEpochs }),
      });
      tasks.push({
        id: `finetune ${name}`,
        kind: 'finetune',
        row: row.name,
        seed,
        deps: dep,
        spec: () => finetune(row.objective ? encoder : 'scratch', `finetune-${row.name}-s${seed}`, seed),
      });
    }
  }
  return tasks;
}

/** The randomly initialised encoder of the scratch row: the classifier a 'scratch' fine-tune of this seed starts from. */
async function randomEncoder(
  path: string,
  preset: string,
  classes: readonly string[],
  seed: number,
): Promise<void> {
  await initBackend();
  const vit = new VitClassifier(vitConfigOfDigpt(getPreset(preset).model, classes.length), seed);
  try {
    fs.mkdirSync(nodePath.dirname(path), { recursive: true });
    exportClassifier(path, vit, classes);
  } finally {
    vit.dispose();
  }
}

/** [step, loss] of each training line of a run's metrics.jsonl. */
export function readLosses(dir: string): [number, number][] {
  const p = nodePath.join(dir, 'metrics.jsonl');
  if (!fs.existsSync(p)) return [];
  const out: [number, number][] = [];
  for (const line of fs.readFileSync(p, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as { step?: number; loss?: number };
    if (typeof r.step === 'number' && typeof r.loss === 'number') out.push([r.step, r.loss]);
  }
  return out;
}

/** Runs one job in a worker, printing its progress; resolves to what it measured, rejects on failure. */
function runTask(
  t: Task,
  spec: JobSpec,
  log: (line: string) => void,
  handles: Set<JobHandle>,
): Promise<Omit<JobResult, 'id' | 'kind' | 'seed' | 'seconds'>> {
  const handle = startJob(spec);
  handles.add(handle);
  let total = 0;
  let dir: string | undefined;
  let lastPrint = 0;
  let t0 = performance.now();
  let startStep = 0;
  let top1: number | undefined;
  let knnTop1: number | undefined;
  let failure: string | undefined;
  const rates: number[] = [];
  handle.on('event', (e) => {
    switch (e.type) {
      case 'run':
        total = e.totalSteps;
        dir = e.dir;
        t0 = performance.now();
        startStep = e.startStep;
        break;
      case 'step': {
        const r = e.record;
        rates.push(r.img_per_s);
        const now = performance.now();
        if (now - lastPrint > 5000 || r.step === total) {
          lastPrint = now;
          const left = ((now - t0) / 1000 / Math.max(1, r.step - startStep)) * (total - r.step);
          log(
            `  ${t.id}: step ${r.step}/${total}  loss ${r.loss.toFixed(4)}  ${r.img_per_s.toFixed(0)} img/s  ETA ${formatDuration(left)}`,
          );
        }
        break;
      }
      case 'progress': {
        const now = performance.now();
        if (now - lastPrint > 5000 || e.done === e.total) {
          lastPrint = now;
          log(`  ${t.id}: ${e.phase} ${e.done}/${e.total}`);
        }
        break;
      }
      case 'eval':
        if (typeof e.record['val_top1'] === 'number') top1 = e.record['val_top1'];
        if (typeof e.record['knn_top1'] === 'number') knnTop1 = e.record['knn_top1'];
        break;
      case 'result':
        if (typeof e.result['top1'] === 'number') top1 = e.result['top1'];
        break;
      case 'log':
        if (e.level === 'warn') log(`  ${t.id}: warning: ${e.text}`);
        break;
      case 'error':
        failure = e.message;
        break;
      default:
        break;
    }
  });
  return handle.done().then((res) => {
    handles.delete(handle);
    if (failure ?? !res.ok) throw new Error(`${t.id}: ${failure ?? res.error ?? 'the engine worker failed'}`);
    const mean = rates.length ? rates.reduce((a, v) => a + v, 0) / rates.length : undefined;
    return {
      ...(dir ? { dir } : {}),
      ...(total ? { steps: total } : {}),
      ...(mean !== undefined ? { imgPerS: mean } : {}),
      ...(top1 !== undefined ? { top1 } : {}),
      ...(knnTop1 !== undefined ? { knnTop1 } : {}),
    };
  });
}

/** Rough time left: each unfinished job takes the mean time of the finished jobs of its kind (else of all). */
export function remainingSeconds(
  done: readonly Pick<JobResult, 'kind' | 'seconds'>[],
  left: readonly Pick<JobResult, 'kind'>[],
  concurrency: number,
): number {
  const mean = (xs: readonly Pick<JobResult, 'seconds'>[]): number =>
    xs.length ? xs.reduce((a, x) => a + x.seconds, 0) / xs.length : NaN;
  const all = mean(done);
  const sum = left.reduce((a, x) => {
    const m = mean(done.filter((d) => d.kind === x.kind));
    return a + (Number.isFinite(m) ? m : all);
  }, 0);
  return left.length ? sum / Math.max(1, concurrency) : 0;
}

/** Runs the whole experiment and writes report.md, results.json and the plots into the output folder. */
export async function runAblations(o: AblationOptions): Promise<AblationResult> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const b = BUDGETS[o.budget];
  const seeds = o.seeds ?? b.seeds;
  const src = nodePath.resolve(o.data ?? defaultDataDir());
  if (!fs.existsSync(src)) throw new Error(`dataset folder ${src} does not exist`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const out = nodePath.resolve(o.out ?? nodePath.join('runs', `ablations-${b.name}-${stamp}`));
  if (fs.existsSync(nodePath.join(out, 'runs')))
    throw new Error(`${out} already holds an experiment; give another --out`);
  const started = new Date();
  const t0 = performance.now();
  const dataDir = nodePath.join(out, 'data');
  log(`ablations (${b.name}): data ${src} -> ${dataDir}`);
  const data = await prepareData(src, dataDir, b);
  log(`  ${data.train} train images (of ${data.trainOf}), ${data.test} test images (of ${data.testOf})`);
  const teacherFile = nodePath.join(out, 'teacher.safetensors');
  const tasks = plan(b, seeds, dataDir, data.train, out, teacherFile);

  const results = new Map<string, JobResult>();
  const running = new Map<string, Promise<void>>();
  const handles = new Set<JobHandle>();
  const pending = [...tasks];
  let failed: Error | undefined;
  log(`  ${tasks.length} jobs, ${b.concurrency} at a time`);
  const start = (t: Task): void => {
    const ts = performance.now();
    log(`start ${t.id}`);
    const p = (async () => {
      let r: Omit<JobResult, 'id' | 'kind' | 'seed' | 'seconds'>;
      if (t.spec) r = await runTask(t, t.spec(), log, handles);
      else {
        await randomEncoder(t.path as string, b.preset, data.classes, t.seed);
        r = {};
      }
      if (t.kind === 'teacher') fs.copyFileSync(sourceFile(r.dir as string), teacherFile);
      const losses = t.kind === 'pretrain' && r.dir ? readLosses(r.dir) : undefined;
      const res: JobResult = {
        id: t.id,
        kind: t.kind,
        ...(t.row ? { row: t.row } : {}),
        seed: t.seed,
        seconds: (performance.now() - ts) / 1000,
        ...r,
        ...(losses ? { losses } : {}),
      };
      results.set(t.id, res);
      const acc = res.top1 !== undefined ? `  top-1 ${res.top1.toFixed(4)}` : '';
      const left = remainingSeconds(
        [...results.values()],
        tasks.filter((x) => !results.has(x.id)),
        b.concurrency,
      );
      log(
        `done ${t.id} in ${formatDuration(res.seconds)}${acc}  (${results.size}/${tasks.length} jobs, ${formatDuration((performance.now() - t0) / 1000)} elapsed, ETA ~${formatDuration(left)})`,
      );
    })()
      .catch((e: unknown) => {
        failed ??= e instanceof Error ? e : new Error(String(e));
      })
      .finally(() => running.delete(t.id));
    running.set(t.id, p);
  };
  while ((pending.length || running.size) && !failed) {
    while (running.size < b.concurrency && !failed) {
      const i = pending.findIndex((t) => t.deps.every((d) => results.has(d)));
      if (i < 0) break;
      start(pending.splice(i, 1)[0] as Task);
    }
    if (running.size === 0) break;
    await Promise.race(running.values());
  }
  if (failed) {
    await Promise.all([...handles].map((h) => h.kill()));
    throw failed;
  }
  if (pending.length) throw new Error(`jobs never became ready: ${pending.map((t) => t.id).join(', ')}`);

  const seconds = (performance.now() - t0) / 1000;
  const files = await writeReport({
    out,
    budget: b,
    seeds,
    source: src,
    data,
    started,
    seconds,
    command: o.command ?? `digpt experiment ablations --budget ${b.name}`,
    jobs: tasks.map((t) => results.get(t.id) as JobResult),
    machine: `${os.availableParallelism()} cores, Node ${process.versions.node}`,
  });
  log(`ablations: ${files.report} (${formatDuration(seconds)} in all)`);
  return { out, ...files, seconds };
}
