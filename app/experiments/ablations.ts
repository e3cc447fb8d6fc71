// `digpt experiment ablations`: the paper's ablations (Tables 5, 7, 8, 9) at CPU scale on Fashion-MNIST, every job in
// a worker; resumable: a finished job's result file is reused once verified, an unfinished run goes on from its checkpoint.
import { createHash } from 'node:crypto';
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
import { latestGoodCheckpoint } from '../runs/checkpoint.js';
import { RunLock } from '../runs/lock.js';
import { isStepLine, readMetrics } from '../runs/metrics.js';
import {
  BUDGETS,
  candidate,
  chooseRecipe,
  PLANNING_SPEEDS,
  plannedJobSeconds,
  RECIPE,
  rowsOf,
  stepsFor,
  type Budget,
  type BudgetName,
  type FinetuneRecipe,
  type JobResult,
  type PlanOptions,
  type RowDef,
} from './design.js';
import { writeReport, type Sitting } from './report.js';

export interface AblationOptions {
  readonly budget: BudgetName;
  /** Dataset folder (Fashion-MNIST IDX files); default: see defaultDataDir. */
  readonly data?: string;
  /** Output folder; default runs/ablations-<budget>-<stamp>. Given again, the experiment in it goes on. */
  readonly out?: string;
  /** Seeds per pretraining/evaluation (the teacher is trained once, seed 0). */
  readonly seeds?: number;
  /** Where progress lines go (stderr). */
  readonly log?: (line: string) => void;
  /** The command line, for the report. */
  readonly command?: string;
  /** SIGINT / SIGTERM stop the running jobs at a step (each writes a checkpoint) instead of ending the process. */
  readonly handleSignals?: boolean;
}

export interface AblationResult {
  readonly out: string;
  readonly report: string;
  readonly results: string;
  /** Wall-clock of this sitting. */
  readonly seconds: number;
  /** Jobs taken from earlier sittings' verified result files. */
  readonly skipped: number;
  /** Jobs that ran (or went on) in this sitting. */
  readonly ran: number;
}

/** The experiment was stopped by a signal; what finished is kept, and the same command goes on from there. */
export class AblationsStopped extends Error {
  constructor(
    readonly out: string,
    /** The signal that stopped it (its exit code is 128 + its number). */
    readonly signal: 'SIGINT' | 'SIGTERM',
  ) {
    super(`stopped; run the same command again (--out ${out}) to go on from the checkpoints`);
  }
}

const REPO = nodePath.resolve(import.meta.dirname, '..', '..');
const RESULT_FORMAT = 'digpt-ablations-job';
const RESULT_VERSION = 2;
const EXPERIMENT_FILE = 'experiment.json';

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

// --- the data: train / val (carved from train) / test ---

/** Seeded subset of `n` of `count` indices (all when n >= count), in increasing order. */
export function pickSubset(count: number, n: number, seed: number): number[] {
  if (n >= count) return Array.from({ length: count }, (_, i) => i);
  const perm = new Rng(seed).permutation(count);
  return Array.from(perm.subarray(0, n)).sort((a, b) => a - b);
}

/** The seed of the experiment's split of the source images (train / val / test); the same for every budget. */
export const SPLIT_SEED = 0;

/** Which source images each part of the experiment uses: indices into the source's train and test splits. */
export interface DataSplit {
  /** Train images every job trains on (source train split), increasing. */
  readonly train: number[];
  /** Validation images carved from the source train split (disjoint from `train`): the recipe is chosen on them. */
  readonly val: number[];
  /** Test images (source test split), increasing: every reported number. */
  readonly test: number[];
}

/**
 * Carves the split: a seeded permutation of the source train images gives `valImages` validation images (its first
 * ones) and up to `trainImages` train images (from the rest); the test images are a seeded subset of the test split.
 */
export function splitIndices(
  trainCount: number,
  testCount: number,
  b: Pick<Budget, 'trainImages' | 'valImages' | 'testImages'>,
  seed = SPLIT_SEED,
): DataSplit {
  const perm = Array.from(new Rng(seed).permutation(trainCount));
  const nVal = Math.min(b.valImages, Math.max(0, trainCount - 1));
  const val = perm.slice(0, nVal).sort((a, c) => a - c);
  const train = perm.slice(nVal, nVal + Math.min(b.trainImages, trainCount - nVal)).sort((a, c) => a - c);
  return { train, val, test: pickSubset(testCount, b.testImages, seed) };
}

/** What prepareData wrote. */
export interface PreparedData {
  readonly train: number;
  readonly trainOf: number;
  readonly val: number;
  readonly test: number;
  readonly testOf: number;
  readonly classes: string[];
  /** The folder every measured job reads: the train images as `train-*`, the test images as `val-*`. */
  readonly dir: string;
  /** The folder the recipe choice reads: the same train images, the validation images as `val-*`. */
  readonly selectDir: string;
  /** split.json: the source indices of each part. */
  readonly splitFile: string;
}

