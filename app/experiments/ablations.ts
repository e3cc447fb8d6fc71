// `digpt experiment ablations`: the paper's ablations (Tables 5, 7, 9) at CPU scale on Fashion-MNIST, every job in a worker.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import type { Objective } from '../api/run-kinds.js';
import { Rng } from '../../engine/rng.js';
import { formatDuration } from '../cli/progress.js';
import { scanDataset } from '../datasets/index.js';
import { encodeIdx, readIdx } from '../datasets/idx.js';
import { startJob, type JobHandle } from '../jobs/host.js';
import type { JobSpec } from '../jobs/protocol.js';
import { runModelFile } from '../runs/checkpoint.js';
import { readMetrics } from '../runs/metrics.js';
import {
  BUDGETS,
  RECIPE,
  ROWS,
  type Budget,
  type BudgetName,
  type JobResult,
  type RowDef,
} from './design.js';
import { writeReport } from './report.js';

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
  /** The job for the engine. */
  readonly spec: () => JobSpec;
}

/** Every job of the experiment in a sensible start order, with its dependencies. */
function plan(
  b: Budget,
  seeds: number,
  data: string,
  trainCount: number,
  classes: readonly string[],
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
    warmup_epochs: (0.1 * b.finetuneSteps) / Math.max(1, Math.floor(trainCount / b.batch)),
    out: nodePath.join(runs, dirName),
    checkpoint_every: b.finetuneSteps,
    layer_decay: ft.layer_decay,
    drop_path: ft.drop_path,
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
        warmup_epochs: (0.05 * b.teacherSteps) / Math.max(1, Math.floor(trainCount / b.batch)),
        out: nodePath.join(runs, 'teacher'),
        checkpoint_every: b.teacherSteps,
        layer_decay: 1,
        drop_path: 0,
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
            objective: row.objective as Objective,
            steps: b.pretrainSteps,
            batch: b.batch,
            accum: 1,
            seed,
            blr: RECIPE.pretrainBlr,
            out: nodePath.join(runs, `pretrain-${row.name}-s${seed}`),
            checkpoint_every: b.pretrainSteps,
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
          spec: () => ({ kind: 'init', preset: b.preset, classes, seed, out: encoder }),
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

/** [step, loss] of each training line of a run's metrics.jsonl (through its one reader: a cut last line is left out). */
export function readLosses(dir: string): [number, number][] {
  return readMetrics(dir).flatMap((r) =>
    typeof r.step === 'number' && typeof r['loss'] === 'number'
      ? [[r.step, r['loss']] as [number, number]]
      : [],
  );
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
  const tasks = plan(b, seeds, dataDir, data.train, data.classes, out, teacherFile);

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
      const r = await runTask(t, t.spec(), log, handles);
      if (t.kind === 'teacher') fs.copyFileSync(runModelFile(r.dir as string), teacherFile);
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