/** Writes `data` to `path` whole (a temporary file renamed), unless the file already holds exactly that. */
function writeWhole(path: string, data: Uint8Array | string): void {
  const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
  if (fs.existsSync(path) && fs.statSync(path).size === bytes.length && fs.readFileSync(path).equals(bytes))
    return;
  const tmp = `${path}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, bytes);
  fs.renameSync(tmp, path);
}

/**
 * Writes the experiment's two dataset folders under `out` from the IDX files of `src` (see PreparedData), and
 * `split.json` with the source indices of the train, validation and test images. Deterministic: a second call finds
 * the same bytes and leaves the files alone, so a resumed experiment reads what it trained on.
 */
export async function prepareData(
  src: string,
  out: string,
  b: Pick<Budget, 'trainImages' | 'valImages' | 'testImages'>,
): Promise<PreparedData> {
  const scan = await scanDataset(src, { valFraction: 0 });
  if (scan.kind !== 'idx')
    throw new Error(
      `${src}: the ablations read IDX files (Fashion-MNIST's own format); this is a ${scan.layout} folder`,
    );
  const read = async (from: 'train' | 'test') => {
    const split = scan.splits.find((s) => s.name === from);
    if (!split || split.source.kind !== 'idx')
      throw new Error(`${src}: no ${from} split (the ablations need train and test/t10k IDX files)`);
    const s = split.source;
    const images = await readIdx(nodePath.join(scan.root, s.images));
    const labels = await readIdx(nodePath.join(scan.root, s.labels));
    const members = s.indices ?? Array.from({ length: s.count }, (_, i) => i);
    return { s, images, labels, members };
  };
  const tr = await read('train');
  const te = await read('test');
  const split = splitIndices(tr.members.length, te.members.length, b);
  const dir = nodePath.join(out, 'data');
  const selectDir = nodePath.join(out, 'data-select');
  for (const folder of [out, dir, selectDir]) {
    fs.mkdirSync(folder, { recursive: true });
    // what a kill during an earlier writeWhole left
    for (const f of fs.readdirSync(folder))
      if (/\.tmp-\d+$/.test(f)) fs.rmSync(nodePath.join(folder, f), { force: true });
  }
  const write = async (
    from: Awaited<ReturnType<typeof read>>,
    chosen: readonly number[],
    folder: string,
    to: 'train' | 'val',
  ): Promise<void> => {
    const { s } = from;
    const per = s.rows * s.cols;
    const img = new Uint8Array(chosen.length * per);
    const lab = new Uint8Array(chosen.length);
    chosen.forEach((i, j) => {
      const k = from.members[i] as number;
      img.set(from.images.data.subarray(k * per, (k + 1) * per), j * per);
      lab[j] = from.labels.data[k] as number;
    });
    writeWhole(
      nodePath.join(folder, `${to}-images-idx3-ubyte`),
      await encodeIdx([chosen.length, s.rows, s.cols], img, false),
    );
    writeWhole(
      nodePath.join(folder, `${to}-labels-idx1-ubyte`),
      await encodeIdx([chosen.length], lab, false),
    );
  };
  await write(tr, split.train, dir, 'train');
  await write(te, split.test, dir, 'val');
  await write(tr, split.train, selectDir, 'train');
  await write(tr, split.val, selectDir, 'val');
  for (const folder of [dir, selectDir])
    writeWhole(nodePath.join(folder, 'classes.txt'), `${scan.classes.join('\n')}\n`);
  const splitFile = nodePath.join(out, 'split.json');
  writeWhole(
    splitFile,
    `${JSON.stringify({ source: src, seed: SPLIT_SEED, train: split.train, val: split.val, test: split.test })}\n`,
  );
  return {
    train: split.train.length,
    trainOf: tr.members.length,
    val: split.val.length,
    test: split.test.length,
    testOf: te.members.length,
    classes: scan.classes,
    dir,
    selectDir,
    splitFile,
  };
}

// --- the plan ---

/** What defines a job: the job spec it runs, or (a decoder-depth run) the config.json it is made from. */
export type TaskSettings =
  { readonly job: JobSpec } | { readonly config: Readonly<Record<string, unknown>>; readonly run: string };

/** One job of the plan; its settings are built when its dependencies are done. */
interface Task {
  readonly id: string;
  readonly kind: JobResult['kind'];
  readonly row?: RowDef['name'];
  readonly candidate?: string;
  readonly seed: number;
  readonly deps: readonly string[];
  /** The run folder of a training job, the file of an encoder job (absolute). */
  readonly path?: string;
  readonly settings: (done: ReadonlyMap<string, JobResult>) => TaskSettings;
}

/** The steps of every training kind of a budget, for the train images there are. */
export function budgetSteps(
  b: Budget,
  trainCount: number,
): { teacher: number; pretrain: number; finetune: number; perEpoch: number } {
  return {
    teacher: stepsFor(b.teacherEpochs, trainCount, b.batch),
    pretrain: stepsFor(b.pretrainEpochs, trainCount, b.batch),
    finetune: stepsFor(b.finetuneEpochs, trainCount, b.batch),
    perEpoch: Math.max(1, Math.floor(trainCount / b.batch)),
  };
}

/** The ids of the recipe-choice jobs. */
const selectId = (name: string): string => `select ${name}`;
const SELECT_PROBE = 'select probe';

/** Every job of the experiment in a sensible start order, with its dependencies. */
function plan(b: Budget, seeds: number, data: PreparedData, out: string, teacherFile: string): Task[] {
  const runs = nodePath.join(out, 'runs');
  const st = budgetSteps(b, data.train);
  const ckEvery = (steps: number): number => Math.min(steps, b.checkpointEvery);
  const finetune = (
    r: FinetuneRecipe,
    dataDir: string,
    from: string,
    dir: string,
    seed: number,
  ): JobSpec => ({
    kind: 'finetune',
    data: dataDir,
    from,
    ...(from === 'scratch' ? { preset: b.preset } : {}),
    steps: st.finetune,
    batch: b.batch,
    accum: 1,
    seed,
    blr: r.blr,
    warmup_epochs: (r.warmup_share * st.finetune) / st.perEpoch,
    out: dir,
    checkpoint_every: ckEvery(st.finetune),
    layer_decay: r.layer_decay,
    drop_path: r.drop_path,
    smoothing: r.smoothing,
    mixup: r.mixup,
    cutmix: r.cutmix,
    erase: r.erase,
    crop_min: r.crop_min,
  });
  const t = RECIPE.teacher;
  const teacherDir = nodePath.join(runs, 'teacher');
  const selectFrom = nodePath.join(runs, 'pretrain-digpt-s0');
  const tasks: Task[] = [
    {
      id: 'teacher',
      kind: 'teacher',
      seed: 0,
      deps: [],
      path: teacherDir,
      settings: () => ({
        job: {
          kind: 'finetune',
          data: data.dir,
          from: 'scratch',
          preset: b.preset,
          steps: st.teacher,
          batch: b.batch,
          accum: 1,
          seed: 0,
          blr: t.blr,
          warmup_epochs: (t.warmup_share * st.teacher) / st.perEpoch,
          out: teacherDir,
          checkpoint_every: ckEvery(st.teacher),
          layer_decay: t.layer_decay,
          drop_path: t.drop_path,
          smoothing: t.smoothing,
          mixup: t.mixup,
          cutmix: t.cutmix,
          erase: t.erase,
          crop_min: t.crop_min,
        },
      }),
    },
  ];
  const rows = rowsOf(b);
  const pretrainDir = (row: RowDef, seed: number): string =>
    nodePath.join(runs, `pretrain-${row.name}-s${seed}`);
  const pretrainSpec = (row: RowDef, seed: number): JobSpec => ({
    kind: 'pretrain',
    data: data.dir,
    preset: b.preset,
    teacher: row.target === 'teacher' ? teacherFile : 'pixels',
    objective: row.objective as Objective,
    steps: st.pretrain,
    batch: b.batch,
    accum: 1,
    seed,
    blr: RECIPE.pretrainBlr,
    out: pretrainDir(row, seed),
    checkpoint_every: ckEvery(st.pretrain),
    // one thread per job: two jobs run side by side, one per core
    workers: 1,
  });
  const digptRow = rows.find((r) => r.name === 'digpt') as RowDef;
  const candidates = b.candidates.map(candidate);
  // the recipe choice: fine-tunes of the seed-0 D-iGPT encoder on the train images, scored on the validation images
  tasks.push({
    id: `pretrain digpt/s0`,
    kind: 'pretrain',
    row: 'digpt',
    seed: 0,
    deps: ['teacher'],
    path: pretrainDir(digptRow, 0),
    settings: () => ({ job: pretrainSpec(digptRow, 0) }),
  });
  for (const c of candidates) {
    const dir = nodePath.join(runs, `select-${c.name}`);
    tasks.push({
      id: selectId(c.name),
      kind: 'select',
      candidate: c.name,
      seed: 0,
      deps: ['pretrain digpt/s0'],
      path: dir,
      settings: () => ({ job: finetune(c, data.selectDir, selectFrom, dir, 0) }),
    });
  }
  tasks.push({
    id: SELECT_PROBE,
    kind: 'select-probe',
    seed: 0,
    deps: ['pretrain digpt/s0'],
    settings: () => ({
      job: { kind: 'probe', data: data.selectDir, source: selectFrom, seed: 0, epochs: b.probeEpochs },
    }),
  });
  const selectIds = candidates.map((c) => selectId(c.name));
  const chosen = (done: ReadonlyMap<string, JobResult>): FinetuneRecipe =>
    candidate(
      chooseRecipe(
        candidates.map((c) => ({ name: c.name, valTop1: done.get(selectId(c.name))?.top1 ?? NaN })),
      ),
    );
  const order = startOrder(rows);
  for (let seed = 0; seed < seeds; seed++) {
    for (const row of order) {
      const name = `${row.name}/s${seed}`;
      const encoder = row.objective
        ? pretrainDir(row, seed)
        : nodePath.join(runs, `scratch-encoder-s${seed}.safetensors`);
      if (row.objective && !(row.name === 'digpt' && seed === 0)) {
        if (row.decDepth === undefined)
          tasks.push({
            id: `pretrain ${name}`,
            kind: 'pretrain',
            row: row.name,
            seed,
            deps: row.target === 'teacher' ? ['teacher'] : [],
            path: encoder,
            settings: () => ({ job: pretrainSpec(row, seed) }),
          });
        else {
          // the decoder group: the digpt row's run of this seed with deeper decoders (config.json, then resume)
          const depth = row.decDepth;
          const from = pretrainDir(digptRow, seed);
          tasks.push({
            id: `pretrain ${name}`,
            kind: 'pretrain',
            row: row.name,
            seed,
            deps: [`pretrain digpt/s${seed}`],
            path: encoder,
            settings: () => ({ config: decoderConfig(from, depth), run: encoder }),
          });
        }
      }
      const dep = row.objective ? [`pretrain ${name}`] : [`encoder ${name}`];
      if (!row.objective)
        tasks.push({
          id: `encoder ${name}`,
          kind: 'encoder',
          row: row.name,
          seed,
          deps: [],
          path: encoder,
          settings: () => ({
            job: { kind: 'init', preset: b.preset, classes: data.classes, seed, out: encoder },
          }),
        });
      tasks.push({
        id: `probe ${name}`,
        kind: 'probe',
        row: row.name,
        seed,
        deps: dep,
        settings: () => ({
          job: { kind: 'probe', data: data.dir, source: encoder, seed, epochs: b.probeEpochs },
        }),
      });
      const ftDir = nodePath.join(runs, `finetune-${row.name}-s${seed}`);
      tasks.push({
        id: `finetune ${name}`,
        kind: 'finetune',
        row: row.name,
        seed,
        deps: [...dep, ...selectIds],
        path: ftDir,
        settings: (done) => ({
          job: finetune(chosen(done), data.dir, row.objective ? encoder : 'scratch', ftDir, seed),
        }),
      });
    }
  }
  return tasks;
}

/**
 * The runner's schedule on paper: the plan's jobs in its start order, each taking plannedJobSeconds, `concurrency`
 * at a time, a job starting when a slot is free and its dependencies are done (as runAblations picks them).
 * Returns the wall-clock and the seconds a slot waited with nothing ready.
 */
export function plannedWallSeconds(
  b: Budget,
  o: PlanOptions = {},
): { seconds: number; idle: number; jobs: number } {
  const seeds = o.seeds ?? b.seeds;
  const train = Math.min(b.trainImages, (o.sourceTrainImages ?? 60_000) - b.valImages);
  const fake: PreparedData = {
    train,
    trainOf: o.sourceTrainImages ?? 60_000,
    val: b.valImages,
    test: Math.min(b.testImages, 10_000),
    testOf: 10_000,
    classes: Array.from({ length: 10 }, (_, i) => String(i)),
    dir: '/plan/data',
    selectDir: '/plan/data-select',
    splitFile: '/plan/split.json',
  };
  const tasks = plan(b, seeds, fake, '/plan', '/plan/teacher.safetensors');
  const rows = new Map(rowsOf(b).map((r) => [r.name, r]));
  const length = (t: Task): number => {
    const row = t.row ? rows.get(t.row) : undefined;
    return plannedJobSeconds(b, row ? { kind: t.kind, row } : { kind: t.kind }, o);
  };
  const done = new Map<string, number>(); // id -> end time
  const running: { id: string; end: number }[] = [];
  const pending = [...tasks];
  let now = 0;
  let idle = 0;
  while (pending.length || running.length) {
    while (running.length < b.concurrency) {
      const i = pending.findIndex((t) => t.deps.every((d) => done.has(d)));
      if (i < 0) break;
      const t = pending.splice(i, 1)[0] as Task;
      running.push({ id: t.id, end: now + length(t) });
    }
    if (!running.length) throw new Error(`jobs never become ready: ${pending.map((t) => t.id).join(', ')}`);
    running.sort((x, y) => x.end - y.end);
    const next = running.shift() as { id: string; end: number };
    idle += (b.concurrency - 1 - running.length) * (next.end - now);
    now = next.end;
    done.set(next.id, now);
  }
  return { seconds: now, idle, jobs: tasks.length };
}

/**
 * The order rows start in within a seed: those that need no teacher first (they run beside it), then the digpt row
 * (the recipe choice and the decoder rows wait for it), then the slowest pretrainings first, so that the last jobs of
 * the experiment are short ones and neither core waits long at the end.
 */
export function startOrder(rows: readonly RowDef[]): RowDef[] {
  const speed = (r: RowDef): number =>
    r.decDepth !== undefined
      ? (PLANNING_SPEEDS.decoder[r.decDepth] ?? 0)
      : (PLANNING_SPEEDS.pretrain[r.name] ?? 0);
  const rank = (r: RowDef): number => (r.target !== 'teacher' ? 0 : r.name === 'digpt' ? 1 : 2);
  return [...rows].sort((a, c) => rank(a) - rank(c) || (rank(a) === 2 ? speed(a) - speed(c) : 0));
}

/**
 * A decoder-depth run's config.json: the digpt row's (same data, teacher, steps, seed) with the decoders' depth
 * changed. The workbench trains a run folder that holds only its config.json from step 0 (`resume`), exactly as a
 * new run of that config (tested: the same losses as `digpt pretrain` for the preset's depth).
 */
function decoderConfig(digptRun: string, depth: number): Record<string, unknown> {
  const c = JSON.parse(fs.readFileSync(nodePath.join(digptRun, 'config.json'), 'utf8')) as Record<
    string,
    unknown
  > & { model: Record<string, unknown> };
  return { ...c, model: { ...c.model, dec_depth: depth } };
}

// --- job results on disk ---

/** JSON with the keys of every object sorted: what two settings are compared by. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [c]) => (a < c ? -1 : 1)))
      : x,
  );
}

function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function fileSha256(path: string): string {
  return sha256(fs.readFileSync(path));
}

/** jobs/<id>.json: a finished job's result. */
export function resultFile(out: string, id: string): string {
  return nodePath.join(out, 'jobs', `${id.replace(/[^A-Za-z0-9.-]+/g, '_')}.json`);
}

function partialFile(out: string, id: string): string {
  return resultFile(out, id).replace(/\.json$/, '.partial.json');
}

function writeJsonWhole(path: string, value: unknown): void {
  fs.mkdirSync(nodePath.dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, `${JSON.stringify(value, null, 1)}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, path);
}

function writeResult(out: string, settings: TaskSettings, result: JobResult): void {
  const body = { settings, result };
  writeJsonWhole(resultFile(out, result.id), {
    format: RESULT_FORMAT,
    version: RESULT_VERSION,
    ...body,
    digest: sha256(canonicalJson(body)),
  });
}

/** The newest good checkpoint's step of a run folder (its files verified), or undefined. */
function checkpointStep(dir: string): number | undefined {
  return latestGoodCheckpoint(nodePath.join(dir, 'checkpoints'))?.manifest.step;
}

/**
 * The result of an earlier sitting, or why it is not trusted: the file must parse, its digest must match its body,
 * its settings must equal this job's, and what it points at must still be there (a training run's final checkpoint,
 * an encoder file or the teacher file with the same sha256).
 */
export function readTrustedResult(
  out: string,
  id: string,
  settings: TaskSettings,
  path?: string,
): { result: JobResult } | { why: string } {
  const file = resultFile(out, id);
  if (!fs.existsSync(file)) return { why: 'no result file' };
  let parsed: {
    format?: unknown;
    version?: unknown;
    settings?: unknown;
    result?: JobResult;
    digest?: unknown;
  };
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof parsed;
  } catch (e) {
    return { why: `${file} is not JSON (${e instanceof Error ? e.message : String(e)})` };
  }
  if (parsed.format !== RESULT_FORMAT || parsed.version !== RESULT_VERSION)
    return { why: `${file}: not a result file of this runner (format ${String(parsed.format)})` };
  const body = { settings: parsed.settings, result: parsed.result };
  if (parsed.digest !== sha256(canonicalJson(body)))
    return { why: `${file}: its digest does not match its content (damaged or edited)` };
  const r = parsed.result;
  if (!r || r.id !== id || typeof r.seconds !== 'number') return { why: `${file}: not the result of ${id}` };
  if (canonicalJson(parsed.settings) !== canonicalJson(settings))
    return { why: `${file}: made with other settings than this job's` };
  if (
    path &&
    (r.kind === 'teacher' || r.kind === 'pretrain' || r.kind === 'finetune' || r.kind === 'select')
  ) {
    const step = fs.existsSync(path) ? checkpointStep(path) : undefined;
    if (step === undefined || step !== r.steps)
      return { why: `${path}: its final checkpoint (step ${r.steps}) is not there or does not verify` };
  }
  if (r.kind === 'encoder' && path && (!fs.existsSync(path) || fileSha256(path) !== r.sha256))
    return { why: `${path} is missing or changed` };
  if (r.kind === 'teacher') {
    const tf = nodePath.join(out, 'teacher.safetensors');
    if (!fs.existsSync(tf) || fileSha256(tf) !== r.sha256) return { why: `${tf} is missing or changed` };
  }
  return { result: r };
}

// --- running one job ---

/** Whether a run folder's config.json is the one this job would make (the spec's settings as config.json holds them). */
function configMatches(dir: string, s: TaskSettings): boolean {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(fs.readFileSync(nodePath.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  } catch {
    return false;
  }
  if ('config' in s) return canonicalJson(raw) === canonicalJson(s.config);
  const job = s.job as Record<string, unknown>;
  if (raw['kind'] !== job['kind']) return false;
  for (const [k, v] of Object.entries(job)) {
    if (k === 'kind' || k === 'out' || k === 'preset' || k === 'epochs') continue;
    // config.json leaves workers out for one thread
    const have = k === 'workers' ? (raw[k] ?? 1) : raw[k];
    if (canonicalJson(have) !== canonicalJson(v)) return false;
  }
  return true;
}

/** What a job reported on its way (the rest is read from its run folder). */
interface Reported {
  top1?: number;
  startStep?: number;
}

/** Runs one job in a worker, printing its progress; resolves when it ends, rejects on failure. */
function runJob(
  id: string,
  spec: JobSpec,
  log: (line: string) => void,
  handles: Set<JobHandle>,
  onCheckpoint: (step: number) => void,
): Promise<Reported> {
  const handle = startJob(spec);
  handles.add(handle);
  let total = 0;
  let lastPrint = 0;
  let t0 = performance.now();
  let startStep = 0;
  const got: Reported = {};
  let failure: string | undefined;
  let stopped = false;
  handle.on('event', (e) => {
    switch (e.type) {
      case 'run':
        total = e.totalSteps;
        t0 = performance.now();
        startStep = e.startStep;
        got.startStep = e.startStep;
        if (spec.kind === 'resume') log(`  ${id}: from step ${e.startStep}/${total}`);
        break;
      case 'step': {
        const r = e.record;
        const now = performance.now();
        if (now - lastPrint > 5000 || r.step === total) {
          lastPrint = now;
          const left = ((now - t0) / 1000 / Math.max(1, r.step - startStep)) * (total - r.step);
          log(
            `  ${id}: step ${r.step}/${total}  loss ${r.loss.toFixed(4)}  ${r.img_per_s.toFixed(0)} img/s  ETA ${formatDuration(left)}`,
          );
        }
        break;
      }
      case 'checkpoint':
        log(`  ${id}: checkpoint at step ${e.step}/${total}`);
        onCheckpoint(e.step);
        break;
      case 'result':
        if (typeof e.result['top1'] === 'number') got.top1 = e.result['top1'];
        break;
      case 'log':
        if (e.level === 'warn') log(`  ${id}: warning: ${e.text}`);
        break;
      case 'error':
        failure = e.message;
        break;
      case 'done':
        stopped = e.stopped;
        break;
      default:
        break;
    }
  });
  return handle.done().then((res) => {
    handles.delete(handle);
    if (failure ?? !res.ok) throw new Error(`${id}: ${failure ?? res.error ?? 'the engine worker failed'}`);
    if (stopped) throw new JobStopped(id);
    return got;
  });
}

class JobStopped extends Error {
  constructor(id: string) {
    super(`${id}: stopped`);
  }
}

/** A finished training run's numbers, from its folder (metrics.jsonl through its one reader, config.json). */
function runNumbers(
  dir: string,
  kind: JobResult['kind'],
): Pick<JobResult, 'steps' | 'imgPerS' | 'top1' | 'knnTop1' | 'losses'> {
  const config = JSON.parse(fs.readFileSync(nodePath.join(dir, 'config.json'), 'utf8')) as { steps: number };
  const lines = readMetrics(dir);
  const steps = lines.filter(isStepLine);
  const last = steps.at(-1)?.step;
  if (last !== config.steps)
    throw new Error(`${dir}: metrics.jsonl ends at step ${String(last)}, not at the run's ${config.steps}`);
  const atEnd = (key: string): number | undefined => {
    const v = lines.filter((r) => r.step === config.steps && typeof r[key] === 'number').at(-1)?.[key];
    return typeof v === 'number' ? v : undefined;
  };
  const rates = steps.map((r) => r['img_per_s']).filter((v): v is number => typeof v === 'number');
  const top1 = atEnd('val_top1');
  const knnTop1 = atEnd('knn_top1');
  return {
    steps: config.steps,
    ...(rates.length ? { imgPerS: rates.reduce((a, v) => a + v, 0) / rates.length } : {}),
    ...(kind !== 'pretrain' && top1 !== undefined ? { top1 } : {}),
    ...(kind === 'pretrain' && knnTop1 !== undefined ? { knnTop1 } : {}),
    ...(kind === 'pretrain'
      ? { losses: steps.map((r) => [r.step as number, r['loss'] as number] as [number, number]) }
      : {}),
  };
}

/**
 * Rough time left: each unfinished job takes the mean time of the finished jobs of its kind and row (a pretraining
 * of pixel targets takes half as long as one with deeper decoders), else of its kind, else of all.
 */
export function remainingSeconds(
  done: readonly Pick<JobResult, 'kind' | 'row' | 'seconds'>[],
  left: readonly Pick<JobResult, 'kind' | 'row'>[],
  concurrency: number,
): number {
  const mean = (xs: readonly Pick<JobResult, 'seconds'>[]): number =>
    xs.length ? xs.reduce((a, x) => a + x.seconds, 0) / xs.length : NaN;
  const all = mean(done);
  const sum = left.reduce((a, x) => {
    const same = mean(done.filter((d) => d.kind === x.kind && d.row === x.row));
    const kind = mean(done.filter((d) => d.kind === x.kind));
    return a + (Number.isFinite(same) ? same : Number.isFinite(kind) ? kind : all);
  }, 0);
  return left.length ? sum / Math.max(1, concurrency) : 0;
}

// --- the experiment folder ---

interface ExperimentState {
  readonly format: 'digpt-ablations';
  readonly version: number;
  readonly budget: BudgetName;
  readonly seeds: number;
  readonly source: string;
  readonly sittings: Sitting[];
}

/** experiment.json: what the folder's experiment is, and its sittings; another budget, seeds or data is refused. */
function openExperiment(out: string, b: Budget, seeds: number, source: string): ExperimentState {
  const path = nodePath.join(out, EXPERIMENT_FILE);
  if (!fs.existsSync(path)) {
    if (fs.existsSync(nodePath.join(out, 'runs')))
      throw new Error(
        `${out} holds runs but no ${EXPERIMENT_FILE} (an experiment of an older runner?); give another --out`,
      );
    return {
      format: 'digpt-ablations',
      version: RESULT_VERSION,
      budget: b.name,
      seeds,
      source,
      sittings: [],
    };
  }
  const s = JSON.parse(fs.readFileSync(path, 'utf8')) as ExperimentState;
  if (s.format !== 'digpt-ablations') throw new Error(`${path}: not an ablations experiment`);
  const mine = { budget: b.name, seeds, source };
  const theirs = { budget: s.budget, seeds: s.seeds, source: s.source };
  if (canonicalJson(mine) !== canonicalJson(theirs))
    throw new Error(
      `${out} holds the experiment of --budget ${s.budget} --seeds ${s.seeds} --data ${s.source}; give the same to go on with it, or another --out`,
    );
  return { ...s, sittings: [...s.sittings] };
}

/** Runs the whole experiment (or what is left of it) and writes report.md, results.json and the plots. */
export async function runAblations(o: AblationOptions): Promise<AblationResult> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const b = BUDGETS[o.budget];
  const seeds = o.seeds ?? b.seeds;
  const src = nodePath.resolve(o.data ?? defaultDataDir());
  if (!fs.existsSync(src)) throw new Error(`dataset folder ${src} does not exist`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const out = nodePath.resolve(o.out ?? nodePath.join('runs', `ablations-${b.name}-${stamp}`));
  fs.mkdirSync(out, { recursive: true });
  const command = o.command ?? `digpt experiment ablations --budget ${b.name}`;
  const lock = RunLock.acquire(out, {
    command,
    onWarn: (text) =>
      log(`ablations: ${text.replace(/^took over the lock of run/, 'took over the lock of')}`),
  });
  const stopOnSignal = (sig: 'SIGINT' | 'SIGTERM'): void => {
    signal = sig;
    if (stopping) {
      log('ablations: second signal: ending now (the jobs lose what they did since their last checkpoint)');
      process.exit(sig === 'SIGINT' ? 130 : 143);
    }
    stopping = true;
    log(
      'ablations: stopping the running jobs at a step (each writes a checkpoint); a second signal ends at once',
    );
    for (const h of handles) h.stop();
  };
  let stopping = false;
  let timer: NodeJS.Timeout | undefined;
  let signal: 'SIGINT' | 'SIGTERM' = 'SIGINT';
  const handles = new Set<JobHandle>();
  if (o.handleSignals) {
    process.on('SIGINT', stopOnSignal);
    process.on('SIGTERM', stopOnSignal);
  }
  try {
    const state = openExperiment(out, b, seeds, src);
    const jobsDir = nodePath.join(out, 'jobs');
    // result files half-written by a killed sitting (each is written whole, then renamed)
    if (fs.existsSync(jobsDir))
      for (const f of fs.readdirSync(jobsDir))
        if (/\.tmp-\d+$/.test(f)) fs.rmSync(nodePath.join(jobsDir, f), { force: true });
    const sitting: Sitting = { started: new Date().toISOString(), seconds: 0, command };
    state.sittings.push(sitting);
    const t0 = performance.now();
    const saveState = (): void => {
      sitting.seconds = (performance.now() - t0) / 1000;
      writeJsonWhole(nodePath.join(out, EXPERIMENT_FILE), state);
    };
    saveState();
    // a sitting ended by kill -9 still has its time, up to the last of these
    timer = setInterval(saveState, 30_000);
    timer.unref();
    log(`ablations (${b.name}): data ${src} -> ${out}`);
    const data = await prepareData(src, out, b);
    log(
      `  ${data.train} train images (of ${data.trainOf}, ${data.val} carved out for the recipe choice), ${data.test} test images (of ${data.testOf})`,
    );
    const teacherFile = nodePath.join(out, 'teacher.safetensors');
    const tasks = plan(b, seeds, data, out, teacherFile);
    const results = new Map<string, JobResult>();
    const running = new Map<string, Promise<void>>();
    const pending = [...tasks];
    let failed: Error | undefined;
    let skipped = 0;
    let ran = 0;
    log(`  ${tasks.length} jobs, ${b.concurrency} at a time`);
    const rel = (p: string): string => nodePath.relative(out, p);

    const start = (t: Task, settings: TaskSettings): void => {
      const ts = performance.now();
      const partial = partialFile(out, t.id);
      let earlier = 0;
      try {
        earlier = (JSON.parse(fs.readFileSync(partial, 'utf8')) as { seconds: number }).seconds;
      } catch {
        earlier = 0;
      }
      const elapsed = (): number => earlier + (performance.now() - ts) / 1000;
      const p = (async () => {
        const spec = launchSpec(t, settings, log);
        ran++;
        const got = await runJob(t.id, spec, log, handles, (step) =>
          writeJsonWhole(partial, { step, seconds: elapsed() }),
        );
        let res: JobResult = {
          id: t.id,
          kind: t.kind,
          ...(t.row ? { row: t.row } : {}),
          ...(t.candidate ? { candidate: t.candidate } : {}),
          seed: t.seed,
          seconds: elapsed(),
          ...(t.path ? { dir: rel(t.path) } : {}),
        };
        if (t.kind === 'probe' || t.kind === 'select-probe') {
          if (got.top1 === undefined) throw new Error(`${t.id}: the probe gave no top-1`);
          res = { ...res, top1: got.top1 };
        } else if (t.kind === 'encoder') res = { ...res, sha256: fileSha256(t.path as string) };
        else {
          res = { ...res, ...runNumbers(t.path as string, t.kind) };
          if (t.kind === 'teacher') {
            const model = latestGoodCheckpoint(nodePath.join(t.path as string, 'checkpoints'));
            if (!model || model.manifest.step !== res.steps)
              throw new Error(`${t.id}: no verified checkpoint at its last step`);
            const tmp = `${teacherFile}.tmp-${process.pid}`;
            fs.copyFileSync(nodePath.join(model.folder, 'model.safetensors'), tmp);
            fs.renameSync(tmp, teacherFile);
            res = { ...res, sha256: fileSha256(teacherFile) };
          }
        }
        writeResult(out, settings, res);
        fs.rmSync(partial, { force: true });
        results.set(t.id, res);
        saveState();
        const acc = res.top1 !== undefined ? `  top-1 ${res.top1.toFixed(4)}` : '';
        const left = remainingSeconds(
          [...results.values()],
          tasks.filter((x) => !results.has(x.id)),
          b.concurrency,
        );
        log(
          `done ${t.id} in ${formatDuration(res.seconds)}${acc}  (${results.size}/${tasks.length} jobs, ${formatDuration((performance.now() - t0) / 1000)} this sitting, ETA ~${formatDuration(left)})`,
        );
      })()
        .catch((e: unknown) => {
          if (e instanceof JobStopped) return;
          failed ??= e instanceof Error ? e : new Error(String(e));
        })
        .finally(() => running.delete(t.id));
      running.set(t.id, p);
    };

    /**
     * A ready task's settings, and its result when an earlier sitting finished it with them (then it is done and
     * skipped); else why it is not trusted.
     */
    const resolve = (t: Task): { settings: TaskSettings; why?: string } => {
      const settings = t.settings(results);
      const trusted = readTrustedResult(out, t.id, settings, t.path);
      if (!('result' in trusted)) return { settings, why: trusted.why };
      results.set(t.id, trusted.result);
      skipped++;
      log(`skip ${t.id}: finished in an earlier sitting (${rel(resultFile(out, t.id))})`);
      return { settings };
    };
    // every job finished in an earlier sitting first (the plan lists a job after what it depends on), so that the
    // counts and the ETA of the first `done` line are right; one whose inputs are redone is checked when they are
    for (let i = 0; i < pending.length;) {
      const t = pending[i] as Task;
      if (t.deps.every((d) => results.has(d)) && resolve(t).why === undefined) pending.splice(i, 1);
      else i++;
    }
    while ((pending.length || running.size) && !failed) {
      while (running.size < b.concurrency && !failed && !stopping) {
        const i = pending.findIndex((t) => t.deps.every((d) => results.has(d)));
        if (i < 0) break;
        const t = pending.splice(i, 1)[0] as Task;
        const { settings, why } = resolve(t);
        if (why === undefined) continue;
        if (fs.existsSync(resultFile(out, t.id))) log(`redo ${t.id}: ${why}`);
        start(t, settings);
      }
      if (running.size === 0) break;
      await Promise.race(running.values());
    }
    if (failed) {
      // the others stop at a step and write a checkpoint: the same command goes on from there
      for (const h of handles) h.stop();
      await Promise.all([...running.values()]);
      saveState();
      throw failed;
    }
    if (stopping) {
      saveState();
      throw new AblationsStopped(out, signal);
    }
    if (pending.length) throw new Error(`jobs never became ready: ${pending.map((t) => t.id).join(', ')}`);

    saveState();
    const files = await writeReport({
      out,
      budget: b,
      seeds,
      source: src,
      data,
      sittings: state.sittings,
      command,
      jobs: tasks.map((t) => results.get(t.id) as JobResult),
      machine: `${os.availableParallelism()} cores, Node ${process.versions.node}`,
    });
    const seconds = (performance.now() - t0) / 1000;
    log(
      `ablations: ${files.report} (${formatDuration(seconds)} this sitting; ${skipped} jobs from earlier sittings, ${ran} run now)`,
    );
    return { out, ...files, seconds, skipped, ran };
  } finally {
    if (timer) clearInterval(timer);
    if (o.handleSignals) {
      process.off('SIGINT', stopOnSignal);
      process.off('SIGTERM', stopOnSignal);
    }
    lock.release();
  }
}

/**
 * The job to start for a task, given what its folder holds: a new run; or, when its run folder is there with this
 * job's config.json, `resume` from its newest checkpoint; a run folder without a checkpoint (killed before its first)
 * or with another config.json is set aside and the run starts again.
 */
function launchSpec(t: Task, s: TaskSettings, log: (line: string) => void): JobSpec {
  const dir = t.path;
  const training =
    t.kind === 'teacher' || t.kind === 'pretrain' || t.kind === 'finetune' || t.kind === 'select';
  if (!training || !dir) {
    log(`start ${t.id}`);
    return (s as { job: JobSpec }).job;
  }
  if (fs.existsSync(dir)) {
    const ck = checkpointStep(dir);
    if (ck !== undefined && configMatches(dir, s)) {
      log(`resume ${t.id} from step ${ck} (its newest checkpoint)`);
      return { kind: 'resume', run: dir };
    }
    const why =
      ck === undefined
        ? 'it has no checkpoint yet (stopped before its first)'
        : 'its config.json is not this job';
    const aside = `${dir}.set-aside-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    fs.renameSync(dir, aside);
    log(`restart ${t.id}: ${why}; the old folder is now ${nodePath.basename(aside)}`);
  } else log(`start ${t.id}`);
  if ('config' in s) {
    fs.mkdirSync(dir, { recursive: true });
    writeJsonWhole(nodePath.join(dir, 'config.json'), s.config);
    return { kind: 'resume', run: dir };
  }
  return s.job;
}
